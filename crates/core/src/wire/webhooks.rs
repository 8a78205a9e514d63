//! `POST/GET /api/user/webhooks`, `DELETE /api/user/webhooks/{id}`: URLs of the account's that
//! receive its events, signed as the Standard Webhooks specification says.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Event, EventType};
use crate::limits::MAX_WEBHOOK_URL_CHARS;
use crate::validate::{FieldErrors, Fields};

/// Body of create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookInput {
    /// An `https` (or `http`) URL, at most 2,048 characters, that the server may reach (not a
    /// private or loopback address unless the operator allowed it).
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 2048, example = "https://crm.example.com/anyreply")
    )]
    pub url: String,
    /// The event types to deliver: at least one, each once.
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub events: Vec<EventType>,
}

impl WebhookInput {
    /// Validates a create body, every bad field at once.
    pub fn from_json(body: &Value) -> Result<Self, FieldErrors> {
        let mut fields = Fields::new(body);
        let url = fields.required_string("url", 1..=MAX_WEBHOOK_URL_CHARS);
        let mut errors = fields.errors;
        if let Some(Err(problem)) = url.as_deref().map(check_url) {
            errors.add("url", problem);
        }
        let events = match body.get("events").filter(|v| !v.is_null()) {
            Some(value) => read_event_types(value, &mut errors),
            None => {
                // A body that is no object was reported once, as `body`.
                if body.is_object() {
                    errors.add("events", "The events field is required.");
                }
                None
            }
        };
        match (url, events) {
            (Some(url), Some(events)) => errors.finish(Self { url, events }),
            _ => Err(errors),
        }
    }
}

/// An `http` or `https` URL with a host and no whitespace; the address policy is the server's.
pub(crate) fn check_url(url: &str) -> Result<(), &'static str> {
    const PROBLEM: &str = "The url must be an http or https URL.";
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or(PROBLEM)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty()
        || host.starts_with(':')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(PROBLEM);
    }
    Ok(())
}

fn read_event_types(value: &Value, errors: &mut FieldErrors) -> Option<Vec<EventType>> {
    let known = EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let Some(items) = value.as_array() else {
        errors.add(
            "events",
            format!("The events field must be an array of event types ({known})."),
        );
        return None;
    };
    if items.is_empty() {
        errors.add("events", "At least one event type is required.");
        return None;
    }
    let mut types = Vec::with_capacity(items.len());
    let mut seen = HashSet::new();
    let before = errors.clone();
    for (index, item) in items.iter().enumerate() {
        match item.as_str().and_then(EventType::parse) {
            Some(kind) if !seen.insert(kind) => errors.add(
                format!("events.{index}"),
                format!("{} is listed twice.", kind.as_str()),
            ),
            Some(kind) => types.push(kind),
            None => errors.add(
                format!("events.{index}"),
                format!("Unknown event type; the types are {known}."),
            ),
        }
    }
    (*errors == before).then_some(types)
}

/// A webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Webhook {
    /// The webhook's id.
    pub id: i64,
    /// Where events are delivered.
    pub url: String,
    /// The event types delivered.
    pub events: Vec<EventType>,
    /// `false` once disabled (see `disabled_at`): nothing more is delivered to it.
    pub enabled: bool,
    /// When it was disabled: its deliveries failed for 24 hours, or it answered `410 Gone`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub disabled_at: Option<DateTime<Utc>>,
    /// Why it was disabled, in words.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub disabled_reason: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The signing secret (`whsec_` and base64): in the answer of create only, never again (a
    /// replay of the create under its `Idempotency-Key` shows it masked: `****` and its last
    /// four characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(nullable = false, example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    )]
    pub secret: Option<String>,
}

/// Answer of create (`201`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookResponse {
    /// Always `true`.
    pub status: bool,
    /// The new webhook, with its `secret`.
    pub data: Webhook,
}

/// Answer of list: every webhook of the account, in id order, without secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookList {
    /// The webhooks.
    pub data: Vec<Webhook>,
}

/// The body of every delivery (the Standard Webhooks payload convention).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookPayload {
    /// The event's type.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When the event happened (RFC 3339).
    pub timestamp: DateTime<Utc>,
    /// The event, as `GET /api/events` sends it.
    pub data: Event,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_valid_body_reads() {
        let input = WebhookInput::from_json(
            &json!({ "url": "https://crm.example.com/hook", "events": ["message.received", "ai.disabled"] }),
        )
        .unwrap();
        assert_eq!(
            input.events,
            [EventType::MessageReceived, EventType::AiDisabled]
        );
    }

    #[test]
    fn every_rule_is_checked() {
        let fields = |body: Value| -> Vec<String> {
            WebhookInput::from_json(&body)
                .unwrap_err()
                .into_map()
                .into_keys()
                .collect()
        };
        assert_eq!(fields(json!({})), ["events", "url"]);
        assert_eq!(
            fields(json!({ "url": "ftp://x", "events": [] })),
            ["events", "url"]
        );
        assert_eq!(
            fields(
                json!({ "url": format!("https://x/{}", "a".repeat(2048)), "events": "ai.enabled" })
            ),
            ["events", "url"]
        );
        assert_eq!(
            fields(json!({ "url": "http://x", "events": ["ai.enabled", "ai.enabled", "nope", 3] })),
            ["events.1", "events.2", "events.3"]
        );
        assert_eq!(
            fields(json!({ "url": "https:///path", "events": ["ai.enabled"] })),
            ["url"]
        );
        assert_eq!(
            fields(json!({ "url": "https://a b", "events": ["ai.enabled"] })),
            ["url"]
        );
    }
}
