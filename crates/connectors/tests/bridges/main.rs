//! The bridges against mock servers speaking the real protocols: AnyReply's API, the
//! Telegram Bot API and Twilio's REST API, all on `wiremock`.

#![allow(clippy::unwrap_used, unreachable_pub, missing_debug_implementations)]

mod email;
mod mail_servers;
mod messenger;
mod startup;
mod telegram;
mod twilio;
mod whatsapp;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyreply_client::{Client, RetryPolicy};
use anyreply_connectors::bridge::Bridge;
use anyreply_connectors::text::Texts;
use anyreply_connectors::transcribe::{Transcriber, Voice};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

pub const APOLOGY: &str = "Sorry, try again later.";

/// What the assistant answers to `handoff`, handing the conversation to a person.
pub const HANDED_OVER: &str = "A colleague will answer you here shortly.";

/// AnyReply's generate-reply, answering `echo: <message>`; a message `poor` gets
/// `INSUFFICIENT_BALANCE`, `lost` gets `ASSISTANT_NOT_FOUND`, `human` is under takeover, `handoff`
/// is answered [`HANDED_OVER`] as the AI hands over (`ai_disabled` with words), `opted`
/// comes from a customer who opted out, `burst` is coalesced into a later message, and `long` gets a reply of 9,000 characters. Its event
/// stream has nothing to tell until an [`EventLog`] is served.
pub async fn anyreply() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/ai/generate-reply"))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let message = body["message"].as_str().unwrap().to_owned();
            let error = |status: u16, code: &str| {
                ResponseTemplate::new(status).set_body_json(json!({
                    "success": false, "status": false, "message": code, "error": code, "error_code": code
                }))
            };
            let reply = |text: String, ai_disabled: bool| {
                ResponseTemplate::new(200).set_body_json(json!({
                    "success": true, "conversation_id": CONVERSATION,
                    "customer_identifier": body["customer_identifier"], "reply": text,
                    "function_calls": [], "ai_disabled": ai_disabled
                }))
            };
            match message.as_str() {
                "poor" => error(402, "INSUFFICIENT_BALANCE"),
                "lost" => error(404, "ASSISTANT_NOT_FOUND"),
                "human" => reply(String::new(), true),
                "handoff" => reply(HANDED_OVER.to_owned(), true),
                "opted" => ResponseTemplate::new(200).set_body_json(json!({
                    "success": true, "conversation_id": CONVERSATION,
                    "customer_identifier": body["customer_identifier"], "reply": "",
                    "function_calls": [], "ai_disabled": false, "opted_out": true
                })),
                "long" => reply(long_reply(), false),
                "burst" => ResponseTemplate::new(200).set_body_json(json!({
                    "success": true, "conversation_id": CONVERSATION,
                    "customer_identifier": body["customer_identifier"], "reply": "",
                    "function_calls": [], "ai_disabled": false, "coalesced": true
                })),
                slow if slow.starts_with("slow") => {
                    reply(format!("echo: {message}"), false).set_delay(Duration::from_millis(300))
                }
                _ => reply(format!("echo: {message}"), false),
            }
        })
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/events"))
        .respond_with(sse(String::new(), Duration::from_millis(500)))
        .with_priority(100)
        .mount(&server)
        .await;
    server
}

pub const CONVERSATION: &str = "01a21203-ace5-7678-97e0-1ea8fc865519";

/// An SSE answer as the server frames it, asking to be reconnected after `retry`: wiremock's
/// bodies end, so the bridge comes back (with `Last-Event-ID`) for what happened since.
fn sse(events: String, retry: Duration) -> ResponseTemplate {
    let retry = retry.as_millis();
    ResponseTemplate::new(200)
        .insert_header("cache-control", "no-cache")
        .set_body_raw(
            format!(": keep-alive\n\nretry: {retry}\n\n{events}"),
            "text/event-stream",
        )
}

/// The events of assistant 7 on a mock AnyReply: each connection gets those after its
/// `Last-Event-ID`, as the server does.
#[derive(Clone)]
pub struct EventLog {
    events: Arc<Mutex<Vec<Value>>>,
}

impl EventLog {
    pub async fn serve(server: &MockServer) -> Self {
        let log = Self {
            events: Arc::default(),
        };
        let events = log.events.clone();
        Mock::given(method("GET"))
            .and(path("/api/events"))
            .and(query_param("assistant_id", "7"))
            .respond_with(move |request: &Request| {
                let after: i64 = request
                    .headers
                    .get("last-event-id")
                    .and_then(|id| id.to_str().ok()?.parse().ok())
                    .unwrap_or(0);
                let frames: String = events
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|event| event["id"].as_i64().unwrap() > after)
                    .map(|event| {
                        format!(
                            "id: {}\nevent: {}\ndata: {event}\n\n",
                            event["id"],
                            event["type"].as_str().unwrap()
                        )
                    })
                    .collect();
                sse(frames, Duration::from_millis(20))
            })
            .with_priority(1)
            .mount(server)
            .await;
        log
    }

    /// An operator wrote `content` to `customer`; returns the event's id.
    pub fn operator_message(&self, customer: &str, content: &str) -> i64 {
        let mut events = self.events.lock().unwrap();
        let id = events.len() as i64 + 1;
        events.push(json!({
            "id": id, "type": "operator.message", "conversation_id": CONVERSATION,
            "customer_identifier": customer, "assistant_id": 7, "created_at": "2026-01-05T10:00:00Z",
            "message": { "id": 500 + id, "role": "operator", "content": content, "created_at": "2026-01-05T10:00:00Z" }
        }));
        id
    }
}

/// The `Last-Event-ID` of every connection to the event stream, in order.
pub async fn resumed_after(server: &MockServer) -> Vec<Option<String>> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/api/events")
        .map(|r| {
            r.headers
                .get("last-event-id")
                .map(|id| id.to_str().unwrap().to_owned())
        })
        .collect()
}

/// A directory of its own for a bridge's state.
pub fn state_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "anyreply-bridge-state-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// 9,000 characters in sentences: three Telegram messages, six SMS.
pub fn long_reply() -> String {
    "This is a sentence of the long reply. "
        .repeat(240)
        .trim_end()
        .to_owned()
}

pub fn bridge(anyreply_url: &str) -> Bridge {
    bridge_keeping_state_in(anyreply_url, state_dir())
}

pub fn bridge_keeping_state_in(anyreply_url: &str, state_dir: PathBuf) -> Bridge {
    let client = Client::builder()
        .base_url(anyreply_url)
        .api_key("ark_bridge")
        .retry_policy(RetryPolicy::default().with_max_attempts(1))
        .build()
        .unwrap();
    Bridge {
        client,
        assistant_id: 7,
        apology: APOLOGY.to_owned(),
        state_dir,
        handled: Default::default(),
        voice: Default::default(),
    }
}

/// The generate-reply requests AnyReply received.
pub async fn anyreply_requests(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/api/ai/generate-reply")
        .collect()
}

pub use anyreply_core::testing::eventually;

/// AnyReply's conversation `CONVERSATION`, with `variables`.
pub async fn conversation_with(server: &MockServer, variables: Value) {
    Mock::given(method("GET"))
        .and(path(format!("/api/conversations/{CONVERSATION}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": true, "id": CONVERSATION, "assistant_id": 7,
            "customer_identifier": "+15550001111", "ai_enabled": false, "total_cost": "0.00",
            "history": [], "variables": variables, "next_cursor": null
        })))
        .mount(server)
        .await;
}

/// A voice note's bytes, as a channel serves them (not text: the upload must be byte-exact).
pub const VOICE_BYTES: &[u8] =
    b"OggS\x00\x02\x00\x00\xff\xfe a voice note \x80\x81\r\n--not-a-boundary";
/// What the transcription model hears in [`VOICE_BYTES`].
pub const TRANSCRIPT: &str = "do you ship to Austria?";
pub const TRANSCRIPTION_MODEL: &str = "whisper-1";

/// An OpenAI-compatible `POST /v1/audio/transcriptions` that hears [`TRANSCRIPT`].
pub async fn transcription() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/audio/transcriptions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "text": TRANSCRIPT })))
        .mount(&server)
        .await;
    server
}

/// Voice notes transcribed by `server` (a [`transcription`]).
pub fn voice_by(server: &MockServer) -> Voice {
    let base = format!("{}/v1", server.uri()).parse().unwrap();
    Voice {
        transcriber: Some(
            Transcriber::new(&base, TRANSCRIPTION_MODEL, Some("sk-test".into())).unwrap(),
        ),
        texts: Texts::default(),
    }
}

/// Checks that `server` was asked once, with the note's exact bytes as `file` (named and typed
/// `mime_type`), the model and the key.
pub async fn assert_transcribed(server: &MockServer, file_name: &str, mime_type: &str) {
    let asked = server.received_requests().await.unwrap();
    assert_eq!(asked.len(), 1);
    let request = &asked[0];
    assert_eq!(request.headers["authorization"], "Bearer sk-test");
    let content_type = request.headers["content-type"].to_str().unwrap();
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap();
    let part = |head: &str, content: &[u8]| {
        let mut expected = format!("--{boundary}\r\n{head}\r\n\r\n").into_bytes();
        expected.extend_from_slice(content);
        expected.extend_from_slice(b"\r\n");
        request.body.windows(expected.len()).any(|w| w == expected)
    };
    let file_head = format!(
        "Content-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: {mime_type}"
    );
    assert!(part(&file_head, VOICE_BYTES), "the note's bytes as `file`");
    let model_head = "Content-Disposition: form-data; name=\"model\"";
    assert!(
        part(model_head, TRANSCRIPTION_MODEL.as_bytes()),
        "the model"
    );
}
