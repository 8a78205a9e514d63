//! `POST /api/ai/generate-reply`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::Variables;
use crate::limits::{
    MAX_CUSTOMER_IDENTIFIER_CHARS, MAX_MESSAGE_CHARS, MAX_VARIABLE_NAME_CHARS, MAX_VARIABLES,
};
use crate::validate::{FieldErrors, Fields};

/// The customer's message and who sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GenerateReplyRequest {
    /// The assistant that answers; must belong to the caller's account.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, example = 1))]
    pub assistant_id: i64,
    /// Phone (E.164), email, CRM id, channel user id: used verbatim as the conversation key.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 255, example = "+49155551234")
    )]
    pub customer_identifier: String,
    /// The customer's message.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 10_000,
            example = "Do you have a table for two tonight?"
        )
    )]
    pub message: String,
    /// Merged into the conversation's stored variables (later values win).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub variables: Option<Variables>,
}

impl GenerateReplyRequest {
    /// Reads and validates a request body, reporting every bad field.
    pub fn from_json(body: &Value) -> Result<Self, FieldErrors> {
        let mut fields = Fields::new(body);
        let assistant_id = fields.required_integer("assistant_id", 1..=i64::MAX);
        let customer_identifier =
            fields.required_string("customer_identifier", 1..=MAX_CUSTOMER_IDENTIFIER_CHARS);
        let message = fields.required_string("message", 1..=MAX_MESSAGE_CHARS);
        let variables =
            fields.optional_variables("variables", MAX_VARIABLES, MAX_VARIABLE_NAME_CHARS);
        if message.as_deref().is_some_and(|m| m.trim().is_empty()) {
            fields
                .errors
                .add("message", "The message field must not be empty.");
        }
        if customer_identifier
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            fields.errors.add(
                "customer_identifier",
                "The customer_identifier field must not be blank.",
            );
        }
        match (assistant_id, customer_identifier, message) {
            (Some(assistant_id), Some(customer_identifier), Some(message)) => {
                fields.errors.finish(Self {
                    assistant_id,
                    customer_identifier,
                    message,
                    variables,
                })
            }
            _ => Err(fields.errors),
        }
    }
}

/// One function (tool) the assistant called while producing a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FunctionCall {
    /// The function's (tool's) name.
    pub name: String,
    /// The arguments the model gave.
    pub arguments: Value,
    /// What the call returned: the response body, or `{"error", "message"}`.
    pub result: Value,
}

/// The AI reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GenerateReplyResponse {
    /// Always `true`.
    pub success: bool,
    /// The conversation the message joined (a UUID).
    pub conversation_id: Uuid,
    /// As sent.
    pub customer_identifier: String,
    /// The assistant's answer; empty when `ai_disabled` is true.
    pub reply: String,
    /// Functions called for this reply, in call order.
    pub function_calls: Vec<FunctionCall>,
    /// True while a human has taken the conversation over (or the customer opted out): the
    /// message was stored, not answered.
    pub ai_disabled: bool,
    /// True when the customer opted out (an SMS `STOP`): stored, not answered, nothing to send.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub opted_out: bool,
    /// True when a later message of the same burst (see the assistant's `coalesce_ms`) is
    /// answered instead, with one reply that sees them all: nothing to send for this one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub coalesced: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_valid_body_reads() {
        let request = GenerateReplyRequest::from_json(&json!({
            "assistant_id": 7, "customer_identifier": "+49155551234", "message": "Hi",
            "variables": { "name": "John" }
        }))
        .unwrap();
        assert_eq!(request.assistant_id, 7);
        assert_eq!(request.variables.unwrap()["name"], "John");
    }

    #[test]
    fn every_bad_field_is_reported() {
        let errors = GenerateReplyRequest::from_json(&json!({
            "assistant_id": "seven", "customer_identifier": "x".repeat(256), "message": "  ",
            "variables": [1]
        }))
        .unwrap_err()
        .into_map();
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            [
                "assistant_id",
                "customer_identifier",
                "message",
                "variables"
            ]
        );
        let missing = GenerateReplyRequest::from_json(&json!({}))
            .unwrap_err()
            .into_map();
        assert_eq!(missing.len(), 3);
        let too_long = GenerateReplyRequest::from_json(&json!({
            "assistant_id": 1, "customer_identifier": "c", "message": "m".repeat(MAX_MESSAGE_CHARS + 1)
        }))
        .unwrap_err()
        .into_map();
        assert!(too_long["message"][0].contains("10000"));
    }
}
