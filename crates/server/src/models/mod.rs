//! Database rows and the queries on them. Rows are not the JSON the API sends: each row type
//! converts into its wire type explicitly.

pub mod account;
pub mod api_key;
pub mod assistant;
pub mod conversation;
pub mod idempotency_key;
pub mod message;
pub mod page;
pub mod pending_reply;
pub mod quota;
pub mod tool;
pub mod tool_call;

use serde_json::{Map, Value};

/// A JSONB object column as a map (anything else reads as empty).
pub(crate) fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
