use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, bail};
use anyreply_core::wire::operators::normalize_email;
use anyreply_core::wire::{AuditAction, OperatorInput};
use anyreply_server::cli::{AccountCommand, Cli, Command, KeyCommand, OperatorCommand};
use anyreply_server::config::DEFAULT_LLM_BASE_URL;
use anyreply_server::controllers::operators;
use anyreply_server::models::audit_log::{self, Actor, Target};
use anyreply_server::models::{account, api_key, operator};
use anyreply_server::{App, Settings, db, pg_cluster, reply, telemetry};
use clap::Parser;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;

/// Allocation took a seventh of the server's time under load with the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line per problem, no backtrace: these are meant for the person starting it.
            for line in format!("{error:#}").lines() {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr: `ANYREPLY_LOG` filters (default `info`), `ANYREPLY_LOG_FORMAT=json`
/// structures; a bad value of either is warned about, not ignored.
fn init_logging() {
    let filter_text = std::env::var("ANYREPLY_LOG").ok();
    let filter = filter_text
        .as_deref()
        .map(|text| telemetry::log_filter(Some(text)));
    let format = std::env::var("ANYREPLY_LOG_FORMAT").ok();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(match &filter {
            Some(Ok(filter)) => filter.clone(),
            _ => telemetry::log_filter(None).expect("the default filter parses"),
        })
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let json = format
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case("json"));
    if json {
        logs.json().init()
    } else {
        logs.init()
    }
    if let Some(Err(error)) = filter {
        tracing::warn!(
            "ANYREPLY_LOG={:?} is not a valid filter ({error}); logging at info. For example ANYREPLY_LOG=info,anyreply_server=debug",
            filter_text.unwrap_or_default()
        );
    }
    if let Some(format) = format.filter(|f| !json && !f.eq_ignore_ascii_case("text")) {
        tracing::warn!(
            "ANYREPLY_LOG_FORMAT={format:?} is not json or text; logging as text. For example ANYREPLY_LOG_FORMAT=json"
        );
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut settings = Settings::from_env()?;
    // Held to the end: the private cluster, if this is it, stops when its last user is done.
    let (database_url, cluster) = pg_cluster::resolve_database(&settings).await?;
    settings.database_url = Some(database_url.clone());
    db::create_database_if_missing(&database_url).await?;
    db::run_migrations(&database_url).await?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings, cluster.as_ref()).await,
        Command::Migrate => Ok(()),
        Command::Account(command) => account_command(&database_url, command).await,
        Command::Key(command) => key_command(&database_url, command).await,
        Command::Operator(command) => operator_command(&settings, &database_url, command).await,
    }
}

async fn serve(
    settings: Settings,
    cluster: Option<&pg_cluster::ClusterGuard>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (ANYREPLY_LISTEN); set ANYREPLY_LISTEN to a free address, for example ANYREPLY_LISTEN=127.0.0.1:8081",
                settings.listen
            )
        })?;
    log_start(&settings);
    let app = App::new(settings)?;
    // Starts the private cluster again should PostgreSQL die; ended before the guard is
    // dropped, whose stop it would undo.
    let supervisor = cluster.map(|cluster| {
        let app = app.clone();
        tokio::spawn(cluster.supervise(move || {
            tokio::spawn(pay_dues_after_a_restart(app.clone()));
        }))
    });
    let served = anyreply_server::serve(app, listener, shutdown_signal()).await;
    if let Some(supervisor) = supervisor {
        supervisor.abort();
        let _ = supervisor.await;
    }
    served?;
    Ok(())
}

/// Pays what the crash may have left unpaid (see `settlement::pay_dues_after_a_restart`) as
/// soon as the restarted cluster takes connections (it may first recover for a while).
async fn pay_dues_after_a_restart(app: App) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match reply::settlement::pay_dues_after_a_restart(&app).await {
            Ok(()) => return,
            Err(error) if tokio::time::Instant::now() > deadline => {
                // The minute's sweep pays them then.
                tracing::warn!(%error, "could not pay dues after the restart");
                return;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    }
}

/// Says what the server runs on, so a wrong database or provider shows at once.
fn log_start(settings: &Settings) {
    tracing::info!(
        address = %settings.listen,
        database = %db::describe(settings.database_url.as_deref().unwrap_or_default()),
        llm_base_url = %settings.llm_base_url,
        llm_default_model = %settings.llm_default_model,
        llm_api_key_set = settings.llm_api_key.is_some(),
        anthropic_base_url = %settings.anthropic_base_url,
        anthropic_api_key_set = settings.anthropic_api_key.is_some(),
        embedding_model = settings.embedding_model.as_deref().unwrap_or("none"),
        "serving"
    );
    if settings.llm_api_key.is_none()
        && settings.llm_base_url.as_str().trim_end_matches('/') == DEFAULT_LLM_BASE_URL
    {
        tracing::warn!(
            "ANYREPLY_LLM_API_KEY is not set while ANYREPLY_LLM_BASE_URL is OpenAI's: replies will fail until a key is set (or point ANYREPLY_LLM_BASE_URL at a local model)"
        );
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = terminate => {} }
    tracing::info!("shutting down");
}

async fn connect(database_url: &str) -> anyhow::Result<AsyncPgConnection> {
    db::establish(database_url, database_url).await
}

#[allow(clippy::print_stdout)] // The command's answer goes to stdout, for scripts.
async fn account_command(database_url: &str, command: AccountCommand) -> anyhow::Result<()> {
    let mut conn = connect(database_url).await?;
    match command {
        AccountCommand::Create {
            name,
            email,
            balance,
        } => {
            if balance < anyreply_core::Money::ZERO {
                bail!("the balance cannot be negative");
            }
            let (account_id, key) = conn
                .transaction::<_, diesel::result::Error, _>(async |conn| {
                    let id = account::create(conn, &name, email.as_deref(), balance).await?;
                    Ok((id, new_key(conn, id).await?))
                })
                .await?;
            println!(
                "{}",
                json!({ "account_id": account_id, "api_key": key.key })
            );
        }
        AccountCommand::TopUp { account, amount } => {
            if amount <= anyreply_core::Money::ZERO {
                bail!("the amount must be positive");
            }
            let balance = account::top_up(&mut conn, account, amount)
                .await?
                .context("no such account")?;
            println!(
                "{}",
                json!({ "account_id": account, "total_balance": balance })
            );
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn key_command(database_url: &str, command: KeyCommand) -> anyhow::Result<()> {
    let mut conn = connect(database_url).await?;
    match command {
        KeyCommand::Create { account } => {
            account::find(&mut conn, account)
                .await?
                .context("no such account")?;
            let key = conn
                .transaction::<_, diesel::result::Error, _>(async |conn| {
                    new_key(conn, account).await
                })
                .await?;
            println!("{}", json!({ "account_id": account, "api_key": key.key }));
        }
        KeyCommand::Revoke { key_prefix } => {
            let revoked = conn
                .transaction::<_, diesel::result::Error, _>(async |conn| {
                    let Some(key) = api_key::revoke_returning(conn, &key_prefix).await? else {
                        return Ok(false);
                    };
                    let (action, target) = (AuditAction::ApiKeyRevoked, Target::ApiKey(key.id));
                    let details = json!({ "prefix": key.prefix });
                    let actor = &Actor::CommandLine;
                    audit_log::record(conn, key.account_id, actor, action, target, details).await?;
                    Ok(true)
                })
                .await?;
            if !revoked {
                bail!("no live key has that prefix");
            }
            println!(
                "{}",
                json!({ "revoked": key_prefix.chars().take(12).collect::<String>() })
            );
        }
    }
    Ok(())
}

/// A new key of `account_id`, logged as the command line's in the caller's transaction.
async fn new_key(
    conn: &mut AsyncPgConnection,
    account_id: i64,
) -> diesel::QueryResult<api_key::NewApiKey> {
    let key = api_key::create(conn, account_id).await?;
    let (action, target) = (AuditAction::ApiKeyCreated, Target::ApiKey(key.id));
    let details = json!({ "prefix": key.prefix });
    audit_log::record(
        conn,
        account_id,
        &Actor::CommandLine,
        action,
        target,
        details,
    )
    .await?;
    Ok(key)
}

#[allow(clippy::print_stdout)]
async fn operator_command(
    settings: &Settings,
    database_url: &str,
    command: OperatorCommand,
) -> anyhow::Result<()> {
    let mut conn = connect(database_url).await?;
    match command {
        OperatorCommand::Create {
            account,
            email,
            role,
            name,
        } => {
            account::find(&mut conn, account)
                .await?
                .context("no such account")?;
            let name =
                name.unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_owned());
            let body = json!({ "email": email, "name": name, "role": role.as_str() });
            let input = OperatorInput::from_json(&body).map_err(|errors| {
                anyhow::anyhow!(
                    "{}",
                    serde_json::to_string(&errors.into_map()).unwrap_or_default()
                )
            })?;
            let added = operators::add(&mut conn, settings, account, &input, &Actor::CommandLine)
                .await
                .map_err(|error| anyhow::anyhow!("{}", error.body().message))?;
            println!(
                "{}",
                json!({
                    "operator_id": added.data.id,
                    "email": added.data.email,
                    "role": added.data.role,
                    "password_link": added.password_link,
                    "expires_at": added.password_link_expires_at,
                })
            );
        }
        OperatorCommand::Link { email } => {
            let email = normalize_email(&email).context("that is not an email address")?;
            let found = operator::by_email(&mut conn, &email)
                .await?
                .context("no operator has that email")?;
            let (link, expires_at) =
                operators::new_link(&mut conn, settings, &found, &Actor::CommandLine)
                    .await
                    .map_err(|error| anyhow::anyhow!("{}", error.body().message))?;
            println!(
                "{}",
                json!({
                    "operator_id": found.id,
                    "email": found.email,
                    "password_link": link,
                    "expires_at": expires_at,
                })
            );
        }
    }
    Ok(())
}
