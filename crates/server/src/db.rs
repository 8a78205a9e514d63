//! The connection pool, database creation and migrations; [`pipeline`]: transactions whose
//! `BEGIN` and `COMMIT` are pipelined with their statements.

pub mod pipeline;

use anyhow::Context;
use diesel::deserialize::FromSql;
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::result::DatabaseErrorKind;
use diesel::serialize::{Output, ToSql};
use diesel::sql_types::{self, Array, Nullable};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::time::Duration;
use url::Url;

pub use pipeline::{
    Commit, begin, begin_pipelined, begun, committed, end, pipelined_commit, roll_back_if_open,
    when,
};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

pub type DbPool = Pool<AsyncPgConnection>;
pub type DbConn = Object<AsyncPgConnection>;
pub type PoolError = diesel_async::pooled_connection::deadpool::PoolError;

/// How long a request waits for a free connection before answering 503.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(30);

/// A pool of at most `size` connections. A connection is not pinged when taken out (that
/// would cost a round trip per checkout): one that broke is found by its error and dropped when
/// it comes back, and the pool opens a new one.
pub fn pool(database_url: &str, size: usize) -> anyhow::Result<DbPool> {
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::new_with_config(database_url, config);
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(CHECKOUT_TIMEOUT))
        .create_timeout(Some(Duration::from_secs(10)))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .context("building the database pool")
}

/// A pooled connection, waiting at most `wait` for one: for work that is pointless late.
pub async fn get_within(pool: &DbPool, wait: Duration) -> Result<DbConn, PoolError> {
    let timeouts = deadpool::managed::Timeouts {
        wait: Some(wait),
        ..pool.timeouts()
    };
    pool.timeout_get(&timeouts).await
}

/// Whether `error` says the database went away (the connection was cut, the server shut
/// down or terminated the backend, or is not accepting connections) rather than refused the
/// statement: a fault to retry, not a bug.
pub fn is_unavailable(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match error {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        )
        | Error::BrokenTransactionManager => true,
        // SQLSTATE classes 08 (connection) and 57P (operator intervention) reach diesel as
        // `Unknown` with the server's message; these are the messages PostgreSQL sends.
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let message = info.message();
            [
                "terminating connection",
                "the database system is",
                "is not currently accepting connections",
                "connection closed",
                "server closed the connection",
            ]
            .iter()
            .any(|known| message.contains(known))
        }
        _ => false,
    }
}

/// The database for people: `PostgreSQL at host:port, database name (URL)`, the password
/// hidden.
pub fn describe(database_url: &str) -> String {
    let Ok(mut url) = Url::parse(database_url) else {
        return "a database whose ANYREPLY_DATABASE_URL is not a URL".to_owned();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    // A Unix socket's directory is the host, percent-encoded.
    let host = url
        .host_str()
        .map(|host| host.replace("%2F", "/").replace("%2f", "/"))
        .unwrap_or_else(|| "localhost".to_owned());
    let database = url.path().trim_start_matches('/');
    if host.starts_with('/') {
        return format!("PostgreSQL on the Unix socket in {host}, database {database:?} ({url})");
    }
    format!(
        "PostgreSQL at {host}:{}, database {database:?} ({url})",
        url.port().unwrap_or(5432)
    )
}

/// Connects to `url`; a failure names the server (as `named_url` names it, password hidden)
/// and the cause, which the driver's own error leaves out for TCP faults.
pub async fn establish(url: &str, named_url: &str) -> anyhow::Result<AsyncPgConnection> {
    let error = match AsyncPgConnection::establish(url).await {
        Ok(conn) => return Ok(conn),
        Err(error) => error,
    };
    let cause = match tcp_address(url) {
        Some(address) => match tokio::net::TcpStream::connect(&address).await {
            Err(io) => io.to_string(),
            Ok(_) => error.to_string(),
        },
        None => error.to_string(),
    };
    anyhow::bail!("cannot reach {}: {cause}", describe(named_url))
}

/// `host:port` of a URL that reaches PostgreSQL over TCP (not a Unix socket).
fn tcp_address(url: &str) -> Option<String> {
    let url = Url::parse(url).ok()?;
    let host = url.host_str()?;
    if host.starts_with("%2F") || host.starts_with("%2f") {
        return None;
    }
    Some(format!("{host}:{}", url.port().unwrap_or(5432)))
}

/// Creates the database named in `database_url` unless it exists, connecting to the
/// server's `postgres` database to do so.
pub async fn create_database_if_missing(database_url: &str) -> anyhow::Result<()> {
    let mut url = Url::parse(database_url).with_context(|| {
        "ANYREPLY_DATABASE_URL is not a URL (for example ANYREPLY_DATABASE_URL=postgres://postgres@127.0.0.1:5432/anyreply)"
    })?;
    let name = url.path().trim_start_matches('/').to_owned();
    anyhow::ensure!(
        !name.is_empty(),
        "ANYREPLY_DATABASE_URL names no database (for example ANYREPLY_DATABASE_URL=postgres://postgres@127.0.0.1:5432/anyreply)"
    );
    url.set_path("/postgres");
    let mut conn = establish(url.as_str(), database_url).await?;
    let exists: bool = diesel::select(diesel::dsl::exists(
        pg_database::table.filter(pg_database::datname.eq(&name)),
    ))
    .get_result(&mut conn)
    .await?;
    if !exists {
        let create = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        match diesel::sql_query(create).execute(&mut conn).await {
            Ok(_) => tracing::info!(database = %name, "created the database"),
            // Another process created it first.
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => {}
            Err(e) => return Err(e).context("creating the database"),
        }
    }
    Ok(())
}

/// Whether `error` is a unique constraint's refusal (a name or email taken, say).
pub fn is_unique_violation(error: &diesel::result::Error) -> bool {
    matches!(
        error,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

diesel::table! {
    pg_database (datname) {
        datname -> Text,
    }
}

/// Held while one process migrates: two starting at once (a server and a CLI command) would
/// otherwise both run the same migration, and one fail.
const MIGRATION_LOCK: i64 = 74_002;

/// Runs pending migrations. Blocking work, so it runs off the async threads.
pub async fn run_migrations(database_url: &str) -> anyhow::Result<()> {
    let database_url = database_url.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut conn =
            <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(
                &database_url,
            )
            .context("connecting to run migrations")?;
        // Released with the connection.
        diesel::RunQueryDsl::execute(
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")),
            &mut conn,
        )
        .context("waiting for another process's migrations")?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!(e))?;
        for migration in applied {
            tracing::info!(%migration, "applied migration");
        }
        Ok(())
    })
    .await?
}

/// A raw SQL statement whose text never changes, so that the connection may keep it prepared
/// like diesel's own queries instead of parsing and planning it on every call (diesel cannot
/// know that of `sql_query` text, and so prepares it anew each time).
#[derive(Debug, Clone, diesel::query_builder::QueryId)]
pub struct KeptPrepared<Q>(Q);

/// See [`KeptPrepared`]: only for statements whose SQL text is fixed (binds may vary).
pub trait KeepPrepared: Sized {
    fn keep_prepared(self) -> KeptPrepared<Self> {
        KeptPrepared(self)
    }
}

impl<Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>> KeepPrepared for Q {}

impl<Q> diesel::query_builder::QueryFragment<diesel::pg::Pg> for KeptPrepared<Q>
where
    Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
{
    fn walk_ast<'b>(
        &'b self,
        pass: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &diesel::pg::Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q: diesel::query_builder::Query> diesel::query_builder::Query for KeptPrepared<Q> {
    type SqlType = Q::SqlType;
}

/// An array column's value, none of whose elements is NULL. `diesel print-schema` types
/// every array column `Array<Nullable<T>>` (PostgreSQL cannot declare an array's elements NOT
/// NULL); this reads one into a `Vec<T>` (`#[diesel(deserialize_as = NonNullArray<T>)]` on
/// the field), a NULL element failing the row, and writes a `Vec<T>` into one.
#[derive(
    Debug, Clone, Default, diesel::deserialize::FromSqlRow, diesel::expression::AsExpression,
)]
#[diesel(sql_type = Array<Nullable<sql_types::Int8>>)]
#[diesel(sql_type = Array<Nullable<sql_types::Text>>)]
pub struct NonNullArray<T>(pub Vec<T>);

impl<T, ST> FromSql<Array<Nullable<ST>>, Pg> for NonNullArray<T>
where
    Vec<T>: FromSql<Array<ST>, Pg>,
{
    fn from_sql(value: PgValue<'_>) -> diesel::deserialize::Result<Self> {
        // The same bytes (an array says its elements' type in its header); `Array<ST>` reads
        // a NULL element as an error.
        <Vec<T> as FromSql<Array<ST>, Pg>>::from_sql(value).map(Self)
    }
}

impl<T, ST> ToSql<Array<Nullable<ST>>, Pg> for NonNullArray<T>
where
    Vec<T>: ToSql<Array<ST>, Pg>,
    T: std::fmt::Debug,
{
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> diesel::serialize::Result {
        ToSql::<Array<ST>, Pg>::to_sql(&self.0, out)
    }
}

impl<T> From<NonNullArray<T>> for Vec<T> {
    fn from(array: NonNullArray<T>) -> Self {
        array.0
    }
}

/// Waits until everything committed so far, synchronously or not, is on disk: a transaction
/// that writes WAL (a logical-decoding message, which nothing reads) and waits for its
/// commit's flush, which covers every commit record written before it. Call before acting on
/// rows that a commit [without waiting for the disk](Commit::WithoutWaitingForDisk) (an
/// admission, a due's payment) may have written.
pub async fn make_durable(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    conn.batch_execute("SELECT pg_logical_emit_message(true, 'anyreply', '')")
        .await
}

/// Whether `error` is a violation of the CHECK constraint named `constraint`, or the refusal
/// of that name (`anyreply_refuse`, for the refusals no CHECK can state: see the migration
/// `refusals`).
pub fn violates(error: &diesel::result::Error, constraint: &str) -> bool {
    matches!(
        error,
        diesel::result::Error::DatabaseError(DatabaseErrorKind::CheckViolation, info)
            if info.constraint_name() == Some(constraint)
    )
}

/// What a query runs on: a connection of the pool, or a shared `&AsyncPgConnection` through
/// which several queries are pipelined (sent together, answered in order).
pub trait Conn: diesel_async::AsyncConnectionCore<Backend = diesel::pg::Pg> + Send {}

impl<C: diesel_async::AsyncConnectionCore<Backend = diesel::pg::Pg> + Send> Conn for C {}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn a_database_is_described_without_its_password() {
        assert_eq!(
            describe("postgres://bob:hunter2@db.internal:6543/shop"),
            r#"PostgreSQL at db.internal:6543, database "shop" (postgres://bob:***@db.internal:6543/shop)"#
        );
        assert_eq!(
            describe("postgres://postgres@%2Fvar%2Flib%2Fanyreply%2Fpostgres/anyreply"),
            r#"PostgreSQL on the Unix socket in /var/lib/anyreply/postgres, database "anyreply" (postgres://postgres@%2Fvar%2Flib%2Fanyreply%2Fpostgres/anyreply)"#
        );
    }
}
