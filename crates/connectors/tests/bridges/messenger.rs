//! The Messenger bridge: Meta's handshake and signed `page` and `instagram` notifications in,
//! the Send API (on `wiremock`) out, operator messages within Meta's windows.

use std::path::Path;
use std::time::Duration;

use anyreply_connectors::bridge::Handled;
use anyreply_connectors::messenger::{self, MessengerSettings, window};
use anyreply_connectors::meta::signature;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{
    EventLog, anyreply, anyreply_requests, bridge_keeping_state_in, long_reply, state_dir,
};

const TOKEN: &str = "EAAG-page-access-token";
const APP_SECRET: &str = "meta-app-secret";
const VERIFY_TOKEN: &str = "our-verify-token";
const MESSAGES: &str = "/v21.0/me/messages";
const PSID: &str = "6789012345678901";
const IGSID: &str = "17841400000000001";
const ATTACHMENT_TEXT: &str = "Please type your question; I read text only.";

struct Messenger {
    graph: MockServer,
    anyreply: MockServer,
    base: String,
    http: reqwest::Client,
    handled: Handled,
}

impl Messenger {
    async fn start() -> Self {
        Self::start_remembering(&[]).await
    }

    /// A bridge whose state says each `(customer, hours ago)` last wrote then.
    async fn start_remembering(last_wrote: &[(&str, u64)]) -> Self {
        let graph = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(MESSAGES))
            .and(query_param("access_token", TOKEN))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({ "recipient_id": PSID, "message_id": "m_OUT" })),
            )
            .with_priority(10)
            .mount(&graph)
            .await;
        let anyreply = anyreply().await;
        let state = state_dir();
        remember(&state, last_wrote);
        let settings = MessengerSettings {
            token: TOKEN.to_owned().into(),
            app_secret: APP_SECRET.to_owned().into(),
            verify_token: VERIFY_TOKEN.to_owned().into(),
            api_url: format!("{}/v21.0", graph.uri()).parse().unwrap(),
            attachment_text: ATTACHMENT_TEXT.to_owned(),
            send_backoff: Duration::from_millis(10),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let bridge = bridge_keeping_state_in(&anyreply.uri(), state);
        let handled = bridge.handled.clone();
        tokio::spawn(messenger::run(
            settings,
            bridge,
            listener,
            std::future::pending(),
        ));
        Self {
            graph,
            anyreply,
            base,
            http: reqwest::Client::new(),
            handled,
        }
    }

    /// Posts `notification` as Meta does, signed with `secret`.
    async fn notify(&self, notification: &Value, secret: Option<&str>) -> u16 {
        let body = serde_json::to_vec(notification).unwrap();
        let mut request = self
            .http
            .post(format!("{}{}", self.base, messenger::WEBHOOK_PATH))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(secret) = secret {
            request = request.header("x-hub-signature-256", signature::sign(secret, &body));
        }
        request.send().await.unwrap().status().as_u16()
    }

    /// The body of every message sent through the Send API, in order (sender actions apart).
    async fn sent(&self) -> Vec<Value> {
        self.posted()
            .await
            .into_iter()
            .filter(|body| body.get("sender_action").is_none())
            .collect()
    }

    /// Every body posted to the Send API, messages and sender actions, in order.
    async fn posted(&self) -> Vec<Value> {
        self.graph
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == MESSAGES)
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }

    async fn texts(&self) -> Vec<(String, String)> {
        self.sent()
            .await
            .iter()
            .map(|body| {
                (
                    body["recipient"]["id"].as_str().unwrap().to_owned(),
                    body["message"]["text"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

/// Writes the bridge's record of customers' last messages, as it keeps it.
fn remember(state: &Path, last_wrote: &[(&str, u64)]) {
    if last_wrote.is_empty() {
        return;
    }
    let now = window::now();
    let record: serde_json::Map<String, Value> = last_wrote
        .iter()
        .map(|(customer, hours)| ((*customer).to_owned(), json!(now - hours * 3600)))
        .collect();
    std::fs::create_dir_all(state).unwrap();
    std::fs::write(window::path(state, 7), Value::Object(record).to_string()).unwrap();
}

/// A notification of `object` (`page` or `instagram`) with one messaging event.
fn notification(object: &str, sender: &str, event: Value) -> Value {
    let mut event = event;
    event["sender"] = json!({ "id": sender });
    event["recipient"] = json!({ "id": "106540352242922" });
    event["timestamp"] = json!(1_765_400_000_000_u64);
    json!({
        "object": object,
        "entry": [{ "id": "106540352242922", "time": 1_765_400_000_123_u64, "messaging": [event] }]
    })
}

fn text(mid: &str, text: &str) -> Value {
    notification(
        "page",
        PSID,
        json!({ "message": { "mid": mid, "text": text } }),
    )
}

#[tokio::test]
async fn the_handshake_answers_the_challenge_only_for_our_token() {
    let m = Messenger::start().await;
    let handshake = |token: &str| {
        let url = format!(
            "{}{}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444",
            m.base,
            messenger::WEBHOOK_PATH
        );
        let http = m.http.clone();
        async move {
            let response = http.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(
        handshake(VERIFY_TOKEN).await,
        (200, "1158201444".to_owned())
    );
    assert_eq!(handshake("guess").await.0, 403);
}

#[tokio::test]
async fn a_messenger_text_is_answered_through_the_send_api() {
    let m = Messenger::start().await;
    assert_eq!(
        m.notify(&text("m_IN1", "Do you deliver?"), Some(APP_SECRET))
            .await,
        200
    );
    m.handled.reach(1).await;
    assert_eq!(
        m.sent().await,
        [json!({
            "recipient": { "id": PSID }, "messaging_type": "RESPONSE",
            "message": { "text": "echo: Do you deliver?" }
        })]
    );
    let asked = anyreply_requests(&m.anyreply).await;
    let request: Value = serde_json::from_slice(&asked[0].body).unwrap();
    assert_eq!(request["customer_identifier"], format!("messenger:{PSID}"));
    assert_eq!(
        request["variables"],
        json!({ "channel": "messenger", "bridge": "messenger" })
    );
    assert_eq!(asked[0].headers["idempotency-key"], "messenger:m_IN1");
}

#[tokio::test]
async fn an_instagram_text_is_answered_on_the_same_webhook() {
    let m = Messenger::start().await;
    let dm = notification(
        "instagram",
        IGSID,
        json!({ "message": { "mid": "aWdfZAG1faXRlbToxOklH", "text": "Still open?" } }),
    );
    assert_eq!(m.notify(&dm, Some(APP_SECRET)).await, 200);
    m.handled.reach(1).await;
    assert_eq!(
        m.texts().await,
        [(IGSID.to_owned(), "echo: Still open?".to_owned())]
    );
    let asked = anyreply_requests(&m.anyreply).await;
    let request: Value = serde_json::from_slice(&asked[0].body).unwrap();
    assert_eq!(request["customer_identifier"], format!("instagram:{IGSID}"));
    assert_eq!(request["variables"]["channel"], "instagram");
}

#[tokio::test]
async fn a_bad_or_missing_signature_gets_401_and_nothing_else_happens() {
    let m = Messenger::start().await;
    let message = text("m_IN2", "hi");
    assert_eq!(m.notify(&message, None).await, 401);
    assert_eq!(m.notify(&message, Some("another-secret")).await, 401);
    assert_eq!(m.handled.count(), 0);
    assert!(anyreply_requests(&m.anyreply).await.is_empty());
    assert!(m.sent().await.is_empty());
}

#[tokio::test]
async fn echoes_reads_and_deliveries_are_ignored_and_a_redelivery_is_answered_once() {
    let m = Messenger::start().await;
    let echo = notification(
        "page",
        "106540352242922",
        json!({ "message": { "mid": "m_ECHO", "text": "echo: hi", "is_echo": true, "app_id": 1517 } }),
    );
    let read = notification(
        "page",
        PSID,
        json!({ "read": { "watermark": 1_765_400_000_000_u64 } }),
    );
    let delivery = notification(
        "page",
        PSID,
        json!({ "delivery": { "mids": ["m_OUT"], "watermark": 1_765_400_000_000_u64 } }),
    );
    for ignored in [echo, read, delivery] {
        assert_eq!(m.notify(&ignored, Some(APP_SECRET)).await, 200);
    }
    for _ in 0..2 {
        assert_eq!(m.notify(&text("m_IN3", "hi"), Some(APP_SECRET)).await, 200);
    }
    m.handled.reach(2).await;
    assert_eq!(m.texts().await, [(PSID.to_owned(), "echo: hi".to_owned())]);
    assert_eq!(anyreply_requests(&m.anyreply).await.len(), 1);
}

#[tokio::test]
async fn a_long_reply_is_split_at_2000_characters_in_order() {
    let m = Messenger::start().await;
    m.notify(&text("m_IN4", "long"), Some(APP_SECRET)).await;
    m.handled.reach(1).await;
    let bodies: Vec<String> = m.texts().await.into_iter().map(|(_, body)| body).collect();
    assert!(bodies.len() >= 5, "{} pieces", bodies.len());
    assert!(bodies.iter().all(|b| b.chars().count() <= 2000));
    assert_eq!(bodies.join(" "), long_reply());
}

#[tokio::test]
async fn an_attachment_is_answered_with_the_sentence_not_the_assistant() {
    let m = Messenger::start().await;
    let photo = notification(
        "page",
        PSID,
        json!({ "message": { "mid": "m_IN5", "attachments": [
            { "type": "image", "payload": { "url": "https://scontent.xx.fbcdn.net/photo.jpg" } }
        ] } }),
    );
    assert_eq!(m.notify(&photo, Some(APP_SECRET)).await, 200);
    m.handled.reach(1).await;
    assert_eq!(
        m.texts().await,
        [(PSID.to_owned(), ATTACHMENT_TEXT.to_owned())]
    );
    assert!(anyreply_requests(&m.anyreply).await.is_empty());
}

#[tokio::test]
async fn operator_messages_go_within_24_hours_with_the_tag_within_7_days_and_not_after() {
    let recent = format!("messenger:{PSID}");
    let a_day_and_more = "messenger:1111";
    let a_week_and_more = "instagram:2222";
    let m = Messenger::start_remembering(&[
        (recent.as_str(), 2),
        (a_day_and_more, 30),
        (a_week_and_more, 8 * 24),
    ])
    .await;
    let log = EventLog::serve(&m.anyreply).await;
    log.operator_message("telegram:42", "A Telegram customer's.");
    log.operator_message(&recent, "Anna here: your parcel left.");
    log.operator_message(a_day_and_more, "Anna again: it arrived?");
    log.operator_message(a_week_and_more, "Too late for this one.");
    m.handled.reach(4).await;
    assert_eq!(
        m.sent().await,
        [
            json!({
                "recipient": { "id": PSID }, "messaging_type": "RESPONSE",
                "message": { "text": "Anna here: your parcel left." }
            }),
            json!({
                "recipient": { "id": "1111" }, "messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT",
                "message": { "text": "Anna again: it arrived?" }
            }),
        ]
    );
    // Not retried either: nothing more goes out.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(m.sent().await.len(), 2);
    let metrics = m
        .http
        .get(format!("{}/metrics", m.base))
        .send()
        .await
        .unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("anyreply_bridge_outside_window_total{channel=\"instagram\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_customers_message_opens_the_window_and_meta_s_refusal_is_not_retried() {
    let m = Messenger::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .and(body_partial_json(json!({ "recipient": { "id": "8888" } })))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": { "message": "(#10) This message is sent outside of allowed window.",
                       "type": "OAuthException", "code": 10, "error_subcode": 2_018_278 }
        })))
        .with_priority(1)
        .mount(&m.graph)
        .await;
    m.notify(&text("m_IN6", "hi"), Some(APP_SECRET)).await;
    m.handled.reach(1).await;
    let log = EventLog::serve(&m.anyreply).await;
    log.operator_message(&format!("messenger:{PSID}"), "Anna here.");
    // Unknown to the bridge (its state lost): the tag, and Meta decides.
    log.operator_message("messenger:8888", "Refused by Meta.");
    m.handled.reach(3).await;
    let sent = m.sent().await;
    assert_eq!(sent.len(), 3, "{sent:#?}");
    assert_eq!(sent[1]["messaging_type"], "RESPONSE");
    assert_eq!(sent[1]["message"]["text"], "Anna here.");
    assert_eq!(sent[2]["tag"], "HUMAN_AGENT");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(m.sent().await.len(), 3, "a refusal is not retried");
}

#[tokio::test]
async fn the_customer_sees_typing_at_once_and_a_stuck_indicator_does_not_hold_the_reply() {
    let messenger = Messenger::start().await;
    // Meta takes 30 s to take the typing indicator: the reply goes out all the same.
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .and(body_partial_json(json!({ "sender_action": "typing_on" })))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .with_priority(1)
        .mount(&messenger.graph)
        .await;
    let started = std::time::Instant::now();
    assert_eq!(
        messenger
            .notify(&text("m_typing", "Hello?"), Some(APP_SECRET))
            .await,
        200
    );
    messenger.handled.reach(1).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the reply waited"
    );
    let posted = messenger.posted().await;
    assert!(
        posted.contains(&json!({ "recipient": { "id": PSID }, "sender_action": "typing_on" })),
        "{posted:?}"
    );
    assert_eq!(messenger.texts().await.len(), 1, "{posted:?}");
    // An attachment gets its sentence without a typing indicator.
    messenger
        .notify(
            &notification(
                "page",
                PSID,
                json!({ "message": { "mid": "m_att", "attachments": [{ "type": "image" }] } }),
            ),
            Some(APP_SECRET),
        )
        .await;
    messenger.handled.reach(2).await;
    let typing = messenger
        .posted()
        .await
        .iter()
        .filter(|body| body.get("sender_action").is_some())
        .count();
    assert_eq!(typing, 1);
}
