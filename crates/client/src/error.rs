//! The SDK's one error type.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use anyreply_core::ErrorCode;

/// Why a call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error.
    Api(ApiError),
    /// No answer arrived.
    Transport(TransportError),
    /// The server's answer could not be read as the expected type.
    Decode {
        /// The HTTP status of the answer.
        status: u16,
        /// What could not be read.
        message: String,
    },
    /// The client was configured wrongly (such as an invalid base URL).
    Config(String),
    /// A request the SDK refused to send because the server would refuse it (such as an
    /// upload over 20 MB); nothing was sent.
    Invalid(String),
}

/// An error answer of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The machine-readable code; `None` for a code this SDK does not know yet.
    pub code: Option<ErrorCode>,
    /// For humans.
    pub message: String,
    /// Per-field messages of a `VALIDATION_ERROR`.
    pub field_errors: BTreeMap<String, Vec<String>>,
    /// The server's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
}

/// A request that got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    /// How far the request got.
    pub kind: TransportErrorKind,
    /// What the HTTP client reported.
    pub message: String,
}

/// How far a failed request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// No connection was made: the request never reached the server.
    Connect,
    /// No answer in time: the server may have received and acted on the request.
    Timeout,
    /// The connection failed mid-way: the server may have received and acted on the request.
    Interrupted,
}

impl TransportError {
    /// Whether the server may have received (and acted on) the request. With an idempotency
    /// key, retrying is safe either way.
    pub fn may_have_reached_server(&self) -> bool {
        self.kind != TransportErrorKind::Connect
    }
}

impl Error {
    /// The server's error code, if the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api(api) => api.code,
            _ => None,
        }
    }

    /// The API error, if the server answered.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(api) => Some(api),
            _ => None,
        }
    }

    pub(crate) fn from_reqwest(error: reqwest::Error) -> Self {
        if error.is_builder() {
            // Never sent: the request itself is malformed (such as a header with a line break).
            return Error::Config(error.without_url().to_string());
        }
        let kind = if error.is_connect() {
            TransportErrorKind::Connect
        } else if error.is_timeout() {
            TransportErrorKind::Timeout
        } else {
            TransportErrorKind::Interrupted
        };
        Error::Transport(TransportError {
            kind,
            message: error.without_url().to_string(),
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Api(api) => fmt::Display::fmt(api, f),
            Error::Transport(transport) => {
                let kind = match transport.kind {
                    TransportErrorKind::Connect => "could not connect",
                    TransportErrorKind::Timeout => "timed out",
                    TransportErrorKind::Interrupted => "connection interrupted",
                };
                write!(f, "{kind}: {}", transport.message)
            }
            Error::Decode { status, message } => {
                write!(f, "unreadable answer (HTTP {status}): {message}")
            }
            Error::Config(message) => write!(f, "invalid client configuration: {message}"),
            Error::Invalid(message) => write!(f, "invalid request, not sent: {message}"),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "{code}: {}", self.message)?,
            None => write!(f, "HTTP {}: {}", self.status, self.message)?,
        }
        for (field, messages) in &self.field_errors {
            write!(f, "; {field}: {}", messages.join(" "))?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
impl std::error::Error for ApiError {}

impl From<ApiError> for Error {
    fn from(api: ApiError) -> Self {
        Error::Api(api)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_says_the_code_and_the_message() {
        let error = Error::Api(ApiError {
            status: 402,
            code: Some(ErrorCode::InsufficientBalance),
            message: "Your account balance is too low".into(),
            field_errors: BTreeMap::new(),
            retry_after: None,
        });
        assert_eq!(
            error.to_string(),
            "INSUFFICIENT_BALANCE: Your account balance is too low"
        );
        let validation = ApiError {
            status: 422,
            code: Some(ErrorCode::ValidationError),
            message: "The given data was invalid".into(),
            field_errors: BTreeMap::from([(
                "message".to_owned(),
                vec!["The message field is required.".to_owned()],
            )]),
            retry_after: None,
        };
        assert_eq!(
            validation.to_string(),
            "VALIDATION_ERROR: The given data was invalid; message: The message field is required."
        );
    }
}
