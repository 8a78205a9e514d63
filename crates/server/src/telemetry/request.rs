//! Every request gets an id (the caller's `X-Request-Id` when it is sane, else a new one),
//! returned on the response, carried by a span into every log line the request causes, and
//! put into its error envelope; when it is answered, one `info` line (`error` for a 500,
//! whose cause the failing code logged before) and the HTTP metrics.

use std::future::Future;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The header that carries the id both ways.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id taken from a caller; a longer one is replaced.
const MAX_LEN: usize = 128;

/// The id of the request being served.
#[derive(Debug, Clone)]
pub struct RequestId(HeaderValue);

tokio::task_local! {
    static CURRENT: RequestId;
}

impl RequestId {
    /// The caller's id if it is 1–128 characters of letters, digits and `-_.:`; else a new
    /// UUID. Anything else could forge log lines or bloat them.
    fn of(request: &Request) -> Self {
        let sane = |value: &&HeaderValue| {
            let bytes = value.as_bytes();
            (1..=MAX_LEN).contains(&bytes.len())
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
        };
        let value = match request.headers().get(REQUEST_ID_HEADER).filter(sane) {
            Some(value) => value.clone(),
            None => HeaderValue::try_from(uuid::Uuid::now_v7().to_string())
                .expect("a UUID is a valid header value"),
        };
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked above, or a UUID).
        self.0.to_str().unwrap_or_default()
    }

    /// The id of the request this task is serving, if any.
    pub fn current() -> Option<String> {
        CURRENT.try_with(|id| id.as_str().to_owned()).ok()
    }
}

/// `future`, to be run on a task of its own, still serving the current request: its id and
/// its span go with it.
pub fn carried<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let id = CURRENT.try_with(Clone::clone).ok();
    let span = tracing::Span::current();
    async move {
        match id {
            Some(id) => CURRENT.scope(id, future).await,
            None => future.await,
        }
    }
    .instrument(span)
}

/// The middleware: id, span, log line, metrics. The span's `account_id` is filled in by
/// [`crate::extract::Caller`] once the key is checked.
pub async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = RequestId::of(&request);
    let method = request.method().clone();
    // The route's pattern, never the path: ids in paths would explode the metrics' labels.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_owned();
    let span = tracing::info_span!(
        "request",
        request_id = id.as_str(),
        method = %method,
        route = %route,
        account_id = tracing::field::Empty,
    );
    let mut response = CURRENT
        .scope(id.clone(), next.run(request))
        .instrument(span.clone())
        .await;
    response.headers_mut().insert(REQUEST_ID_HEADER, id.0);
    let latency = started.elapsed();
    let status = response.status().as_u16();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        // A 500 is a fault: at error level, after the line that logged its cause.
        if status == 500 {
            tracing::error!(status, latency_ms, "answered");
        } else {
            tracing::info!(status, latency_ms, "answered");
        }
    });
    super::metrics::http_request(method.as_str(), &route, status, latency);
    response
}
