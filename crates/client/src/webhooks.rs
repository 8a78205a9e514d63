//! For receivers of AnyReply's webhooks: [`verify`] says whether a delivery really comes from
//! the server that holds the webhook's secret, as the Standard Webhooks specification says.
//!
//! ```
//! use anyreply_client::webhooks::{self, VerifyError};
//! # fn handle(headers: &reqwest::header::HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
//! webhooks::verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", headers, body)?;
//! let payload: anyreply_client::WebhookPayload =
//!     serde_json::from_slice(body).map_err(|_| VerifyError::InvalidBody)?;
//! // Deliveries come at least once: skip a `webhook-id` seen before.
//! # let _ = payload; Ok(())
//! # }
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyreply_core::webhook_signature::SigningKey;
use reqwest::header::HeaderMap;

/// Farthest a delivery's `webhook-timestamp` may be from now, either way: an older one may be
/// a replay.
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Why a delivery was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The secret is not `whsec_` followed by base64.
    InvalidSecret,
    /// A `webhook-id`, `webhook-timestamp` or `webhook-signature` header is missing or not text.
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not Unix seconds.
    InvalidTimestamp,
    /// `webhook-timestamp` is more than [`TOLERANCE`] away from now.
    TimestampOutOfTolerance,
    /// No signature matches the body under this secret.
    SignatureMismatch,
    /// The body is not a webhook payload (for callers that parse it after verifying).
    InvalidBody,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidSecret => f.write_str("the webhook secret is not `whsec_` and base64"),
            Self::MissingHeader(name) => write!(f, "the {name} header is missing"),
            Self::InvalidTimestamp => f.write_str("webhook-timestamp is not Unix seconds"),
            Self::TimestampOutOfTolerance => {
                f.write_str("webhook-timestamp is more than 5 minutes from now")
            }
            Self::SignatureMismatch => f.write_str("no webhook-signature matches the body"),
            Self::InvalidBody => f.write_str("the body is not a webhook payload"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Checks a delivery: one of the `v1,` signatures in `webhook-signature` must sign
/// `{webhook-id}.{webhook-timestamp}.{body}` under `secret` (compared in constant time), and
/// the timestamp must be within [`TOLERANCE`] of now. Pass the body exactly as received.
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64);
    verify_at(secret, headers, body, now)
}

/// [`verify`] as if the time were `now` (Unix seconds).
pub fn verify_at(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let key = SigningKey::from_secret(secret).map_err(|_| VerifyError::InvalidSecret)?;
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .ok_or(VerifyError::MissingHeader(name))
    };
    let id = header("webhook-id")?;
    let timestamp: i64 = header("webhook-timestamp")?
        .trim()
        .parse()
        .map_err(|_| VerifyError::InvalidTimestamp)?;
    let signatures = header("webhook-signature")?;
    if timestamp.abs_diff(now) > TOLERANCE.as_secs() {
        return Err(VerifyError::TimestampOutOfTolerance);
    }
    if key.verify(id, timestamp, body, signatures) {
        Ok(())
    } else {
        Err(VerifyError::SignatureMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The specification's published example (the standard-webhooks libraries' tests).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    fn headers(signature: &str, timestamp: i64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "webhook-id",
            "msg_p5jXN8AQM9LWM0D4loKWxJek".parse().unwrap(),
        );
        headers.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
        headers.insert("webhook-signature", signature.parse().unwrap());
        headers
    }

    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_published_example_verifies() {
        let good = headers(SIGNATURE, TIMESTAMP);
        assert_eq!(verify_at(SECRET, &good, BODY, TIMESTAMP), Ok(()));
        assert_eq!(verify_at(SECRET, &good, BODY, TIMESTAMP + 299), Ok(()));
        let several = headers(&format!("v1,bm9wZQ== {SIGNATURE}"), TIMESTAMP);
        assert_eq!(verify_at(SECRET, &several, BODY, TIMESTAMP), Ok(()));
    }

    #[test]
    fn anything_else_is_refused() {
        let good = headers(SIGNATURE, TIMESTAMP);
        assert_eq!(
            verify_at(SECRET, &good, br#"{"test": 2432232315}"#, TIMESTAMP),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            verify_at(
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                &good,
                BODY,
                TIMESTAMP
            ),
            Err(VerifyError::SignatureMismatch)
        );
        for now in [TIMESTAMP + 301, TIMESTAMP - 301] {
            assert_eq!(
                verify_at(SECRET, &good, BODY, now),
                Err(VerifyError::TimestampOutOfTolerance)
            );
        }
        // The timestamp is signed: moving it breaks the signature.
        let moved = headers(SIGNATURE, TIMESTAMP + 1);
        assert_eq!(
            verify_at(SECRET, &moved, BODY, TIMESTAMP),
            Err(VerifyError::SignatureMismatch)
        );
        let mut missing = good.clone();
        missing.remove("webhook-signature");
        assert_eq!(
            verify_at(SECRET, &missing, BODY, TIMESTAMP),
            Err(VerifyError::MissingHeader("webhook-signature"))
        );
        assert_eq!(
            verify_at("whsec_!!", &good, BODY, TIMESTAMP),
            Err(VerifyError::InvalidSecret)
        );
        // The real wall clock is years past the example.
        assert_eq!(
            verify(SECRET, &good, BODY),
            Err(VerifyError::TimestampOutOfTolerance)
        );
    }
}
