//! The Prometheus metrics, on one page: every name and label the server records is here, and
//! the rest of the code calls these functions instead of naming metrics itself.
//!
//! Latencies are histograms with fixed buckets (in seconds), not summaries, so that they can
//! be added up across processes.

use std::sync::OnceLock;
use std::time::Duration;

use anyreply_core::wire::LlmProvider;
use anyreply_core::{ErrorCode, Money};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::llm::TokenUsage;

/// Upper bounds of the latency buckets, in seconds: a millisecond to two minutes (the reply
/// timeout's default).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The process's recorder, installed on first use; every [`crate::App`] of the process shares it.
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .expect("the buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if the embedding program installed its own recorder first; then it
            // gets the metrics and this handle renders none.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics will be empty");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_histogram!(
        "anyreply_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP requests by method, route and status, and how long they took"
    );
    describe_counter!(
        "anyreply_replies_total",
        "generate-reply calls by outcome: replied, replayed, stored (AI off) or the error code"
    );
    describe_histogram!(
        "anyreply_reply_phase_duration_seconds",
        metrics::Unit::Seconds,
        "Each phase of a reply: queue_wait (for the turn), model (one model call, retries \
         included), tool (one tool call), database (one engine transaction)"
    );
    describe_counter!(
        "anyreply_model_tokens_total",
        "Tokens of model calls by provider, model and kind (prompt, completion)"
    );
    describe_counter!(
        "anyreply_model_cost_subunits_total",
        "Cost of model calls by provider and model, in 1e-8 of the currency unit"
    );
    describe_counter!(
        "anyreply_tool_calls_total",
        "Tool calls by outcome: ok, error (the tool failed), reused (an earlier attempt's \
         result), refused (unknown function or over the cap)"
    );
    describe_counter!(
        "anyreply_webhook_attempts_total",
        "Webhook delivery attempts by outcome: delivered, failed, gone (410)"
    );
    describe_counter!(
        "anyreply_webhooks_disabled_total",
        "Webhooks disabled for failing too long or answering 410 Gone"
    );
    describe_counter!(
        "anyreply_rate_limit_refusals_total",
        "generate-reply calls refused by the per-key rate limit"
    );
    describe_gauge!(
        "anyreply_db_pool_connections",
        "Database connections of this process by state (idle, in_use)"
    );
    describe_gauge!(
        "anyreply_db_pool_max_connections",
        "The most database connections this process opens"
    );
    describe_gauge!(
        "anyreply_db_pool_waiting",
        "Tasks of this process waiting for a database connection"
    );
    describe_gauge!(
        "anyreply_replies_in_flight",
        "Replies this process is producing"
    );
    describe_gauge!(
        "anyreply_replies_waiting_for_turn",
        "Messages of this process queued behind an earlier message of their conversation"
    );
    describe_gauge!(
        "anyreply_event_streams_open",
        "GET /api/events and console event streams open in this process"
    );
    describe_counter!(
        "anyreply_event_stream_statements_total",
        "Statements the event streams sent PostgreSQL, each its own transaction, by kind: poll \
         (the poller's look for every open stream), durable (a flush before sending), liveness \
         (the streams' keys and sessions), catch_up (a stream reading from its Last-Event-ID), \
         open (an account's first stream)"
    );
}

/// `n` event streams are open in this process.
pub fn event_streams_open(n: usize) {
    gauge!("anyreply_event_streams_open").set(n as f64);
}

/// The event streams sent PostgreSQL a statement of `kind`.
pub fn event_stream_statement(kind: &'static str) {
    counter!("anyreply_event_stream_statements_total", "kind" => kind).increment(1);
}

pub fn http_request(method: &str, route: &str, status: u16, latency: Duration) {
    histogram!(
        "anyreply_http_request_duration_seconds",
        "method" => method.to_owned(),
        "route" => route.to_owned(),
        "status" => status.to_string(),
    )
    .record(latency);
}

/// How a generate-reply call ended.
#[derive(Debug, Clone, Copy)]
pub enum ReplyOutcome {
    Replied,
    Replayed,
    /// Stored without a reply: the AI is off for the conversation.
    Stored,
    Failed(ErrorCode),
}

pub fn reply(outcome: ReplyOutcome) {
    let label = match outcome {
        ReplyOutcome::Replied => "replied",
        ReplyOutcome::Replayed => "replayed",
        ReplyOutcome::Stored => "stored",
        ReplyOutcome::Failed(code) => code.as_str(),
    };
    counter!("anyreply_replies_total", "outcome" => label).increment(1);
    if let ReplyOutcome::Failed(ErrorCode::RateLimited) = outcome {
        counter!("anyreply_rate_limit_refusals_total").increment(1);
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Phase {
    QueueWait,
    Model,
    Tool,
    Database,
}

/// One webhook delivery attempt: `delivered`, `failed` or `gone`.
pub fn webhook_attempt(outcome: &'static str) {
    counter!("anyreply_webhook_attempts_total", "outcome" => outcome).increment(1);
}

/// A webhook was disabled.
pub fn webhook_disabled() {
    counter!("anyreply_webhooks_disabled_total").increment(1);
}

pub fn phase(phase: Phase, took: Duration) {
    let label = match phase {
        Phase::QueueWait => "queue_wait",
        Phase::Model => "model",
        Phase::Tool => "tool",
        Phase::Database => "database",
    };
    histogram!("anyreply_reply_phase_duration_seconds", "phase" => label).record(took);
}

pub fn model_call(provider: LlmProvider, model: &str, usage: TokenUsage, cost: Money) {
    let provider = provider.as_str();
    for (kind, tokens) in [
        ("prompt", usage.prompt_tokens),
        ("completion", usage.completion_tokens),
    ] {
        counter!(
            "anyreply_model_tokens_total",
            "provider" => provider,
            "model" => model.to_owned(),
            "kind" => kind,
        )
        .increment(u64::from(tokens));
    }
    counter!(
        "anyreply_model_cost_subunits_total",
        "provider" => provider,
        "model" => model.to_owned(),
    )
    .increment(u64::try_from(cost.subunits()).unwrap_or(0));
}

#[derive(Debug, Clone, Copy)]
pub enum ToolCallOutcome {
    Ok,
    Error,
    Reused,
    Refused,
}

pub fn tool_call(outcome: ToolCallOutcome) {
    let label = match outcome {
        ToolCallOutcome::Ok => "ok",
        ToolCallOutcome::Error => "error",
        ToolCallOutcome::Reused => "reused",
        ToolCallOutcome::Refused => "refused",
    };
    counter!("anyreply_tool_calls_total", "outcome" => label).increment(1);
}

/// What the gauges show, read at a scrape.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    /// The database pool's connections.
    pub pool: deadpool::managed::Status,
    /// Replies this process is producing.
    pub replies_in_flight: usize,
    /// Messages of this process waiting for their turn.
    pub replies_waiting_for_turn: usize,
}

/// The exposition text of `handle`, with the gauges read now: the pool and the replies in
/// flight.
pub fn render(handle: &PrometheusHandle, gauges: Gauges) -> String {
    let pool = gauges.pool;
    gauge!("anyreply_db_pool_connections", "state" => "idle").set(pool.available as f64);
    gauge!("anyreply_db_pool_connections", "state" => "in_use")
        .set(pool.size.saturating_sub(pool.available) as f64);
    gauge!("anyreply_db_pool_max_connections").set(pool.max_size as f64);
    gauge!("anyreply_db_pool_waiting").set(pool.waiting as f64);
    gauge!("anyreply_replies_in_flight").set(gauges.replies_in_flight as f64);
    gauge!("anyreply_replies_waiting_for_turn").set(gauges.replies_waiting_for_turn as f64);
    handle.render()
}
