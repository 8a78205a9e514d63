//! Per-API-key rate limit of generate-reply: a fixed one-minute window counted in the key's
//! row (see [`crate::models::api_key::count_call`]), so every server process sharing the
//! database shares the limit.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use crate::models::api_key::WindowCount;

/// Where a key stands in the current window.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset: u64,
    pub exceeded: bool,
}

impl RateLimit {
    /// The standing after `counted`, under a limit of `limit` calls a minute.
    pub fn after(counted: &WindowCount, limit: u32) -> Self {
        let used = u32::try_from(counted.rate_count).unwrap_or(u32::MAX);
        Self {
            limit,
            remaining: limit.saturating_sub(used),
            reset: u64::try_from(counted.reset).unwrap_or(60),
            exceeded: used > limit,
        }
    }

    /// The standing of a call refused by the database's count (see `api_key::count_call`):
    /// nothing remains until the minute's window ends, by this machine's clock.
    pub fn spent(limit: u32) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        Self {
            limit,
            remaining: 0,
            reset: 60 - now % 60,
            exceeded: true,
        }
    }

    /// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (IETF draft names).
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("ratelimit-limit", u64::from(self.limit)),
            ("ratelimit-remaining", u64::from(self.remaining)),
            ("ratelimit-reset", self.reset),
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        }
        headers
    }
}
