//! The AnyReply API server: a drop-in for Famulor's "Generate AI Reply" API on PostgreSQL.
//!
//! Layout: [`router`] lists every route; [`controllers`] hold the handlers; [`reply`] is the
//! generate-reply engine; [`models`] are the rows and their queries; [`llm`] speaks to model
//! providers; [`webhooks`] delivers events; [`config`] reads the settings.

pub mod app;
pub mod caller;
pub mod cli;
pub mod client_address;
pub mod config;
pub mod console;
pub mod controllers;
pub mod db;
pub mod endings;
pub mod engine_state;
pub mod error;
pub mod events;
pub mod extract;
pub mod idempotency;
pub mod knowledge;
pub mod known_keys;
pub mod llm;
pub mod models;
pub mod openapi;
pub mod password;
pub mod pg_cluster;
pub mod pricing;
pub mod rate_limit;
pub mod reply;
pub mod router;
pub mod schema;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod tools;
pub mod webhooks;

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

pub use app::App;
pub use config::Settings;

/// How often each process looks for replies abandoned by a stopped process.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How long delivered webhook deliveries are kept, for operators looking into one.
const DELIVERIES_KEPT_DAYS: i32 = 3;
/// How often the sweep purges the audit log and the console's closed pages: a day late costs
/// nothing, and a loop of its own would wake an idle server.
const DAILY_PURGE_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

/// Serves `app` on `listener` until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Dropped, the set aborts its tasks: when serving ends, and when this future is dropped.
    // Before the worker and the first search: whether they use vectors.
    knowledge::embed::start(&app.pool, &app.embeddings).await;
    let mut background = tokio::task::JoinSet::new();
    background.spawn(sweep_abandoned_replies(app.clone()));
    let engine = app.engine.clone();
    background.spawn(engine.wakeups.listen(app.database_url.clone()));
    background.spawn(
        engine
            .in_flight
            .renew(app.pool.clone(), app.settings.reply_lease),
    );
    background.spawn(webhooks::worker::run(webhooks::worker::Worker {
        pool: app.pool.clone(),
        settings: app.settings.clone(),
        sender: app.webhooks.clone(),
    }));
    background.spawn(knowledge::worker::run(knowledge::worker::Worker {
        pool: app.pool.clone(),
        settings: app.settings.clone(),
        embeddings: app.embeddings.clone(),
        wake: app.knowledge.clone(),
    }));
    background.spawn(app.event_streams.clone().run(app.database_url.clone()));
    background.spawn(endings::run(app.clone()));
    // Event streams never end by themselves: the graceful shutdown would wait for them.
    let streams = app.event_streams.clone();
    let shutdown = async move {
        shutdown.await;
        streams.shut_down();
    };
    let result = axum::serve(
        listener,
        router::router(app).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    drop(background);
    result
}

async fn sweep_abandoned_replies(app: App) {
    let mut interval = tokio::time::interval(SWEEP_EVERY);
    let mut audit_purged_at: Option<tokio::time::Instant> = None;
    loop {
        interval.tick().await;
        if audit_purged_at.is_none_or(|at| at.elapsed() >= DAILY_PURGE_EVERY) {
            audit_purged_at = Some(tokio::time::Instant::now());
            if let Err(error) = purge_old_audit_entries(&app).await {
                tracing::warn!(%error, "purging old audit log entries failed");
            }
            if let Err(error) = purge_closed_console_pages(&app).await {
                tracing::warn!(%error, "purging closed console pages failed");
            }
        }
        if let Err(error) = reply::queue::reclaim_expired(&app, None).await {
            tracing::warn!(%error, "sweeping abandoned replies failed");
        }
        if let Err(error) = reply::settlement::pay_dues_left_unpaid(&app).await {
            tracing::warn!(%error, "paying settled replies' dues failed");
        }
        if let Err(error) = idempotency::purge_expired(&app.pool).await {
            tracing::warn!(%error, "purging old idempotency keys failed");
        }
        if let Err(error) = events::purge_old(&app.pool).await {
            tracing::warn!(%error, "purging old events failed");
        }
        if let Err(error) = purge_delivered_webhooks(&app).await {
            tracing::warn!(%error, "purging delivered webhook deliveries failed");
        }
        if let Err(error) = purge_past_visitor_counts(&app).await {
            tracing::warn!(%error, "purging past widget visitor counts failed");
        }
    }
}

/// Deletes audit log entries past `audit_log::KEPT_DAYS`, in batches.
pub async fn purge_old_audit_entries(app: &App) -> anyhow::Result<()> {
    let mut conn = app.db().await?;
    let purged =
        models::audit_log::purge_older_than(&mut conn, models::audit_log::KEPT_DAYS).await?;
    if purged > 0 {
        tracing::info!(purged, "purged old audit log entries");
    }
    Ok(())
}

/// Forgets who had a conversation open in the console, for pages closed an hour ago.
async fn purge_closed_console_pages(app: &App) -> anyhow::Result<()> {
    let mut conn = app.db().await?;
    models::conversation_viewer::purge_gone(&mut conn).await?;
    Ok(())
}

async fn purge_past_visitor_counts(app: &App) -> anyhow::Result<()> {
    let mut conn = app.db().await?;
    models::widget::purge_past_counts(&mut conn).await?;
    Ok(())
}

async fn purge_delivered_webhooks(app: &App) -> anyhow::Result<()> {
    let mut conn = app.db().await?;
    models::webhook_delivery::purge_older_than(&mut conn, DELIVERIES_KEPT_DAYS).await?;
    Ok(())
}
