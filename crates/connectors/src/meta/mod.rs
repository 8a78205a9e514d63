//! What Meta's webhooks share, for the WhatsApp Cloud API and Messenger bridges alike: the
//! `GET` handshake ([`answer_handshake`]) and the `X-Hub-Signature-256` of every `POST`
//! ([`signature`]).

pub mod signature;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The query of Meta's handshake.
#[derive(Debug, Deserialize)]
pub struct Handshake {
    #[serde(rename = "hub.mode", default)]
    pub mode: String,
    #[serde(rename = "hub.verify_token", default)]
    pub verify_token: String,
    #[serde(rename = "hub.challenge", default)]
    pub challenge: String,
}

/// The challenge back when the token is `verify_token` (compared in constant time), else 403.
pub fn answer_handshake(verify_token: &SecretString, handshake: Handshake) -> Response {
    use subtle::ConstantTimeEq;
    let expected = verify_token.expose_secret().as_bytes();
    let matches =
        !expected.is_empty() && bool::from(handshake.verify_token.as_bytes().ct_eq(expected));
    if handshake.mode == "subscribe" && matches {
        tracing::info!("Meta verified the webhook");
        handshake.challenge.into_response()
    } else {
        tracing::warn!("refused a webhook handshake with a wrong verify token");
        StatusCode::FORBIDDEN.into_response()
    }
}

/// Whether `headers` carry Meta's signature of `body` with `app_secret`.
pub fn is_signed(app_secret: &SecretString, headers: &axum::http::HeaderMap, body: &[u8]) -> bool {
    let header = headers
        .get("x-hub-signature-256")
        .and_then(|value| value.to_str().ok());
    signature::is_valid(app_secret.expose_secret(), body, header)
}

/// A failed call of Meta's Graph API (the WhatsApp Cloud API's and the Send API's alike), and
/// whether it is worth another.
#[derive(Debug)]
pub struct Failure {
    pub retry: anyreply_client::Retry,
    pub error: anyhow::Error,
}

impl Failure {
    /// `service` could not be reached: worth another try. The error leaves out the URL, which
    /// may hold the token.
    pub fn unreachable(service: &str, error: reqwest::Error) -> Self {
        Self {
            retry: anyreply_client::Retry::Backoff,
            error: anyhow::anyhow!("{service} could not be reached: {}", error.without_url()),
        }
    }
}

/// Meta's refusal of a call: its HTTP status and the error's code, subcode and message.
#[derive(Debug)]
pub struct Refusal {
    pub status: reqwest::StatusCode,
    pub code: Option<i64>,
    pub subcode: Option<i64>,
    pub detail: String,
}

impl Refusal {
    /// Reads the refusal `response` carries (Meta's `{"error": {...}}`).
    pub async fn of(response: reqwest::Response) -> Self {
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        Self {
            status,
            code: answer["error"]["code"].as_i64(),
            subcode: answer["error"]["error_subcode"].as_i64(),
            detail: answer["error"]["message"]
                .as_str()
                .unwrap_or("no message")
                .to_owned(),
        }
    }

    /// 429 and 5xx may pass later; any other refusal is final.
    pub fn retry(&self) -> anyreply_client::Retry {
        if self.status == reqwest::StatusCode::TOO_MANY_REQUESTS || self.status.is_server_error() {
            anyreply_client::Retry::Backoff
        } else {
            anyreply_client::Retry::Never
        }
    }

    /// The refusal as `who` refused: its status, code and message.
    pub fn failure(&self, who: &str) -> Failure {
        let code = self
            .code
            .map_or_else(|| "unknown".to_owned(), |code| code.to_string());
        self.failure_saying(anyhow::anyhow!(
            "{who} refused the message: HTTP {}, error {code}: {}",
            self.status,
            self.detail
        ))
    }

    /// The refusal, said as `error`.
    pub fn failure_saying(&self, error: anyhow::Error) -> Failure {
        Failure {
            retry: self.retry(),
            error,
        }
    }
}
