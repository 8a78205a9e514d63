//! Language model providers behind one small vocabulary: a prompt of messages and function
//! definitions in, text or function calls and token usage out.

pub mod anthropic;
pub mod openai;

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use anyreply_core::wire::LlmProvider;
use futures::{Stream, StreamExt};
use serde_json::Value;
use sse_stream::{Sse, SseByteStream};
use tokio::sync::mpsc;

pub use anthropic::AnthropicClient;
pub use openai::OpenAiClient;

/// One message of a prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptMessage {
    System(String),
    User(String),
    Assistant(String),
    /// The model's own earlier request to call functions.
    ToolCalls {
        text: Option<String>,
        calls: Vec<ToolCall>,
    },
    /// What a called function returned, as text for the model.
    ToolResult {
        call_id: String,
        content: String,
        is_error: bool,
    },
}

/// The model asks to call `name` with `arguments`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The provider's id of the call, echoed with its result.
    pub id: String,
    pub name: String,
    /// A JSON object, or a string when the model produced unparseable JSON.
    pub arguments: Value,
}

/// A function offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    pub name: String,
    pub description: String,
    /// A JSON Schema object.
    pub parameters: Value,
}

/// What to ask the model.
#[derive(Debug, Clone, Copy)]
pub struct Completion<'a> {
    pub model: &'a str,
    pub temperature: f64,
    pub max_output_tokens: u32,
    pub messages: &'a [PromptMessage],
    pub functions: &'a [FunctionSpec],
    /// When false the functions stay defined (the prompt may mention earlier calls) but the
    /// model must answer in text.
    pub may_call_functions: bool,
    /// Set to have the answer streamed: its text goes here as the model writes it.
    pub stream: Option<&'a TextStream>,
    /// Set to have the answer be a JSON object of this schema (OpenAI's `response_format`,
    /// Anthropic's forced tool call): read it with [`Output::json`].
    pub answer_schema: Option<&'a AnswerSchema>,
}

/// The shape of a structured answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerSchema {
    /// Its name, as the providers ask for one (letters, digits, `_`).
    pub name: &'static str,
    pub description: &'static str,
    /// A JSON Schema object.
    pub schema: Value,
}

/// Where a streamed reply's text goes as the model writes it, and a record of what was sent:
/// text shown to the customer cannot be taken back, so it is what the reply says.
#[derive(Debug)]
pub struct TextStream {
    sender: mpsc::UnboundedSender<String>,
    shown: Mutex<Shown>,
}

#[derive(Debug, Default)]
struct Shown {
    text: String,
    /// A round that showed text ended in tool calls: the next text starts a new paragraph.
    paragraph_pending: bool,
}

impl TextStream {
    /// A stream and the receiving end of its text.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<String>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let stream = Self {
            sender,
            shown: Mutex::default(),
        };
        (stream, receiver)
    }

    /// Sends a piece of the answer (NUL characters dropped, as everywhere in a reply).
    pub fn push(&self, text: &str) {
        let text = text.replace('\0', "");
        if text.is_empty() {
            return;
        }
        let mut shown = self.lock();
        let piece = if std::mem::take(&mut shown.paragraph_pending) {
            format!("\n\n{text}")
        } else {
            text
        };
        shown.text.push_str(&piece);
        // The receiver gone (the caller hung up) is no reason to stop a paid reply.
        let _ = self.sender.send(piece);
    }

    /// How much has been sent: compare two marks to tell whether an attempt sent anything.
    pub fn mark(&self) -> usize {
        self.lock().text.len()
    }

    /// The model's round ended in tool calls; whatever it says next is a new paragraph.
    pub fn end_round(&self) {
        let mut shown = self.lock();
        shown.paragraph_pending = !shown.text.is_empty();
    }

    /// Everything sent so far.
    pub fn shown(&self) -> String {
        self.lock().text.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shown> {
        self.shown.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the model produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Text(String),
    ToolCalls {
        text: Option<String>,
        calls: Vec<ToolCall>,
    },
}

impl Output {
    /// A structured answer's object (see [`Completion::answer_schema`]): the text as JSON, or
    /// the forced call's arguments; `None` when it is not an object.
    pub fn json(&self) -> Option<serde_json::Map<String, Value>> {
        let value = match self {
            Output::Text(text) => serde_json::from_str(text.trim()).ok()?,
            Output::ToolCalls { calls, .. } => calls.first()?.arguments.clone(),
        };
        match value {
            Value::Object(object) => Some(object),
            _ => None,
        }
    }

    /// The answer from its parts: tool calls (with any text beside them), or else the text,
    /// which must then say something.
    pub(crate) fn from_parts(text: String, calls: Vec<ToolCall>) -> Result<Self, LlmError> {
        let text = Some(text).filter(|text| !text.trim().is_empty());
        if calls.is_empty() {
            text.map(Output::Text)
                .ok_or_else(|| LlmError::Failed("the answer holds no text".into()))
        } else {
            Ok(Output::ToolCalls { text, calls })
        }
    }
}

/// Tokens a message is estimated to take: about four characters a token, plus the few
/// tokens each message costs in the chat format. Exact counts vary by model; the budget only
/// needs to be safe, so this errs on the high side for typical text.
pub fn estimate_tokens(text: &str) -> u32 {
    let chars = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
    chars.div_ceil(4).saturating_add(4)
}

/// Tokens reported by the provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl TokenUsage {
    pub fn add(&mut self, other: TokenUsage) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
    }
}

impl TokenUsage {
    /// The provider's counts, unless it gave none: a usage of no tokens at all is taken for
    /// none, as no answer comes of an empty prompt.
    fn reported(self) -> Option<Self> {
        (self != Self::default()).then_some(self)
    }

    /// An estimate for an answer whose provider reported no usage: a token per four
    /// characters, rounded up, of everything sent (the messages, with the tool calls and
    /// results in them, and the function definitions) and of everything answered (the text
    /// and the calls, names and arguments).
    pub fn estimate(completion: &Completion<'_>, output: &Output) -> Self {
        let mut prompt = 0usize;
        for message in completion.messages {
            prompt += match message {
                PromptMessage::System(text)
                | PromptMessage::User(text)
                | PromptMessage::Assistant(text) => text.chars().count(),
                PromptMessage::ToolCalls { text, calls } => {
                    text.as_deref().map_or(0, |t| t.chars().count()) + calls_chars(calls)
                }
                PromptMessage::ToolResult { content, .. } => content.chars().count(),
            };
        }
        for function in completion.functions {
            prompt += function.name.chars().count()
                + function.description.chars().count()
                + function.parameters.to_string().chars().count();
        }
        let answered = match output {
            Output::Text(text) => text.chars().count(),
            Output::ToolCalls { text, calls } => {
                text.as_deref().map_or(0, |t| t.chars().count()) + calls_chars(calls)
            }
        };
        let tokens = |chars: usize| u32::try_from(chars.div_ceil(4)).unwrap_or(u32::MAX);
        Self {
            prompt_tokens: tokens(prompt),
            completion_tokens: tokens(answered),
        }
    }
}

fn calls_chars(calls: &[ToolCall]) -> usize {
    calls
        .iter()
        .map(|call| call.name.chars().count() + call.arguments.to_string().chars().count())
        .sum()
}

/// The model's answer and what it cost in tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub output: Output,
    /// `None` when the provider reported no token counts (see [`TokenUsage::estimate`]).
    pub usage: Option<TokenUsage>,
}

/// Why the model gave no answer. The detail is for logs only: it may quote the provider.
#[derive(Debug)]
pub enum LlmError {
    /// Timeout, connection failure, 429 or 5xx: worth retrying, or asking the fallback.
    Unavailable(String),
    /// Any other refusal or an unusable answer.
    Failed(String),
}

impl fmt::Display for LlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LlmError::Unavailable(detail) => write!(f, "model unavailable: {detail}"),
            LlmError::Failed(detail) => write!(f, "model failed: {detail}"),
        }
    }
}

impl std::error::Error for LlmError {}

/// Sends a provider request and reads its answer as `T`, classifying failures: timeouts,
/// connection failures, 408, 429 and 5xx are worth retrying; other refusals and unreadable
/// answers are not. The provider's own words stay in the log.
pub(crate) async fn send<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
) -> Result<T, LlmError> {
    respond(request).await?.json().await.map_err(|e| {
        if e.is_timeout() {
            LlmError::Unavailable("timed out reading the answer".into())
        } else {
            LlmError::Failed(format!("unreadable answer: {}", e.without_url()))
        }
    })
}

/// Sends a provider request asking for a streamed answer and reads it as Server-Sent Events,
/// classifying failures as [`send`] does; a stream cut short is worth retrying.
pub(crate) async fn send_streaming(
    request: reqwest::RequestBuilder,
) -> Result<impl Stream<Item = Result<Sse, LlmError>> + Unpin, LlmError> {
    let response = respond(request).await?;
    Ok(SseByteStream::new(response.bytes_stream()).map(|event| {
        event.map_err(|e| LlmError::Unavailable(format!("the answer's stream broke: {e}")))
    }))
}

/// A provider's data line as `T`.
pub(crate) fn parse_event<T: serde::de::DeserializeOwned>(data: &str) -> Result<T, LlmError> {
    serde_json::from_str(data)
        .map_err(|e| LlmError::Failed(format!("unreadable event in the answer's stream: {e}")))
}

async fn respond(request: reqwest::RequestBuilder) -> Result<reqwest::Response, LlmError> {
    let response = request.send().await.map_err(|e| {
        let cause = cause_of(&e);
        let url = e.url().map(without_query).unwrap_or_default();
        tracing::warn!(%url, %cause, "the model provider could not be reached");
        LlmError::Unavailable(format!("{url}: {cause}"))
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let url = without_query(response.url());
    tracing::warn!(%url, status = status.as_u16(), "the model provider refused the call");
    let detail = format!("{url}: HTTP {status}");
    let transient = status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status.is_server_error();
    Err(if transient {
        LlmError::Unavailable(detail)
    } else {
        LlmError::Failed(detail)
    })
}

/// A provider's URL as logs may show it: a query could carry a key.
fn without_query(url: &url::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}

/// Why a provider could not be reached, in the words an operator looks for: the name did not
/// resolve, the connection was refused, it timed out.
fn cause_of(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    let mut innermost = String::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".to_owned(),
                std::io::ErrorKind::TimedOut => return "timed out".to_owned(),
                _ => {}
            }
        }
        let text = cause.to_string();
        // hyper-util's words for a name that did not resolve.
        if text.starts_with("dns error") {
            return format!("the name did not resolve ({text})");
        }
        innermost = text;
        source = cause.source();
    }
    if error.is_connect() {
        format!("could not connect ({innermost})")
    } else {
        innermost
    }
}

/// Every configured provider, with the retry rule shared by all.
#[derive(Debug, Clone)]
pub struct Providers {
    pub openai: OpenAiClient,
    pub anthropic: AnthropicClient,
    /// Extra attempts after a retryable failure, before the fallback is asked.
    pub retries: u32,
    /// Pause before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
}

impl Providers {
    /// One attempt at one provider.
    pub async fn complete_once(
        &self,
        provider: LlmProvider,
        completion: &Completion<'_>,
    ) -> Result<Answer, LlmError> {
        match provider {
            LlmProvider::Openai => self.openai.complete(completion).await,
            LlmProvider::Anthropic => self.anthropic.complete(completion).await,
        }
    }

    /// Asks `primary`, retrying retryable failures a bounded number of times; if it still
    /// cannot answer, asks `fallback`. Returns the answer and the provider and model that
    /// gave it.
    pub async fn complete<'m>(
        &self,
        primary: (LlmProvider, &'m str),
        fallback: Option<(LlmProvider, &'m str)>,
        completion: Completion<'_>,
    ) -> Result<(Answer, (LlmProvider, &'m str)), LlmError> {
        let mark = completion.stream.map(TextStream::mark);
        let first = self.with_retries(primary, completion).await;
        match (first, fallback) {
            (Err(LlmError::Unavailable(detail)), Some(fallback))
                if !streamed_since(completion, mark) =>
            {
                tracing::warn!(%detail, model = primary.1, fallback = fallback.1, "primary model unavailable, asking the fallback");
                self.with_retries(fallback, completion)
                    .await
                    .map(|answer| (answer, fallback))
            }
            (result, _) => result.map(|answer| (answer, primary)),
        }
    }

    async fn with_retries(
        &self,
        (provider, model): (LlmProvider, &str),
        completion: Completion<'_>,
    ) -> Result<Answer, LlmError> {
        let completion = Completion {
            model,
            ..completion
        };
        let mut pause = self.retry_backoff;
        let mut attempt = 0;
        loop {
            let mark = completion.stream.map(TextStream::mark);
            match self.complete_once(provider, &completion).await {
                // Text already shown cannot be asked for again.
                Err(LlmError::Unavailable(detail))
                    if attempt < self.retries && !streamed_since(completion, mark) =>
                {
                    tracing::info!(%detail, model, attempt, "retrying the model");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

/// Whether the completion's stream has been sent text since `mark`.
fn streamed_since(completion: Completion<'_>, mark: Option<usize>) -> bool {
    completion
        .stream
        .zip(mark)
        .is_some_and(|(stream, mark)| stream.mark() != mark)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_estimate_counts_everything_sent_and_answered_at_four_characters_a_token() {
        let call = ToolCall {
            id: "call_1".into(),
            name: "book".into(),
            arguments: json!({ "slot": "10:00" }),
        };
        let messages = [
            PromptMessage::System("s".repeat(10)),
            PromptMessage::User("u".repeat(7)),
            PromptMessage::ToolCalls {
                text: Some("t".repeat(3)),
                calls: vec![call.clone()],
            },
            PromptMessage::ToolResult {
                call_id: "call_1".into(),
                content: "r".repeat(5),
                is_error: false,
            },
        ];
        let functions = [FunctionSpec {
            name: "book".into(),
            description: "d".repeat(6),
            parameters: json!({}),
        }];
        let completion = Completion {
            model: "m",
            temperature: 0.0,
            max_output_tokens: 100,
            messages: &messages,
            functions: &functions,
            may_call_functions: true,
            stream: None,
            answer_schema: None,
        };
        // Sent: 10 + 7 + 3 + (4 + 16: `book`, `{"slot":"10:00"}`) + 5 + (4 + 6 + 2: `{}`) = 57
        // characters, 15 tokens. Answered: 9 characters, 3 tokens; or a call of 20, 5 tokens.
        let text = Output::Text("a".repeat(9));
        assert_eq!(
            TokenUsage::estimate(&completion, &text),
            TokenUsage {
                prompt_tokens: 15,
                completion_tokens: 3
            }
        );
        let calls = Output::ToolCalls {
            text: None,
            calls: vec![call],
        };
        assert_eq!(
            TokenUsage::estimate(&completion, &calls).completion_tokens,
            5
        );
        // Reported counts stand; none at all is no report.
        let reported = TokenUsage {
            prompt_tokens: 1,
            completion_tokens: 0,
        };
        assert_eq!(reported.reported(), Some(reported));
        assert_eq!(TokenUsage::default().reported(), None);
    }
}
