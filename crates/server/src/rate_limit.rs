//! Per-API-key rate limit of generate-reply: a fixed one-minute window counted in the key's
//! row, so every server process sharing the database shares the limit.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use diesel::prelude::*;
use diesel::sql_types::{Int4, Int8};
use diesel_async::RunQueryDsl;

use crate::app::App;
use crate::error::ApiResult;

/// Where a key stands in the current window.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset: u64,
    pub exceeded: bool,
}

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = Int4)]
    rate_count: i32,
    #[diesel(sql_type = Int8)]
    reset: i64,
}

/// Counts one call of `api_key_id` against the window of the database's clock.
pub async fn count_call(app: &App, api_key_id: i64) -> ApiResult<RateLimit> {
    let limit = app.settings.rate_limit_per_minute;
    let mut conn = app.db().await?;
    let counted: Counted = diesel::sql_query(
        "UPDATE api_keys SET
             rate_count = CASE WHEN rate_window = w.minute THEN rate_count + 1 ELSE 1 END,
             rate_window = w.minute
         FROM (SELECT floor(extract(epoch FROM now()) / 60)::int8 AS minute,
                      60 - floor(extract(epoch FROM now()))::int8 % 60 AS reset) AS w
         WHERE id = $1
         RETURNING rate_count, w.reset",
    )
    .bind::<Int8, _>(api_key_id)
    .get_result(&mut conn)
    .await?;
    let used = u32::try_from(counted.rate_count).unwrap_or(u32::MAX);
    Ok(RateLimit {
        limit,
        remaining: limit.saturating_sub(used),
        reset: u64::try_from(counted.reset).unwrap_or(60),
        exceeded: used > limit,
    })
}

impl RateLimit {
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
