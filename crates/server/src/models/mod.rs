//! Database rows and the queries on them. Rows are not the JSON the API sends: each row type
//! converts into its wire type explicitly.

pub mod account;
pub mod api_key;
pub mod assistant;
pub mod audit_log;
pub mod console_session;
pub mod conversation;
pub mod conversation_ending;
pub mod conversation_viewer;
pub mod event;
pub mod idempotency_key;
pub mod knowledge;
pub mod knowledge_embedding;
pub mod message;
pub mod note;
pub mod operator;
pub mod page;
pub mod pending_reply;
pub mod quota;
pub mod settlement_due;
pub mod stats;
pub mod summary_fold;
pub mod tool;
pub mod tool_call;
pub mod usage;
pub mod webhook;
pub mod webhook_delivery;
pub mod widget;

use serde_json::{Map, Value};

/// A JSONB object column as a map (anything else reads as empty).
pub(crate) fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// An assistant's default variables overlaid with a conversation's own values.
pub fn overlay_variables(defaults: &Value, own: &Value) -> Map<String, Value> {
    let mut merged = defaults.as_object().cloned().unwrap_or_default();
    if let Some(own) = own.as_object() {
        merged.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    merged
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn conversation_values_win_over_defaults() {
        let merged = super::overlay_variables(&json!({ "a": 1, "b": 2 }), &json!({ "b": 3 }));
        assert_eq!(serde_json::Value::Object(merged), json!({ "a": 1, "b": 3 }));
    }
}
