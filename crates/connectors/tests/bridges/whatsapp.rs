//! The WhatsApp Cloud API bridge: Meta's handshake and signed notifications in, the Graph
//! API's messages endpoint (on `wiremock`) out.

use std::time::Duration;

use anyreply_connectors::bridge::Handled;
use anyreply_connectors::text;
use anyreply_connectors::transcribe::Voice;
use anyreply_connectors::whatsapp::{self, WhatsappSettings, signature};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{
    EventLog, TRANSCRIPT, VOICE_BYTES, anyreply, anyreply_requests, assert_transcribed, bridge,
    conversation_with, eventually, long_reply, transcription, voice_by,
};

const TOKEN: &str = "EAAG-access-token";
const APP_SECRET: &str = "meta-app-secret";
const VERIFY_TOKEN: &str = "our-verify-token";
const PHONE_NUMBER_ID: &str = "106540352242922";
const MESSAGES: &str = "/v21.0/106540352242922/messages";

struct Whatsapp {
    graph: MockServer,
    anyreply: MockServer,
    base: String,
    http: reqwest::Client,
    /// The bridge's count of messages it has finished with.
    handled: Handled,
}

impl Whatsapp {
    async fn start() -> Self {
        Self::start_hearing(Voice::default()).await
    }

    /// Like [`Self::start`], with voice notes heard by `voice`.
    async fn start_hearing(voice: Voice) -> Self {
        let graph = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(MESSAGES))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "messaging_product": "whatsapp",
                "contacts": [{ "input": "4915551234567", "wa_id": "4915551234567" }],
                "messages": [{ "id": "wamid.OUT" }]
            })))
            .with_priority(10)
            .mount(&graph)
            .await;
        let anyreply = anyreply().await;
        let settings = WhatsappSettings {
            token: TOKEN.to_owned().into(),
            app_secret: APP_SECRET.to_owned().into(),
            verify_token: VERIFY_TOKEN.to_owned().into(),
            phone_number_id: PHONE_NUMBER_ID.to_owned(),
            api_url: format!("{}/v21.0", graph.uri()).parse().unwrap(),
            send_backoff: Duration::from_millis(10),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut bridge = bridge(&anyreply.uri());
        bridge.voice = voice;
        let handled = bridge.handled.clone();
        tokio::spawn(whatsapp::run(
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
            .post(format!("{}{}", self.base, whatsapp::WEBHOOK_PATH))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(secret) = secret {
            request = request.header("x-hub-signature-256", signature::sign(secret, &body));
        }
        request.send().await.unwrap().status().as_u16()
    }

    /// `(to, body)` of every message sent through the Graph API.
    async fn sent(&self) -> Vec<(String, String)> {
        self.graph
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == MESSAGES)
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
            .filter(|body| body["type"] == "text")
            .map(|body| {
                (
                    body["to"].as_str().unwrap().to_owned(),
                    body["text"]["body"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

/// A notification of one text message from +49 155 51234567, as Meta sends it.
fn text_from(id: &str, text: &str) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": { "display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID },
                    "contacts": [{ "profile": { "name": "Anna" }, "wa_id": "4915551234567" }],
                    "messages": [{
                        "from": "4915551234567", "id": id, "timestamp": "1749416383",
                        "type": "text", "text": { "body": text }
                    }]
                }
            }]
        }]
    })
}

#[tokio::test]
async fn the_handshake_answers_the_challenge_only_for_our_token() {
    let wa = Whatsapp::start().await;
    let handshake = |mode: &str, token: &str| {
        let url = format!(
            "{}{}?hub.mode={mode}&hub.verify_token={token}&hub.challenge=1158201444",
            wa.base,
            whatsapp::WEBHOOK_PATH
        );
        let http = wa.http.clone();
        async move {
            let response = http.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(
        handshake("subscribe", VERIFY_TOKEN).await,
        (200, "1158201444".to_owned())
    );
    assert_eq!(handshake("subscribe", "guess").await.0, 403);
    assert_eq!(handshake("unsubscribe", VERIFY_TOKEN).await.0, 403);
}

#[tokio::test]
async fn a_text_message_is_answered_through_the_graph_api() {
    let wa = Whatsapp::start().await;
    let status = wa
        .notify(&text_from("wamid.IN1", "Do you deliver?"), Some(APP_SECRET))
        .await;
    assert_eq!(status, 200);
    eventually("the reply", || async { !wa.sent().await.is_empty() }).await;
    assert_eq!(
        wa.sent().await,
        [(
            "4915551234567".to_owned(),
            "echo: Do you deliver?".to_owned()
        )]
    );
    let sent = wa.graph.received_requests().await.unwrap();
    let bodies: Vec<Value> = sent
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    // The read receipt with "typing…" first, then the reply.
    assert_eq!(
        bodies[0],
        json!({
            "messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN1",
            "typing_indicator": { "type": "text" }
        })
    );
    assert_eq!(
        bodies[1],
        json!({
            "messaging_product": "whatsapp", "recipient_type": "individual",
            "to": "4915551234567", "type": "text",
            "text": { "body": "echo: Do you deliver?", "preview_url": false }
        })
    );
    let asked = anyreply_requests(&wa.anyreply).await;
    let request: Value = serde_json::from_slice(&asked[0].body).unwrap();
    assert_eq!(request["customer_identifier"], "+4915551234567");
    assert_eq!(
        request["variables"],
        json!({
            "channel": "whatsapp", "bridge": "whatsapp-cloud", "phone": "+4915551234567",
            "name": "Anna", "message_kind": "text"
        })
    );
    assert_eq!(asked[0].headers["idempotency-key"], "whatsapp:wamid.IN1");
}

#[tokio::test]
async fn a_bad_or_missing_signature_gets_401_and_nothing_else_happens() {
    let wa = Whatsapp::start().await;
    let notification = text_from("wamid.IN2", "hi");
    assert_eq!(wa.notify(&notification, None).await, 401);
    assert_eq!(wa.notify(&notification, Some("another-secret")).await, 401);
    // Refused before anything was queued: nothing can follow.
    assert_eq!(wa.handled.count(), 0);
    assert!(anyreply_requests(&wa.anyreply).await.is_empty());
    assert!(wa.sent().await.is_empty());
}

#[tokio::test]
async fn a_redelivered_message_is_answered_once_and_statuses_are_ignored() {
    let wa = Whatsapp::start().await;
    for _ in 0..2 {
        assert_eq!(
            wa.notify(&text_from("wamid.IN3", "hi"), Some(APP_SECRET))
                .await,
            200
        );
    }
    let statuses = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "1", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "phone_number_id": PHONE_NUMBER_ID },
            "statuses": [{ "id": "wamid.OUT", "status": "delivered", "timestamp": "1749416390", "recipient_id": "4915551234567" }]
        }}]}]
    });
    // Statuses are passed over before the notification is answered; the message and its
    // redelivery are finished with once the reply is sent.
    assert_eq!(wa.notify(&statuses, Some(APP_SECRET)).await, 200);
    wa.handled.reach(2).await;
    assert_eq!(wa.sent().await.len(), 1);
    assert_eq!(anyreply_requests(&wa.anyreply).await.len(), 1);
}

#[tokio::test]
async fn a_long_reply_is_split_at_4096_characters_in_order() {
    let wa = Whatsapp::start().await;
    wa.notify(&text_from("wamid.IN4", "long"), Some(APP_SECRET))
        .await;
    eventually("three messages", || async { wa.sent().await.len() == 3 }).await;
    let bodies: Vec<String> = wa.sent().await.into_iter().map(|(_, body)| body).collect();
    assert!(bodies.iter().all(|b| b.chars().count() <= 4096));
    assert_eq!(bodies.join(" "), long_reply());
}

#[tokio::test]
async fn a_5xx_is_retried_and_a_message_outside_the_24_hour_window_is_not() {
    let wa = Whatsapp::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .and(body_partial_json(json!({ "type": "text" })))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&wa.graph)
        .await;
    wa.notify(&text_from("wamid.IN5", "hi"), Some(APP_SECRET))
        .await;
    eventually("the reply after two 503s", || async {
        wa.sent().await.len() == 3
    })
    .await;

    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .and(body_partial_json(json!({ "text": { "body": "echo: late" } })))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": { "message": "Re-engagement message", "type": "OAuthException", "code": 131047 }
        })))
        .with_priority(1)
        .mount(&wa.graph)
        .await;
    wa.notify(&text_from("wamid.IN6", "late"), Some(APP_SECRET))
        .await;
    eventually("the refused send", || async { wa.sent().await.len() == 4 }).await;
    wa.handled.reach(2).await;
    assert_eq!(wa.sent().await.len(), 4, "a refusal is not retried");
}

#[tokio::test]
async fn operator_messages_go_out_for_customers_of_this_bridge_only() {
    let wa = Whatsapp::start().await;
    conversation_with(
        &wa.anyreply,
        json!({ "channel": "whatsapp", "bridge": "whatsapp-cloud", "phone": "+15550001111" }),
    )
    .await;
    let log = EventLog::serve(&wa.anyreply).await;
    log.operator_message("telegram:42", "A Telegram customer's.");
    log.operator_message("+15550001111", "Anna here: your parcel left.");
    eventually("the operator message", || async {
        !wa.sent().await.is_empty()
    })
    .await;
    assert_eq!(
        wa.sent().await,
        [(
            "15550001111".to_owned(),
            "Anna here: your parcel left.".to_owned()
        )]
    );
}

/// A notification of a voice note (audio `1234567890`) from +49 155 51234567.
fn voice_from(id: &str) -> Value {
    let mut notification = text_from(id, "");
    notification["entry"][0]["changes"][0]["value"]["messages"][0] = json!({
        "from": "4915551234567", "id": id, "timestamp": "1749416383", "type": "audio",
        "audio": {
            "mime_type": "audio/ogg; codecs=opus", "sha256": "bf4b6a1e", "id": "1234567890",
            "voice": true
        }
    });
    notification
}

/// The Graph API's media lookup (`GET /{media-id}`) and the download it points at, both
/// wanting the token.
async fn serve_the_note(graph: &MockServer) {
    let bearer = format!("Bearer {TOKEN}");
    Mock::given(method("GET"))
        .and(path("/v21.0/1234567890"))
        .and(header("authorization", bearer.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp", "url": format!("{}/whatsapp_business/attachments/?mid=1234567890", graph.uri()),
            "mime_type": "audio/ogg", "sha256": "bf4b6a1e", "file_size": VOICE_BYTES.len(), "id": "1234567890"
        })))
        .mount(graph)
        .await;
    Mock::given(method("GET"))
        .and(path("/whatsapp_business/attachments/"))
        .and(header("authorization", bearer.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_raw(VOICE_BYTES, "audio/ogg"))
        .mount(graph)
        .await;
}

#[tokio::test]
async fn a_voice_note_is_downloaded_with_the_token_transcribed_and_answered() {
    let heard = transcription().await;
    let wa = Whatsapp::start_hearing(voice_by(&heard)).await;
    serve_the_note(&wa.graph).await;
    assert_eq!(
        wa.notify(&voice_from("wamid.V1"), Some(APP_SECRET)).await,
        200
    );
    wa.handled.reach(1).await;
    assert_eq!(
        wa.sent().await,
        [("4915551234567".to_owned(), format!("echo: {TRANSCRIPT}"))]
    );
    assert_transcribed(&heard, "voice.ogg", "audio/ogg").await;
    let asked = anyreply_requests(&wa.anyreply).await;
    let request: Value = serde_json::from_slice(&asked[0].body).unwrap();
    assert_eq!(request["message"], TRANSCRIPT);
    assert_eq!(request["variables"]["message_kind"], "voice_note");
}

#[tokio::test]
async fn a_voice_note_without_a_model_or_too_large_gets_a_sentence() {
    let wa = Whatsapp::start().await;
    serve_the_note(&wa.graph).await;
    wa.notify(&voice_from("wamid.V2"), Some(APP_SECRET)).await;
    wa.handled.reach(1).await;
    assert_eq!(
        wa.sent().await,
        [("4915551234567".to_owned(), text::VOICE_OFF.to_owned())]
    );
    assert!(anyreply_requests(&wa.anyreply).await.is_empty());

    // Meta tells no size beforehand: the download stops past the limit.
    let heard = transcription().await;
    let mut voice = voice_by(&heard);
    voice.transcriber.as_mut().unwrap().max_bytes = 10;
    let wa = Whatsapp::start_hearing(voice).await;
    serve_the_note(&wa.graph).await;
    wa.notify(&voice_from("wamid.V3"), Some(APP_SECRET)).await;
    wa.handled.reach(1).await;
    assert_eq!(
        wa.sent().await,
        [("4915551234567".to_owned(), text::VOICE_TOO_LONG.to_owned())]
    );
    assert!(heard.received_requests().await.unwrap().is_empty());
    assert!(anyreply_requests(&wa.anyreply).await.is_empty());
}

#[tokio::test]
async fn a_slow_read_receipt_never_delays_the_reply() {
    let wa = Whatsapp::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .and(body_partial_json(json!({ "status": "read" })))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .with_priority(1)
        .mount(&wa.graph)
        .await;
    let started = std::time::Instant::now();
    wa.notify(&text_from("wamid.IN9", "quick"), Some(APP_SECRET))
        .await;
    wa.handled.reach(1).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        wa.sent().await,
        [("4915551234567".to_owned(), "echo: quick".to_owned())]
    );
}
