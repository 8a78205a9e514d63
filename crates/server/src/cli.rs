//! The `anyreply-server` command line.

use anyreply_core::Money;
use anyreply_core::wire::OperatorRole;
use clap::{Parser, Subcommand};

/// AnyReply: AI replies that remember each customer. Settings come from `ANYREPLY_*`
/// environment variables (see docs/operating.md).
#[derive(Debug, Parser)]
#[command(name = "anyreply-server", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run migrations, then serve the API (the default).
    Serve,
    /// Run migrations only.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage the operators who sign in to the console.
    #[command(subcommand)]
    Operator(OperatorCommand),
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account and its first API key; prints {"account_id", "api_key"} once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: Option<String>,
        /// Starting balance in currency units, such as 10.50.
        #[arg(long, default_value = "0")]
        balance: Money,
    },
    /// Add to an account's balance.
    TopUp {
        #[arg(long)]
        account: i64,
        /// Amount in currency units, such as 10.50.
        #[arg(long)]
        amount: Money,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create another API key for an account; prints {"account_id", "api_key"} once.
    Create {
        #[arg(long)]
        account: i64,
    },
    /// Revoke a key by its prefix (its first 12 characters) or its full text.
    Revoke { key_prefix: String },
}

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Add an operator to an account; prints the one-time link (valid 24 hours) where they set
    /// their password. No mail is sent: pass the link on.
    Create {
        #[arg(long)]
        account: i64,
        #[arg(long)]
        email: String,
        /// owner, admin or agent.
        #[arg(long, value_parser = parse_role)]
        role: OperatorRole,
        /// The name shown with what they write (default: the email's part before the @).
        #[arg(long)]
        name: Option<String>,
    },
    /// Print a new password link for an operator (one who forgot theirs); the old link stops
    /// working.
    Link {
        #[arg(long)]
        email: String,
    },
}

fn parse_role(text: &str) -> Result<OperatorRole, String> {
    OperatorRole::parse(text).ok_or_else(|| "the role is owner, admin or agent".to_owned())
}
