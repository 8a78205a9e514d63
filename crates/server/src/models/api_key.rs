//! API keys: `ark_` followed by 40 random base62 characters. Only a SHA-256 of the key is
//! stored (the key's entropy makes a slow hash unnecessary); its first 12 characters, the
//! prefix, find the row and name the key to operators.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::db::{Conn, KeepPrepared};
use crate::schema::api_keys;

const KEY_MARK: &str = "ark_";
const SECRET_CHARS: usize = 40;
const PREFIX_CHARS: usize = 12;

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyRow {
    pub id: i64,
    pub account_id: i64,
    pub secret_hash: Vec<u8>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A freshly made key: shown once, then only its hash exists.
#[derive(Debug)]
pub struct NewApiKey {
    pub id: i64,
    pub key: String,
    pub prefix: String,
}

/// The lookup prefix of a well-formed key.
pub fn parse_key_prefix(key: &str) -> Option<&str> {
    let secret = key.strip_prefix(KEY_MARK)?;
    let well_formed =
        secret.len() == SECRET_CHARS && secret.bytes().all(|b| b.is_ascii_alphanumeric());
    well_formed.then(|| &key[..PREFIX_CHARS])
}

fn hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Compares in constant time, so response timing reveals nothing of the stored hash.
pub fn secret_matches(key: &str, stored_hash: &[u8]) -> bool {
    hash(key).ct_eq(stored_hash).into()
}

/// Makes a key for `account_id` and stores its hash.
pub async fn create(conn: &mut AsyncPgConnection, account_id: i64) -> QueryResult<NewApiKey> {
    let secret: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(SECRET_CHARS)
        .map(char::from)
        .collect();
    let key = format!("{KEY_MARK}{secret}");
    let prefix = key[..PREFIX_CHARS].to_owned();
    let id = diesel::insert_into(api_keys::table)
        .values((
            api_keys::account_id.eq(account_id),
            api_keys::prefix.eq(&prefix),
            api_keys::secret_hash.eq(hash(&key)),
        ))
        .returning(api_keys::id)
        .get_result(conn)
        .await?;
    Ok(NewApiKey { id, key, prefix })
}

/// Revokes the key whose prefix (or whole text) is given. Returns whether one was live.
pub async fn revoke(conn: &mut AsyncPgConnection, key_or_prefix: &str) -> QueryResult<bool> {
    Ok(revoke_returning(conn, key_or_prefix).await?.is_some())
}

/// A key just revoked: its id, account and prefix.
#[derive(Debug, Queryable)]
pub struct Revoked {
    pub id: i64,
    pub account_id: i64,
    pub prefix: String,
}

/// Revokes the key whose prefix (or whole text) is given; `None` if no live key has it.
pub async fn revoke_returning(
    conn: &mut AsyncPgConnection,
    key_or_prefix: &str,
) -> QueryResult<Option<Revoked>> {
    let prefix: String = key_or_prefix.chars().take(PREFIX_CHARS).collect();
    diesel::update(api_keys::table)
        .filter(api_keys::prefix.eq(prefix))
        .filter(api_keys::revoked_at.is_null())
        .set(api_keys::revoked_at.eq(diesel::dsl::now))
        .returning((api_keys::id, api_keys::account_id, api_keys::prefix))
        .get_result(conn)
        .await
        .optional()
}

/// Revokes key `id` (one that was never shown, say); no one can call with it again.
pub async fn revoke_id(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<()> {
    diesel::update(api_keys::table.find(id))
        .filter(api_keys::revoked_at.is_null())
        .set(api_keys::revoked_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?;
    Ok(())
}

/// A key as the console lists it: never its secret.
#[derive(Debug, Clone, QueryableByName)]
pub struct KeyListing {
    #[diesel(sql_type = diesel::sql_types::Int8)]
    pub id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub prefix: String,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    pub revoked_at: Option<DateTime<Utc>>,
    /// The chat widget whose key it is (deleting the widget revokes it).
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Int8>)]
    pub widget_id: Option<i64>,
}

/// The account's keys, in id order, each with the widget it belongs to, if any.
pub async fn list_of_account(
    conn: &mut AsyncPgConnection,
    account_id: i64,
) -> QueryResult<Vec<KeyListing>> {
    diesel::sql_query(
        "SELECT k.id, k.prefix, k.created_at, k.revoked_at, w.id AS widget_id
         FROM api_keys k LEFT JOIN widgets w ON w.api_key_id = k.id
         WHERE k.account_id = $1 ORDER BY k.id",
    )
    .bind::<diesel::sql_types::Int8, _>(account_id)
    .load(conn)
    .await
}

/// Revokes the account's live key `id`, unless it is a chat widget's (deleting the widget does
/// that). Returns its prefix if it did.
pub async fn revoke_of_account(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: i64,
) -> QueryResult<Option<String>> {
    #[derive(QueryableByName)]
    struct Revoked {
        #[diesel(sql_type = diesel::sql_types::Text)]
        prefix: String,
    }
    let revoked: Option<Revoked> = diesel::sql_query(
        "UPDATE api_keys k SET revoked_at = now()
         WHERE k.id = $2 AND k.account_id = $1 AND k.revoked_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM widgets w WHERE w.api_key_id = k.id)
         RETURNING k.prefix",
    )
    .bind::<diesel::sql_types::Int8, _>(account_id)
    .bind::<diesel::sql_types::Int8, _>(id)
    .get_result(conn)
    .await
    .optional()?;
    Ok(revoked.map(|row| row.prefix))
}

/// The key whose lookup prefix is `prefix`, live or revoked.
pub async fn find_by_prefix(
    conn: &mut AsyncPgConnection,
    prefix: &str,
) -> QueryResult<Option<ApiKeyRow>> {
    api_keys::table
        .filter(api_keys::prefix.eq(prefix))
        .select(ApiKeyRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// A key's count in the current rate-limit window.
#[derive(Debug, QueryableByName)]
pub struct WindowCount {
    /// Calls in this window, the one just counted included.
    #[diesel(sql_type = diesel::sql_types::Int4)]
    pub rate_count: i32,
    /// Seconds until the window resets.
    #[diesel(sql_type = diesel::sql_types::Int8)]
    pub reset: i64,
}

/// The current one-minute window of the database's clock (`minute`), and the seconds until
/// it ends (`reset`).
const RATE_WINDOW: &str = "(SELECT floor(extract(epoch FROM now()) / 60)::int8 AS minute,
                60 - floor(extract(epoch FROM now()))::int8 % 60 AS reset)";

/// The CHECK that refuses a call past the limit (see [`count_call`]).
const WITHIN_RATE_LIMIT: &str = "api_keys_within_rate_limit";

/// The refusal of a call with a revoked key (see [`count_call`]).
const KEY_REVOKED: &str = "api_key_revoked";

/// Counts one call of key `id` in the fixed one-minute window of the database's clock, under
/// `limit` calls a window: past it, the statement fails ([`over_rate_limit`]), as it does for a
/// revoked key ([`revoked`]), so that a pipelined COMMIT behind it rolls back. It locks the
/// key's row until commit: call it late in its transaction.
pub async fn count_call(conn: &mut impl Conn, id: i64, limit: u32) -> QueryResult<WindowCount> {
    diesel::sql_query(format!(
        "UPDATE api_keys SET
             rate_count = CASE WHEN revoked_at IS NOT NULL THEN anyreply_refuse('{KEY_REVOKED}')::int4
                               WHEN rate_window = w.minute THEN rate_count + 1 ELSE 1 END,
             rate_window = w.minute,
             rate_limit = $2
         FROM {RATE_WINDOW} AS w
         WHERE id = $1
         RETURNING rate_count, w.reset"
    ))
    .bind::<diesel::sql_types::Int8, _>(id)
    .bind::<diesel::sql_types::Int4, _>(i32::try_from(limit).unwrap_or(i32::MAX))
    .keep_prepared()
    .get_result(conn)
    .await
}

/// Whether `error` is [`count_call`]'s refusal of a revoked key.
pub fn revoked(error: &diesel::result::Error) -> bool {
    crate::db::violates(error, KEY_REVOKED)
}

/// Whether key `id` is live (not revoked).
pub async fn is_live(conn: &mut impl Conn, id: i64) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        api_keys::table
            .find(id)
            .filter(api_keys::revoked_at.is_null()),
    ))
    .get_result(conn)
    .await
}

/// Which of the keys `ids` are live (not revoked).
pub async fn live_among(conn: &mut impl Conn, ids: &[i64]) -> QueryResult<Vec<i64>> {
    api_keys::table
        .filter(api_keys::id.eq_any(ids))
        .filter(api_keys::revoked_at.is_null())
        .select(api_keys::id)
        .load(conn)
        .await
}

/// Whether `error` is [`count_call`]'s refusal of a call past the limit.
pub fn over_rate_limit(error: &diesel::result::Error) -> bool {
    crate::db::violates(error, WITHIN_RATE_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_of_well_formed_keys_only() {
        let key = format!("ark_{}", "a".repeat(40));
        assert_eq!(parse_key_prefix(&key), Some("ark_aaaaaaaa"));
        assert_eq!(parse_key_prefix("ark_short"), None);
        assert_eq!(parse_key_prefix(&format!("xyz_{}", "a".repeat(40))), None);
        assert_eq!(parse_key_prefix(&format!("ark_{}!", "a".repeat(39))), None);
        assert!(secret_matches(&key, &hash(&key)));
        assert!(!secret_matches(&key, &hash("other")));
    }
}
