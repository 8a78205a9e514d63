//! Tools: an account's HTTP endpoints that its assistants' models may call.

use anyreply_core::limits::MAX_TOOLS_PER_ACCOUNT;
use anyreply_core::wire::tools::DEFAULT_TOOL_TIMEOUT_SECS;
use anyreply_core::wire::{self, HttpMethod, ToolHeader, ToolInput, ToolParameter};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use super::page::{AfterId, Page};
use super::quota;
use crate::db::Conn;
use crate::schema::{assistants, tools};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tools)]
pub struct ToolRow {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub description: String,
    pub endpoint: String,
    pub method: String,
    pub timeout_secs: i32,
    pub headers: Value,
    pub schema: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ToolRow {
    pub fn method(&self) -> HttpMethod {
        HttpMethod::parse(&self.method).unwrap_or(HttpMethod::Post)
    }

    /// The headers with their real values: for calling the endpoint, never for answers.
    pub fn headers(&self) -> Vec<ToolHeader> {
        serde_json::from_value(self.headers.clone()).unwrap_or_default()
    }

    pub fn schema(&self) -> Vec<ToolParameter> {
        serde_json::from_value(self.schema.clone()).unwrap_or_default()
    }

    /// The API's view: header values masked.
    pub fn into_wire(self) -> wire::Tool {
        let headers = self
            .headers()
            .into_iter()
            .map(|h| ToolHeader {
                value: mask(&h.value),
                name: h.name,
            })
            .collect();
        wire::Tool {
            id: self.id,
            method: self.method(),
            schema: self.schema(),
            name: self.name,
            description: self.description,
            endpoint: self.endpoint,
            timeout: u32::try_from(self.timeout_secs).unwrap_or(DEFAULT_TOOL_TIMEOUT_SECS),
            headers,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Hides a secret: `****` and, for values long enough to stay secret, the last four characters.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() >= 12 {
        format!(
            "****{}",
            chars[chars.len() - 4..].iter().collect::<String>()
        )
    } else {
        "****".to_owned()
    }
}

/// Why a write was refused.
#[derive(Debug)]
pub enum WriteError {
    NameTaken,
    /// The account has [`MAX_TOOLS_PER_ACCOUNT`] already.
    LimitReached,
    /// The endpoint moved to another origin while stored header values would go along: they
    /// must be sent again, so a changed endpoint cannot collect the old secrets.
    HeadersNeeded,
    Database(diesel::result::Error),
}

impl From<diesel::result::Error> for WriteError {
    fn from(error: diesel::result::Error) -> Self {
        if crate::db::is_unique_violation(&error) {
            WriteError::NameTaken
        } else {
            WriteError::Database(error)
        }
    }
}

/// One page of the account's tools in id order, starting after `after`: a range of the
/// `tools_account` index.
pub async fn list(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    per_page: u32,
    after: Option<AfterId>,
) -> QueryResult<Page<ToolRow>> {
    let mut query = tools::table
        .filter(tools::account_id.eq(account_id))
        .order(tools::id)
        .limit(i64::from(per_page) + 1)
        .select(ToolRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(tools::id.gt(after.id));
    }
    let rows = query.load(conn).await?;
    Ok(Page::from_rows(rows, per_page, |row| row.id))
}

/// The tools among `ids` that belong to `account_id`, in id order.
pub async fn find_many(
    conn: &mut impl Conn,
    account_id: i64,
    ids: &[i64],
) -> QueryResult<Vec<ToolRow>> {
    tools::table
        .filter(tools::account_id.eq(account_id))
        .filter(tools::id.eq_any(ids))
        .order(tools::id)
        .select(ToolRow::as_select())
        .load(conn)
        .await
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: i64,
) -> QueryResult<Option<ToolRow>> {
    tools::table
        .filter(tools::id.eq(id))
        .filter(tools::account_id.eq(account_id))
        .select(ToolRow::as_select())
        .first(conn)
        .await
        .optional()
}

fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Array(Vec::new()))
}

pub async fn count(conn: &mut AsyncPgConnection, account_id: i64) -> QueryResult<i64> {
    tools::table
        .filter(tools::account_id.eq(account_id))
        .count()
        .get_result(conn)
        .await
}

/// Creates a tool unless the account has as many as it may have.
pub async fn create(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    input: ToolInput,
) -> Result<ToolRow, WriteError> {
    conn.transaction(async |conn| {
        quota::lock_account(conn, account_id).await?;
        if !quota::has_room(count(conn, account_id).await?, MAX_TOOLS_PER_ACCOUNT) {
            return Err(WriteError::LimitReached);
        }
        insert(conn, account_id, input).await
    })
    .await
}

async fn insert(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    input: ToolInput,
) -> Result<ToolRow, WriteError> {
    Ok(diesel::insert_into(tools::table)
        .values((
            tools::account_id.eq(account_id),
            tools::name.eq(input.name.unwrap_or_default()),
            tools::description.eq(input.description.unwrap_or_default()),
            tools::endpoint.eq(input.endpoint.unwrap_or_default()),
            tools::method.eq(input.method.unwrap_or(HttpMethod::Post).as_str()),
            tools::timeout_secs.eq(input.timeout.unwrap_or(DEFAULT_TOOL_TIMEOUT_SECS) as i32),
            tools::headers.eq(json(&input.headers.unwrap_or_default())),
            tools::schema.eq(json(&input.schema.unwrap_or_default())),
        ))
        .returning(ToolRow::as_returning())
        .get_result(conn)
        .await?)
}

#[derive(AsChangeset)]
#[diesel(table_name = tools)]
struct ToolChanges {
    name: Option<String>,
    description: Option<String>,
    endpoint: Option<String>,
    method: Option<String>,
    timeout_secs: Option<i32>,
    headers: Option<Value>,
    schema: Option<Value>,
    updated_at: DateTime<Utc>,
}

/// Applies the present fields of `input`. A header sent back as its masked form keeps its
/// stored value, so a client can round-trip a tool without knowing its secrets.
pub async fn update(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: i64,
    input: ToolInput,
) -> Result<Option<ToolRow>, WriteError> {
    conn.transaction::<_, WriteError, _>(async |conn| {
        let Some(current) = find(conn, account_id, id).await? else {
            return Ok(None);
        };
        let stored = current.headers();
        let moves = input
            .endpoint
            .as_deref()
            .is_some_and(|endpoint| origin(endpoint) != origin(&current.endpoint));
        if moves && !stored.is_empty() {
            let resent = input.headers.as_deref().is_some_and(|headers| {
                headers
                    .iter()
                    .all(|h| !stored.iter().any(|s| h.value == mask(&s.value)))
            });
            if !resent {
                return Err(WriteError::HeadersNeeded);
            }
        }
        let headers = input.headers.map(|headers| {
            let kept: Vec<ToolHeader> = headers
                .into_iter()
                .map(|header| {
                    match stored
                        .iter()
                        .find(|s| s.name.eq_ignore_ascii_case(&header.name))
                    {
                        Some(old) if header.value == mask(&old.value) => ToolHeader {
                            value: old.value.clone(),
                            ..header
                        },
                        _ => header,
                    }
                })
                .collect();
            json(&kept)
        });
        let changes = ToolChanges {
            name: input.name,
            description: input.description,
            endpoint: input.endpoint,
            method: input.method.map(|m| m.as_str().to_owned()),
            timeout_secs: input.timeout.map(|t| t as i32),
            headers,
            schema: input.schema.map(|s| json(&s)),
            updated_at: Utc::now(),
        };
        Ok(Some(
            diesel::update(tools::table.find(current.id))
                .set(changes)
                .returning(ToolRow::as_returning())
                .get_result(conn)
                .await?,
        ))
    })
    .await
}

/// The scheme, host and port of a URL.
fn origin(endpoint: &str) -> Option<String> {
    url::Url::parse(endpoint)
        .ok()
        .map(|url| url.origin().ascii_serialization())
}

/// Deletes the tool and detaches it from every assistant of the account.
pub async fn delete(conn: &mut AsyncPgConnection, account_id: i64, id: i64) -> QueryResult<bool> {
    conn.transaction(async |conn| {
        let deleted = diesel::delete(
            tools::table
                .filter(tools::id.eq(id))
                .filter(tools::account_id.eq(account_id)),
        )
        .execute(conn)
        .await?;
        if deleted == 1 {
            diesel::update(assistants::table.filter(assistants::account_id.eq(account_id)))
                .set(assistants::tool_ids.eq(array_remove(assistants::tool_ids, id)))
                .execute(conn)
                .await?;
        }
        Ok(deleted == 1)
    })
    .await
}

diesel::define_sql_function! {
    /// PostgreSQL's `array_remove(array, element)`.
    fn array_remove(array: diesel::sql_types::Array<diesel::sql_types::Nullable<diesel::sql_types::Int8>>, element: diesel::sql_types::Int8) -> diesel::sql_types::Array<diesel::sql_types::Nullable<diesel::sql_types::Int8>>;
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn masks_hide_all_but_the_tail_of_long_values() {
        assert_eq!(mask("Bearer s3cret-token"), "****oken");
        assert_eq!(mask("short"), "****");
        assert_eq!(mask(""), "****");
    }
}
