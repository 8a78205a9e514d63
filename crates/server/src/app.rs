//! The application state every handler shares.

use std::sync::Arc;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Settings;
use crate::db::{DbConn, DbPool, PoolError};
use crate::engine_state::EngineState;
use crate::events::EventHub;
use crate::known_keys::KnownKeys;
use crate::llm::{AnthropicClient, OpenAiClient, Providers};
use crate::tools::ToolRunner;
use crate::tools::guard::system_lookup;
use crate::webhooks::WebhookSender;

/// Cheap to clone: everything is behind `Arc`s or is itself a handle.
#[derive(Clone)]
pub struct App {
    /// Connections are borrowed per query or transaction and returned at once: none is ever
    /// held while the model thinks.
    pub pool: DbPool,
    /// The database: `ANYREPLY_DATABASE_URL`'s, or the private cluster's.
    pub database_url: String,
    pub settings: Arc<Settings>,
    /// The model providers.
    pub llm: Providers,
    /// Calls assistants' tools.
    pub tools: ToolRunner,
    /// Sends webhook deliveries, and checks webhook URLs against the address policy.
    pub webhooks: WebhookSender,
    /// The generate-reply engine's state in this process: the messages waiting for their
    /// turn and the replies in flight.
    pub engine: EngineState,
    /// Renders the process's metrics for `/metrics`.
    pub metrics: PrometheusHandle,
    /// The keys generate-reply has seen, so that it need not read them again.
    pub known_keys: KnownKeys,
    /// The open event streams and the poller that feeds them.
    pub event_streams: EventHub,
    /// Wakes the worker that reads knowledge-base documents.
    pub knowledge: crate::knowledge::worker::Wake,
    /// Passages' and queries' vectors, when on.
    pub embeddings: crate::knowledge::embed::Embeddings,
}

impl App {
    pub fn new(settings: Settings) -> anyhow::Result<Self> {
        let database_url = settings
            .database_url
            .clone()
            .context("no database URL: resolve it first (pg_cluster::resolve_database)")?;
        let pool = crate::db::pool(&database_url, settings.database_pool_size)?;
        let llm = Providers {
            openai: OpenAiClient::new(
                &settings.llm_base_url,
                settings.llm_api_key.clone(),
                settings.llm_timeout,
            )?,
            anthropic: AnthropicClient::new(
                &settings.anthropic_base_url,
                settings.anthropic_api_key.clone(),
                settings.llm_timeout,
            )?,
            retries: settings.llm_retries,
            retry_backoff: settings.llm_retry_backoff,
        };
        let tools = ToolRunner::new(settings.outbound_allowed_hosts.clone(), system_lookup())?;
        let webhooks = WebhookSender::new(
            settings.outbound_allowed_hosts.clone(),
            system_lookup(),
            settings.webhook_timeout,
        )?;
        let streams_per_key = settings.event_streams_per_key;
        let embeddings = crate::knowledge::embed::Embeddings::new(&settings)?;
        Ok(Self {
            pool,
            database_url,
            settings: Arc::new(settings),
            llm,
            tools,
            webhooks,
            engine: EngineState::default(),
            metrics: crate::telemetry::metrics::recorder(),
            known_keys: KnownKeys::default(),
            event_streams: EventHub::new(streams_per_key),
            knowledge: Default::default(),
            embeddings,
        })
    }

    /// A pooled connection; give it back (drop it) before any slow work.
    pub async fn db(&self) -> Result<DbConn, PoolError> {
        self.pool.get().await
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("pool", &self.pool.status())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
