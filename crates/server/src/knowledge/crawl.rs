//! Reads a business's website for its knowledge base. Crates: `scraper` finds the links (it
//! parses with html5ever, the HTML standard's algorithm that browsers follow, so broken markup
//! yields the links a visitor would see); `texting_robots` decides what robots.txt allows
//! (Google's matching rules, tested against millions of real robots.txt files). Requests go
//! through the server's guarded `reqwest` client, so every address, each redirect hop included,
//! passes the outbound guard.
//!
//! Like Famulor's "website" documents: every start URL is read, then the links found on those
//! pages that stay on the same site (scheme, host and port of the start URL they descend from),
//! breadth-first, until `relative_links_limit` more pages have been read.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use tokio::sync::OnceCell;
use tokio::time::Instant;
use url::{Origin, Url};

use crate::tools::guard::{AddressPolicy, literal_address, refused_in};

/// The most a page may weigh; a larger one is skipped, not cut (half a page would mislead).
pub const PAGE_LIMIT_BYTES: usize = 2 * 1024 * 1024;
/// Famulor's bound on `relative_links_limit`.
pub const MAX_RELATIVE_LINKS: usize = 50;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const CRAWL_DEADLINE: Duration = Duration::from_secs(3 * 60);
const MAX_REDIRECTS: usize = 5;
/// Across sites; requests to one origin go one at a time, to be a polite visitor.
const MAX_IN_FLIGHT: usize = 4;
/// Links waiting to be read: a page may list thousands, and at most 50 are read.
const MAX_QUEUED: usize = 1000;
/// Google reads the first 500 KiB of a robots.txt and ignores the rest.
const ROBOTS_LIMIT_BYTES: usize = 500 * 1024;
/// The token robots.txt groups are matched against (the client's User-Agent is `anyreply/x.y.z`).
const ROBOTS_AGENT: &str = "anyreply";

/// What to read: the document's `url` and/or `links`, and how many linked pages beyond them.
#[derive(Debug, Clone)]
pub struct Site {
    pub start: Vec<Url>,
    /// 1..=50 as Famulor; larger values read 50, 0 only the start URLs.
    pub relative_links_limit: usize,
}

#[derive(Debug, Clone)]
pub struct Page {
    /// Where the body came from: the address read, after any redirects.
    pub url: Url,
    pub kind: PageKind,
    pub body: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    Html,
    Text,
}

#[derive(Debug, Default)]
pub struct Crawl {
    pub pages: Vec<Page>,
    /// Addresses not read, each with a reason a person can read.
    pub skipped: Vec<(Url, String)>,
}

/// Nothing could be read; the message is one sentence a business owner can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrawlError(String);

impl std::fmt::Display for CrawlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CrawlError {}

/// Reads `site`: its start URLs, then same-site links breadth-first. Fails only when no start
/// URL could be read, with the reason of the first one; otherwise what failed is in `skipped`.
pub async fn crawl(
    client: &reqwest::Client,
    policy: &AddressPolicy,
    site: &Site,
) -> Result<Crawl, CrawlError> {
    let crawler = &Crawler {
        client,
        policy,
        robots: Mutex::default(),
    };
    let deadline = Instant::now() + CRAWL_DEADLINE;
    let mut frontier = Frontier::new(site);
    let mut pages = Vec::new();
    let mut in_flight = FuturesUnordered::new();
    loop {
        while in_flight.len() < MAX_IN_FLIGHT && Instant::now() < deadline {
            let Some(job) = frontier.take() else {
                break;
            };
            in_flight.push(async move {
                let result = tokio::time::timeout_at(deadline, crawler.fetch(&job))
                    .await
                    .unwrap_or(Err(Failure::Deadline));
                (job, result)
            });
        }
        let Some((job, result)) = in_flight.next().await else {
            break;
        };
        match result {
            Ok(fetched) => pages.extend(frontier.landed(&job, fetched)),
            Err(failure) => frontier.failed(job, failure),
        }
    }
    if Instant::now() >= deadline {
        frontier.out_of_time();
    }
    frontier.finish(pages)
}

/// What a crawl has still to read, and what it has read or failed to.
struct Frontier {
    queue: VecDeque<Job>,
    /// Every address ever queued or landed on, so each is read at most once.
    seen: HashSet<Url>,
    /// The addresses read.
    read: HashSet<Url>,
    /// Origins with a request in flight.
    busy: HashSet<Origin>,
    /// Links being read or read: never more than `limit`, so the limit holds exactly.
    links_taken: usize,
    limit: usize,
    failures: Vec<(Job, Failure)>,
}

impl Frontier {
    /// The start URLs, each once.
    fn new(site: &Site) -> Self {
        let mut frontier = Frontier {
            queue: VecDeque::new(),
            seen: HashSet::new(),
            read: HashSet::new(),
            busy: HashSet::new(),
            links_taken: 0,
            limit: site.relative_links_limit.min(MAX_RELATIVE_LINKS),
            failures: Vec::new(),
        };
        for (index, start) in site.start.iter().enumerate() {
            let url = without_fragment(start.clone());
            if frontier.seen.insert(url.clone()) {
                frontier.queue.push_back(Job {
                    site: url.origin(),
                    url,
                    start: Some(index),
                });
            }
        }
        frontier
    }

    /// The next job to start: the first queued whose site has no request in flight, a link
    /// only while the limit has room.
    fn take(&mut self) -> Option<Job> {
        loop {
            let next = self.queue.iter().position(|job| {
                !self.busy.contains(&job.site)
                    && (job.start.is_some() || self.links_taken < self.limit)
            });
            let job = self.queue.remove(next?)?;
            if self.read.contains(&job.url) {
                continue; // reached earlier through a redirect
            }
            self.busy.insert(job.site.clone());
            if job.start.is_none() {
                self.links_taken += 1;
            }
            return Some(job);
        }
    }

    /// Notes the page `job` fetched and queues its same-site links; the page, unless a
    /// redirect led to one read already.
    fn landed(&mut self, job: &Job, fetched: Fetched) -> Option<Page> {
        self.busy.remove(&job.site);
        self.seen.insert(fetched.url.clone());
        if !self.read.insert(fetched.url.clone()) {
            self.links_taken -= usize::from(job.start.is_none());
            return None;
        }
        if fetched.kind == PageKind::Html {
            for link in links(&fetched.url, &fetched.body) {
                if self.queue.len() >= MAX_QUEUED {
                    break;
                }
                if link.origin() == fetched.site && self.seen.insert(link.clone()) {
                    self.queue.push_back(Job {
                        url: link,
                        site: fetched.site.clone(),
                        start: None,
                    });
                }
            }
        }
        Some(Page {
            url: fetched.url,
            kind: fetched.kind,
            body: fetched.body,
        })
    }

    fn failed(&mut self, job: Job, failure: Failure) {
        self.busy.remove(&job.site);
        self.links_taken -= usize::from(job.start.is_none());
        self.failures.push((job, failure));
    }

    /// Names what the deadline left unread: start URLs, and the links that would have been
    /// read.
    fn out_of_time(&mut self) {
        let mut room = self.limit.saturating_sub(self.links_taken);
        for job in std::mem::take(&mut self.queue) {
            if job.start.is_some() || room > 0 {
                room -= usize::from(job.start.is_none());
                self.failures.push((job, Failure::Deadline));
            }
        }
    }

    /// The crawl, or, when no page was read, the failure of the first start URL.
    fn finish(self, pages: Vec<Page>) -> Result<Crawl, CrawlError> {
        if pages.is_empty() {
            let first = self
                .failures
                .iter()
                .filter_map(|(job, failure)| Some((job.start?, &job.url, failure)))
                .min_by_key(|(index, ..)| *index);
            return Err(CrawlError(first.map_or_else(
                || "no page could be read".to_owned(),
                |(_, url, failure)| failure.sentence(url),
            )));
        }
        let skipped = self
            .failures
            .into_iter()
            .map(|(job, failure)| (job.url, failure.to_string()))
            .collect();
        Ok(Crawl { pages, skipped })
    }
}

#[derive(Debug)]
struct Job {
    url: Url,
    /// The site its links must stay on.
    site: Origin,
    /// Its place among the start URLs; `None` for a followed link.
    start: Option<usize>,
}

struct Fetched {
    url: Url,
    /// A start URL redirected elsewhere makes the place it landed the site.
    site: Origin,
    kind: PageKind,
    body: Bytes,
}

enum Hop {
    Page(PageKind, Bytes),
    Redirect(Url),
}

/// What robots.txt says for one origin: `Ok(None)` allows everything; `Err` stops every page.
type Rules = Result<Option<texting_robots::Robot>, Failure>;

struct Crawler<'a> {
    client: &'a reqwest::Client,
    policy: &'a AddressPolicy,
    /// One robots.txt fetch per origin, shared by the requests waiting for it.
    robots: Mutex<HashMap<Origin, Arc<OnceCell<Rules>>>>,
}

impl Crawler<'_> {
    /// Reads a page, following up to five redirects, each hop checked like the first.
    async fn fetch(&self, job: &Job) -> Result<Fetched, Failure> {
        let mut url = job.url.clone();
        let mut site = job.site.clone();
        for _ in 0..=MAX_REDIRECTS {
            self.check_address(&url)?;
            self.check_robots(&url).await?;
            let hop = within_timeout(async {
                let response = self.get(&url).await?;
                if response.status().is_redirection() {
                    return Ok(Hop::Redirect(redirect_target(&url, &response)?));
                }
                if !response.status().is_success() {
                    return Err(Failure::Status(response.status()));
                }
                let kind = page_kind(&response)?;
                if response
                    .content_length()
                    .is_some_and(|length| length > PAGE_LIMIT_BYTES as u64)
                {
                    return Err(Failure::TooLarge);
                }
                match read_at_most(response, PAGE_LIMIT_BYTES).await? {
                    (body, false) => Ok(Hop::Page(kind, body)),
                    (_, true) => Err(Failure::TooLarge),
                }
            })
            .await?;
            match hop {
                Hop::Page(kind, body) => {
                    return Ok(Fetched {
                        url,
                        site,
                        kind,
                        body,
                    });
                }
                Hop::Redirect(next) => {
                    if next.origin() != site {
                        // A start URL often moves (http to https, to www.); a link that leaves
                        // the site is not the site's content.
                        if job.start.is_none() {
                            return Err(Failure::OffSite(next));
                        }
                        site = next.origin();
                    }
                    url = next;
                }
            }
        }
        Err(Failure::TooManyRedirects)
    }

    /// The resolver checks names; an address written in the URL never reaches it.
    fn check_address(&self, url: &Url) -> Result<(), Failure> {
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(Failure::Scheme);
        }
        match literal_address(url) {
            Some(ip) => self
                .policy
                .check_ip(ip)
                .map_err(|refused| Failure::Refused(refused.to_string())),
            None => Ok(()),
        }
    }

    async fn get(&self, url: &Url) -> Result<reqwest::Response, Failure> {
        self.client
            .get(url.clone())
            .send()
            .await
            .map_err(|error| transport_failure(url, &error))
    }

    async fn check_robots(&self, url: &Url) -> Result<(), Failure> {
        let cell = self
            .robots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(url.origin())
            .or_default()
            .clone();
        match cell.get_or_init(|| self.read_robots(url)).await {
            Err(failure) => Err(failure.clone()),
            Ok(Some(robot)) if !robot.allowed(url.as_str()) => {
                Err(Failure::RobotsForbid { host: host_of(url) })
            }
            Ok(_) => Ok(()),
        }
    }

    /// The rules for `page`'s origin, read as Google reads them: 4xx means there are none; 429
    /// and 5xx mean the site is in trouble and nothing is read (a robots.txt that fails may be
    /// hiding a Disallow); a site that cannot be reached cannot serve its pages either; more
    /// than five redirects count as no robots.txt.
    async fn read_robots(&self, page: &Url) -> Rules {
        let Ok(mut url) = page.join("/robots.txt") else {
            return Ok(None);
        };
        for _ in 0..=MAX_REDIRECTS {
            self.check_address(&url)?;
            let answer = within_timeout(async {
                let response = self.get(&url).await?;
                let status = response.status();
                if status.is_redirection() {
                    return Ok(Err(redirect_target(&url, &response)));
                }
                if status.is_success() {
                    // Beyond the first 500 KiB is ignored, not refused.
                    let (body, _) = read_at_most(response, ROBOTS_LIMIT_BYTES).await?;
                    return Ok(Ok(Some(body)));
                }
                if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                    return Err(Failure::RobotsUnavailable {
                        host: host_of(page),
                        status,
                    });
                }
                Ok(Ok(None))
            })
            .await?;
            match answer {
                // A file the parser cannot make sense of gives no rules, as unknown lines do.
                Ok(Some(body)) => return Ok(texting_robots::Robot::new(ROBOTS_AGENT, &body).ok()),
                Ok(None) => return Ok(None),
                Err(Ok(next)) => url = next,
                Err(Err(_)) => return Ok(None),
            }
        }
        Ok(None)
    }
}

/// Why an address was not read.
#[derive(Debug, Clone)]
enum Failure {
    Scheme,
    Refused(String),
    Connect { host: String, detail: String },
    Timeout,
    Unreadable(String),
    Status(StatusCode),
    RobotsForbid { host: String },
    RobotsUnavailable { host: String, status: StatusCode },
    TooManyRedirects,
    BadRedirect(String),
    OffSite(Url),
    NotText(String),
    TooLarge,
    Deadline,
}

/// The reason beside a skipped address.
impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Scheme => write!(f, "only http and https addresses can be read"),
            Self::Refused(why) => write!(f, "not allowed: {why}"),
            Self::Connect { host, detail } => write!(f, "could not connect to {host}: {detail}"),
            Self::Timeout => write!(f, "the site did not answer in time"),
            Self::Unreadable(detail) => write!(f, "could not be read: {detail}"),
            Self::Status(status) => write!(f, "the site answered {}", status.as_u16()),
            Self::RobotsForbid { host } => write!(f, "robots.txt of {host} forbids reading it"),
            Self::RobotsUnavailable { host, status } => write!(
                f,
                "robots.txt of {host} answered {}; as search engines do, no page of the site is \
                 read until it answers",
                status.as_u16()
            ),
            Self::TooManyRedirects => write!(f, "redirected more than {MAX_REDIRECTS} times"),
            Self::BadRedirect(location) => {
                write!(f, "redirected to {location:?}, which is not a web address")
            }
            Self::OffSite(to) => write!(f, "redirected off the site, to {to}"),
            Self::NotText(kind) => write!(f, "not a web page or plain text ({kind})"),
            Self::TooLarge => write!(f, "larger than 2 MB"),
            Self::Deadline => write!(f, "the crawl's 3-minute limit was reached first"),
        }
    }
}

impl Failure {
    /// The same as one sentence naming `url`, for a crawl that read nothing.
    fn sentence(&self, url: &Url) -> String {
        match self {
            Self::Connect { .. } | Self::RobotsUnavailable { .. } => self.to_string(),
            Self::Refused(why) => format!("{url} is not allowed: {why}"),
            Self::Status(status) => format!("the site answered {} for {url}", status.as_u16()),
            Self::RobotsForbid { host } => format!("robots.txt of {host} forbids reading {url}"),
            Self::Timeout => format!("the site did not answer in time for {url}"),
            _ => format!("{url} was not read: {self}"),
        }
    }
}

/// The per-request timeout bounds a request and its body together (the client's own timeout,
/// if shorter, still applies).
async fn within_timeout<T>(
    request: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .unwrap_or(Err(Failure::Timeout))
}

fn transport_failure(url: &Url, error: &reqwest::Error) -> Failure {
    if let Some(refused) = refused_in(error) {
        return Failure::Refused(refused.to_string());
    }
    if error.is_timeout() {
        return Failure::Timeout;
    }
    // reqwest's own message is about itself; the innermost cause is about the site.
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let detail = cause.to_string();
    if error.is_connect() {
        Failure::Connect {
            host: host_of(url),
            detail,
        }
    } else {
        Failure::Unreadable(detail)
    }
}

/// The host as a person would name it, with the port when one is written.
fn host_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn without_fragment(mut url: Url) -> Url {
    url.set_fragment(None);
    url
}

fn redirect_target(from: &Url, response: &reqwest::Response) -> Result<Url, Failure> {
    let Some(location) = response.headers().get(LOCATION) else {
        return Err(Failure::Status(response.status()));
    };
    let location = String::from_utf8_lossy(location.as_bytes());
    match from.join(location.trim()) {
        Ok(next) if matches!(next.scheme(), "http" | "https") => Ok(without_fragment(next)),
        _ => Err(Failure::BadRedirect(location.into_owned())),
    }
}

fn page_kind(response: &reqwest::Response) -> Result<PageKind, Failure> {
    let essence = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|essence| essence.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match essence.as_str() {
        "text/html" | "application/xhtml+xml" => Ok(PageKind::Html),
        "text/plain" => Ok(PageKind::Text),
        "" => Err(Failure::NotText("the site did not say its type".to_owned())),
        _ => Err(Failure::NotText(essence)),
    }
}

/// The body's first `limit` bytes, and whether there was more (then the rest is not read).
async fn read_at_most(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<(Bytes, bool), Failure> {
    let url = response.url().clone();
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| transport_failure(&url, &error))?
    {
        if body.len() + chunk.len() > limit {
            body.extend_from_slice(&chunk[..limit - body.len()]);
            return Ok((body.freeze(), true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body.freeze(), false))
}

/// The `<a href>` targets of a page, resolved against its `<base>` (or its own address), without
/// fragments, http and https only, in document order.
fn links(page: &Url, body: &[u8]) -> Vec<Url> {
    // Links are ASCII in practice; a page in another encoding still yields them.
    let document = scraper::Html::parse_document(&String::from_utf8_lossy(body));
    let elements = || document.root_element().descendent_elements();
    let base = elements()
        .filter(|element| element.value().name() == "base")
        .find_map(|element| element.attr("href"))
        .and_then(|href| page.join(href.trim()).ok())
        .unwrap_or_else(|| page.clone());
    elements()
        .filter(|element| element.value().name() == "a")
        .filter_map(|element| element.attr("href"))
        .filter_map(|href| base.join(href.trim()).ok())
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .map(without_fragment)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::http::header::CONTENT_LENGTH;
    use axum::middleware::{self, Next};
    use axum::response::{Html, IntoResponse, Redirect, Response};
    use axum::routing::get;
    use tokio::net::TcpListener;

    use crate::tools::guard::{guarded_client, system_lookup};

    type Hits = Arc<Mutex<Vec<String>>>;

    /// A real HTTP server on 127.0.0.1; `hits` lists the paths it was asked for.
    struct Server {
        base: Url,
        hits: Hits,
    }

    impl Server {
        async fn bind() -> (TcpListener, Url) {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}/", listener.local_addr().unwrap());
            (listener, base.parse().unwrap())
        }

        fn serve(listener: TcpListener, base: Url, routes: Router) -> Self {
            let hits = Hits::default();
            let app = routes.layer(middleware::from_fn_with_state(hits.clone(), record));
            tokio::spawn(async move { axum::serve(listener, app).await });
            Self { base, hits }
        }

        async fn start(routes: impl FnOnce(&Url) -> Router) -> Self {
            let (listener, base) = Self::bind().await;
            let routes = routes(&base);
            Self::serve(listener, base, routes)
        }

        fn url(&self, path: &str) -> Url {
            self.base.join(path).unwrap()
        }

        fn hits(&self, path: &str) -> usize {
            self.hits
                .lock()
                .unwrap()
                .iter()
                .filter(|p| *p == path)
                .count()
        }

        fn all_hits(&self) -> Vec<String> {
            self.hits.lock().unwrap().clone()
        }
    }

    async fn record(State(hits): State<Hits>, request: Request, next: Next) -> Response {
        hits.lock().unwrap().push(request.uri().path().to_owned());
        next.run(request).await
    }

    fn page(body: String) -> axum::routing::MethodRouter {
        get(move || async move { Html(body) })
    }

    fn local_policy() -> AddressPolicy {
        AddressPolicy::parse("127.0.0.1").unwrap()
    }

    fn client_with(policy: &AddressPolicy, timeout: Duration) -> reqwest::Client {
        guarded_client(Arc::new(policy.clone()), system_lookup(), Some(timeout)).unwrap()
    }

    async fn crawl_local(start: Vec<Url>, limit: usize) -> Result<Crawl, CrawlError> {
        let policy = local_policy();
        let client = client_with(&policy, Duration::from_secs(10));
        let site = Site {
            start,
            relative_links_limit: limit,
        };
        crawl(&client, &policy, &site).await
    }

    fn paths(crawl: &Crawl) -> Vec<&str> {
        crawl.pages.iter().map(|page| page.url.path()).collect()
    }

    fn reason<'a>(crawl: &'a Crawl, url: &Url) -> &'a str {
        let found = crawl.skipped.iter().find(|(skipped, _)| skipped == url);
        &found.unwrap_or_else(|| panic!("{url} not skipped")).1
    }

    #[tokio::test]
    async fn linked_pages_are_read_once_each() {
        let server = Server::start(|base| {
            Router::new()
                .route(
                    "/",
                    page(format!(
                        r##"<a href="/a">A</a> <a href="b">B</a> <a href="{base}c#part">C</a>
                        <a href="/a#top">A again</a> <a href="/a">and again</a>
                        <a href="mailto:shop@example.com">mail</a> <a href="/dir/">dir</a>"##
                    )),
                )
                .route(
                    "/a",
                    page(r#"<a href="/">home</a><a href="/b">B</a>"#.into()),
                )
                .route("/b", get(|| async { "plain text" }))
                .route("/c", page(r#"<a href="a">A</a>"#.into()))
                .route(
                    "/dir/",
                    page(r#"<head><base href="/other/"></head><a href="x">X</a>"#.into()),
                )
                .route("/other/x", page("x".into()))
        })
        .await;

        let crawl = crawl_local(vec![server.url("/")], 10).await.unwrap();

        let mut read = paths(&crawl);
        read.sort_unstable();
        assert_eq!(read, ["/", "/a", "/b", "/c", "/dir/", "/other/x"]);
        assert!(crawl.skipped.is_empty(), "{:?}", crawl.skipped);
        let text = crawl.pages.iter().find(|p| p.url.path() == "/b").unwrap();
        assert_eq!(text.kind, PageKind::Text);
        assert_eq!(&text.body[..], b"plain text");
        for path in read {
            assert_eq!(server.hits(path), 1, "{path}");
        }
        // No robots.txt (a 404) allows everything, and it is asked for once.
        assert_eq!(server.hits("/robots.txt"), 1);
    }

    #[tokio::test]
    async fn the_links_limit_is_exact_and_breadth_first() {
        let server = Server::start(|_| {
            let links: String = (1..=8)
                .map(|n| format!(r#"<a href="/p{n}">{n}</a>"#))
                .collect();
            let mut routes = Router::new().route("/", page(links));
            for n in 1..=8 {
                routes = routes.route(&format!("/p{n}"), page(r#"<a href="/deep">d</a>"#.into()));
            }
            routes.route("/deep", page("deep".into()))
        })
        .await;

        let crawl = crawl_local(vec![server.url("/")], 3).await.unwrap();

        assert_eq!(paths(&crawl), ["/", "/p1", "/p2", "/p3"]);
        let pages_asked = server.all_hits().len() - server.hits("/robots.txt");
        assert_eq!(pages_asked, 4);
    }

    #[tokio::test]
    async fn links_to_another_site_are_not_followed() {
        let other = Server::start(|_| Router::new().route("/", page("other".into()))).await;
        let other_base = other.base.clone();
        let server = Server::start(|_| {
            Router::new()
                .route(
                    "/",
                    page(format!(
                        r#"<a href="{other_base}">other</a><a href="/x">x</a>"#
                    )),
                )
                .route("/x", page("x".into()))
        })
        .await;

        let crawl = crawl_local(vec![server.url("/")], 10).await.unwrap();

        assert_eq!(paths(&crawl), ["/", "/x"]);
        assert!(other.all_hits().is_empty(), "{:?}", other.all_hits());
    }

    #[tokio::test]
    async fn robots_txt_is_honoured() {
        let server = Server::start(|_| {
            Router::new()
                .route(
                    "/robots.txt",
                    get(|| async { "User-agent: *\nDisallow: /private\n" }),
                )
                .route(
                    "/",
                    page(r#"<a href="/private/secret">s</a><a href="/public">p</a>"#.into()),
                )
                .route("/private/secret", page("secret".into()))
                .route("/public", page("public".into()))
        })
        .await;

        let crawl = crawl_local(vec![server.url("/")], 10).await.unwrap();

        assert_eq!(paths(&crawl), ["/", "/public"]);
        assert_eq!(server.hits("/private/secret"), 0);
        let host = host_of(&server.base);
        assert_eq!(
            reason(&crawl, &server.url("/private/secret")),
            format!("robots.txt of {host} forbids reading it")
        );

        // A start URL is no exception.
        let closed = Server::start(|_| {
            Router::new()
                .route(
                    "/robots.txt",
                    get(|| async { "User-agent: AnyReply\nDisallow: /\n" }),
                )
                .route("/", page("closed".into()))
        })
        .await;
        let error = crawl_local(vec![closed.url("/")], 10).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "robots.txt of {} forbids reading {}",
                host_of(&closed.base),
                closed.url("/")
            )
        );
        assert_eq!(closed.all_hits(), ["/robots.txt"]);
    }

    #[tokio::test]
    async fn a_failing_robots_txt_stops_the_site() {
        let server = Server::start(|_| {
            Router::new()
                .route(
                    "/robots.txt",
                    get(|| async { StatusCode::SERVICE_UNAVAILABLE }),
                )
                .route("/", page("home".into()))
        })
        .await;

        let error = crawl_local(vec![server.url("/")], 10).await.unwrap_err();

        assert!(error.to_string().contains("answered 503"), "{error}");
        assert_eq!(server.all_hits(), ["/robots.txt"]);
    }

    #[tokio::test]
    async fn a_broken_link_is_skipped_with_its_reason() {
        let server =
            Server::start(|_| Router::new().route("/", page(r#"<a href="/gone">g</a>"#.into())))
                .await;

        let crawl = crawl_local(vec![server.url("/")], 10).await.unwrap();

        assert_eq!(paths(&crawl), ["/"]);
        assert_eq!(crawl.skipped.len(), 1);
        assert_eq!(
            reason(&crawl, &server.url("/gone")),
            "the site answered 404"
        );
    }

    #[tokio::test]
    async fn a_start_url_answering_404_fails_the_crawl() {
        let server = Server::start(|_| Router::new().route("/", page("home".into()))).await;
        let missing = server.url("/faq");

        let error = crawl_local(vec![missing.clone()], 10).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("the site answered 404 for {missing}")
        );

        // With another start URL read, the missing one is only skipped.
        let crawl = crawl_local(vec![missing.clone(), server.url("/")], 10)
            .await
            .unwrap();
        assert_eq!(paths(&crawl), ["/"]);
        assert_eq!(reason(&crawl, &missing), "the site answered 404");
    }

    /// A 3 MB body whose end never comes: reading it all would hang until the timeout.
    fn endless_big_body(declared: bool) -> Response {
        let megabyte = Bytes::from(vec![b'x'; 1024 * 1024]);
        let chunks = if declared { 0 } else { 3 };
        let stream = futures::stream::iter(
            std::iter::repeat_n(megabyte, chunks).map(Ok::<_, std::io::Error>),
        )
        .chain(futures::stream::pending());
        let mut response =
            ([(CONTENT_TYPE, "text/html")], Body::from_stream(stream)).into_response();
        if declared {
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, (3 * 1024 * 1024).into());
        }
        response
    }

    #[tokio::test]
    async fn a_page_over_2_mb_is_skipped_unread() {
        let server = Server::start(|_| {
            Router::new()
                .route(
                    "/",
                    page(r#"<a href="/declared">d</a><a href="/streamed">s</a>"#.into()),
                )
                .route("/declared", get(|| async { endless_big_body(true) }))
                .route("/streamed", get(|| async { endless_big_body(false) }))
        })
        .await;
        let started = std::time::Instant::now();

        let crawl = crawl_local(vec![server.url("/")], 10).await.unwrap();

        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(paths(&crawl), ["/"]);
        assert_eq!(reason(&crawl, &server.url("/declared")), "larger than 2 MB");
        assert_eq!(reason(&crawl, &server.url("/streamed")), "larger than 2 MB");
    }

    #[tokio::test]
    async fn redirects_are_followed_within_the_site_and_from_a_start_url() {
        let other = Server::start(|_| {
            Router::new()
                .route("/", page(r#"<a href="/more">more</a>"#.into()))
                .route("/more", page("more".into()))
        })
        .await;
        let away = other.url("/");
        let server = Server::start(|_| {
            let away = away.to_string();
            let moved = away.clone();
            Router::new()
                .route(
                    "/",
                    page(r#"<a href="/old">old</a><a href="/away">away</a>"#.into()),
                )
                .route("/old", get(|| async { Redirect::permanent("/new") }))
                .route("/new", page("new".into()))
                .route("/away", get(move || async move { Redirect::to(&away) }))
                .route("/moved", get(move || async move { Redirect::to(&moved) }))
        })
        .await;

        let crawl = crawl_local(vec![server.url("/")], 10).await.unwrap();

        assert_eq!(paths(&crawl), ["/", "/new"]);
        assert_eq!(crawl.pages[1].url, server.url("/new"));
        assert_eq!(
            reason(&crawl, &server.url("/away")),
            format!("redirected off the site, to {}", other.url("/"))
        );
        assert!(other.all_hits().is_empty());

        // A start URL that moved makes where it landed the site.
        let crawl = crawl_local(vec![server.url("/moved")], 10).await.unwrap();
        let read: Vec<&Url> = crawl.pages.iter().map(|page| &page.url).collect();
        assert_eq!(read, [&other.url("/"), &other.url("/more")]);
    }

    #[tokio::test]
    async fn a_pdf_is_skipped() {
        let server = Server::start(|_| {
            Router::new()
                .route("/", page(r#"<a href="/menu.pdf">menu</a>"#.into()))
                .route(
                    "/menu.pdf",
                    get(|| async { ([(CONTENT_TYPE, "application/pdf")], "%PDF-1.7") }),
                )
        })
        .await;

        let crawl = crawl_local(vec![server.url("/")], 10).await.unwrap();

        assert_eq!(paths(&crawl), ["/"]);
        assert_eq!(
            reason(&crawl, &server.url("/menu.pdf")),
            "not a web page or plain text (application/pdf)"
        );
    }

    #[tokio::test]
    async fn a_refused_address_is_never_asked() {
        let server = Server::start(|_| Router::new().route("/", page("home".into()))).await;
        let policy = AddressPolicy::default();
        let client = client_with(&policy, Duration::from_secs(10));
        let port = server.base.port().unwrap();

        for start in [
            server.url("/"),
            format!("http://localhost:{port}/").parse().unwrap(),
        ] {
            let site = Site {
                start: vec![start.clone()],
                relative_links_limit: 10,
            };
            let error = crawl(&client, &policy, &site).await.unwrap_err();
            let error = error.to_string();
            assert!(
                error.starts_with(&format!("{start} is not allowed: the address ")),
                "{error}"
            );
            assert!(error.contains("is loopback and not allowed"), "{error}");
        }
        assert!(server.all_hits().is_empty(), "{:?}", server.all_hits());
    }

    #[tokio::test]
    async fn a_receiver_that_never_answers_is_given_up() {
        let server = Server::start(|_| {
            Router::new()
                .route("/", page(r#"<a href="/slow">slow</a>"#.into()))
                .route("/slow", get(std::future::pending::<()>))
        })
        .await;
        // Accepts connections and never says a word, not even to robots.txt.
        let (silent, silent_url) = Server::bind().await;
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((connection, _)) = silent.accept().await {
                held.push(connection);
            }
        });
        let policy = local_policy();
        let client = client_with(&policy, Duration::from_millis(500));
        let site = Site {
            start: vec![server.url("/"), silent_url.clone()],
            relative_links_limit: 10,
        };
        let started = std::time::Instant::now();

        let crawl = crawl(&client, &policy, &site).await.unwrap();

        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(paths(&crawl), ["/"]);
        assert_eq!(
            reason(&crawl, &server.url("/slow")),
            "the site did not answer in time"
        );
        assert_eq!(
            reason(&crawl, &silent_url),
            "the site did not answer in time"
        );
    }

    #[test]
    fn a_crawl_can_run_on_any_worker_thread() {
        fn is_send<T: Send>(_: &T) {}
        let policy = AddressPolicy::default();
        let client = reqwest::Client::new();
        let site = Site {
            start: Vec::new(),
            relative_links_limit: 1,
        };
        is_send(&crawl(&client, &policy, &site));
    }
}
