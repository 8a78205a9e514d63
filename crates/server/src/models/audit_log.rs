//! `audit_log`: who did what to an account, and when. Each entry is written by one INSERT in
//! the transaction of the change it records, so none is logged that did not happen; pages are
//! read newest first along the primary key; entries past [`KEPT_DAYS`] are purged in batches.

use anyreply_core::wire::{AuditAction, AuditActor, AuditActorType, AuditEntry, AuditTarget};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Int4, Int8, Jsonb, Nullable, Text};
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::db::{Conn, KeepPrepared};
use crate::models::page::OpaqueCursor;
use crate::schema::audit_log;

/// How long entries are kept.
pub const KEPT_DAYS: i32 = 180;
/// Entries one purge statement deletes: each batch is a short transaction of its own.
const PURGE_BATCH: i64 = 1000;

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An operator signed in to the console, with their name as it is now.
    Operator { id: i64, name: String },
    /// An API key through the API.
    ApiKey(i64),
    /// The owner signed in to the console with this API key.
    ConsoleApiKey(i64),
    /// The command line.
    CommandLine,
    /// Someone not signed in.
    Anonymous,
}

impl Actor {
    fn kind(&self) -> AuditActorType {
        match self {
            Actor::Operator { .. } => AuditActorType::Operator,
            Actor::ApiKey(_) => AuditActorType::ApiKey,
            Actor::ConsoleApiKey(_) => AuditActorType::ConsoleApiKey,
            Actor::CommandLine => AuditActorType::Cli,
            Actor::Anonymous => AuditActorType::Anonymous,
        }
    }
}

/// What an action was done to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    None,
    Assistant(i64),
    Tool(i64),
    KnowledgeBase(i64),
    Document(i64),
    Operator(i64),
    ApiKey(i64),
    Conversation(Uuid),
}

impl Target {
    fn parts(self) -> (Option<&'static str>, Option<String>) {
        let (kind, id) = match self {
            Target::None => return (None, None),
            Target::Assistant(id) => ("assistant", id.to_string()),
            Target::Tool(id) => ("tool", id.to_string()),
            Target::KnowledgeBase(id) => ("knowledge_base", id.to_string()),
            Target::Document(id) => ("document", id.to_string()),
            Target::Operator(id) => ("operator", id.to_string()),
            Target::ApiKey(id) => ("api_key", id.to_string()),
            Target::Conversation(id) => ("conversation", id.to_string()),
        };
        (Some(kind), Some(id))
    }
}

/// Logs `action` by `actor` on `target` in the account's log: one INSERT, in the caller's
/// transaction. A key's prefix is read in the same statement.
pub async fn record(
    conn: &mut impl Conn,
    account_id: i64,
    actor: &Actor,
    action: AuditAction,
    target: Target,
    details: Value,
) -> QueryResult<()> {
    let (operator_id, name) = match actor {
        Actor::Operator { id, name } => (Some(*id), Some(name.as_str())),
        _ => (None, None),
    };
    let api_key_id = match actor {
        Actor::ApiKey(id) | Actor::ConsoleApiKey(id) => Some(*id),
        _ => None,
    };
    let (target_type, target_id) = target.parts();
    diesel::sql_query(
        "INSERT INTO audit_log (account_id, actor_type, actor_operator_id, actor_name,
             actor_api_key_id, actor_key_prefix, action, target_type, target_id, details)
         VALUES ($1, $2, $3, $4, $5, (SELECT prefix FROM api_keys WHERE id = $5), $6, $7, $8, $9)",
    )
    .bind::<Int8, _>(account_id)
    .bind::<Text, _>(actor.kind().as_str())
    .bind::<Nullable<Int8>, _>(operator_id)
    .bind::<Nullable<Text>, _>(name)
    .bind::<Nullable<Int8>, _>(api_key_id)
    .bind::<Text, _>(action.as_str())
    .bind::<Nullable<Text>, _>(target_type)
    .bind::<Nullable<Text>, _>(target_id)
    .bind::<Jsonb, _>(without_nul(details))
    .keep_prepared()
    .execute(conn)
    .await
    .map(drop)
}

/// PostgreSQL's `jsonb` has no place for U+0000: a NUL that slipped past validation is logged
/// as U+FFFD rather than failing the change it records.
fn without_nul(details: Value) -> Value {
    match details {
        Value::String(text) if text.contains('\0') => Value::String(text.replace('\0', "\u{FFFD}")),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nul).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| (key.replace('\0', "\u{FFFD}"), without_nul(value)))
                .collect(),
        ),
        other => other,
    }
}

/// The names of the fields a change sent, without their values (a prompt, a header's secret).
pub fn fields_sent(input: &impl Serialize) -> Value {
    match serde_json::to_value(input) {
        Ok(Value::Object(fields)) => fields
            .into_iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(name, _)| Value::String(name))
            .collect(),
        _ => Value::Array(Vec::new()),
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct EntryRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_type: String,
    pub actor_operator_id: Option<i64>,
    pub actor_name: Option<String>,
    pub actor_api_key_id: Option<i64>,
    pub actor_key_prefix: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub details: Value,
}

impl EntryRow {
    /// The entry on the wire; `None` for an action or actor this build does not know (written
    /// by a newer one).
    pub fn into_wire(self) -> Option<AuditEntry> {
        let target = match (self.target_type, self.target_id) {
            (Some(kind), Some(id)) => Some(AuditTarget { kind, id }),
            _ => None,
        };
        Some(AuditEntry {
            id: self.id,
            at: self.at,
            actor: AuditActor {
                kind: AuditActorType::parse(&self.actor_type)?,
                operator_id: self.actor_operator_id,
                name: self.actor_name,
                api_key_id: self.actor_api_key_id,
                api_key_prefix: self.actor_key_prefix,
            },
            action: AuditAction::parse(&self.action)?,
            target,
            details: self.details,
        })
    }
}

/// Where a page starts: before the entry with this id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeforeId {
    #[serde(rename = "before")]
    pub id: i64,
}

impl OpaqueCursor for BeforeId {}

/// One page of the account's log, newest first, with the cursor of the next (older) page.
pub async fn page(
    conn: &mut impl Conn,
    account_id: i64,
    action: Option<AuditAction>,
    per_page: u32,
    before: Option<BeforeId>,
) -> QueryResult<(Vec<EntryRow>, Option<String>)> {
    let mut query = audit_log::table
        .filter(audit_log::account_id.eq(account_id))
        .order(audit_log::id.desc())
        .limit(i64::from(per_page) + 1)
        .select(EntryRow::as_select())
        .into_boxed();
    if let Some(action) = action {
        query = query.filter(audit_log::action.eq(action.as_str()));
    }
    if let Some(before) = before {
        query = query.filter(audit_log::id.lt(before.id));
    }
    let mut rows: Vec<EntryRow> = query.load(conn).await?;
    let more = rows.len() > per_page as usize;
    rows.truncate(per_page as usize);
    let next = rows
        .last()
        .filter(|_| more)
        .map(|last| BeforeId { id: last.id }.encode());
    Ok((rows, next))
}

#[derive(QueryableByName)]
struct Purged {
    #[diesel(sql_type = Int8)]
    purged: i64,
}

/// Deletes one batch of entries older than `days` days; returns how many (fewer than a
/// batch: none is left).
pub async fn purge_batch_older_than(conn: &mut impl Conn, days: i32) -> QueryResult<i64> {
    let purged: Purged = diesel::sql_query(
        "WITH gone AS (
             DELETE FROM audit_log WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM audit_log
                 WHERE at < now() - make_interval(days => $1) LIMIT $2))
             RETURNING 1)
         SELECT count(*) AS purged FROM gone",
    )
    .bind::<Int4, _>(days)
    .bind::<Int8, _>(PURGE_BATCH)
    .keep_prepared()
    .get_result(conn)
    .await?;
    Ok(purged.purged)
}

/// Deletes every entry older than `days` days, a batch (its own transaction) at a time;
/// returns how many.
pub async fn purge_older_than(conn: &mut impl Conn, days: i32) -> QueryResult<i64> {
    let mut total = 0;
    loop {
        let purged = purge_batch_older_than(conn, days).await?;
        total += purged;
        if purged < PURGE_BATCH {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_nul_is_replaced_wherever_it_is() {
        assert_eq!(
            without_nul(json!({ "na\u{0}me": ["a\u{0}b", 1], "ok": "🦀" })),
            json!({ "na\u{FFFD}me": ["a\u{FFFD}b", 1], "ok": "🦀" })
        );
    }

    #[test]
    fn cursors_round_trip() {
        let cursor = BeforeId { id: 7 };
        assert_eq!(BeforeId::decode(&cursor.encode()), Some(cursor));
        assert_eq!(BeforeId::decode("eyJhZnRlciI6Mn0"), None);
    }
}
