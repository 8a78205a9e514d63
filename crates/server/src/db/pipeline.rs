//! Transactions whose `BEGIN` and `COMMIT` travel with their statements.
//!
//! A shared `&AsyncPgConnection` pipelines: the queries polled on copies of it are sent
//! together, in the order they are first polled, and answered in that order. So a transaction
//! can cost one round trip: [`begin_pipelined`] polled first, the statements, and
//! [`pipelined_commit`] last, all under one `futures::join!`; afterwards [`begun`] and
//! [`committed`] tell the connection's transaction manager what happened (committed only if
//! every statement and the `COMMIT` succeeded, rolled back otherwise). The row locks the
//! statements take are then held only while PostgreSQL runs them, never across a round trip
//! to this process. [`when`] leaves a statement out of a pipeline without changing its shape.
//! [`begin`] and [`end`] are the plain kind, a round trip each, for a transaction that must
//! read before it knows what to write. `reply/admission.rs` (`admit_in`) uses both kinds.
//!
//! Two statements sent together with their transaction (moving money between two accounts:
//! a balance that would go below zero fails its CHECK, which aborts the transaction, and the
//! `COMMIT` then rolls it back):
//!
//! ```no_run
//! use anyreply_server::db::{self, Commit};
//! use anyreply_server::schema::accounts;
//! use diesel::prelude::*;
//! use diesel_async::{AsyncPgConnection, RunQueryDsl};
//!
//! /// The two balances after the move.
//! async fn transfer(
//!     conn: &mut AsyncPgConnection,
//!     from: i64,
//!     to: i64,
//!     amount: i64,
//! ) -> QueryResult<(i64, i64)> {
//!     let debit = diesel::update(accounts::table.find(from))
//!         .set(accounts::balance.eq(accounts::balance - amount))
//!         .returning(accounts::balance);
//!     let credit = diesel::update(accounts::table.find(to))
//!         .set(accounts::balance.eq(accounts::balance + amount))
//!         .returning(accounts::balance);
//!     let pipe: &AsyncPgConnection = conn;
//!     let (mut a, mut b, mut c, mut d) = (pipe, pipe, pipe, pipe);
//!     // Sent in this order, together: BEGIN, the two UPDATEs, COMMIT.
//!     let (began, debited, credited, commit) = futures::join!(
//!         db::begin_pipelined(&mut a),
//!         debit.get_result::<i64>(&mut b),
//!         credit.get_result::<i64>(&mut c),
//!         db::pipelined_commit(&mut d, Commit::Durable),
//!     );
//!     db::begun(conn, began)?;
//!     let outcome = debited.and_then(|debited| Ok((debited, credited?)));
//!     db::committed(conn, outcome, commit).await
//! }
//! ```

use diesel::QueryResult;
use diesel::connection::{TransactionDepthChange, TransactionManagerStatus};
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, TransactionManager};

use super::KeepPrepared;

/// Begins a transaction that [`end`] ends.
pub async fn begin(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    AnsiTransactionManager::begin_transaction(conn).await
}

/// `BEGIN`, to pipeline with the transaction's first statements (polled before them, it is
/// sent first): a round trip saved. Once the pipeline is done, hand its outcome to [`begun`].
pub async fn begin_pipelined(pipe: &mut &AsyncPgConnection) -> QueryResult<()> {
    diesel::sql_query("BEGIN")
        .keep_prepared()
        .execute(pipe)
        .await
        .map(drop)
}

/// `query`'s rows if `wanted`; nothing is sent otherwise (for pipelines).
pub async fn when<T>(
    wanted: bool,
    query: impl Future<Output = QueryResult<T>>,
) -> QueryResult<Option<T>> {
    if wanted {
        query.await.map(Some)
    } else {
        Ok(None)
    }
}

/// Tells the connection that [`begin_pipelined`] began a transaction (if it did), which
/// [`end`] then ends.
pub fn begun(conn: &mut AsyncPgConnection, began: QueryResult<()>) -> QueryResult<()> {
    began?;
    if let TransactionManagerStatus::Valid(status) =
        AnsiTransactionManager::transaction_manager_status_mut(conn)
    {
        status.change_transaction_depth(TransactionDepthChange::IncreaseDepth)?;
    }
    Ok(())
}

/// Ends the transaction [`begin`] began: with a COMMIT when `outcome` is a value, otherwise
/// with a ROLLBACK. A connection whose state cannot be known afterwards is marked broken, and
/// the pool drops it.
pub async fn end<T, E: From<diesel::result::Error>>(
    conn: &mut AsyncPgConnection,
    outcome: Result<T, E>,
) -> Result<T, E> {
    match outcome {
        Ok(value) => {
            AnsiTransactionManager::commit_transaction(conn).await?;
            Ok(value)
        }
        Err(error) => {
            rollback(conn).await;
            Err(error)
        }
    }
}

/// How a [`pipelined_commit`] commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Waits for its WAL's flush, as PostgreSQL does by default.
    Durable,
    /// Does not wait for the disk, and so releases its row locks a flush earlier: under load
    /// the hot rows' holders then wait for nobody's disk. Only for a transaction whose effects
    /// nothing outside acts on before a later commit that does wait (a reply's settlement, a
    /// tool's journal entry, a webhook's dispatch, the event streams' [`make_durable`](super::make_durable)): WAL is
    /// flushed in order, so that commit makes this one durable too, and a crash before it
    /// loses this one whole and unseen.
    WithoutWaitingForDisk,
}

/// `COMMIT`, pipelined behind the transaction's last statements, which the connection sends in
/// the order they are polled: the rows they lock (the account's balance, the key's rate
/// counter: rows every reply of an account writes) are then held only while PostgreSQL runs
/// them and commits, never across a round trip to this process. A statement that fails (a
/// CHECK, a refusal) leaves the transaction aborted, and PostgreSQL answers the COMMIT by
/// rolling back: a pipeline refuses by failing. Hand its outcome to [`committed`].
pub async fn pipelined_commit(pipe: &mut &AsyncPgConnection, commit: Commit) -> QueryResult<()> {
    let (mut setting, mut committing) = (*pipe, *pipe);
    let without_waiting = async {
        if commit == Commit::Durable {
            return Ok(0);
        }
        diesel::sql_query("SET LOCAL synchronous_commit = off")
            .keep_prepared()
            .execute(&mut setting)
            .await
    };
    let commit = diesel::sql_query("COMMIT")
        .keep_prepared()
        .execute(&mut committing);
    futures::try_join!(without_waiting, commit).map(drop)
}

/// Ends the transaction whose COMMIT was pipelined ([`pipelined_commit`]): `outcome` is what
/// its statements gave (the first error among them, if any), `commit` the COMMIT's answer.
/// The transaction committed only if both are good; otherwise it rolled back (a ROLLBACK is
/// sent anyway, for when the COMMIT was never sent, and is harmless when it was).
pub async fn committed<T, E: From<diesel::result::Error>>(
    conn: &mut AsyncPgConnection,
    outcome: Result<T, E>,
    commit: QueryResult<()>,
) -> Result<T, E> {
    match (outcome, commit) {
        (Ok(value), Ok(())) => {
            // The COMMIT went in the pipeline, past the transaction manager: tell it.
            if let TransactionManagerStatus::Valid(status) =
                AnsiTransactionManager::transaction_manager_status_mut(conn)
            {
                status.change_transaction_depth(TransactionDepthChange::DecreaseDepth)?;
            }
            Ok(value)
        }
        (Err(error), _) => {
            rollback(conn).await;
            Err(error)
        }
        (Ok(_), Err(error)) => {
            rollback(conn).await;
            Err(error.into())
        }
    }
}

/// Rolls back the transaction in progress, if there is one: for a failure that may have come
/// before or after its end.
pub async fn roll_back_if_open(conn: &mut AsyncPgConnection) {
    let open = match AnsiTransactionManager::transaction_manager_status_mut(conn) {
        TransactionManagerStatus::Valid(status) => status.transaction_depth().is_some(),
        TransactionManagerStatus::InError => true,
    };
    if open {
        rollback(conn).await;
    }
}

/// Rolls back; a connection that cannot is marked broken by the transaction manager.
async fn rollback(conn: &mut AsyncPgConnection) {
    if let Err(error) = AnsiTransactionManager::rollback_transaction(conn).await {
        tracing::warn!(%error, "rollback failed; the connection will be dropped");
    }
}
