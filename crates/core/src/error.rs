//! The one table of error codes: code, HTTP status, and whether a client may retry.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = ($wire:literal, $status:literal, $retryable:literal, $message:literal), )*) => {
        /// A machine-readable error code, as sent in `error_code`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as sent on the wire, e.g. `ASSISTANT_NOT_FOUND`.
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $wire,)* }
            }

            /// The HTTP status the server answers with.
            pub const fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            /// Whether repeating the same request may succeed.
            pub const fn is_retryable(self) -> bool {
                match self { $(ErrorCode::$variant => $retryable,)* }
            }

            /// The default human-readable message.
            pub const fn default_message(self) -> &'static str {
                match self { $(ErrorCode::$variant => $message,)* }
            }
        }
    };
}

error_codes! {
    /// The body is not valid JSON.
    InvalidJson = ("INVALID_JSON", 400, false, "The request body is not valid JSON"),
    /// Missing, malformed or revoked API key.
    Unauthorized = ("UNAUTHORIZED", 401, false, "Missing or invalid API key"),
    /// The account's balance cannot pay for the reply.
    InsufficientBalance = ("INSUFFICIENT_BALANCE", 402, false, "Your account balance is too low to process the message; top it up with `anyreply-server account top-up --account <id> --amount 10`"),
    /// The assistant does not exist or belongs to another account.
    AssistantNotFound = ("ASSISTANT_NOT_FOUND", 404, false, "The assistant ID is invalid or does not belong to your account"),
    /// The conversation does not exist or belongs to another account.
    ConversationNotFound = ("CONVERSATION_NOT_FOUND", 404, false, "Conversation not found"),
    /// The tool does not exist or belongs to another account.
    ToolNotFound = ("TOOL_NOT_FOUND", 404, false, "Tool not found"),
    /// The webhook does not exist or belongs to another account.
    WebhookNotFound = ("WEBHOOK_NOT_FOUND", 404, false, "Webhook not found"),
    /// The knowledge base does not exist or belongs to another account.
    KnowledgeBaseNotFound = ("KNOWLEDGE_BASE_NOT_FOUND", 404, false, "Knowledge base not found"),
    /// The document does not exist, belongs to another knowledge base or to another account.
    DocumentNotFound = ("DOCUMENT_NOT_FOUND", 404, false, "Document not found"),
    /// The chat widget does not exist or belongs to another account.
    WidgetNotFound = ("WIDGET_NOT_FOUND", 404, false, "Widget not found"),
    /// A widget's key was used from a page whose origin the widget does not list.
    OriginNotAllowed = ("ORIGIN_NOT_ALLOWED", 403, false, "This widget may not be used from this site"),
    /// A chat widget's visitor token is missing where one is needed, unknown, or another
    /// widget's.
    VisitorTokenInvalid = ("VISITOR_TOKEN_INVALID", 401, false, "Missing or invalid visitor token"),
    /// The operator does not exist or belongs to another account.
    OperatorNotFound = ("OPERATOR_NOT_FOUND", 404, false, "Operator not found"),
    /// No such route.
    NotFound = ("NOT_FOUND", 404, false, "Not found"),
    /// The route exists, the method does not.
    MethodNotAllowed = ("METHOD_NOT_ALLOWED", 405, false, "Method not allowed"),
    /// The body exceeds the documented maximum size.
    PayloadTooLarge = ("PAYLOAD_TOO_LARGE", 413, false, "The request body is too large"),
    /// A request with this `Idempotency-Key` is still running; retry after `Retry-After`.
    IdempotencyConflict = ("IDEMPOTENCY_CONFLICT", 409, true, "A request with this Idempotency-Key is still being processed"),
    /// The customer opted out (an SMS `STOP`): nothing may be sent until they opt in again.
    ConversationOptedOut = ("CONVERSATION_OPTED_OUT", 409, false, "The customer opted out of messages; nothing is sent until they opt in again (START)"),
    /// Another operator (of this account or another) already signs in with this email.
    OperatorEmailTaken = ("OPERATOR_EMAIL_TAKEN", 409, false, "An operator with this email already exists"),
    /// The `Idempotency-Key` was used before with a different request.
    IdempotencyKeyReused = ("IDEMPOTENCY_KEY_REUSED", 422, false, "This Idempotency-Key was already used with a different request"),
    /// The account already has the most assistants, tools or webhooks it may have; nothing was
    /// created.
    LimitExceeded = ("LIMIT_EXCEEDED", 422, false, "The account has reached the most it may have of this resource"),
    /// One or more fields are invalid; see `errors`.
    ValidationError = ("VALIDATION_ERROR", 422, false, "The given data was invalid"),
    /// Too many requests for this API key; see `Retry-After`.
    RateLimited = ("RATE_LIMITED", 429, true, "Too many requests, retry later"),
    /// Too many messages of this conversation wait for their reply; see `Retry-After`.
    ConversationBusy = ("CONVERSATION_BUSY", 429, true, "Too many messages of this conversation are waiting for a reply, retry later"),
    /// The API key (or console session) already has the most event streams open it may have;
    /// close one, or retry after `Retry-After`.
    TooManyEventStreams = ("TOO_MANY_EVENT_STREAMS", 429, true, "Too many event streams are open for this API key; close one and retry"),
    /// An unexpected server fault.
    InternalError = ("INTERNAL_ERROR", 500, true, "Internal server error"),
    /// The language model provider answered with an error or an unusable response.
    LlmError = ("LLM_ERROR", 502, true, "The language model provider returned an error"),
    /// The language model provider timed out or is unreachable or overloaded.
    LlmUnavailable = ("LLM_UNAVAILABLE", 503, true, "The language model provider is unavailable, retry later"),
    /// The database is unreachable.
    ServiceUnavailable = ("SERVICE_UNAVAILABLE", 503, true, "The service is temporarily unavailable, retry later"),
}

/// An enum of every code, generated from the table, so that it cannot miss one; the description
/// tabulates each code's status and retry advice, which a derive could not express.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let mut table = String::from(
            "For machines: why the request failed.\n\n\
             | code | HTTP status | retry | message |\n|---|---|---|---|\n",
        );
        for code in ErrorCode::ALL {
            let retry = if code.is_retryable() { "yes" } else { "no" };
            table.push_str(&format!(
                "| `{code}` | {} | {retry} | {} |\n",
                code.http_status(),
                code.default_message()
            ));
        }
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(ErrorCode::ALL.iter().map(|code| code.as_str())))
            .description(Some(table))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ErrorCode {}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error envelope of every non-2xx response.
///
/// Famulor's generate-reply speaks `success`/`message`/`error_code` while its chat endpoints
/// speak `status`/`error`; one envelope carries both so that any Famulor integration reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    /// Always `false`.
    pub status: bool,
    /// For humans.
    pub message: String,
    /// The same text as `message`.
    pub error: String,
    /// For machines. Unknown codes (from a newer server) deserialise as `None`.
    #[serde(deserialize_with = "lenient_code")]
    // The server always sends one.
    #[cfg_attr(feature = "openapi", schema(value_type = ErrorCode))]
    pub error_code: Option<ErrorCode>,
    /// Per-field messages of a `VALIDATION_ERROR`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, Vec<String>>,
    /// The request's `X-Request-Id`, to find its log lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub request_id: Option<String>,
}

fn lenient_code<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ErrorCode>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

impl ErrorBody {
    /// An envelope for `code` with a custom message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            success: false,
            status: false,
            error: message.clone(),
            message,
            error_code: Some(code),
            errors: BTreeMap::new(),
            request_id: None,
        }
    }
}

impl From<ErrorCode> for ErrorBody {
    fn from(code: ErrorCode) -> Self {
        Self::new(code, code.default_message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_wire_names() {
        for &code in ErrorCode::ALL {
            let name = code.to_string();
            assert_eq!(serde_json::to_value(code).unwrap(), name.as_str());
            assert!(
                name.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{name}"
            );
            let back: ErrorCode = serde_json::from_value(name.clone().into()).unwrap();
            assert_eq!(back, code);
            assert!((400..600).contains(&code.http_status()));
        }
        assert_eq!(
            ErrorCode::AssistantNotFound.to_string(),
            "ASSISTANT_NOT_FOUND"
        );
        assert_eq!(ErrorCode::InsufficientBalance.http_status(), 402);
    }

    /// The error table of docs/api.md is what integrators read: it must list every code, once, with
    /// the status and retry advice the server really gives.
    #[test]
    fn the_readme_table_lists_every_code() {
        let readme = include_str!("../../../docs/api.md");
        let mut rows: Vec<String> = readme
            .lines()
            .skip_while(|line| !line.starts_with("| `error_code` |"))
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                cells[1..4].join(" ")
            })
            .collect();
        let mut expected: Vec<String> = ErrorCode::ALL
            .iter()
            .map(|code| {
                let retry = if code.is_retryable() { "yes" } else { "no" };
                format!("`{code}` {} {retry}", code.http_status())
            })
            .collect();
        rows.sort();
        expected.sort();
        assert_eq!(rows, expected);
    }

    #[test]
    fn envelope_reads_unknown_codes_as_none() {
        let body: ErrorBody = serde_json::from_str(
            r#"{"success":false,"status":false,"message":"m","error":"m","error_code":"NEW_THING"}"#,
        )
        .unwrap();
        assert_eq!(body.error_code, None);
    }
}
