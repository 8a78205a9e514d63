//! The bridges' Prometheus metrics at `/metrics`, on one page: messages in by outcome,
//! messages out by outcome, send retries; each labelled with the channel.

use std::sync::OnceLock;

use axum::http::header;
use axum::routing::get;
use metrics::{counter, describe_counter};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::bridge::Outcome;

/// The process's recorder, installed on first use.
fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        describe_counter!(
            "anyreply_bridge_messages_in_total",
            "Customer messages received, by channel and outcome: replied, silent (taken over), \
             opted_out, answered_before (a redelivery), apology (no reply could be had), \
             ignored"
        );
        describe_counter!(
            "anyreply_bridge_messages_out_total",
            "Messages sent to customers (replies and operator messages), by channel and \
             outcome: sent or failed"
        );
        describe_counter!(
            "anyreply_bridge_outside_window_total",
            "Operator messages not sent because the customer last wrote longer ago than the \
             channel allows (Messenger and Instagram: 7 days), by channel"
        );
        describe_counter!(
            "anyreply_bridge_send_retries_total",
            "Sends retried after a network error, 429 or 5xx, by channel"
        );
        describe_counter!(
            "anyreply_bridge_voice_notes_total",
            "Voice notes received, by channel and outcome: transcribed, off (no model set), \
             too_long, failed"
        );
        describe_counter!(
            "anyreply_bridge_typing_failures_total",
            "Typing indicators or read receipts the channel refused, by channel"
        );
        handle
    })
}

/// `GET /metrics`.
pub fn router() -> axum::Router {
    recorder();
    axum::Router::new().route(
        "/metrics",
        get(|| async {
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                recorder().render(),
            )
        }),
    )
}

/// A customer's message, and what became of it.
pub fn message_in(channel: &'static str, outcome: Option<&Outcome>) {
    let outcome = match outcome {
        Some(Outcome::Reply(_)) => "replied",
        Some(Outcome::Silent) => "silent",
        Some(Outcome::OptedOut) => "opted_out",
        Some(Outcome::AnsweredBefore) => "answered_before",
        Some(Outcome::Coalesced) => "coalesced",
        Some(Outcome::Apology(_)) => "apology",
        None => "ignored",
    };
    counter!("anyreply_bridge_messages_in_total", "channel" => channel, "outcome" => outcome)
        .increment(1);
}

/// A message sent to a customer (or not).
pub fn message_out(channel: &'static str, sent: bool) {
    let outcome = if sent { "sent" } else { "failed" };
    counter!("anyreply_bridge_messages_out_total", "channel" => channel, "outcome" => outcome)
        .increment(1);
}

pub fn send_retry(channel: &'static str) {
    counter!("anyreply_bridge_send_retries_total", "channel" => channel).increment(1);
}

/// An operator message not sent: the channel's window after the customer's last message closed.
pub fn outside_window(channel: &'static str) {
    counter!("anyreply_bridge_outside_window_total", "channel" => channel).increment(1);
}

/// A typing indicator (or read receipt) that did not go through: never worth a retry.
pub fn typing_failed(channel: &'static str) {
    counter!("anyreply_bridge_typing_failures_total", "channel" => channel).increment(1);
}
