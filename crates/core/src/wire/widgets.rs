//! The web chat widget: `POST/GET /api/user/widgets`, and what a visitor's browser sends to
//! `/api/widget/`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::conversations::Role;
use crate::limits::{MAX_MESSAGE_CHARS, MAX_WIDGET_ORIGINS};
use crate::validate::{FieldErrors, Fields};

/// A chat widget: the assistant it talks to and the sites it may be embedded in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Widget {
    /// The widget's id.
    pub id: i64,
    /// The assistant visitors chat with.
    pub assistant_id: i64,
    /// The publishable key (`arpk_…`) of the page's `<script data-key="…">`: it can only
    /// chat with this assistant from these origins, so it may be public.
    #[cfg_attr(feature = "openapi", schema(example = "arpk_3q2o7Xs0bO4l9hWk1cZp8A"))]
    pub public_key: String,
    /// The origins (`https://shop.example.com`) whose pages may use it.
    pub allowed_origins: Vec<String>,
    /// Whether its replies may call the assistant's tools (anyone can write to a widget).
    pub tools_enabled: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// `POST /api/user/widgets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WidgetResponse {
    /// Always `true`.
    pub status: bool,
    /// The new widget.
    pub data: Widget,
}

/// `GET /api/user/widgets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WidgetList {
    /// Every widget of the account, oldest first.
    pub data: Vec<Widget>,
}

/// Body of `POST /api/user/widgets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WidgetInput {
    /// One of the account's assistants.
    pub assistant_id: i64,
    /// 1 to 20 origins, each `http(s)://host[:port]` without a path.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 20, example = json!(["https://shop.example.com"])))]
    pub allowed_origins: Vec<String>,
    /// Whether the widget's replies may call the assistant's tools; `false` when absent, so
    /// that an anonymous visitor cannot make the assistant act on the business's systems
    /// unless the business chose so.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub tools_enabled: bool,
}

impl WidgetInput {
    /// Validates a create body, every bad field at once; origins come back in their canonical
    /// form (lowercase, default port and trailing slash dropped), each once.
    pub fn from_json(body: &Value) -> Result<Self, FieldErrors> {
        let mut fields = Fields::new(body);
        let assistant_id = fields.required_integer("assistant_id", 1..=i64::MAX);
        let mut errors = fields.errors;
        let tools_enabled = match body.get("tools_enabled").filter(|v| !v.is_null()) {
            None => false,
            Some(Value::Bool(enabled)) => *enabled,
            Some(_) => {
                errors.add(
                    "tools_enabled",
                    "The tools_enabled field must be true or false.",
                );
                false
            }
        };
        let origins = match body.get("allowed_origins").filter(|v| !v.is_null()) {
            Some(Value::Array(items)) if (1..=MAX_WIDGET_ORIGINS).contains(&items.len()) => {
                let mut origins = Vec::new();
                for item in items {
                    match item.as_str().map(canonical_origin) {
                        Some(Ok(origin)) if !origins.contains(&origin) => origins.push(origin),
                        Some(Ok(_)) => {}
                        Some(Err(problem)) => errors.add("allowed_origins", problem),
                        None => errors.add("allowed_origins", "Each origin must be a string."),
                    }
                }
                Some(origins)
            }
            Some(_) => {
                errors.add(
                    "allowed_origins",
                    format!("The allowed_origins field must be a list of 1 to {MAX_WIDGET_ORIGINS} origins."),
                );
                None
            }
            None => {
                if body.is_object() {
                    errors.add("allowed_origins", "The allowed_origins field is required.");
                }
                None
            }
        };
        match (assistant_id, origins) {
            (Some(assistant_id), Some(allowed_origins)) => errors.finish(Self {
                assistant_id,
                allowed_origins,
                tools_enabled,
            }),
            _ => Err(errors),
        }
    }
}

/// An origin as browsers send it in `Origin`: `scheme://host[:port]`, lowercase, without the
/// scheme's default port.
pub fn canonical_origin(origin: &str) -> Result<String, String> {
    let problem = || format!("{origin:?} is not an origin such as https://shop.example.com.");
    let lower = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, authority) = lower.split_once("://").ok_or_else(problem)?;
    let default_port = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => return Err(problem()),
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || "-.:[]".contains(c);
    if authority.is_empty() || authority.starts_with(':') || !authority.chars().all(valid) {
        return Err(problem());
    }
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    Ok(format!("{scheme}://{authority}"))
}

/// Body of `POST /api/widget/messages`. The visitor is the one whose token comes in
/// `X-Visitor-Token`, or without one a new visitor (see the endpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WidgetMessage {
    /// What the visitor wrote: 1 to 10,000 characters, not blank.
    pub message: String,
}

impl WidgetMessage {
    /// Validates a message body. Other fields (the `visitor_id` older scripts send) are ignored.
    pub fn from_json(body: &Value) -> Result<Self, FieldErrors> {
        let mut fields = Fields::new(body);
        let message = fields.required_string("message", 1..=MAX_MESSAGE_CHARS);
        let mut errors = fields.errors;
        if message.as_deref().is_some_and(|m| m.trim().is_empty()) {
            errors.add("message", "The message field must not be empty.");
        }
        match message {
            Some(message) => errors.finish(Self { message }),
            None => Err(errors),
        }
    }
}

/// The customer identifier of a widget visitor: `web:` and their public id (never their token).
pub fn visitor_customer_identifier(public_id: &str) -> String {
    format!("web:{public_id}")
}

/// `GET /api/widget/messages`: the visitor's conversation so far, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WidgetHistory {
    /// The newest 100 messages at most, oldest first.
    pub messages: Vec<WidgetHistoryMessage>,
}

/// One message the visitor sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WidgetHistoryMessage {
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn origins_are_canonical_and_checked() {
        assert_eq!(
            canonical_origin("HTTPS://Shop.Example.com:443/").unwrap(),
            "https://shop.example.com"
        );
        assert_eq!(
            canonical_origin("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        for bad in [
            "shop.example.com",
            "ftp://x",
            "https://",
            "https://a/path",
            "https://a b",
        ] {
            assert!(canonical_origin(bad).is_err(), "{bad}");
        }
        let input = WidgetInput::from_json(&json!({
            "assistant_id": 3, "allowed_origins": ["https://a.test", "https://A.test/"]
        }))
        .unwrap();
        assert_eq!(input.allowed_origins, ["https://a.test"]);
        let fields = |body: Value| -> Vec<String> {
            WidgetInput::from_json(&body)
                .unwrap_err()
                .into_map()
                .into_keys()
                .collect()
        };
        assert_eq!(fields(json!({})), ["allowed_origins", "assistant_id"]);
        assert_eq!(
            fields(json!({ "assistant_id": 1, "allowed_origins": [] })),
            ["allowed_origins"]
        );
        assert_eq!(
            fields(json!({ "assistant_id": 1, "allowed_origins": ["https://a.test/x"] })),
            ["allowed_origins"]
        );
    }

    #[test]
    fn tools_are_off_unless_asked_for() {
        let input = |extra: Value| {
            let mut body = json!({ "assistant_id": 3, "allowed_origins": ["https://a.test"] });
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            WidgetInput::from_json(&body)
        };
        assert!(!input(json!({})).unwrap().tools_enabled);
        assert!(
            !input(json!({ "tools_enabled": null }))
                .unwrap()
                .tools_enabled
        );
        assert!(
            input(json!({ "tools_enabled": true }))
                .unwrap()
                .tools_enabled
        );
        let errors = input(json!({ "tools_enabled": "yes" }))
            .unwrap_err()
            .into_map();
        assert_eq!(errors.into_keys().collect::<Vec<_>>(), ["tools_enabled"]);
    }

    #[test]
    fn messages_are_checked_and_old_visitor_ids_ignored() {
        let message = WidgetMessage::from_json(&json!({ "visitor_id": "x", "message": "hi" }));
        assert_eq!(message.unwrap().message, "hi");
        for bad in [
            json!({ "message": " " }),
            json!({}),
            json!({ "message": 3 }),
        ] {
            let errors = WidgetMessage::from_json(&bad).unwrap_err().into_map();
            assert!(errors.contains_key("message"), "{bad}");
        }
    }
}
