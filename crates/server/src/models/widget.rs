//! `widgets`: the web chat's publishable keys; `widget_visitor_tokens`, the visitors' tokens;
//! `widget_visitors`, each visitor's count of messages in the current minute; and
//! `widget_addresses`, each client address's count of widget requests in it.

use anyreply_core::limits::MAX_WIDGETS_PER_ACCOUNT;
use anyreply_core::wire::Widget;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Int8, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::api_key::{self, WindowCount};
use super::{assistant, quota};
use crate::db::NonNullArray;
use crate::schema::{widget_visitor_tokens, widgets};

/// What a publishable key starts with.
pub const KEY_MARK: &str = "arpk_";

/// What a visitor token starts with.
pub const VISITOR_TOKEN_MARK: &str = "arvt_";

/// A stored widget.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = widgets)]
pub struct WidgetRow {
    pub id: i64,
    pub account_id: i64,
    pub assistant_id: i64,
    pub public_key: String,
    #[diesel(deserialize_as = NonNullArray<String>)]
    pub allowed_origins: Vec<String>,
    pub api_key_id: i64,
    pub created_at: DateTime<Utc>,
    pub tools_enabled: bool,
}

impl WidgetRow {
    pub fn into_wire(self) -> Widget {
        Widget {
            id: self.id,
            assistant_id: self.assistant_id,
            public_key: self.public_key,
            allowed_origins: self.allowed_origins,
            tools_enabled: self.tools_enabled,
            created_at: self.created_at,
        }
    }

    /// Whether a page of `origin` (as the browser sent it) may use the widget.
    pub fn allows(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|allowed| allowed == origin)
    }
}

/// Why a widget could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("the account has the most widgets it may have")]
    LimitReached,
    #[error("the assistant is not the account's")]
    NoSuchAssistant,
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

/// Creates a widget of `assistant_id` for `origins`, with a new publishable key and the API
/// key its replies are counted under; at most [`MAX_WIDGETS_PER_ACCOUNT`] per account.
pub async fn create(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    assistant_id: i64,
    origins: &[String],
    tools_enabled: bool,
) -> Result<WidgetRow, CreateError> {
    conn.transaction(async |conn| {
        quota::lock_account(conn, account_id).await?;
        let count: i64 = widgets::table
            .filter(widgets::account_id.eq(account_id))
            .count()
            .get_result(conn)
            .await?;
        if !quota::has_room(count, MAX_WIDGETS_PER_ACCOUNT) {
            return Err(CreateError::LimitReached);
        }
        if assistant::find(conn, account_id, assistant_id)
            .await?
            .is_none()
        {
            return Err(CreateError::NoSuchAssistant);
        }
        // Its secret is dropped here, unseen.
        let api_key_id = api_key::create(conn, account_id).await?.id;
        Ok(diesel::insert_into(widgets::table)
            .values((
                widgets::account_id.eq(account_id),
                widgets::assistant_id.eq(assistant_id),
                widgets::public_key.eq(new_public_key()),
                widgets::allowed_origins.eq(NonNullArray(origins.iter().collect())),
                widgets::api_key_id.eq(api_key_id),
                widgets::tools_enabled.eq(tools_enabled),
            ))
            .returning(WidgetRow::as_returning())
            .get_result(conn)
            .await?)
    })
    .await
}

/// `arpk_` and 128 random bits.
fn new_public_key() -> String {
    format!("{KEY_MARK}{}", random_text::<16>())
}

/// `N` random bytes, base64url.
fn random_text<const N: usize>() -> String {
    let mut random = [0u8; N];
    rand::rng().fill_bytes(&mut random);
    URL_SAFE_NO_PAD.encode(random)
}

/// The account's widgets, oldest first.
pub async fn list(conn: &mut AsyncPgConnection, account_id: i64) -> QueryResult<Vec<WidgetRow>> {
    widgets::table
        .filter(widgets::account_id.eq(account_id))
        .order(widgets::id.asc())
        .select(WidgetRow::as_select())
        .load(conn)
        .await
}

/// Deletes the account's widget `id` and revokes its API key: its publishable key works no
/// more. `false` if the account has no widget of that id.
pub async fn delete(conn: &mut AsyncPgConnection, account_id: i64, id: i64) -> QueryResult<bool> {
    conn.transaction(async |conn| {
        let deleted: Option<i64> = diesel::delete(
            widgets::table
                .filter(widgets::id.eq(id))
                .filter(widgets::account_id.eq(account_id)),
        )
        .returning(widgets::api_key_id)
        .get_result(conn)
        .await
        .optional()?;
        if let Some(api_key_id) = deleted {
            api_key::revoke_id(conn, api_key_id).await?;
        }
        Ok(deleted.is_some())
    })
    .await
}

/// The widget of a publishable key.
pub async fn find_by_key(
    conn: &mut AsyncPgConnection,
    public_key: &str,
) -> QueryResult<Option<WidgetRow>> {
    widgets::table
        .filter(widgets::public_key.eq(public_key))
        .select(WidgetRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// A visitor just made: their token, shown to their browser once, and their public id.
#[derive(Debug)]
pub struct NewVisitor {
    pub token: String,
    pub public_id: String,
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Makes a visitor of widget `widget_id`: a token of 256 random bits, of which only the hash
/// is stored, and a public id of 128 others (unrelated to the token, so that the conversation's
/// `web:<public id>`, which travels in events and webhooks, gives nothing away).
pub async fn issue_visitor(
    conn: &mut AsyncPgConnection,
    widget_id: i64,
) -> QueryResult<NewVisitor> {
    let visitor = NewVisitor {
        token: format!("{VISITOR_TOKEN_MARK}{}", random_text::<32>()),
        public_id: random_text::<16>(),
    };
    diesel::insert_into(widget_visitor_tokens::table)
        .values((
            widget_visitor_tokens::token_hash.eq(token_hash(&visitor.token)),
            widget_visitor_tokens::widget_id.eq(widget_id),
            widget_visitor_tokens::public_id.eq(&visitor.public_id),
        ))
        .execute(conn)
        .await?;
    Ok(visitor)
}

/// The public id of the visitor of widget `widget_id` holding `token`; `None` for a token
/// the widget never issued.
pub async fn find_visitor(
    conn: &mut AsyncPgConnection,
    widget_id: i64,
    token: &str,
) -> QueryResult<Option<String>> {
    widget_visitor_tokens::table
        .filter(widget_visitor_tokens::token_hash.eq(token_hash(token)))
        .filter(widget_visitor_tokens::widget_id.eq(widget_id))
        .select(widget_visitor_tokens::public_id)
        .first(conn)
        .await
        .optional()
}

/// Counts one request to `/api/widget/` from `address` in the fixed one-minute window of the
/// database's clock.
pub async fn count_address_request(
    conn: &mut AsyncPgConnection,
    address: &str,
) -> QueryResult<WindowCount> {
    diesel::sql_query(
        "INSERT INTO widget_addresses AS a (address, rate_window, rate_count)
         SELECT $1, floor(extract(epoch FROM now()) / 60)::int8, 1
         ON CONFLICT (address) DO UPDATE SET
             rate_count = CASE WHEN a.rate_window = excluded.rate_window
                               THEN a.rate_count + 1 ELSE 1 END,
             rate_window = excluded.rate_window
         RETURNING a.rate_count,
                   60 - floor(extract(epoch FROM now()))::int8 % 60 AS reset",
    )
    .bind::<Text, _>(address)
    .get_result(conn)
    .await
}

/// Counts one message of the visitor `public_id` on widget `widget_id` in the fixed one-minute
/// window of the database's clock (the window of API keys).
pub async fn count_visitor_message(
    conn: &mut AsyncPgConnection,
    widget_id: i64,
    public_id: &str,
) -> QueryResult<WindowCount> {
    diesel::sql_query(
        "INSERT INTO widget_visitors AS v (widget_id, visitor_id, rate_window, rate_count)
         SELECT $1, $2, floor(extract(epoch FROM now()) / 60)::int8, 1
         ON CONFLICT (widget_id, visitor_id) DO UPDATE SET
             rate_count = CASE WHEN v.rate_window = excluded.rate_window
                               THEN v.rate_count + 1 ELSE 1 END,
             rate_window = excluded.rate_window
         RETURNING v.rate_count,
                   60 - floor(extract(epoch FROM now()))::int8 % 60 AS reset",
    )
    .bind::<Int8, _>(widget_id)
    .bind::<Text, _>(public_id)
    .get_result(conn)
    .await
}

/// Forgets the counts of windows that have ended, visitors' and addresses': a row lives while
/// its visitor writes. How many rows went.
pub async fn purge_past_counts(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    let visitors = diesel::sql_query(
        "DELETE FROM widget_visitors WHERE rate_window < floor(extract(epoch FROM now()) / 60)::int8",
    )
    .execute(conn)
    .await?;
    let addresses = diesel::sql_query(
        "DELETE FROM widget_addresses WHERE rate_window < floor(extract(epoch FROM now()) / 60)::int8",
    )
    .execute(conn)
    .await?;
    Ok(visitors + addresses)
}
