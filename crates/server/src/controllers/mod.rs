//! Request handlers, one module per resource, named `verb_noun`.

pub mod assistants;
pub mod conversations;
pub mod generate_reply;
pub mod health;
pub mod me;
pub mod metrics;
pub mod tools;
pub mod webhooks;
