//! A conversation's replies are produced one at a time, in message order, by any number of
//! server processes: a queued message's turn comes when no earlier message of its
//! conversation is pending with a live lease.
//!
//! Waiting costs no polling: a reply that settles or is released with a later message queued
//! behind it sends `NOTIFY anyreply_turns, '<conversation>'`, and each process's listener
//! ([`Wakeups`]) wakes the waiters of that conversation; a slow fallback check catches a
//! missed notification or a dead process's lease. Each process renews the leases of all its
//! replies in flight with one statement per period ([`InFlight`]). Both are the engine's
//! state in this process, [`crate::engine_state::EngineState`].
//!
//! [`Wakeups`]: crate::engine_state::Wakeups
//! [`InFlight`]: crate::engine_state::InFlight

use diesel_async::AsyncConnection;
use uuid::Uuid;

use super::error::{ReplyError, ReplyResult};
use super::settlement;
use crate::app::App;
use crate::models::pending_reply;

/// Returns once every earlier message of the conversation has its reply (or was given up).
/// Borrows a connection only for each check.
pub async fn wait_for_turn(app: &App, conversation_id: Uuid, message_id: i64) -> ReplyResult<()> {
    let subscription = app.engine.wakeups.subscribe(conversation_id);
    loop {
        // Enabled before the check, so a wake-up that lands during it is not lost.
        let woken = subscription.notify.notified();
        let mut woken = std::pin::pin!(woken);
        woken.as_mut().enable();
        let state = {
            let mut conn = app.db().await?;
            pending_reply::turn_state(&mut conn, conversation_id, message_id).await?
        };
        if !state.queued {
            // Our lease ran out and another process gave the message up.
            return Err(ReplyError::Superseded);
        }
        if !state.blocked {
            if state.abandoned {
                reclaim_expired(app, Some((conversation_id, message_id))).await?;
            }
            return Ok(());
        }
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep(app.settings.turn_recheck) => {}
        }
    }
}

/// Gives up turns whose lease ran out: of one conversation before a message, or everywhere.
pub async fn reclaim_expired(app: &App, before: Option<(Uuid, i64)>) -> ReplyResult<usize> {
    let mut conn = app.db().await?;
    let expired = pending_reply::expired(&mut conn, before).await?;
    if !expired.is_empty() {
        tracing::warn!(
            count = expired.len(),
            "reclaiming replies abandoned by a stopped process"
        );
        conn.transaction::<_, ReplyError, _>(async |conn| {
            settlement::release(conn, &expired, true, None).await
        })
        .await?;
    }
    Ok(expired.len())
}
