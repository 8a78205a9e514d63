//! Processes documents in the background: reads each (an upload's bytes, or a website's
//! pages), cuts it into passages and stores them. One document at a time per process, leased
//! so that a document left `processing` by a crash is taken up again by any process once its
//! lease runs out. Asleep while nothing is `processing`: woken by the API when a document is
//! added, or by the end of another process's lease.

use std::sync::Arc;
use std::time::Duration;

use anyreply_core::limits::MAX_PASSAGES_PER_DOCUMENT;
use anyreply_core::wire::DocumentType;
use tokio::sync::Notify;

use super::chunk::{self, Passage};
use super::crawl::{self, PageKind, Site};
use super::embed;
use super::extract::{self, Format};
use crate::config::Settings;
use crate::db::{DbConn, DbPool, PoolError};
use crate::models::knowledge::{self, Claimed, NewPassage};
use crate::models::knowledge_embedding::{self, Vectors};
use crate::tools::guard::{AddressPolicy, guarded_client, system_lookup};

/// A claim's lease; renewed every third of it while the document is processed.
const LEASE: Duration = Duration::from_secs(60);
/// Pause after the database failed, before the next look.
const RETRY_PAUSE: Duration = Duration::from_secs(5);
/// Claims after which a document that keeps interrupting its process (killed while reading
/// it) fails instead.
const MAX_ATTEMPTS: i32 = 3;
/// Longest wait for one page of a website.
const PAGE_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause before embedding passages again after the embedding model failed.
const BACKFILL_RETRY: Duration = Duration::from_secs(60);

/// Wakes this process's worker. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    /// A document was added or must be processed again.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// What the worker works with.
#[derive(Clone)]
pub struct Worker {
    pub pool: DbPool,
    pub settings: Arc<Settings>,
    pub embeddings: embed::Embeddings,
    pub wake: Wake,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl Worker {
    async fn db(&self) -> Result<DbConn, PoolError> {
        self.pool.get().await
    }
}

/// Runs until dropped.
pub async fn run(worker: Worker) {
    let client = match guarded_client(
        Arc::new(worker.settings.outbound_allowed_hosts.clone()),
        system_lookup(),
        Some(PAGE_TIMEOUT),
    ) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "the knowledge worker cannot build its HTTP client");
            return;
        }
    };
    let policy = worker.settings.outbound_allowed_hosts.clone();
    loop {
        let woken = worker.wake.0.notified();
        let mut woken = std::pin::pin!(woken);
        woken.as_mut().enable();
        let next = match work_through(&worker, &client, &policy).await {
            Ok(next) => match backfill(&worker).await {
                Ok(true) => Some(Duration::ZERO),
                Ok(false) => next,
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "could not embed passages; trying again in a minute");
                    Some(next.map_or(BACKFILL_RETRY, |due| due.min(BACKFILL_RETRY)))
                }
            },
            Err(error) => {
                tracing::warn!(%error, "the knowledge worker could not reach the database");
                Some(RETRY_PAUSE)
            }
        };
        match next {
            Some(due) => {
                tokio::select! {
                    () = woken => {}
                    () = tokio::time::sleep(due) => {}
                }
            }
            None => woken.await,
        }
    }
}

/// Processes every document that waits; then how long until one is due (`None`: none is
/// `processing`).
async fn work_through(
    worker: &Worker,
    client: &reqwest::Client,
    policy: &AddressPolicy,
) -> anyhow::Result<Option<Duration>> {
    loop {
        let claimed = {
            let mut conn = worker.db().await?;
            knowledge::claim_next(&mut conn, LEASE).await?
        };
        let Some(claimed) = claimed else {
            let mut conn = worker.db().await?;
            return Ok(knowledge::next_due_in(&mut conn).await?);
        };
        let outcome = if claimed.attempts > MAX_ATTEMPTS {
            Err(format!(
                "processing was interrupted {MAX_ATTEMPTS} times; the document may be too large or malformed"
            ))
        } else {
            let work = async {
                let passages = read(client, policy, &claimed).await?;
                let vectors = embed(worker, claimed.id, &passages).await;
                Ok((passages, vectors))
            };
            renewing(worker, &claimed, work).await
        };
        let mut conn = worker.db().await?;
        let stored = match outcome {
            Ok((passages, vectors)) => {
                if let (Some(embedder), Some(vectors)) = (worker.embeddings.active(), &vectors) {
                    embedder.ensure_index(&mut conn, vectors.dims()).await?;
                }
                knowledge::store_passages(&mut conn, &claimed, &passages, vectors.as_ref()).await?
            }
            Err(reason) => knowledge::fail(&mut conn, &claimed, &reason).await?,
        };
        if stored {
            tracing::info!(document = claimed.id, "knowledge document processed");
        }
    }
}

/// The passages' vectors, when embeddings are on. A failure leaves the document searchable
/// by its words, and the backfill embeds its passages later.
async fn embed(worker: &Worker, document: i64, passages: &[NewPassage]) -> Option<Vectors> {
    let embedder = worker.embeddings.active()?;
    let texts: Vec<String> = passages
        .iter()
        .map(|p| embed::passage_text(p.heading.as_deref(), &p.body))
        .collect();
    match embedder.embed(&texts).await {
        Ok(vectors) => Some(vectors),
        Err(error) => {
            tracing::warn!(
                document,
                %error,
                "the embedding model could not embed a document's passages; it is searched by its words until they are"
            );
            None
        }
    }
}

/// Embeds one batch of passages that have no vector of the current model; whether there
/// may be more.
async fn backfill(worker: &Worker) -> anyhow::Result<bool> {
    let Some(embedder) = worker.embeddings.active() else {
        return Ok(false);
    };
    let missing = {
        let mut conn = worker.db().await?;
        knowledge_embedding::missing(&mut conn, embedder.model(), embed::BATCH as i64).await?
    };
    if missing.is_empty() {
        return Ok(false);
    }
    let texts: Vec<String> = missing
        .iter()
        .map(|p| embed::passage_text(p.heading.as_deref(), &p.body))
        .collect();
    let vectors = embedder.embed(&texts).await?;
    let ids: Vec<i64> = missing.iter().map(|p| p.id).collect();
    let mut conn = worker.db().await?;
    embedder.ensure_index(&mut conn, vectors.dims()).await?;
    knowledge_embedding::store(&mut conn, &ids, &vectors).await?;
    tracing::info!(passages = ids.len(), "embedded passages");
    Ok(missing.len() == embed::BATCH)
}

/// Runs `work` while renewing the claim's lease.
async fn renewing<T>(worker: &Worker, claimed: &Claimed, work: impl Future<Output = T>) -> T {
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return done,
            () = tokio::time::sleep(LEASE / 3) => {
                if let Ok(mut conn) = worker.db().await
                    && let Err(error) = knowledge::renew(&mut conn, claimed, LEASE).await
                {
                    tracing::warn!(%error, "could not renew a knowledge document's lease");
                }
            }
        }
    }
}

/// The document's passages, or why it cannot be read, in words its owner can act on.
async fn read(
    client: &reqwest::Client,
    policy: &AddressPolicy,
    claimed: &Claimed,
) -> Result<Vec<NewPassage>, String> {
    let kind = DocumentType::parse(&claimed.kind).unwrap_or(DocumentType::Txt);
    let passages = match kind {
        DocumentType::Website => read_site(client, policy, claimed).await?,
        DocumentType::Pdf | DocumentType::Txt | DocumentType::Docx => {
            let format = match kind {
                DocumentType::Pdf => Format::Pdf,
                DocumentType::Docx => Format::Docx,
                _ => Format::Text,
            };
            let bytes = claimed.content.clone().unwrap_or_default();
            let format = if format == Format::Text && looks_like_html(&claimed.name, &bytes) {
                Format::Html
            } else {
                format
            };
            // Parsing a large PDF takes a while: off the async threads.
            let extracted = tokio::task::spawn_blocking(move || extract::extract(format, &bytes))
                .await
                .map_err(|_| "the document could not be read".to_owned())?
                .map_err(|error| error.to_string())?;
            chunk::passages(&extracted)
                .into_iter()
                .map(|passage| stored(passage, None))
                .collect()
        }
    };
    if passages.is_empty() {
        return Err("the document has no text".to_owned());
    }
    if passages.len() > MAX_PASSAGES_PER_DOCUMENT {
        return Err(format!(
            "the document is too long: {} passages, at most {MAX_PASSAGES_PER_DOCUMENT}; split it into smaller documents",
            passages.len()
        ));
    }
    Ok(passages)
}

async fn read_site(
    client: &reqwest::Client,
    policy: &AddressPolicy,
    claimed: &Claimed,
) -> Result<Vec<NewPassage>, String> {
    let start = claimed
        .url
        .iter()
        .chain(&claimed.links)
        .filter_map(|u| url::Url::parse(u).ok())
        .collect();
    let site = Site {
        start,
        relative_links_limit: claimed.relative_links_limit.unwrap_or(10).clamp(1, 50) as usize,
    };
    let crawled = crawl::crawl(client, policy, &site)
        .await
        .map_err(|error| error.to_string())?;
    let mut passages = Vec::new();
    for page in crawled.pages {
        let format = match page.kind {
            PageKind::Html => Format::Html,
            PageKind::Text => Format::Text,
        };
        // A page without text (a redirect stub, an image gallery) adds nothing.
        let Ok(extracted) = extract::extract(format, &page.body) else {
            continue;
        };
        let url = page.url.to_string();
        passages.extend(
            chunk::passages(&extracted)
                .into_iter()
                .map(|passage| stored(passage, Some(url.clone()))),
        );
    }
    Ok(passages)
}

/// Whether a `txt` upload is an HTML page: named `*.html` or `*.htm`, or starting (after a
/// byte-order mark, whitespace and an XML declaration, as XHTML pages have) with
/// `<!doctype html` or `<html`. Read as Markdown, its tags and scripts would be its text.
fn looks_like_html(name: &str, bytes: &[u8]) -> bool {
    let name = name.to_ascii_lowercase();
    if name.ends_with(".html") || name.ends_with(".htm") {
        return true;
    }
    let mut start = bytes
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(bytes)
        .trim_ascii_start();
    if start.starts_with(b"<?xml")
        && let Some(end) = start.windows(2).position(|w| w == b"?>")
    {
        start = start[end + 2..].trim_ascii_start();
    }
    // The tag's name must end there: `<htmlish` is not HTML.
    let starts_with = |prefix: &[u8]| {
        start.len() >= prefix.len()
            && start[..prefix.len()].eq_ignore_ascii_case(prefix)
            && start
                .get(prefix.len())
                .is_none_or(|next| next.is_ascii_whitespace() || *next == b'>')
    };
    starts_with(b"<!doctype html") || starts_with(b"<html")
}

fn stored(passage: Passage, url: Option<String>) -> NewPassage {
    NewPassage {
        heading: passage.heading.map(|h| h.replace('\0', "")),
        body: passage.text.replace('\0', ""),
        url,
        tokens: i32::try_from(passage.tokens).unwrap_or(i32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::looks_like_html;

    #[test]
    fn html_is_told_by_its_name_or_its_start() {
        assert!(looks_like_html("sql-createindex.HTML", b"plain"));
        assert!(looks_like_html("page.htm", b""));
        assert!(looks_like_html(
            "page",
            b"\xEF\xBB\xBF\n  <!DOCTYPE html><p>x"
        ));
        assert!(looks_like_html("page", b"<HTML lang=en>"));
        assert!(looks_like_html(
            "page",
            b"<?xml version=\"1.0\"?>\n<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0\">"
        ));
        assert!(!looks_like_html(
            "notes.md",
            b"# Notes\n\n<html> in a sentence"
        ));
        assert!(!looks_like_html("feed", b"<?xml version=\"1.0\"?><rss>"));
        assert!(!looks_like_html("notes.txt", b"<htmlish"));
    }
}
