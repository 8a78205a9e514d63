//! The API keys this process has seen on generate-reply, by lookup prefix: what never changes
//! about a key (its id, its account, its secret's hash), so that the hottest call need not read
//! the key before its own transaction. Whether the key is still live does change; the reply's
//! admission checks that in its transaction, so a revoked key is refused at once by every
//! process.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

/// Keys remembered at most; past it the memory starts again empty.
const MOST_KEYS: usize = 10_000;

/// What this process remembers of a key.
#[derive(Debug, Clone)]
pub struct KnownKey {
    pub id: i64,
    pub account_id: i64,
    pub secret_hash: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct KnownKeys {
    keys: Arc<RwLock<HashMap<String, KnownKey>>>,
}

impl KnownKeys {
    pub fn get(&self, prefix: &str) -> Option<KnownKey> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.get(prefix).cloned()
    }

    pub fn remember(&self, prefix: &str, key: KnownKey) {
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= MOST_KEYS {
            keys.clear();
        }
        keys.insert(prefix.to_owned(), key);
    }

    /// Forgets a key found revoked, so that its next call reads it again.
    pub fn forget(&self, key_id: i64) {
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        keys.retain(|_, key| key.id != key_id);
    }
}
