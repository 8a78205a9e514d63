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
