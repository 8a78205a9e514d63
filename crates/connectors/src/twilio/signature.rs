//! `X-Twilio-Signature`: Base64 of HMAC-SHA1, keyed with the Auth Token, over the full URL
//! Twilio requested followed by every POST parameter, sorted by name, as name then value.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> HmacSha1 {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = HmacSha1::new_from_slice(auth_token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The signature Twilio sends for a request to `url` with `params`.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(mac(auth_token, url, params).finalize().into_bytes())
}

/// Whether `signature` is Twilio's for `public_url` (as configured in Twilio), accepted with and
/// without an explicit `:443`, as Twilio's own validators do. Compared in constant time.
pub fn is_valid(
    auth_token: &str,
    public_url: &str,
    params: &[(String, String)],
    signature: Option<&str>,
) -> bool {
    let Some(given) = signature.and_then(|s| STANDARD.decode(s.trim()).ok()) else {
        return false;
    };
    url_variants(public_url)
        .iter()
        .any(|url| mac(auth_token, url, params).verify_slice(&given).is_ok())
}

/// `url` as written, and with its `:443` added (for `https` without a port) or removed.
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if let Some(host) = authority.strip_suffix(":443") {
        variants.push(format!("{scheme}://{host}{tail}"));
    } else if scheme.eq_ignore_ascii_case("https") && !authority.contains(':') {
        variants.push(format!("{scheme}://{authority}:443{tail}"));
    }
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The example in Twilio's documentation ("Validating requests").
    #[test]
    fn matches_twilios_documented_example() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let params = params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(sign("12345", url, &params), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert!(is_valid(
            "12345",
            url,
            &params,
            Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        ));
        assert!(!is_valid(
            "54321",
            url,
            &params,
            Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")
        ));
        assert!(!is_valid("12345", url, &params, None));
        assert!(!is_valid("12345", url, &params, Some("not base64!")));
    }

    #[test]
    fn accepts_the_url_with_and_without_the_default_port() {
        let params = params(&[("Body", "hi")]);
        let with_port = sign("token", "https://bridge.example.com:443/sms", &params);
        let without_port = sign("token", "https://bridge.example.com/sms", &params);
        assert!(is_valid(
            "token",
            "https://bridge.example.com/sms",
            &params,
            Some(&with_port)
        ));
        assert!(is_valid(
            "token",
            "https://bridge.example.com:443/sms",
            &params,
            Some(&without_port)
        ));
        assert!(!is_valid(
            "token",
            "https://bridge.example.com/other",
            &params,
            Some(&without_port)
        ));
        assert_eq!(
            url_variants("http://a.test:8080/x"),
            ["http://a.test:8080/x"]
        );
    }
}
