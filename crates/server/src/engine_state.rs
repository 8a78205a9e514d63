//! The generate-reply engine's state in this process, apart from [`crate::App`]: the
//! messages waiting for their turn ([`Wakeups`], woken by `NOTIFY`) and the replies in flight
//! ([`InFlight`], whose leases are renewed). How turns are taken is [`crate::reply::queue`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures::StreamExt;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::db::{DbPool, PoolError};
use crate::idempotency::Claim;
use crate::models::pending_reply::{self, HeldKeys};

/// The engine's state in this process. Cheap to clone: its parts are shared.
#[derive(Debug, Clone, Default)]
pub struct EngineState {
    /// Messages of this process waiting for their turn, woken by `NOTIFY`.
    pub wakeups: Wakeups,
    /// Replies this process is producing, whose leases it renews.
    pub in_flight: InFlight,
}

/// Why renewing the leases failed.
#[derive(Debug, thiserror::Error)]
enum RenewError {
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("no database connection: {0}")]
    Pool(#[from] PoolError),
}

/// Pause before the listener connects again after losing its connection.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// The waiters of this process, by conversation, woken by notifications.
#[derive(Debug, Clone, Default)]
pub struct Wakeups {
    waiting: Arc<Mutex<HashMap<Uuid, Waiting>>>,
}

#[derive(Debug)]
struct Waiting {
    notify: Arc<Notify>,
    waiters: usize,
}

/// A waiter's place; leaving it (drop) forgets the conversation once nobody waits on it.
pub(crate) struct Subscription<'a> {
    wakeups: &'a Wakeups,
    conversation_id: Uuid,
    pub(crate) notify: Arc<Notify>,
}

impl Wakeups {
    /// How many messages of this process wait for their turn.
    pub fn waiting(&self) -> usize {
        let waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        waiting.values().map(|w| w.waiters).sum()
    }

    /// This waiter's place among the conversation's, woken by its notifications.
    pub(crate) fn subscribe(&self, conversation_id: Uuid) -> Subscription<'_> {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = waiting.entry(conversation_id).or_insert_with(|| Waiting {
            notify: Arc::new(Notify::new()),
            waiters: 0,
        });
        entry.waiters += 1;
        Subscription {
            wakeups: self,
            conversation_id,
            notify: entry.notify.clone(),
        }
    }

    fn wake(&self, conversation_id: Uuid) {
        let waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = waiting.get(&conversation_id) {
            entry.notify.notify_waiters();
        }
    }

    fn wake_everyone(&self) {
        let waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        for entry in waiting.values() {
            entry.notify.notify_waiters();
        }
    }

    /// Listens for settled turns until dropped, connecting again whenever the connection is
    /// lost (and waking every waiter then, as notifications may have been missed).
    pub async fn listen(self, database_url: String) {
        loop {
            match AsyncPgConnection::establish(&database_url).await {
                Ok(mut conn) => {
                    if let Err(error) = pending_reply::listen(&mut conn).await {
                        tracing::warn!(%error, "could not listen for turns");
                    } else {
                        self.wake_everyone();
                        let mut notifications = std::pin::pin!(conn.notifications_stream());
                        while let Some(Ok(notification)) = notifications.next().await {
                            if let Ok(conversation_id) = notification.payload.parse() {
                                self.wake(conversation_id);
                            }
                        }
                        tracing::warn!("lost the connection listening for turns; reconnecting");
                    }
                }
                Err(error) => tracing::warn!(%error, "could not connect to listen for turns"),
            }
            // Perhaps PostgreSQL died: an idle server notices here first.
            crate::pg_cluster::database_seems_gone();
            self.wake_everyone();
            tokio::time::sleep(RECONNECT_PAUSE).await;
        }
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        let mut waiting = self
            .wakeups
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = waiting.get_mut(&self.conversation_id) {
            entry.waiters -= 1;
            if entry.waiters == 0 {
                waiting.remove(&self.conversation_id);
            }
        }
    }
}

/// The replies this process is producing, whose leases (and idempotency claims) it renews.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    /// Message ids, each with its request's idempotency claim if it has one.
    replies: Arc<Mutex<HashMap<i64, Option<Claim>>>>,
}

/// A reply's registration in [`InFlight`]; dropping it stops the renewals.
#[derive(Debug)]
pub struct Leased {
    in_flight: InFlight,
    message_id: i64,
}

impl InFlight {
    /// Renews the lease of `message_id`, and its request's `claim` if any, until the returned
    /// value is dropped.
    pub fn hold(&self, message_id: i64, claim: Option<Claim>) -> Leased {
        self.replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(message_id, claim);
        Leased {
            in_flight: self.clone(),
            message_id,
        }
    }

    /// How many replies this process is producing.
    pub fn count(&self) -> usize {
        self.replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn snapshot(&self) -> (Vec<i64>, HeldKeys) {
        let replies = self.replies.lock().unwrap_or_else(PoisonError::into_inner);
        let mut keys = HeldKeys::default();
        for claim in replies.values().flatten() {
            keys.account_ids.push(claim.account_id);
            keys.keys.push(claim.key.as_str().to_owned());
            keys.tokens.push(claim.token);
        }
        (replies.keys().copied().collect(), keys)
    }

    /// Renews every lease in flight each third of `lease`, in one statement, forever.
    pub async fn renew(self, pool: DbPool, lease: Duration) {
        let mut interval = tokio::time::interval(lease / 3);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let (message_ids, keys) = self.snapshot();
            if message_ids.is_empty() {
                continue;
            }
            let renewed = async {
                // Late renewals are useless: wait no longer than the period for a connection.
                let mut conn = crate::db::get_within(&pool, lease / 3).await?;
                pending_reply::renew_leases(&mut conn, lease, &message_ids, &keys).await?;
                Ok::<_, RenewError>(())
            };
            if let Err(error) = renewed.await {
                tracing::warn!(%error, "could not renew the leases of replies in flight");
            }
        }
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        self.in_flight
            .replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.message_id);
    }
}
