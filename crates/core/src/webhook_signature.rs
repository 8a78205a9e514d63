//! Standard Webhooks signatures, shared by the server (which signs deliveries) and the SDK
//! (whose receivers verify them): `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`,
//! keyed with the base64-decoded part of the `whsec_` secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What every secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";

/// The key of a `whsec_` secret.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// A secret that is not `whsec_` and base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSecret;

impl std::fmt::Display for InvalidSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a webhook secret is `whsec_` followed by base64")
    }
}

impl std::error::Error for InvalidSecret {}

impl SigningKey {
    /// The key of `secret` (`whsec_…`; the prefix may be left out, as the reference libraries
    /// allow).
    pub fn from_secret(secret: &str) -> Result<Self, InvalidSecret> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        match STANDARD.decode(encoded) {
            Ok(key) if !key.is_empty() => Ok(Self(key)),
            _ => Err(InvalidSecret),
        }
    }

    /// A new secret from `random` bytes: `whsec_` and their base64.
    pub fn new_secret(random: &[u8]) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(random))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any size");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` header's value: `v1,<base64>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }

    /// Whether any `v1,` entry of the space-separated `header` signs this message; compared in
    /// constant time. Entries of other versions are ignored, as the specification says.
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        let expected = self.mac(id, timestamp, body);
        header
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|signature| STANDARD.decode(signature).ok())
            // Every entry is checked, so the time taken does not say which one matched.
            .fold(false, |matched, tag| {
                expected.clone().verify_slice(&tag).is_ok() | matched
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The specification's published example (standard-webhooks' reference libraries' tests).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_published_example_signs_and_verifies() {
        let key = SigningKey::from_secret(SECRET).unwrap();
        assert_eq!(key.sign(ID, TIMESTAMP, BODY), SIGNATURE);
        assert!(key.verify(ID, TIMESTAMP, BODY, SIGNATURE));
        assert!(key.verify(
            ID,
            TIMESTAMP,
            BODY,
            &format!("v2,abc v1,bm9wZQ== {SIGNATURE}")
        ));
        assert!(!key.verify(ID, TIMESTAMP + 1, BODY, SIGNATURE));
        assert!(!key.verify(ID, TIMESTAMP, br#"{"test": 2432232315}"#, SIGNATURE));
        assert!(!key.verify(ID, TIMESTAMP, BODY, "v1,bm9wZQ=="));
        assert!(!key.verify(
            ID,
            TIMESTAMP,
            BODY,
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        ));
    }

    #[test]
    fn secrets_must_be_base64() {
        assert!(SigningKey::from_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert_eq!(
            SigningKey::from_secret("whsec_not base64!").unwrap_err(),
            InvalidSecret
        );
        assert_eq!(
            SigningKey::from_secret("whsec_").unwrap_err(),
            InvalidSecret
        );
        let secret = SigningKey::new_secret(&[7; 32]);
        assert!(secret.starts_with(SECRET_PREFIX));
        assert!(SigningKey::from_secret(&secret).is_ok());
    }
}
