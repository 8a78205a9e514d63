//! Operators' passwords: the rules a new one must pass, argon2id to store and check it, and
//! the one-time links where an operator sets one. Hashing is slow on purpose, so it runs on
//! the blocking pool, off the request threads.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::Settings;

/// Fewest characters a password may have.
pub const MIN_CHARS: usize = 12;
/// Most characters: beyond this hashing costs more than any password needs.
pub const MAX_CHARS: usize = 1_000;

/// Common passwords of 12 or more characters (shorter ones fail the length rule), compared
/// lower-cased.
const COMMON: &str = include_str!("common_passwords.txt");

/// Why `password` may not be used by the operator signing in as `email`, if it may not.
pub fn problem(password: &str, email: &str) -> Option<String> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Some(format!(
            "The password must be at least {MIN_CHARS} characters."
        ));
    }
    if chars > MAX_CHARS {
        return Some(format!(
            "The password must not be greater than {MAX_CHARS} characters."
        ));
    }
    if password.contains('\0') {
        return Some("The password must not contain NUL characters.".to_owned());
    }
    let lower = password.to_lowercase();
    if COMMON.lines().any(|common| common == lower) {
        return Some("This password is one of the most common ones; choose another.".to_owned());
    }
    if lower == email || lower == email.split('@').next().unwrap_or_default() {
        return Some("The password must not be your email address.".to_owned());
    }
    None
}

/// argon2id with OWASP's parameters (19 MiB, two passes, one lane): the crate's default.
fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// The PHC string to store for `password`.
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        argon2()
            .hash_password(password.as_bytes(), &new_salt()?)
            .map(|hash| hash.to_string())
            .map_err(|error| anyhow::anyhow!("hashing a password: {error}"))
    })
    .await?
}

/// Whether `password` is the one `stored` was made from. With no stored hash (an unknown
/// email, or no password set yet) a dummy hash is checked all the same, so the answer takes
/// as long and timing tells no one which emails exist.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| DUMMY.clone());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && known
    })
    .await
    .unwrap_or(false)
}

/// A hash of a random password, made once, for [`verify`]'s timing.
static DUMMY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let Ok(salt) = new_salt() else {
        return String::new();
    };
    argon2()
        .hash_password(salt.as_str().as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .unwrap_or_default()
});

/// 16 random bytes, as the PHC string carries them.
fn new_salt() -> anyhow::Result<SaltString> {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    SaltString::encode_b64(&bytes).map_err(|error| anyhow::anyhow!("a password salt: {error}"))
}

/// A new password link's token, for its URL, and the SHA-256 stored for it.
pub fn new_link_token() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = link_token_hash(&token);
    (token, hash)
}

/// What `operator_password_links` stores for `token`.
pub fn link_token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The console page where the holder of `token` sets their password.
pub fn link_url(settings: &Settings, token: &str) -> String {
    format!(
        "{}/console/set-password?token={token}",
        settings.public_base()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules() {
        let email = "anna@acme.example";
        assert!(problem("short", email).unwrap().contains("at least 12"));
        assert!(problem("Password1234", email).unwrap().contains("common"));
        assert!(problem("QWERTY123456", email).unwrap().contains("common"));
        assert!(
            problem("anna@acme.example", email)
                .unwrap()
                .contains("email")
        );
        assert!(
            problem("a\0 long enough pass", email)
                .unwrap()
                .contains("NUL")
        );
        assert!(problem(&"x".repeat(MAX_CHARS + 1), email).is_some());
        assert_eq!(problem("plum-anchor-7-orbit", email), None);
        assert_eq!(problem("🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀", email), None);
    }

    #[test]
    fn every_common_password_is_long_enough_to_need_the_list() {
        for common in COMMON.lines() {
            assert!(common.chars().count() >= MIN_CHARS, "{common}");
            assert_eq!(common, common.to_lowercase(), "{common}");
        }
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let stored = hash("plum-anchor-7-orbit".to_owned()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("plum-anchor-7-orbit".to_owned(), Some(stored.clone())).await);
        assert!(!verify("plum-anchor-7-orbiT".to_owned(), Some(stored)).await);
        assert!(!verify("anything".to_owned(), None).await);
    }
}
