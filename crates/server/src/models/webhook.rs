//! `webhooks`: where an account's events are delivered.

use anyreply_core::limits::MAX_WEBHOOKS_PER_ACCOUNT;
use anyreply_core::wire::{EventType, Webhook};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::quota;
use crate::db::NonNullArray;
use crate::schema::{accounts, webhooks};

/// A stored webhook.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhooks)]
pub struct WebhookRow {
    pub id: i64,
    pub account_id: i64,
    pub url: String,
    #[diesel(deserialize_as = NonNullArray<String>)]
    pub event_types: Vec<String>,
    pub secret: String,
    pub dispatched_up_to: i64,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl WebhookRow {
    /// The webhook as the API lists it: without its secret.
    pub fn into_wire(self) -> Webhook {
        Webhook {
            id: self.id,
            url: self.url,
            events: self
                .event_types
                .iter()
                .filter_map(|kind| EventType::parse(kind))
                .collect(),
            enabled: self.disabled_at.is_none(),
            disabled_at: self.disabled_at,
            disabled_reason: self.disabled_reason,
            created_at: self.created_at,
            secret: None,
        }
    }
}

/// Why a webhook could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("the account has the most webhooks it may have")]
    LimitReached,
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

/// Creates a webhook unless the account has [`MAX_WEBHOOKS_PER_ACCOUNT`]; it receives the
/// events after the account's latest.
pub async fn create(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    url: &str,
    events: &[EventType],
    secret: &str,
) -> Result<WebhookRow, CreateError> {
    conn.transaction(async |conn| {
        quota::lock_account(conn, account_id).await?;
        let count: i64 = webhooks::table
            .filter(webhooks::account_id.eq(account_id))
            .count()
            .get_result(conn)
            .await?;
        if !quota::has_room(count, MAX_WEBHOOKS_PER_ACCOUNT) {
            return Err(CreateError::LimitReached);
        }
        let last_event_id: i64 = accounts::table
            .find(account_id)
            .select(accounts::last_event_id)
            .first(conn)
            .await?;
        Ok(diesel::insert_into(webhooks::table)
            .values((
                webhooks::account_id.eq(account_id),
                webhooks::url.eq(url),
                webhooks::event_types.eq(NonNullArray(events.iter().map(|e| e.as_str()).collect())),
                webhooks::secret.eq(secret),
                webhooks::dispatched_up_to.eq(last_event_id),
            ))
            .returning(WebhookRow::as_returning())
            .get_result(conn)
            .await?)
    })
    .await
}

/// The account's webhooks, in id order.
pub async fn list(conn: &mut AsyncPgConnection, account_id: i64) -> QueryResult<Vec<WebhookRow>> {
    webhooks::table
        .filter(webhooks::account_id.eq(account_id))
        .order(webhooks::id.asc())
        .select(WebhookRow::as_select())
        .load(conn)
        .await
}

/// Deletes the account's webhook `id` and its deliveries; `false` if it has none of that id.
pub async fn delete(conn: &mut AsyncPgConnection, account_id: i64, id: i64) -> QueryResult<bool> {
    let deleted = diesel::delete(
        webhooks::table
            .filter(webhooks::id.eq(id))
            .filter(webhooks::account_id.eq(account_id)),
    )
    .execute(conn)
    .await?;
    Ok(deleted == 1)
}

/// Stops deliveries to webhook `id`, saying `reason`; a disabled one stays as it was.
pub async fn disable(conn: &mut AsyncPgConnection, id: i64, reason: &str) -> QueryResult<bool> {
    let disabled = diesel::update(
        webhooks::table
            .filter(webhooks::id.eq(id))
            .filter(webhooks::disabled_at.is_null()),
    )
    .set((
        webhooks::disabled_at.eq(diesel::dsl::now),
        webhooks::disabled_reason.eq(reason),
    ))
    .execute(conn)
    .await?;
    Ok(disabled == 1)
}
