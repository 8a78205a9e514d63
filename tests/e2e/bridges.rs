//! A channel bridge in front of the real server: an SMS in, the assistant's reply out by
//! Twilio's REST API, one charge however often Twilio delivers the message.

use std::time::Duration;

use anyreply_connectors::bridge::Bridge;
use anyreply_connectors::service;
use anyreply_connectors::twilio::{self, ReplyMode, TwilioSettings, signature};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{Stack, quick_retries};

#[tokio::test]
async fn an_sms_through_the_twilio_bridge_is_answered_and_charged_once() {
    let stack = Stack::start(Duration::ZERO).await;
    let client = stack.client(&stack.base, quick_retries());
    let input = anyreply_client::AssistantInput {
        name: Some("SMS".into()),
        ..Default::default()
    };
    let assistant = client.assistants().create(&input).await.unwrap();

    let (twilio_api, settings) = twilio().await;
    let params: Vec<(String, String)> = [
        ("MessageSid", "SM42"),
        ("From", "+15550001111"),
        ("To", "+18005551212"),
        ("Body", "Do you deliver?"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut next = params.clone();
    next[0].1 = "SM43".into();
    next[3].1 = "And on Sundays?".into();
    let http = reqwest::Client::new();
    let deliver = |webhook: String, params: &[(String, String)]| {
        let signed = signature::sign("token", "https://sms.example.com/twilio/sms", params);
        let request = http
            .post(webhook)
            .header("x-twilio-signature", signed)
            .form(params);
        async move { assert_eq!(request.send().await.unwrap().status(), 200) }
    };

    let sends = || async { twilio_api.received_requests().await.unwrap() };
    let wait_for_sends = |count: usize| async move {
        let arrived = async {
            while sends().await.len() < count {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), arrived)
            .await
            .expect("the bridge never sent the reply");
    };

    // Twilio delivers the message twice.
    let webhook = start_bridge(&stack, settings.clone(), assistant.id).await;
    deliver(webhook.clone(), &params).await;
    deliver(webhook, &params).await;
    wait_for_sends(1).await;
    let sent = sends().await;
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&sent[0].body)
        .into_owned()
        .collect();
    assert!(
        form.contains(&("Body".to_owned(), "echo: Do you deliver?".to_owned())),
        "{form:?}"
    );
    assert!(form.contains(&("To".to_owned(), "+15550001111".to_owned())));

    // The bridge restarts (forgetting what it saw) and Twilio delivers the message once more,
    // then the customer's next message. One customer's messages are handled in order, so once
    // the next message's reply is out, the redelivery was decided: AnyReply's replay told the
    // bridge it was answered before, and nothing was sent for it.
    let webhook = start_bridge(&stack, settings, assistant.id).await;
    deliver(webhook.clone(), &params).await;
    deliver(webhook, &next).await;
    wait_for_sends(2).await;
    let sent = sends().await;
    assert_eq!(sent.len(), 2, "sent again after a restart");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&sent[1].body)
        .into_owned()
        .collect();
    assert!(
        form.contains(&("Body".to_owned(), "echo: And on Sundays?".to_owned())),
        "{form:?}"
    );
    assert_eq!(stack.model_calls().await, 2);
    assert_eq!(stack.balance().await, "9.98".parse().unwrap());
}

/// A Twilio bridge process in front of the stack's server; returns its webhook URL.
async fn start_bridge(stack: &Stack, settings: TwilioSettings, assistant_id: i64) -> String {
    let bridge = Bridge {
        client: stack.client(&stack.base, quick_retries()),
        assistant_id,
        apology: "Sorry.".into(),
        state_dir: std::env::temp_dir(),
        handled: Default::default(),
        voice: Default::default(),
    };
    let (router, _) = twilio::app(settings, bridge).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let webhook = format!(
        "http://{}{}",
        listener.local_addr().unwrap(),
        twilio::WEBHOOK_PATH
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    webhook
}

/// Before a bridge takes messages it checks the server answers, takes its key and has its
/// assistant; each failure is one sentence naming the setting.
#[tokio::test]
async fn a_bridge_checks_its_anyreply_settings_at_start() {
    let stack = Stack::start(Duration::ZERO).await;
    let client = stack.client(&stack.base, quick_retries());
    let input = anyreply_client::AssistantInput {
        name: Some("SMS".into()),
        ..Default::default()
    };
    let assistant = client.assistants().create(&input).await.unwrap();
    let bridge = |client: anyreply_client::Client, assistant_id| Bridge {
        client,
        assistant_id,
        apology: "Sorry.".into(),
        state_dir: std::env::temp_dir(),
        handled: Default::default(),
        voice: Default::default(),
    };

    service::check_anyreply(&bridge(client.clone(), assistant.id))
        .await
        .unwrap();

    let missing = service::check_anyreply(&bridge(client.clone(), assistant.id + 1000))
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("ANYREPLY_ASSISTANT_ID"), "{missing}");

    let wrong_key = anyreply_client::Client::builder()
        .base_url(stack.base.clone())
        .api_key("ark_notakey")
        .retry_policy(quick_retries())
        .build()
        .unwrap();
    let refused = service::check_anyreply(&bridge(wrong_key, assistant.id))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("refused ANYREPLY_API_KEY"), "{refused}");
}

/// The whole handoff through the real server and the real Twilio bridge: a customer writes, a
/// person answers through the API and the bridge sends it by SMS from the number the customer
/// wrote to; `STOP` is remembered by the server and refuses the next operator message.
#[tokio::test]
async fn an_operator_message_reaches_the_customer_by_sms_and_stop_is_remembered() {
    let stack = Stack::start(Duration::ZERO).await;
    let client = stack.client(&stack.base, quick_retries());
    let assistant = client
        .assistants()
        .create(&anyreply_client::AssistantInput {
            name: Some("SMS".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let (twilio_api, settings) = twilio().await;
    let state_dir = std::env::temp_dir().join(format!("anyreply-e2e-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&state_dir).unwrap();
    let bridge = Bridge {
        client: stack.client(&stack.base, quick_retries()),
        assistant_id: assistant.id,
        apology: "Sorry.".into(),
        state_dir: state_dir.clone(),
        handled: Default::default(),
        voice: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let webhook = format!(
        "http://{}{}",
        listener.local_addr().unwrap(),
        twilio::WEBHOOK_PATH
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(twilio::run(settings, bridge, listener, async move {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::new();
    let sms = |sid: &str, body: &str| {
        let params: Vec<(String, String)> = [
            ("MessageSid", sid),
            ("From", "+15550001111"),
            ("To", "+18005551212"),
            ("Body", body),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let signed = signature::sign("token", "https://sms.example.com/twilio/sms", &params);
        let request = http
            .post(&webhook)
            .header("x-twilio-signature", signed)
            .form(&params);
        async move { assert_eq!(request.send().await.unwrap().status(), 200) }
    };
    let bodies = || async {
        twilio_api
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| {
                url::form_urlencoded::parse(&r.body)
                    .into_owned()
                    .collect::<Vec<(String, String)>>()
            })
            .collect::<Vec<_>>()
    };
    let wait_for_sends = |n: usize| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let sent = bodies().await;
            if sent.len() >= n {
                return sent;
            }
            assert!(std::time::Instant::now() < deadline, "{n} sends: {sent:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };

    sms("SM1", "Where is my parcel?").await;
    wait_for_sends(1).await; // the AI's reply
    let conversation = client
        .conversations()
        .list(&Default::default())
        .await
        .unwrap()
        .data[0]
        .id;
    client
        .conversations()
        .send_operator_message(conversation, "Anna here: it left today.")
        .await
        .unwrap();
    let sent = wait_for_sends(2).await;
    let operator = &sent[1];
    for (name, value) in [
        ("Body", "Anna here: it left today."),
        ("To", "+15550001111"),
        ("From", "+18005551212"),
    ] {
        assert!(
            operator.contains(&(name.to_owned(), value.to_owned())),
            "{operator:?}"
        );
    }

    sms("SM2", "STOP").await;
    anyreply_server::testing::eventually("STOP remembered", || async {
        client
            .conversations()
            .get(conversation)
            .await
            .unwrap()
            .opted_out
    })
    .await;
    let refused = client
        .conversations()
        .send_operator_message(conversation, "Still there?")
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(anyreply_client::ErrorCode::ConversationOptedOut)
    );
    assert_eq!(stack.model_calls().await, 1, "STOP reached the AI");

    let _ = stop.send(());
    running.await.unwrap().unwrap();
    assert_eq!(bodies().await.len(), 2, "something more was sent");
    std::fs::remove_dir_all(state_dir).unwrap();
}

/// A `wiremock` Twilio REST API that accepts every message, and bridge settings for it (auth
/// token `token`, webhook URL `https://sms.example.com/twilio/sms`).
async fn twilio() -> (MockServer, TwilioSettings) {
    let api = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&api)
        .await;
    let settings = TwilioSettings {
        account_sid: "AC1".into(),
        auth_token: "token".to_owned().into(),
        public_url: "https://sms.example.com/twilio/sms".into(),
        api_url: api.uri().parse().unwrap(),
        messaging_service_sid: None,
        mode: ReplyMode::Rest,
        max_chars: 1600,
        send_backoff: Duration::from_millis(10),
    };
    (api, settings)
}
