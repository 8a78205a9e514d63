//! `Client`: one connection pool, one API key, one retry policy, cheap to clone.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyreply_core::ErrorBody;
use anyreply_core::wire::{
    GenerateReplyRequest, GenerateReplyResponse, Me, StatsQuery, StatsResponse, UsageQuery,
    UsageResponse,
};
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{ApiError, Error};
use crate::events::Events;
use crate::knowledge_bases::KnowledgeBases;
use crate::operators::Operators;
use crate::reply_stream::ReplyStream;
use crate::resources::{Assistants, Audit, Conversations, Tools, Webhooks};
use crate::retry::{self, Attempt, RetryPolicy};

/// A client of one AnyReply server. Clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    api_key: SecretString,
    /// Longest wait for one attempt (cut shorter near the policy's deadline).
    timeout: Duration,
    retry: RetryPolicy,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url.as_str())
            .field("api_key", &"[redacted]")
            .field("retry", &self.inner.retry)
            .finish()
    }
}

/// Builds a [`Client`].
#[derive(Default)]
pub struct ClientBuilder {
    base_url: Option<String>,
    api_key: Option<SecretString>,
    timeout: Option<Duration>,
    user_agent: Option<String>,
    retry: Option<RetryPolicy>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("timeout", &self.timeout)
            .field("user_agent", &self.user_agent)
            .field("retry", &self.retry)
            .finish()
    }
}

/// The server the SDK talks to when `ANYREPLY_URL` is unset.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8080";

impl ClientBuilder {
    /// `ANYREPLY_URL` (default [`DEFAULT_BASE_URL`]) and `ANYREPLY_API_KEY` (required; when
    /// unset, `env` notes the problem and [`Self::build`] will fail).
    pub fn from_env(mut self, env: &mut anyreply_core::env::Env) -> Self {
        self.base_url = Some(
            env.text("ANYREPLY_URL")
                .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()),
        );
        if let Some(key) = env.required("ANYREPLY_API_KEY", "ark_...") {
            self = self.api_key(key);
        }
        self
    }

    /// The server's root, such as `https://replies.example.com` (required).
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = Some(base_url.into());
        self
    }

    /// The account's API key (required). Kept as a secret: never printed.
    pub fn api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_key = Some(SecretString::from(api_key.into()));
        self
    }

    /// Longest wait for one attempt's answer. Default 120 s, as a reply may call tools.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Default `anyreply-client/<version>`.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// Default [`RetryPolicy::default`].
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Makes the client; fails without a valid base URL and an API key.
    pub fn build(self) -> Result<Client, Error> {
        let base = self
            .base_url
            .ok_or_else(|| Error::Config("a base URL is required".into()))?;
        let mut base_url =
            Url::parse(&base).map_err(|e| Error::Config(format!("base URL {base:?}: {e}")))?;
        if !base_url.path().ends_with('/') {
            let path = format!("{}/", base_url.path());
            base_url.set_path(&path);
        }
        let api_key = self
            .api_key
            .ok_or_else(|| Error::Config("an API key is required".into()))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(self.user_agent.unwrap_or_else(|| {
                concat!("anyreply-client/", env!("CARGO_PKG_VERSION")).to_owned()
            }))
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_url,
                api_key,
                timeout: self.timeout.unwrap_or(Duration::from_secs(120)),
                retry: self.retry.unwrap_or_default(),
            }),
        })
    }
}

/// Per-call options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestOptions {
    /// The `Idempotency-Key` of a POST; generated when `None`. Use a key of your own (such as
    /// the channel's message id) to make redeliveries of one message answer once.
    pub idempotency_key: Option<String>,
}

impl RequestOptions {
    /// Options with your own idempotency key.
    pub fn idempotency_key(key: impl Into<String>) -> Self {
        Self {
            idempotency_key: Some(key.into()),
        }
    }
}

impl Client {
    /// Starts a [`ClientBuilder`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The server this client talks to.
    pub fn base_url(&self) -> &str {
        self.inner.base_url.as_str()
    }

    /// `POST /api/ai/generate-reply`: the AI's reply to a customer's message.
    pub async fn generate_reply(
        &self,
        request: &GenerateReplyRequest,
    ) -> Result<GenerateReplyResponse, Error> {
        self.generate_reply_with(request, RequestOptions::default())
            .await
    }

    /// [`Self::generate_reply`] with options, such as your own idempotency key.
    pub async fn generate_reply_with(
        &self,
        request: &GenerateReplyRequest,
        options: RequestOptions,
    ) -> Result<GenerateReplyResponse, Error> {
        self.generate_reply_noting_replays(request, options)
            .await
            .map(|(reply, _)| reply)
    }

    /// [`Self::generate_reply_with`], also telling whether the server had already answered
    /// this idempotency key for an earlier call (`true`): the channel message was delivered
    /// before, and that earlier call got (and presumably sent) this same reply. Bridges use it
    /// to send a reply once however often a channel redelivers its message.
    pub async fn generate_reply_noting_replays(
        &self,
        request: &GenerateReplyRequest,
        options: RequestOptions,
    ) -> Result<(GenerateReplyResponse, bool), Error> {
        self.send_noting_replays(
            Method::POST,
            "api/ai/generate-reply",
            &[],
            Some(request),
            options,
        )
        .await
    }

    /// `POST /api/ai/generate-reply` with the reply streamed: its text as the model writes it,
    /// then the whole answer (see [`ReplyStream`]). Until the stream starts, failures are
    /// retried as [`Self::generate_reply`]'s are, under one idempotency key.
    pub async fn generate_reply_stream(
        &self,
        request: &GenerateReplyRequest,
        options: RequestOptions,
    ) -> Result<ReplyStream, Error> {
        let call = Call::new(
            &self.inner.base_url,
            Method::POST,
            "api/ai/generate-reply",
            &[],
            Some(request),
            options,
        )?;
        let (stream, _) = self
            .exchange(call, Some("text/event-stream"), ReplyStream::open)
            .await?;
        Ok(stream)
    }

    /// `GET /api/user/me`: the account's name, email and balance.
    pub async fn me(&self) -> Result<Me, Error> {
        self.get("api/user/me", &[]).await
    }

    /// `GET /api/user/usage`: replies, tokens and cost by day, assistant or model; the costs
    /// add up to what the balance was charged.
    pub async fn usage(&self, query: &UsageQuery) -> Result<UsageResponse, Error> {
        let params = report_params(query.from, query.to, query.group_by.map(|g| g.as_str()));
        self.get("api/user/usage", &params).await
    }

    /// `GET /api/user/stats`: conversations, replies, the AI-resolved share, handoffs, their
    /// reasons and the wait for a person, by day or assistant, with the range's totals.
    pub async fn stats(&self, query: &StatsQuery) -> Result<StatsResponse, Error> {
        let params = report_params(query.from, query.to, query.group_by.map(|g| g.as_str()));
        self.get("api/user/stats", &params).await
    }

    /// Conversations: history, lists and the human takeover switch.
    pub fn conversations(&self) -> Conversations<'_> {
        Conversations { client: self }
    }

    /// The account's assistants.
    pub fn assistants(&self) -> Assistants<'_> {
        Assistants { client: self }
    }

    /// The account's tools (assistant functions).
    pub fn tools(&self) -> Tools<'_> {
        Tools { client: self }
    }

    /// The account's events (`GET /api/events`), followed as a stream.
    pub fn events(&self) -> Events<'_> {
        Events { client: self }
    }

    /// The retry policy; the event stream's reconnects use its backoff.
    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// Longest wait for one attempt's answer.
    pub(crate) fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// An authenticated GET of `path` with no timeout of its own: for answers that last as
    /// long as a stream does.
    pub(crate) fn get_request(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<reqwest::RequestBuilder, Error> {
        let mut url = self
            .inner
            .base_url
            .join(path)
            .map_err(|e| Error::Config(e.to_string()))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(self
            .inner
            .http
            .get(url)
            .bearer_auth(self.inner.api_key.expose_secret()))
    }

    /// The account's audit log: who did what, and when.
    pub fn audit(&self) -> Audit<'_> {
        Audit { client: self }
    }

    /// The account's webhooks, which receive its events.
    pub fn webhooks(&self) -> Webhooks<'_> {
        Webhooks { client: self }
    }

    /// The people who sign in to the console, and their roles.
    pub fn operators(&self) -> Operators<'_> {
        Operators { client: self }
    }

    /// The account's knowledge bases: documents and websites assistants answer from.
    pub fn knowledgebases(&self) -> KnowledgeBases<'_> {
        KnowledgeBases { client: self }
    }

    /// Sends one logical call, retrying by the policy. Every attempt is built afresh from the
    /// same body and, for a POST, carries the same `Idempotency-Key`.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, Error> {
        self.send(
            Method::GET,
            path,
            query,
            None::<&()>,
            RequestOptions::default(),
        )
        .await
    }

    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        options: RequestOptions,
    ) -> Result<T, Error> {
        self.send(Method::POST, path, &[], body, options).await
    }

    /// A `multipart/form-data` POST, retried as [`Self::post`] is.
    pub(crate) async fn post_multipart<T: DeserializeOwned>(
        &self,
        path: &str,
        form: MultipartForm,
        options: RequestOptions,
    ) -> Result<T, Error> {
        let mut call = Call::new(
            &self.inner.base_url,
            Method::POST,
            path,
            &[],
            None::<&()>,
            options,
        )?;
        call.body = Some(CallBody::Multipart(form));
        self.exchange(call, None, read)
            .await
            .map(|(answer, _)| answer)
    }

    pub(crate) async fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl Serialize + ?Sized),
    ) -> Result<T, Error> {
        self.send(
            Method::PUT,
            path,
            &[],
            Some(body),
            RequestOptions::default(),
        )
        .await
    }

    pub(crate) async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.send(
            Method::DELETE,
            path,
            &[],
            None::<&()>,
            RequestOptions::default(),
        )
        .await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&(impl Serialize + ?Sized)>,
        options: RequestOptions,
    ) -> Result<T, Error> {
        self.send_noting_replays(method, path, query, body, options)
            .await
            .map(|(answer, _)| answer)
    }

    /// [`Self::send`], also telling whether the answer was given to an earlier call with the
    /// same idempotency key: a replay that no attempt of this call can have caused.
    async fn send_noting_replays<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&(impl Serialize + ?Sized)>,
        options: RequestOptions,
    ) -> Result<(T, bool), Error> {
        let call = Call::new(&self.inner.base_url, method, path, query, body, options)?;
        self.exchange(call, None, read).await
    }

    /// Makes `call` until an attempt's answer reads as `T`, retrying what the policy allows
    /// (in its one loop, [`RetryPolicy::run_with`]) with the same idempotency key; also tells whether the answer was given to an earlier
    /// call with that key (see [`Self::send_noting_replays`]).
    pub(crate) async fn exchange<T, F>(
        &self,
        call: Call,
        accept: Option<&'static str>,
        read: impl Fn(reqwest::Response) -> F,
    ) -> Result<(T, bool), Error>
    where
        F: Future<Output = Result<T, Error>>,
    {
        let (inner, call, read) = (&*self.inner, &call, &read);
        inner
            .retry
            .run_with(|attempt: Attempt| async move {
                // No attempt runs past the deadline.
                let mut request = inner
                    .http
                    .request(call.method.clone(), call.url.clone())
                    .timeout(inner.timeout.min(attempt.time_left))
                    .bearer_auth(inner.api_key.expose_secret());
                if let Some(key) = &call.idempotency_key {
                    request = request.header("idempotency-key", key);
                }
                if let Some(accept) = accept {
                    request = request.header(reqwest::header::ACCEPT, accept);
                }
                match &call.body {
                    Some(CallBody::Json(body)) => {
                        request = request
                            .header(CONTENT_TYPE, "application/json")
                            .body(body.clone());
                    }
                    // A form is consumed by its request: each attempt gets one built afresh.
                    Some(CallBody::Multipart(form)) => request = request.multipart(form.build()),
                    None => {}
                }
                let error = match request.send().await {
                    Ok(response) => {
                        let replayed = response.headers().contains_key("idempotent-replayed");
                        match read(response).await {
                            // A replay after an attempt of ours may have landed may be of that
                            // attempt: not an earlier call's.
                            Ok(answer) => {
                                return Ok((answer, replayed && !attempt.may_have_landed));
                            }
                            Err(error) => error,
                        }
                    }
                    Err(error) => Error::from_reqwest(error),
                };
                Err(retry::failure(error))
            })
            .await
    }
}

/// The query of a report (usage, stats): the days and grouping that are given.
fn report_params<D: fmt::Display>(
    from: Option<D>,
    to: Option<D>,
    group_by: Option<&str>,
) -> Vec<(&'static str, String)> {
    [
        ("from", from.map(|d| d.to_string())),
        ("to", to.map(|d| d.to_string())),
        ("group_by", group_by.map(str::to_owned)),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value?)))
    .collect()
}

/// One call, made as often as its retries take: every attempt sends the same bytes under the
/// same idempotency key.
#[derive(Debug)]
pub(crate) struct Call {
    method: Method,
    url: Url,
    body: Option<CallBody>,
    idempotency_key: Option<String>,
}

#[derive(Debug)]
enum CallBody {
    Json(Vec<u8>),
    Multipart(MultipartForm),
}

/// A `multipart/form-data` body kept as its parts, so that every attempt sends the same.
#[derive(Debug, Clone, Default)]
pub(crate) struct MultipartForm {
    pub(crate) texts: Vec<(&'static str, String)>,
    pub(crate) files: Vec<MultipartFile>,
}

/// A file part: `bytes` is shared, not copied, by each attempt's form.
#[derive(Clone)]
pub(crate) struct MultipartFile {
    pub(crate) field: &'static str,
    pub(crate) filename: String,
    pub(crate) content_type: &'static str,
    pub(crate) bytes: Bytes,
}

impl fmt::Debug for MultipartFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultipartFile")
            .field("field", &self.field)
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl MultipartForm {
    fn build(&self) -> reqwest::multipart::Form {
        let form = self
            .texts
            .iter()
            .fold(reqwest::multipart::Form::new(), |form, (name, value)| {
                form.text(*name, value.clone())
            });
        self.files.iter().fold(form, |form, file| {
            // With its length known, the request has a Content-Length rather than chunks.
            let part = reqwest::multipart::Part::stream_with_length(
                file.bytes.clone(),
                file.bytes.len() as u64,
            )
            .file_name(file.filename.clone())
            .headers(HeaderMap::from_iter([(
                CONTENT_TYPE,
                HeaderValue::from_static(file.content_type),
            )]));
            form.part(file.field, part)
        })
    }
}

impl Call {
    pub(crate) fn new(
        base_url: &Url,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&(impl Serialize + ?Sized)>,
        options: RequestOptions,
    ) -> Result<Self, Error> {
        let mut url = base_url
            .join(path)
            .map_err(|e| Error::Config(e.to_string()))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Error::Config(e.to_string()))?
            .map(CallBody::Json);
        let idempotency_key = (method == Method::POST).then(|| {
            options
                .idempotency_key
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
        });
        Ok(Self {
            method,
            url,
            body,
            idempotency_key,
        })
    }
}

async fn read<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, Error> {
    let status = response.status();
    if retry::is_error(status) {
        return Err(error_answer(response).await);
    }
    let bytes = response.bytes().await.map_err(Error::from_reqwest)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
        status: status.as_u16(),
        message: e.to_string(),
    })
}

/// An error answer as the error it reports: the envelope's code and message, or what there is.
pub(crate) async fn error_answer(response: reqwest::Response) -> Error {
    let status = response.status();
    let retry_after = retry::retry_after(response.headers());
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(error) => return Error::from_reqwest(error),
    };
    let (code, message, field_errors) = match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => (body.error_code, body.message, body.errors),
        // Not our envelope (a proxy's page, say): keep what there is.
        Err(_) => (
            None,
            String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            Default::default(),
        ),
    };
    Error::Api(ApiError {
        status: status.as_u16(),
        code,
        message,
        field_errors,
        retry_after,
    })
}
