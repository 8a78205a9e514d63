//! Integration tests of the API server against a real PostgreSQL and a `wiremock` model.

#![allow(clippy::unwrap_used, unreachable_pub)]

mod assistants;
mod auth;
mod billing;
mod bounds;
mod cli;
mod coalescing;
mod concurrency;
mod console;
mod context;
mod conversations;
mod errors;
mod event_streams;
mod faults;
mod generate_reply;
mod handoff;
mod history;
mod idempotency;
mod idle;
mod input;
mod knowledge;
mod llm_failures;
mod losses;
mod openapi;
mod private_cluster;
mod providers;
mod startup;
mod streaming;
mod takeover;
mod telemetry;
mod tool_loop;
mod tools;
mod util;
mod webhooks;
mod widgets;
