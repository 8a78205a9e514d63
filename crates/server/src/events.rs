//! The account's event streams, fed by one poller per process.
//!
//! The poller reads what is new for every account with an open stream in one statement a tick
//! (nothing at all while no stream is open), makes it durable, and hands it to that account's
//! streams in memory (a broadcast channel per account). A stream reads the table itself only to
//! catch up: from its `Last-Event-ID` to where the poller was when it opened, or after it fell
//! so far behind that the channel dropped batches for it. It holds no connection while it
//! waits. The table is the truth: a stream resumes from any id. (Not `NOTIFY`: PostgreSQL
//! serialises the commits of every notifying transaction, and every change writes an event.)
//!
//! The poller also ends the streams whose API key was revoked or whose console session ended,
//! and [`EventHub::shut_down`] ends them all, so that a graceful shutdown does not wait for them.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyreply_core::ErrorCode;
use anyreply_core::wire::Event;
use diesel_async::AsyncPgConnection;
use futures::Stream;
use tokio::sync::{Notify, broadcast, watch};

use crate::db::{self, DbPool};
use crate::error::{ApiError, ApiResult};
use crate::models::event::{self, EventFilter};
use crate::models::{account, api_key, console_session};
use crate::telemetry::metrics;

/// Most events a stream reads at once while catching up.
const BATCH: i64 = 100;
/// Most events of one account the poller reads in a tick; past it, it reads again at once.
const POLL_BATCH: i64 = 500;
/// How long the poller waits between looks while streams are open: the most an event waits to
/// be sent, and (with [`LIVENESS_EVERY`]) what idle streams cost PostgreSQL, whatever their
/// number: five statements a second.
const POLL: Duration = Duration::from_millis(200);
/// How often the poller checks that the keys and console sessions of open streams are live:
/// a stream ends at most this long (plus a tick) after its key is revoked or its session ends.
const LIVENESS_EVERY: Duration = Duration::from_secs(2);
/// Pause after a failed look (the database away), before the next.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Batches an account's channel keeps for a stream that is slow to take them; one that falls
/// further behind catches up from the table.
const CHANNEL_BATCHES: usize = 256;

/// The statements the streams send PostgreSQL, each its own transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statement {
    /// The poller's look for every open stream.
    Poll,
    /// A flush before sending what was read.
    Durable,
    /// The open streams' keys or console sessions checked.
    Liveness,
    /// A stream reading the table to catch up.
    CatchUp,
    /// The last event of an account whose first stream opens.
    Open,
}

impl Statement {
    fn label(self) -> &'static str {
        match self {
            Statement::Poll => "poll",
            Statement::Durable => "durable",
            Statement::Liveness => "liveness",
            Statement::CatchUp => "catch_up",
            Statement::Open => "open",
        }
    }
}

/// What opened a stream, and whose end ends it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Holder {
    /// An API key, by id.
    Key(i64),
    /// A console session, by its token's hash.
    Session(Vec<u8>),
}

/// The process's open streams and the poller that feeds them. Cheap to clone.
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Statements sent, by [`Statement`]: what the streams cost PostgreSQL.
    statements: [AtomicU64; 5],
    /// Wakes the poller when a stream opens.
    opened: Notify,
    /// Most streams one holder keeps open.
    per_holder: usize,
}

#[derive(Default)]
struct State {
    feeds: HashMap<i64, Feed>,
    streams: HashMap<u64, Open>,
    next_stream: u64,
    shut_down: bool,
}

/// What the poller has handed out of one account's events.
struct Feed {
    /// The last event handed out (or, before the first, the account's last when the feed
    /// opened): every event up to it is committed, and every later one goes to the channel.
    seen: i64,
    streams: usize,
    sender: broadcast::Sender<Batch>,
}

type Batch = Arc<[Arc<Streamed>]>;

/// An event as the streams send it: its JSON written once, however many streams send it.
#[derive(Debug)]
pub struct Streamed {
    pub event: Event,
    pub json: String,
}

impl From<Event> for Streamed {
    fn from(event: Event) -> Self {
        // An event is plain data: it always serialises.
        let json = serde_json::to_string(&event).unwrap_or_default();
        Self { event, json }
    }
}

struct Open {
    holder: Holder,
    end: watch::Sender<bool>,
}

impl EventHub {
    pub fn new(per_holder: u32) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::default(),
                statements: Default::default(),
                opened: Notify::new(),
                per_holder: per_holder as usize,
            }),
        }
    }

    /// How many statements of `kind` the streams of this hub have sent.
    pub fn statements(&self, kind: Statement) -> u64 {
        self.inner.statements[kind as usize].load(Ordering::Relaxed)
    }

    fn count(&self, kind: Statement) {
        metrics::event_stream_statement(kind.label());
        self.inner.statements[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens a stream of `account_id`'s events for `holder`: refused with
    /// `429 TOO_MANY_EVENT_STREAMS` past the holder's limit, and with `503` once the process
    /// is shutting down.
    pub async fn subscribe(
        &self,
        pool: &DbPool,
        account_id: i64,
        holder: Holder,
    ) -> ApiResult<Subscription> {
        // The first stream of an account starts its feed at the account's last event, read
        // before the lock: a race may read it twice (and use the feed the other made).
        let mut start = None;
        loop {
            match self.try_subscribe(account_id, &holder, start)? {
                Some(subscription) => {
                    self.inner.opened.notify_one();
                    return Ok(subscription);
                }
                None => {
                    let mut conn = pool.get().await?;
                    self.count(Statement::Open);
                    start = Some(account::last_event_id(&mut conn, account_id).await?);
                }
            }
        }
    }

    /// The stream, or `None` if its account has no feed and `start` is needed to open one.
    fn try_subscribe(
        &self,
        account_id: i64,
        holder: &Holder,
        start: Option<i64>,
    ) -> ApiResult<Option<Subscription>> {
        let mut state = self.state();
        if state.shut_down {
            return Err(ApiError::new(ErrorCode::ServiceUnavailable)
                .with_message("The server is shutting down; reconnect."));
        }
        let held = state
            .streams
            .values()
            .filter(|o| &o.holder == holder)
            .count();
        if held >= self.inner.per_holder {
            return Err(ApiError::new(ErrorCode::TooManyEventStreams).with_retry_after(5));
        }
        let feed = match (state.feeds.entry(account_id), start) {
            (Entry::Occupied(feed), _) => feed.into_mut(),
            (Entry::Vacant(vacant), Some(seen)) => vacant.insert(Feed {
                seen,
                streams: 0,
                sender: broadcast::channel(CHANNEL_BATCHES).0,
            }),
            (Entry::Vacant(_), None) => return Ok(None),
        };
        feed.streams += 1;
        let (receiver, seen) = (feed.sender.subscribe(), feed.seen);
        let id = state.next_stream;
        state.next_stream += 1;
        let (end, ended) = watch::channel(false);
        state.streams.insert(
            id,
            Open {
                holder: holder.clone(),
                end,
            },
        );
        metrics::event_streams_open(state.streams.len());
        Ok(Some(Subscription {
            hub: self.clone(),
            id,
            account_id,
            receiver,
            seen,
            ended,
        }))
    }

    /// Ends every stream and refuses new ones: the server is stopping.
    pub fn shut_down(&self) {
        let mut state = self.state();
        state.shut_down = true;
        for open in state.streams.values() {
            let _ = open.end.send(true);
        }
    }

    /// How many streams are open in this process.
    pub fn open_streams(&self) -> usize {
        self.state().streams.len()
    }

    /// The feeds' accounts and how far each has been handed out; empty when no stream is open.
    fn positions(&self) -> (Vec<i64>, Vec<i64>) {
        self.state()
            .feeds
            .iter()
            .map(|(account, feed)| (*account, feed.seen))
            .unzip()
    }

    fn seen(&self, account_id: i64) -> Option<i64> {
        self.state().feeds.get(&account_id).map(|f| f.seen)
    }

    /// Hands each account's new events to its streams.
    fn publish(&self, rows: Vec<event::AccountEventRow>) {
        let mut by_account: Vec<(i64, i64, Vec<Arc<Streamed>>)> = Vec::new();
        for row in rows {
            let id = row.event.id;
            match by_account.last_mut() {
                Some((account, last, _)) if *account == row.account_id => *last = id,
                _ => by_account.push((row.account_id, id, Vec::new())),
            }
            if let Some(event) = row.event.into_event()
                && let Some((_, _, events)) = by_account.last_mut()
            {
                events.push(Arc::new(event.into()));
            }
        }
        let mut state = self.state();
        for (account, last, events) in by_account {
            // Gone if its last stream closed meanwhile; a new feed starts after these anyway.
            if let Some(feed) = state.feeds.get_mut(&account)
                && last > feed.seen
            {
                feed.seen = last;
                if !events.is_empty() {
                    // No receiver is no error: the streams are closing.
                    let _ = feed.sender.send(events.into());
                }
            }
        }
    }

    /// The distinct keys and console sessions of open streams.
    fn holders(&self) -> (Vec<i64>, Vec<Vec<u8>>) {
        let state = self.state();
        let holders: HashSet<&Holder> = state.streams.values().map(|o| &o.holder).collect();
        let mut keys = Vec::new();
        let mut sessions = Vec::new();
        for holder in holders {
            match holder {
                Holder::Key(id) => keys.push(*id),
                Holder::Session(hash) => sessions.push(hash.clone()),
            }
        }
        (keys, sessions)
    }

    /// Ends the streams of holders not in `live` that were asked about.
    fn end_unless_live(&self, asked: &(Vec<i64>, Vec<Vec<u8>>), live: (Vec<i64>, Vec<Vec<u8>>)) {
        let dead: HashSet<Holder> = asked
            .0
            .iter()
            .filter(|id| !live.0.contains(id))
            .map(|id| Holder::Key(*id))
            .chain(
                asked
                    .1
                    .iter()
                    .filter(|hash| !live.1.contains(hash))
                    .map(|hash| Holder::Session(hash.clone())),
            )
            .collect();
        if dead.is_empty() {
            return;
        }
        let state = self.state();
        for open in state.streams.values().filter(|o| dead.contains(&o.holder)) {
            let _ = open.end.send(true);
        }
    }

    /// The poller: sleeps while no stream is open; otherwise looks every [`POLL`] for new
    /// events of the streams' accounts, and every [`LIVENESS_EVERY`] at their holders. On a
    /// connection of its own, so that a busy pool does not delay the streams. Runs until
    /// dropped, and then ends every stream.
    pub async fn run(self, database_url: String) {
        struct EndAll(EventHub);
        impl Drop for EndAll {
            fn drop(&mut self) {
                self.0.shut_down();
            }
        }
        let _end_all = EndAll(self.clone());
        let mut conn: Option<AsyncPgConnection> = None;
        let mut checked = Instant::now();
        loop {
            let (accounts, seen) = loop {
                let opened = self.inner.opened.notified();
                let mut opened = std::pin::pin!(opened);
                opened.as_mut().enable();
                let positions = self.positions();
                if !positions.0.is_empty() {
                    break positions;
                }
                // Nothing to watch: give the connection back to PostgreSQL, and sleep.
                conn = None;
                opened.await;
            };
            let connection = match conn.as_mut() {
                Some(connection) => connection,
                None => match db::establish(&database_url, &database_url).await {
                    Ok(connection) => conn.insert(connection),
                    Err(error) => {
                        tracing::warn!(error = %format!("{error:#}"), "event streams cannot reach the database");
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue;
                    }
                },
            };
            let more = match self.poll(connection, &accounts, &seen).await {
                Ok(more) => more,
                Err(error) => {
                    tracing::warn!(%error, "could not read new events");
                    conn = None;
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            };
            if checked.elapsed() >= LIVENESS_EVERY {
                checked = Instant::now();
                if let Some(connection) = conn.as_mut()
                    && let Err(error) = self.check_holders(connection).await
                {
                    tracing::warn!(%error, "could not check the event streams' keys and sessions");
                    conn = None;
                }
            }
            if !more {
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// One look; whether an account had more than one batch waiting.
    async fn poll(
        &self,
        conn: &mut AsyncPgConnection,
        accounts: &[i64],
        seen: &[i64],
    ) -> diesel::QueryResult<bool> {
        self.count(Statement::Poll);
        let rows = event::after_each(conn, accounts, seen, POLL_BATCH).await?;
        if rows.is_empty() {
            return Ok(false);
        }
        // Some events commit without waiting for the disk; none is sent before it is there,
        // for one lost in a crash would give its id to another.
        self.count(Statement::Durable);
        db::make_durable(conn).await?;
        let mut per_account: HashMap<i64, i64> = HashMap::new();
        for row in &rows {
            *per_account.entry(row.account_id).or_default() += 1;
        }
        let more = per_account.values().any(|n| *n >= POLL_BATCH);
        self.publish(rows);
        Ok(more)
    }

    async fn check_holders(&self, conn: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
        let asked = self.holders();
        let mut live = (Vec::new(), Vec::new());
        if !asked.0.is_empty() {
            self.count(Statement::Liveness);
            live.0 = api_key::live_among(conn, &asked.0).await?;
        }
        if !asked.1.is_empty() {
            self.count(Statement::Liveness);
            live.1 = console_session::live_among(conn, &asked.1).await?;
        }
        self.end_unless_live(&asked, live);
        Ok(())
    }
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub")
            .field("open_streams", &self.open_streams())
            .finish_non_exhaustive()
    }
}

/// An open stream's place in the hub: its channel, and its end. Dropped, it closes.
#[derive(Debug)]
pub struct Subscription {
    hub: EventHub,
    id: u64,
    account_id: i64,
    receiver: broadcast::Receiver<Batch>,
    /// Where the feed was when the stream opened: the channel has every event after it.
    seen: i64,
    ended: watch::Receiver<bool>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = self.hub.state();
        state.streams.remove(&self.id);
        if let Entry::Occupied(mut feed) = state.feeds.entry(self.account_id) {
            feed.get_mut().streams -= 1;
            if feed.get().streams == 0 {
                feed.remove();
            }
        }
        metrics::event_streams_open(state.streams.len());
    }
}

impl EventFilter {
    fn passes(&self, event: &Event) -> bool {
        self.assistant_id.is_none_or(|id| id == event.assistant_id)
            && self
                .conversation_id
                .is_none_or(|id| id == event.conversation_id)
    }
}

/// The account's events after `after_id` that pass `filter`, in order, until the stream is
/// ended (its holder's end, or the server's): what is stored first, then the new ones as the
/// poller hands them over. Each item holds every event ready at once (never none), so that a
/// stream writes a poller tick's events in one go, not one by one.
pub fn stream(
    pool: DbPool,
    subscription: Subscription,
    after_id: i64,
    filter: EventFilter,
) -> impl Stream<Item = Vec<Arc<Streamed>>> {
    let catch_up_to = (after_id < subscription.seen).then_some(subscription.seen);
    let reader = Reader {
        pool,
        sub: subscription,
        cursor: after_id,
        filter,
        ready: Vec::new(),
        catch_up_to,
    };
    futures::stream::unfold(reader, |mut reader| async move {
        let batch = reader.next_batch().await?;
        Some((batch, reader))
    })
}

/// One stream's place in the account's events.
struct Reader {
    pool: DbPool,
    sub: Subscription,
    /// The last event sent or passed over.
    cursor: i64,
    filter: EventFilter,
    ready: Vec<Arc<Streamed>>,
    /// Read the table up to here before taking from the channel again.
    catch_up_to: Option<i64>,
}

/// The stream was ended (its holder's end, or the server's).
struct Ended;

impl Reader {
    /// The next events to send, all that are ready; `None` once the stream is ended.
    async fn next_batch(&mut self) -> Option<Vec<Arc<Streamed>>> {
        loop {
            if *self.sub.ended.borrow() {
                return None;
            }
            if !self.ready.is_empty() {
                return Some(std::mem::take(&mut self.ready));
            }
            let step = match self.catch_up_to {
                Some(up_to) => self.catch_up(up_to).await,
                None => self.receive().await,
            };
            if step.is_err() {
                return None;
            }
        }
    }

    /// Reads a page of the stored events up to `up_to` (after a pause if that fails).
    async fn catch_up(&mut self, up_to: i64) -> Result<(), Ended> {
        if self.cursor >= up_to {
            self.catch_up_to = None;
            return Ok(());
        }
        let read = read_after(
            &self.pool,
            &self.sub.hub,
            self.sub.account_id,
            (self.cursor, up_to),
            self.filter,
        );
        let read = tokio::select! {
            read = read => read,
            _ = self.sub.ended.wait_for(|ended| *ended) => return Err(Ended),
        };
        match read {
            Ok((events, full)) => {
                match full {
                    Some(last) => self.cursor = last,
                    // Everything up to `up_to` that passes is read: pass over the rest.
                    None => {
                        self.cursor = up_to;
                        self.catch_up_to = None;
                    }
                }
                self.ready.extend(events);
            }
            Err(error) => {
                tracing::warn!(%error, "could not read events");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_PAUSE) => {}
                    _ = self.sub.ended.wait_for(|ended| *ended) => return Err(Ended),
                }
            }
        }
        Ok(())
    }

    /// Takes what the poller hands over next; a stream that fell behind reads the table.
    async fn receive(&mut self) -> Result<(), Ended> {
        let received = tokio::select! {
            received = self.sub.receiver.recv() => received,
            _ = self.sub.ended.wait_for(|ended| *ended) => return Err(Ended),
        };
        match received {
            Ok(batch) => {
                for streamed in batch.iter() {
                    if streamed.event.id <= self.cursor {
                        continue;
                    }
                    self.cursor = streamed.event.id;
                    if self.filter.passes(&streamed.event) {
                        self.ready.push(streamed.clone());
                    }
                }
            }
            // Batches were dropped for this stream: read them from the table.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                self.catch_up_to = self.sub.hub.seen(self.sub.account_id);
            }
            Err(broadcast::error::RecvError::Closed) => return Err(Ended),
        }
        Ok(())
    }
}

/// How long events are kept: a stream or a webhook may resume from any of them.
pub const RETENTION_DAYS: i32 = 30;

/// Deletes events older than [`RETENTION_DAYS`].
pub async fn purge_old(pool: &DbPool) -> anyhow::Result<()> {
    let mut conn = pool.get().await?;
    let purged = event::purge_older_than(&mut conn, RETENTION_DAYS).await?;
    if purged > 0 {
        tracing::info!(purged, "purged old events");
    }
    Ok(())
}

/// A stream's catch-up: the next batch in `range` that passes `filter` (events of types this
/// build does not know are left out), and the last row's id if the batch was full (more may
/// follow it).
async fn read_after(
    pool: &DbPool,
    hub: &EventHub,
    account_id: i64,
    range: (i64, i64),
    filter: EventFilter,
) -> anyhow::Result<(Vec<Arc<Streamed>>, Option<i64>)> {
    let mut conn = pool.get().await?;
    hub.count(Statement::CatchUp);
    let rows = event::in_range(&mut conn, account_id, range, filter, BATCH).await?;
    if !rows.is_empty() {
        hub.count(Statement::Durable);
        db::make_durable(&mut conn).await?;
    }
    let full = (rows.len() as i64 == BATCH).then(|| rows.last().map(|r| r.id));
    Ok((
        rows.into_iter()
            .filter_map(|r| r.into_event())
            .map(|event| Arc::new(event.into()))
            .collect(),
        full.flatten(),
    ))
}
