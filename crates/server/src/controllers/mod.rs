//! Request handlers, one module per resource, named `verb_noun`.

pub mod assistants;
pub mod audit;
pub mod conversations;
pub mod events;
pub mod generate_reply;
pub mod handoff;
pub mod health;
pub mod idempotency;
pub mod inbox;
pub mod knowledge;
pub mod me;
pub mod metrics;
pub mod operators;
pub mod stats;
pub mod tools;
pub mod usage;
pub mod webhooks;
pub mod widget_chat;
pub mod widgets;
