//! Mail in by IMAP: the bridge signs in to the mailbox, fetches what is new by UID, and waits
//! for more with `IDLE` (RFC 2177), or, where the server has no `IDLE` or
//! `ANYREPLY_EMAIL_IMAP_IDLE=false`, by asking again every `ANYREPLY_EMAIL_POLL_SECONDS`.
//! Between mails it sleeps in the server's `IDLE`: a quiet mailbox costs nothing.
//!
//! Mails are fetched with `BODY.PEEK[]`, so their `\Seen` flags stay the people's. How far the
//! mailbox is read is saved only up to the oldest mail still being answered ([`Watermark`]):
//! after a crash, the mails in flight are fetched again, and the handled-mail record keeps any
//! from being answered twice.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_imap::extensions::idle::IdleResponse;
use async_imap::{Client, Session};
use futures::TryStreamExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::state::{ReadUpTo, UidCursor};
use super::tls::{self, Connection, Security, Trust};

/// The largest mail fetched; larger ones (attachments, mostly) are passed over and logged.
pub const MAX_BYTES: u32 = 25 * 1024 * 1024;

/// How long one `IDLE` lasts before it is renewed: under the 29 minutes after which RFC 2177
/// lets a server sign a client out.
const IDLE_FOR: Duration = Duration::from_secs(25 * 60);

/// How far back the unread mail is answered when the mailbox is read for the first time (or
/// again, after its `UIDVALIDITY` changed).
const FIRST_READ_DAYS: i64 = 7;

/// The longest pause before signing in again after a failure.
const MOST_BACKOFF: Duration = Duration::from_secs(300);

/// `ANYREPLY_EMAIL_IMAP_*`.
#[derive(Debug, Clone)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub user: String,
    pub password: SecretString,
    pub mailbox: String,
    /// `false`: poll even where the server offers `IDLE`.
    pub idle: bool,
    pub poll: Duration,
}

type ImapSession = Session<Box<dyn Connection>>;

/// A fetched mail being answered; [`Fetched::finish`] when all it sends is sent.
#[derive(Debug)]
pub struct Fetched {
    uid: u32,
    watermark: Arc<Watermark>,
}

impl Fetched {
    pub async fn finish(self) {
        self.watermark.done(self.uid).await;
    }
}

/// How far the mailbox is handled: every UID up to the oldest still in flight.
#[derive(Debug)]
pub struct Watermark {
    cursor: UidCursor,
    state: Mutex<Marks>,
}

#[derive(Debug, Default)]
struct Marks {
    /// The mailbox's `UIDVALIDITY`, once it is being read.
    validity: Option<u32>,
    /// The highest UID fetched (or known to be old, on a first read).
    highest: u32,
    in_flight: BTreeSet<u32>,
    saved: Option<ReadUpTo>,
}

impl Watermark {
    fn new(cursor: UidCursor, saved: Option<ReadUpTo>) -> Self {
        let marks = Marks {
            saved,
            ..Marks::default()
        };
        Self {
            cursor,
            state: Mutex::new(marks),
        }
    }

    /// Whether the mailbox of `validity` was read before (in this run or a saved one); when
    /// not (or it was another mailbox, its UIDs meaningless now), nothing is in flight.
    async fn resume(&self, validity: u32) -> bool {
        let mut marks = self.state.lock().await;
        if marks.validity == Some(validity) {
            return true;
        }
        let saved = marks.saved.filter(|saved| saved.validity == validity);
        *marks = Marks {
            validity: Some(validity),
            highest: saved.map_or(0, |saved| saved.uid),
            in_flight: BTreeSet::new(),
            saved: marks.saved,
        };
        saved.is_some()
    }

    /// Everything up to `uid` is old: not to be answered (a first read's start).
    async fn old_up_to(&self, uid: u32) {
        let mut marks = self.state.lock().await;
        marks.highest = marks.highest.max(uid);
        self.save(&mut marks).await;
    }

    async fn fetched(self: &Arc<Self>, uid: u32) -> Fetched {
        let mut marks = self.state.lock().await;
        marks.highest = marks.highest.max(uid);
        marks.in_flight.insert(uid);
        Fetched {
            uid,
            watermark: self.clone(),
        }
    }

    /// `uid` is handled.
    async fn done(&self, uid: u32) {
        let mut marks = self.state.lock().await;
        marks.in_flight.remove(&uid);
        self.save(&mut marks).await;
    }

    /// Saves the mark when it moved: up to the oldest mail in flight, else the highest.
    async fn save(&self, marks: &mut Marks) {
        let Some(validity) = marks.validity else {
            return;
        };
        let uid = match marks.in_flight.first() {
            Some(oldest) => oldest - 1,
            None => marks.highest,
        };
        let read = ReadUpTo { validity, uid };
        if marks.saved == Some(read) {
            return;
        }
        match self.cursor.save(read).await {
            Ok(()) => marks.saved = Some(read),
            Err(error) => tracing::error!(
                error = format!("{error:#}"),
                "could not save how far the mailbox is read; after a restart its mails are fetched again (and not answered twice)"
            ),
        }
    }

    async fn highest(&self) -> u32 {
        self.state.lock().await.highest
    }
}

/// Follows the mailbox until `stop`, handing each new mail to `accept`; signs in again after
/// a failure, waiting longer each time (up to 5 minutes).
pub async fn follow<F, Fut>(
    settings: ImapSettings,
    trust: Trust,
    cursor: UidCursor,
    accept: F,
    stop: CancellationToken,
) where
    F: Fn(Vec<u8>, Fetched) -> Fut,
    Fut: Future<Output = ()>,
{
    let saved = match cursor.load().await {
        Ok(saved) => saved,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "reading the mailbox afresh");
            None
        }
    };
    let watermark = Arc::new(Watermark::new(cursor, saved));
    let mut backoff = Duration::from_secs(1);
    loop {
        let result = tokio::select! {
            result = session(&settings, &trust, &watermark, &accept, &stop) => result,
            () = stop.cancelled() => return,
        };
        match result {
            Ok(()) => return,
            Err(error) => tracing::error!(
                error = format!("{error:#}"),
                host = %settings.host,
                retry_in = ?backoff,
                "the mailbox could not be read; trying again"
            ),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(MOST_BACKOFF);
    }
}

/// One signed-in session: reads what is new, then waits and reads again, until `stop`.
async fn session<F, Fut>(
    settings: &ImapSettings,
    trust: &Trust,
    watermark: &Arc<Watermark>,
    accept: &F,
    stop: &CancellationToken,
) -> anyhow::Result<()>
where
    F: Fn(Vec<u8>, Fetched) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut session = tokio::time::timeout(Duration::from_secs(60), sign_in(settings, trust))
        .await
        .context("signing in took over a minute")??;
    let idle = settings.idle
        && session
            .capabilities()
            .await
            .context("CAPABILITY failed")?
            .has_str("IDLE");
    let mailbox = session
        .select(&settings.mailbox)
        .await
        .with_context(|| format!("cannot open the mailbox {:?}", settings.mailbox))?;
    let validity = mailbox.uid_validity.unwrap_or(0);
    if !watermark.resume(validity).await {
        first_read(&mut session, watermark, mailbox.uid_next, accept).await?;
    }
    tracing::info!(mailbox = %settings.mailbox, idle, "reading the mailbox");
    loop {
        fetch_new(&mut session, watermark, accept).await?;
        session = if idle {
            match wait_idle(session, stop).await? {
                Some(session) => session,
                None => return Ok(()),
            }
        } else {
            tokio::select! {
                () = tokio::time::sleep(settings.poll) => {}
                () = stop.cancelled() => return Ok(()),
            }
            session.noop().await.context("NOOP failed")?;
            session
        };
        while session.unsolicited_responses.try_recv().is_ok() {}
    }
}

/// Connects and signs in, encrypted as `settings.security` says.
async fn sign_in(settings: &ImapSettings, trust: &Trust) -> anyhow::Result<ImapSession> {
    let host = &settings.host;
    let tcp: Box<dyn Connection> = Box::new(tls::connect(host, settings.port).await?);
    let connector = trust.connector()?;
    let stream = match settings.security {
        Security::Tls => tls::encrypt(&connector, host, tcp).await?,
        Security::StartTls | Security::Plain => tcp,
    };
    let mut client = Client::new(stream);
    client
        .read_response()
        .await
        .context("reading the greeting")?
        .context("the server closed the connection before its greeting")?;
    if settings.security == Security::StartTls {
        client
            .run_command_and_check_ok("STARTTLS", None)
            .await
            .context("the server refused STARTTLS")?;
        let encrypted = tls::encrypt(&connector, host, client.into_inner()).await?;
        client = Client::new(encrypted);
    }
    client
        .login(&settings.user, settings.password.expose_secret())
        .await
        .map_err(|(error, _)| error)
        .with_context(|| {
            format!(
                "{host} refused ANYREPLY_EMAIL_IMAP_USER {:?} and its password",
                settings.user
            )
        })
}

/// A mailbox read for the first time: the unread mail of the last week is answered, the rest
/// is old.
async fn first_read<F, Fut>(
    session: &mut ImapSession,
    watermark: &Arc<Watermark>,
    uid_next: Option<u32>,
    accept: &F,
) -> anyhow::Result<()>
where
    F: Fn(Vec<u8>, Fetched) -> Fut,
    Fut: Future<Output = ()>,
{
    let since = chrono::Utc::now() - chrono::Duration::days(FIRST_READ_DAYS);
    let unread = session
        .uid_search(format!("UNSEEN SINCE {}", since.format("%d-%b-%Y")))
        .await
        .context("SEARCH failed")?;
    let mut unread: Vec<u32> = unread.into_iter().collect();
    unread.sort_unstable();
    let old_up_to = uid_next.map_or(0, |next| next.saturating_sub(1));
    tracing::info!(
        unread = unread.len(),
        "reading the mailbox for the first time: answering its unread mail of the last week"
    );
    for uid in unread {
        fetch_one(session, watermark, uid, accept).await?;
    }
    watermark.old_up_to(old_up_to).await;
    Ok(())
}

/// Fetches and hands over every mail after the watermark's highest.
async fn fetch_new<F, Fut>(
    session: &mut ImapSession,
    watermark: &Arc<Watermark>,
    accept: &F,
) -> anyhow::Result<()>
where
    F: Fn(Vec<u8>, Fetched) -> Fut,
    Fut: Future<Output = ()>,
{
    let after = watermark.highest().await;
    // `n:*` always names the last mail, even when its UID is below n: filtered below.
    let sizes: Vec<(u32, u32)> = session
        .uid_fetch(
            format!("{}:*", after.saturating_add(1)),
            "(UID RFC822.SIZE)",
        )
        .await
        .context("FETCH failed")?
        .try_filter_map(
            |fetch| async move { Ok(fetch.uid.map(|uid| (uid, fetch.size.unwrap_or(0)))) },
        )
        .try_collect()
        .await
        .context("FETCH failed")?;
    let mut new: Vec<(u32, u32)> = sizes.into_iter().filter(|(uid, _)| *uid > after).collect();
    new.sort_unstable();
    for (uid, size) in new {
        if size > MAX_BYTES {
            tracing::warn!(uid, size, "a mail over 25 MB is not read");
            watermark.fetched(uid).await.finish().await;
            continue;
        }
        fetch_one(session, watermark, uid, accept).await?;
    }
    Ok(())
}

/// Fetches mail `uid` and hands it over.
async fn fetch_one<F, Fut>(
    session: &mut ImapSession,
    watermark: &Arc<Watermark>,
    uid: u32,
    accept: &F,
) -> anyhow::Result<()>
where
    F: Fn(Vec<u8>, Fetched) -> Fut,
    Fut: Future<Output = ()>,
{
    let fetches: Vec<_> = session
        .uid_fetch(uid.to_string(), "(UID BODY.PEEK[])")
        .await
        .context("FETCH failed")?
        .try_collect()
        .await
        .context("FETCH failed")?;
    let body = fetches
        .iter()
        .find(|fetch| fetch.uid == Some(uid))
        .and_then(|fetch| fetch.body())
        .map(<[u8]>::to_vec);
    let fetched = watermark.fetched(uid).await;
    match body {
        Some(raw) => accept(raw, fetched).await,
        // Expunged meanwhile.
        None => fetched.finish().await,
    }
    Ok(())
}

/// Waits in `IDLE` until the mailbox changes (the session is returned) or `stop` (`None`).
async fn wait_idle(
    session: ImapSession,
    stop: &CancellationToken,
) -> anyhow::Result<Option<ImapSession>> {
    let mut idle = session.idle();
    idle.init().await.context("IDLE failed")?;
    let stopped = {
        let (wait, interrupt) = idle.wait_with_timeout(IDLE_FOR);
        tokio::select! {
            response = wait => {
                match response.context("IDLE failed")? {
                    IdleResponse::NewData(_) | IdleResponse::Timeout | IdleResponse::ManualInterrupt => false,
                }
            }
            () = stop.cancelled() => {
                drop(interrupt);
                true
            }
        }
    };
    let mut session = idle.done().await.context("ending IDLE failed")?;
    if stopped {
        let _ = session.logout().await;
        return Ok(None);
    }
    Ok(Some(session))
}
