//! `X-Hub-Signature-256`: `sha256=` and the hex HMAC-SHA256 of the raw request body, keyed
//! with the app secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(app_secret: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(app_secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(body);
    mac
}

/// The header Meta sends with `body`.
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(app_secret, body).finalize().into_bytes())
    )
}

/// Whether `header` is Meta's signature of `body`. Compared in constant time.
pub fn is_valid(app_secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(given) = header
        .and_then(|value| value.trim().strip_prefix("sha256="))
        .and_then(|hex_digest| hex::decode(hex_digest).ok())
    else {
        return false;
    };
    mac(app_secret, body).verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_and_secret() {
        let body = br#"{"object":"whatsapp_business_account"}"#;
        let header = sign("app-secret", body);
        assert!(header.starts_with("sha256=") && header.len() == 7 + 64);
        assert!(is_valid("app-secret", body, Some(&header)));
        assert!(!is_valid("another-secret", body, Some(&header)));
        assert!(!is_valid("app-secret", b"{}", Some(&header)));
        assert!(!is_valid(
            "app-secret",
            body,
            Some(header.trim_start_matches("sha256="))
        ));
        assert!(!is_valid("app-secret", body, Some("sha256=zz")));
        assert!(!is_valid("app-secret", body, None));
    }

    #[test]
    fn matches_an_independently_computed_hmac() {
        // The well-known example of HMAC-SHA256 (key "key", the quick brown fox).
        assert_eq!(
            sign("key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
