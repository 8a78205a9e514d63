//! Settings, read from `ANYREPLY_*` environment variables. docs/operating.md lists every one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use anyreply_core::Money;
use anyreply_core::env::Env;
use secrecy::SecretString;
use url::Url;

use crate::pricing::{ModelPrice, Pricing};
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
    /// `ANYREPLY_OUTBOUND_ALLOWED_HOSTS` and the older `ANYREPLY_TOOL_ALLOWED_HOSTS`, merged:
    /// non-public hosts, addresses and networks that tools and webhooks may reach.
    pub outbound_allowed_hosts: AddressPolicy,
    /// `ANYREPLY_WEBHOOK_TIMEOUT_SECS`: longest wait for a webhook receiver's answer.
    pub webhook_timeout: Duration,
    /// `ANYREPLY_TRUSTED_PROXIES`: the addresses of reverse proxies whose `X-Forwarded-Proto`
    /// and `X-Forwarded-For` the console and the chat widget's per-address limit believe.
    pub trusted_proxies: TrustedProxies,
    /// Pauses before each retry of a failed webhook delivery; past the last, the webhook is
    /// disabled. Not an environment setting: tests shorten it.
    pub webhook_retry_schedule: Vec<Duration>,
    /// How long a delivery may keep failing before its webhook is disabled. Not an environment
    /// setting: tests shorten it.
    pub webhook_failure_window: Duration,
    /// How often each process looks for new events to deliver to webhooks (sooner when a
    /// retry falls due). Not an environment setting.
    pub webhook_recheck: Duration,
    /// Pauses before the 2nd, 3rd and 4th attempts of a conversation-ended webhook (Famulor's
    /// 30, 60 and 120 seconds). Not an environment setting: tests shorten it.
    pub conversation_ended_retry_schedule: Vec<Duration>,
    /// How often each process looks for conversations to end and endings' work due (an
    /// ending's own work is done at once). Not an environment setting: tests shorten it.
    pub conversation_end_recheck: Duration,
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
    /// `ANYREPLY_WIDGET_VISITOR_RATE_PER_MINUTE`: chat widget messages per visitor per minute.
    pub widget_visitor_rate_per_minute: u32,
    /// `ANYREPLY_WIDGET_IP_RATE_PER_MINUTE`: requests to `/api/widget/` (preflights, history
    /// reads and messages) per client address per minute, over every widget.
    pub widget_ip_rate_per_minute: u32,
    /// `ANYREPLY_EVENT_STREAMS_PER_KEY`: most `GET /api/events` streams one API key keeps open
    /// in this process (and a console session, of its own); one more gets
    /// `429 TOO_MANY_EVENT_STREAMS`.
    pub event_streams_per_key: u32,
    /// `ANYREPLY_KNOWLEDGE_TOKENS`: most tokens of knowledge-base passages a `prompt`-mode
    /// assistant's prompt is given.
    pub knowledge_tokens: u32,
    /// `ANYREPLY_EMBEDDING_MODEL`: when set, passages and queries are also embedded (see
    /// [`crate::knowledge::embed`]).
    pub embedding_model: Option<String>,
    /// `ANYREPLY_EMBEDDING_BASE_URL`: an OpenAI Embeddings API (unset: `llm_base_url`).
    pub embedding_base_url: Option<Url>,
    /// `ANYREPLY_EMBEDDING_API_KEY` (unset: `llm_api_key`).
    pub embedding_api_key: Option<SecretString>,
    /// `ANYREPLY_PRICE_*` and `ANYREPLY_MODEL_PRICES`.
    pub pricing: Pricing,
    /// `ANYREPLY_METRICS_TOKEN`: when set, `/metrics` wants it as a Bearer token.
    pub metrics_token: Option<SecretString>,
    /// `ANYREPLY_PUBLIC_URL`: where people reach the server, for the links it prints (an
    /// operator's password link); unset: `http://` and `listen`.
    pub public_url: Option<Url>,
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
            outbound_allowed_hosts: AddressPolicy::default(),
            webhook_timeout: Duration::from_secs(10),
            trusted_proxies: TrustedProxies::default(),
            webhook_retry_schedule: [5, 300, 1800, 7200, 18_000, 36_000, 36_000]
                .map(Duration::from_secs)
                .to_vec(),
            webhook_failure_window: Duration::from_secs(24 * 3600),
            webhook_recheck: Duration::from_secs(1),
            conversation_ended_retry_schedule: [30, 60, 120].map(Duration::from_secs).to_vec(),
            conversation_end_recheck: Duration::from_secs(60),
            llm_default_model: DEFAULT_MODEL.to_owned(),
            llm_timeout: Duration::from_secs(60),
            llm_max_output_tokens: 1024,
            context_token_budget: 8000,
            reply_lease: Duration::from_secs(30),
            reply_timeout: Duration::from_secs(120),
            turn_recheck: Duration::from_secs(1),
            conversation_queue_limit: anyreply_core::limits::DEFAULT_CONVERSATION_QUEUE_LIMIT,
            rate_limit_per_minute: 60,
            widget_visitor_rate_per_minute: 10,
            widget_ip_rate_per_minute: 300,
            event_streams_per_key: 20,
            knowledge_tokens: 1_500,
            embedding_model: None,
            embedding_base_url: None,
            embedding_api_key: None,
            pricing: Pricing::default(),
            metrics_token: None,
            public_url: None,
        }
    }
}

impl Settings {
    /// Defaults overridden by the environment; every bad setting is named at once.
    /// The address people reach the server at, without a trailing slash.
    pub fn public_base(&self) -> String {
        match &self.public_url {
            Some(url) => url.as_str().trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    pub fn from_env() -> anyhow::Result<Self> {
        let mut env = Env::from_process();
        let settings = Self::read(&mut env);
        let unread = env.finish(READ_ELSEWHERE)?;
        for name in unread {
            tracing::warn!("{name} is not a setting of anyreply-server; it is ignored");
        }
        Ok(settings)
    }

    /// The settings `env` gives, its problems noted in it (in the order they are read here).
    pub fn read(env: &mut Env) -> Self {
        let mut settings = Self::default();
        settings.read_bounds(env);
        settings.pricing = read_pricing(env, std::mem::take(&mut settings.pricing));
        settings.read_database(env);
        settings.read_providers(env);
        settings.read_outbound(env);
        settings.read_model_limits(env);
        settings.read_replies(env);
        settings.read_knowledge(env);
        settings.metrics_token = env.text("ANYREPLY_METRICS_TOKEN").map(SecretString::from);
        settings
    }

    /// The reply lease (at least 3 s) and the database pool's size.
    fn read_bounds(&mut self, env: &mut Env) {
        self.reply_lease = read_secs(env, "ANYREPLY_REPLY_LEASE_SECS", self.reply_lease, "30");
        if self.reply_lease < Duration::from_secs(3) {
            env.invalid(
                "ANYREPLY_REPLY_LEASE_SECS",
                &self.reply_lease.as_secs().to_string(),
                "must be at least 3",
                "30",
            );
        }
        self.database_pool_size =
            env.parsed("ANYREPLY_DATABASE_POOL_SIZE", self.database_pool_size, "10");
        if self.database_pool_size == 0 {
            env.invalid(
                "ANYREPLY_DATABASE_POOL_SIZE",
                "0",
                "must be at least 1",
                "10",
            );
        }
    }

    fn read_database(&mut self, env: &mut Env) {
        self.database_url = env.text("ANYREPLY_DATABASE_URL");
        self.data_dir = env.text("ANYREPLY_DATA_DIR").map(PathBuf::from);
        self.pg_bin = env.text("ANYREPLY_PG_BIN").map(PathBuf::from);
        self.listen = env.parsed("ANYREPLY_LISTEN", self.listen, "127.0.0.1:8080");
        self.public_url = env.optional("ANYREPLY_PUBLIC_URL", "https://replies.example.com");
    }

    /// The model providers, their retries, and the tool rounds.
    fn read_providers(&mut self, env: &mut Env) {
        self.llm_base_url = env.parsed(
            "ANYREPLY_LLM_BASE_URL",
            self.llm_base_url.clone(),
            "http://127.0.0.1:11434/v1",
        );
        self.llm_api_key = env.text("ANYREPLY_LLM_API_KEY").map(SecretString::from);
        self.anthropic_base_url = env.parsed(
            "ANYREPLY_ANTHROPIC_BASE_URL",
            self.anthropic_base_url.clone(),
            DEFAULT_ANTHROPIC_BASE_URL,
        );
        self.anthropic_api_key = env
            .text("ANYREPLY_ANTHROPIC_API_KEY")
            .map(SecretString::from);
        self.llm_retries = env.parsed("ANYREPLY_LLM_RETRIES", self.llm_retries, "1");
        self.llm_retry_backoff = Duration::from_millis(env.parsed(
            "ANYREPLY_LLM_RETRY_BACKOFF_MS",
            self.llm_retry_backoff.as_millis() as u64,
            "500",
        ));
        self.tool_max_rounds = env.parsed("ANYREPLY_TOOL_MAX_ROUNDS", self.tool_max_rounds, "3");
        self.tool_max_calls = env.parsed("ANYREPLY_TOOL_MAX_CALLS", self.tool_max_calls, "8");
    }

    /// What the server may call (tools, webhooks, websites) and whom it trusts to proxy.
    fn read_outbound(&mut self, env: &mut Env) {
        self.outbound_allowed_hosts = env
            .parsed(
                "ANYREPLY_OUTBOUND_ALLOWED_HOSTS",
                std::mem::take(&mut self.outbound_allowed_hosts),
                "crm.internal,10.1.0.0/16",
            )
            .merged(env.parsed(
                "ANYREPLY_TOOL_ALLOWED_HOSTS",
                AddressPolicy::default(),
                "crm.internal,10.1.0.0/16",
            ));
        self.webhook_timeout = read_secs(
            env,
            "ANYREPLY_WEBHOOK_TIMEOUT_SECS",
            self.webhook_timeout,
            "10",
        );
        self.trusted_proxies = env.parsed(
            "ANYREPLY_TRUSTED_PROXIES",
            std::mem::take(&mut self.trusted_proxies),
            "127.0.0.1,::1",
        );
    }

    fn read_model_limits(&mut self, env: &mut Env) {
        if let Some(model) = env.text("ANYREPLY_LLM_DEFAULT_MODEL") {
            self.llm_default_model = model;
        }
        self.llm_timeout = read_secs(env, "ANYREPLY_LLM_TIMEOUT_SECS", self.llm_timeout, "60");
        self.llm_max_output_tokens = env.parsed(
            "ANYREPLY_LLM_MAX_OUTPUT_TOKENS",
            self.llm_max_output_tokens,
            "1024",
        );
        self.context_token_budget = env.parsed(
            "ANYREPLY_CONTEXT_TOKEN_BUDGET",
            self.context_token_budget,
            "8000",
        );
    }

    /// A reply's time, the queues and the rate limits.
    fn read_replies(&mut self, env: &mut Env) {
        self.reply_timeout = read_secs(
            env,
            "ANYREPLY_REPLY_TIMEOUT_SECS",
            self.reply_timeout,
            "120",
        );
        let mut positive = |name: &str, n: &mut u32, example: &str| {
            *n = read_positive(env, name, *n, example);
        };
        positive(
            "ANYREPLY_CONVERSATION_QUEUE_LIMIT",
            &mut self.conversation_queue_limit,
            "20",
        );
        positive(
            "ANYREPLY_RATE_LIMIT_PER_MINUTE",
            &mut self.rate_limit_per_minute,
            "60",
        );
        positive(
            "ANYREPLY_WIDGET_VISITOR_RATE_PER_MINUTE",
            &mut self.widget_visitor_rate_per_minute,
            "10",
        );
        positive(
            "ANYREPLY_WIDGET_IP_RATE_PER_MINUTE",
            &mut self.widget_ip_rate_per_minute,
            "300",
        );
        positive(
            "ANYREPLY_EVENT_STREAMS_PER_KEY",
            &mut self.event_streams_per_key,
            "20",
        );
    }

    fn read_knowledge(&mut self, env: &mut Env) {
        self.knowledge_tokens = read_positive(
            env,
            "ANYREPLY_KNOWLEDGE_TOKENS",
            self.knowledge_tokens,
            "1500",
        );
        self.embedding_model = env.text("ANYREPLY_EMBEDDING_MODEL");
        self.embedding_base_url =
            env.optional("ANYREPLY_EMBEDDING_BASE_URL", "http://127.0.0.1:11434/v1");
        self.embedding_api_key = env
            .text("ANYREPLY_EMBEDDING_API_KEY")
            .map(SecretString::from);
    }
}

/// A number of seconds, at least 1.
fn read_secs(env: &mut Env, name: &str, default: Duration, example: &str) -> Duration {
    let secs = env.parsed(name, default.as_secs(), example);
    if secs == 0 {
        env.invalid(name, "0", "must be at least 1", example);
    }
    Duration::from_secs(secs)
}

/// A count, at least 1.
fn read_positive(env: &mut Env, name: &str, default: u32, example: &str) -> u32 {
    let n = env.parsed(name, default, example);
    if n == 0 {
        env.invalid(name, "0", "must be at least 1", example);
    }
    n
}

/// The price per reply, the default price per million tokens, and the per-model table.
fn read_pricing(env: &mut Env, mut pricing: Pricing) -> Pricing {
    pricing.per_reply = env.parsed("ANYREPLY_PRICE_PER_REPLY", pricing.per_reply, "0.001");
    pricing.default_price.input_per_mtok = env.parsed(
        "ANYREPLY_PRICE_INPUT_PER_MTOK",
        pricing.default_price.input_per_mtok,
        "0.15",
    );
    pricing.default_price.output_per_mtok = env.parsed(
        "ANYREPLY_PRICE_OUTPUT_PER_MTOK",
        pricing.default_price.output_per_mtok,
        "0.60",
    );
    const PRICES_EXAMPLE: &str = "gpt-4o=2.50/10.00,gpt-4o-mini=0.15/0.60";
    if let Some(table) = env.text("ANYREPLY_MODEL_PRICES") {
        match parse_model_prices(&table) {
            Ok(per_model) => pricing.per_model = per_model,
            Err(error) => env.invalid(
                "ANYREPLY_MODEL_PRICES",
                &table,
                &error.to_string(),
                PRICES_EXAMPLE,
            ),
        }
    }
    pricing
}

/// Settings read outside [`Settings::read`], so not "unknown": logging, the tests', and the
/// bridges' address (one environment, such as the Docker image's, often serves both).
pub const READ_ELSEWHERE: &[&str] = &[
    "ANYREPLY_LOG",
    "ANYREPLY_LOG_FORMAT",
    "ANYREPLY_BRIDGE_LISTEN",
    "ANYREPLY_TEST_DATABASE_URL",
    "ANYREPLY_BENCH_POSTGRES",
    "ANYREPLY_UPDATE_OPENAPI",
];

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

/// Addresses of trusted reverse proxies, comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<std::net::IpAddr>);

impl TrustedProxies {
    pub fn contains(&self, address: std::net::IpAddr) -> bool {
        self.0.contains(&address.to_canonical())
    }
}

impl std::str::FromStr for TrustedProxies {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<std::net::IpAddr>()
                    .map(|address| address.to_canonical())
                    .map_err(|_| format!("{part:?} is not an IP address"))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_allowed_hosts_settings_count() {
        let mut env = Env::from_vars(
            [
                ("ANYREPLY_OUTBOUND_ALLOWED_HOSTS", "crm.internal"),
                ("ANYREPLY_TOOL_ALLOWED_HOSTS", "10.1.0.0/16"),
            ]
            .map(|(name, value)| (name.to_owned(), value.to_owned())),
        );
        let policy = Settings::read(&mut env).outbound_allowed_hosts;
        assert!(policy.allows_host("crm.internal"));
        assert!(policy.check_ip("10.1.2.3".parse().unwrap()).is_ok());
        assert!(policy.check_ip("10.2.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn embedding_settings_are_read_and_unset_means_off() {
        let mut env = Env::from_vars(
            [
                ("ANYREPLY_EMBEDDING_MODEL", "nomic-embed-text"),
                ("ANYREPLY_EMBEDDING_BASE_URL", "http://127.0.0.1:11434/v1"),
            ]
            .map(|(name, value)| (name.to_owned(), value.to_owned())),
        );
        let settings = Settings::read(&mut env);
        assert_eq!(
            settings.embedding_model.as_deref(),
            Some("nomic-embed-text")
        );
        assert_eq!(
            settings.embedding_base_url.unwrap().as_str(),
            "http://127.0.0.1:11434/v1"
        );
        assert!(env.finish(&[]).unwrap().is_empty());
        let unset = Settings::read(&mut Env::from_vars([]));
        assert!(unset.embedding_model.is_none() && unset.embedding_base_url.is_none());
    }

    #[test]
    fn model_prices_parse() {
        let table = parse_model_prices("gpt-4o=2.50/10, llama3 = 0/0").unwrap();
        assert_eq!(table["gpt-4o"].output_per_mtok, "10".parse().unwrap());
        assert_eq!(table["llama3"].input_per_mtok, Money::ZERO);
        assert!(parse_model_prices("gpt-4o=2.50").is_err());
    }
}
