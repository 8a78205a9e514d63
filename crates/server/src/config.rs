//! Settings, read from `ANYREPLY_*` environment variables. The README lists every one.

use std::collections::HashMap;
use std::env;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use anyreply_core::Money;
use secrecy::SecretString;
use url::Url;

use crate::reply::pricing::{ModelPrice, Pricing};
use crate::tools::guard::AddressPolicy;

/// Everything the server can be told.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `ANYREPLY_DATABASE_URL`; the database is created if it does not exist. Unset: the
    /// private cluster's (see [`crate::pg_cluster`]).
    pub database_url: Option<String>,
    /// `ANYREPLY_DATA_DIR`: where the private cluster lives (unset: the platform's data
    /// directory for `anyreply`, `/var/lib/anyreply` for root).
    pub data_dir: Option<PathBuf>,
    /// `ANYREPLY_PG_BIN`: the PostgreSQL binaries that run the private cluster (unset:
    /// `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`).
    pub pg_bin: Option<PathBuf>,
    /// `ANYREPLY_DATABASE_POOL_SIZE`: most connections this process opens.
    pub database_pool_size: usize,
    /// `ANYREPLY_LISTEN`.
    pub listen: SocketAddr,
    /// `ANYREPLY_LLM_BASE_URL`: an OpenAI Chat Completions API.
    pub llm_base_url: Url,
    /// `ANYREPLY_LLM_API_KEY`.
    pub llm_api_key: Option<SecretString>,
    /// `ANYREPLY_ANTHROPIC_BASE_URL`: the Anthropic Messages API.
    pub anthropic_base_url: Url,
    /// `ANYREPLY_ANTHROPIC_API_KEY`.
    pub anthropic_api_key: Option<SecretString>,
    /// `ANYREPLY_LLM_RETRIES`: extra attempts after a timeout, 429 or 5xx, before the fallback.
    pub llm_retries: u32,
    /// `ANYREPLY_LLM_RETRY_BACKOFF_MS`: pause before the first retry, doubled for each next.
    pub llm_retry_backoff: Duration,
    /// `ANYREPLY_TOOL_MAX_ROUNDS`: model turns per reply that may call tools.
    pub tool_max_rounds: u32,
    /// `ANYREPLY_TOOL_MAX_CALLS`: tool calls per reply.
    pub tool_max_calls: u32,
    /// `ANYREPLY_TOOL_ALLOWED_HOSTS`: non-public hosts, addresses and networks tools may reach.
    pub tool_allowed_hosts: AddressPolicy,
    /// `ANYREPLY_LLM_DEFAULT_MODEL`: the model of assistants that name none.
    pub llm_default_model: String,
    /// `ANYREPLY_LLM_TIMEOUT_SECS`: longest wait for one model answer.
    pub llm_timeout: Duration,
    /// `ANYREPLY_LLM_MAX_OUTPUT_TOKENS`: `max_tokens` of every model call.
    pub llm_max_output_tokens: u32,
    /// `ANYREPLY_CONTEXT_TOKEN_BUDGET`: estimated tokens of prompt sent to the model.
    pub context_token_budget: u32,
    /// `ANYREPLY_REPLY_LEASE_SECS`: how long a stopped process's reply (and idempotency key)
    /// stays reserved before another may take it over. Renewed every third of it.
    pub reply_lease: Duration,
    /// `ANYREPLY_REPLY_TIMEOUT_SECS`: longest a reply may take (waiting for its turn, the
    /// model and its tools) before it is given up with `503 LLM_UNAVAILABLE`.
    pub reply_timeout: Duration,
    /// `ANYREPLY_CONVERSATION_QUEUE_LIMIT`: most messages of one conversation waiting for
    /// their reply; one more gets `429 CONVERSATION_BUSY`.
    pub conversation_queue_limit: u32,
    /// How often a message waiting for its turn looks for itself, in case a wake-up was lost
    /// (the listener reconnecting) or an earlier reply's process died. Not an environment
    /// setting: tests lengthen it to prove the wake-ups work alone.
    pub turn_recheck: Duration,
    /// `ANYREPLY_RATE_LIMIT_PER_MINUTE`: generate-reply calls per API key per minute.
    pub rate_limit_per_minute: u32,
    /// `ANYREPLY_PRICE_*` and `ANYREPLY_MODEL_PRICES`.
    pub pricing: Pricing,
}

pub const DEFAULT_LLM_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: None,
            data_dir: None,
            pg_bin: None,
            database_pool_size: 10,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            llm_base_url: Url::parse(DEFAULT_LLM_BASE_URL).expect("constant URL"),
            llm_api_key: None,
            anthropic_base_url: Url::parse(DEFAULT_ANTHROPIC_BASE_URL).expect("constant URL"),
            anthropic_api_key: None,
            llm_retries: 1,
            llm_retry_backoff: Duration::from_millis(500),
            tool_max_rounds: 3,
            tool_max_calls: 8,
            tool_allowed_hosts: AddressPolicy::default(),
            llm_default_model: DEFAULT_MODEL.to_owned(),
            llm_timeout: Duration::from_secs(60),
            llm_max_output_tokens: 1024,
            context_token_budget: 8000,
            reply_lease: Duration::from_secs(30),
            reply_timeout: Duration::from_secs(120),
            turn_recheck: Duration::from_secs(1),
            conversation_queue_limit: anyreply_core::limits::DEFAULT_CONVERSATION_QUEUE_LIMIT,
            rate_limit_per_minute: 60,
            pricing: Pricing::default(),
        }
    }
}

impl Settings {
    /// Defaults overridden by the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let mut s = Self::default();
        if let Some(v) = var("ANYREPLY_DATABASE_URL") {
            s.database_url = Some(v);
        }
        if let Some(v) = var("ANYREPLY_DATA_DIR") {
            s.data_dir = Some(v.into());
        }
        if let Some(v) = var("ANYREPLY_PG_BIN") {
            s.pg_bin = Some(v.into());
        }
        parse_into("ANYREPLY_DATABASE_POOL_SIZE", &mut s.database_pool_size)?;
        parse_into("ANYREPLY_LISTEN", &mut s.listen)?;
        parse_into("ANYREPLY_LLM_BASE_URL", &mut s.llm_base_url)?;
        s.llm_api_key = var("ANYREPLY_LLM_API_KEY").map(SecretString::from);
        parse_into("ANYREPLY_ANTHROPIC_BASE_URL", &mut s.anthropic_base_url)?;
        s.anthropic_api_key = var("ANYREPLY_ANTHROPIC_API_KEY").map(SecretString::from);
        parse_into("ANYREPLY_LLM_RETRIES", &mut s.llm_retries)?;
        let mut backoff_ms = 500_u64;
        parse_into("ANYREPLY_LLM_RETRY_BACKOFF_MS", &mut backoff_ms)?;
        s.llm_retry_backoff = Duration::from_millis(backoff_ms);
        parse_into("ANYREPLY_TOOL_MAX_ROUNDS", &mut s.tool_max_rounds)?;
        parse_into("ANYREPLY_TOOL_MAX_CALLS", &mut s.tool_max_calls)?;
        if let Some(allowed) = var("ANYREPLY_TOOL_ALLOWED_HOSTS") {
            s.tool_allowed_hosts =
                AddressPolicy::parse(&allowed).context("ANYREPLY_TOOL_ALLOWED_HOSTS")?;
        }
        if let Some(v) = var("ANYREPLY_LLM_DEFAULT_MODEL") {
            s.llm_default_model = v;
        }
        let mut timeout_secs = s.llm_timeout.as_secs();
        parse_into("ANYREPLY_LLM_TIMEOUT_SECS", &mut timeout_secs)?;
        s.llm_timeout = Duration::from_secs(timeout_secs);
        parse_into(
            "ANYREPLY_LLM_MAX_OUTPUT_TOKENS",
            &mut s.llm_max_output_tokens,
        )?;
        parse_into("ANYREPLY_CONTEXT_TOKEN_BUDGET", &mut s.context_token_budget)?;
        parse_into(
            "ANYREPLY_RATE_LIMIT_PER_MINUTE",
            &mut s.rate_limit_per_minute,
        )?;
        let mut lease_secs = s.reply_lease.as_secs();
        parse_into("ANYREPLY_REPLY_LEASE_SECS", &mut lease_secs)?;
        if lease_secs < 3 {
            bail!("ANYREPLY_REPLY_LEASE_SECS must be at least 3");
        }
        s.reply_lease = Duration::from_secs(lease_secs);
        let mut reply_timeout_secs = s.reply_timeout.as_secs();
        parse_into("ANYREPLY_REPLY_TIMEOUT_SECS", &mut reply_timeout_secs)?;
        s.reply_timeout = Duration::from_secs(reply_timeout_secs);
        parse_into(
            "ANYREPLY_CONVERSATION_QUEUE_LIMIT",
            &mut s.conversation_queue_limit,
        )?;
        parse_into("ANYREPLY_PRICE_PER_REPLY", &mut s.pricing.per_reply)?;
        parse_into(
            "ANYREPLY_PRICE_INPUT_PER_MTOK",
            &mut s.pricing.default_price.input_per_mtok,
        )?;
        parse_into(
            "ANYREPLY_PRICE_OUTPUT_PER_MTOK",
            &mut s.pricing.default_price.output_per_mtok,
        )?;
        if let Some(table) = var("ANYREPLY_MODEL_PRICES") {
            s.pricing.per_model = parse_model_prices(&table).context("ANYREPLY_MODEL_PRICES")?;
        }
        if s.database_pool_size == 0
            || s.rate_limit_per_minute == 0
            || timeout_secs == 0
            || reply_timeout_secs == 0
            || s.conversation_queue_limit == 0
        {
            bail!(
                "pool size, rate limit, LLM and reply timeouts and queue limit must be greater than zero"
            );
        }
        Ok(s)
    }
}

fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse_into<T>(name: &str, slot: &mut T) -> anyhow::Result<()>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    if let Some(text) = var(name) {
        *slot = text
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={text:?}: {e}"))?;
    }
    Ok(())
}

/// `gpt-4o=2.50/10.00,gpt-4o-mini=0.15/0.60`: input/output price per million tokens.
fn parse_model_prices(table: &str) -> anyhow::Result<HashMap<String, ModelPrice>> {
    table
        .split(',')
        .filter(|entry| !entry.trim().is_empty())
        .map(|entry| {
            let (model, prices) = entry
                .split_once('=')
                .context("expected model=input/output")?;
            let (input, output) = prices
                .split_once('/')
                .context("expected input/output prices")?;
            let price = ModelPrice {
                input_per_mtok: input.trim().parse::<Money>()?,
                output_per_mtok: output.trim().parse::<Money>()?,
            };
            Ok((model.trim().to_owned(), price))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_prices_parse() {
        let table = parse_model_prices("gpt-4o=2.50/10, llama3 = 0/0").unwrap();
        assert_eq!(table["gpt-4o"].output_per_mtok, "10".parse().unwrap());
        assert_eq!(table["llama3"].input_per_mtok, Money::ZERO);
        assert!(parse_model_prices("gpt-4o=2.50").is_err());
    }
}
