//! The Twilio SMS bridge: signed webhooks in, the REST Messages API (on `wiremock`) out.

use std::time::Duration;

use anyreply_connectors::bridge::Handled;
use anyreply_connectors::text;
use anyreply_connectors::transcribe::Voice;
use anyreply_connectors::twilio::{self, ReplyMode, TwilioSettings, signature};
use serde_json::Value;
use wiremock::matchers::{basic_auth, body_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{
    APOLOGY, CONVERSATION, EventLog, TRANSCRIPT, VOICE_BYTES, anyreply, anyreply_requests,
    assert_transcribed, bridge, conversation_with, eventually, long_reply, transcription, voice_by,
};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-auth-token";
const PUBLIC_URL: &str = "https://sms.example.com/twilio/sms";

struct Sms {
    rest: MockServer,
    anyreply: MockServer,
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The bridge's count of messages it has finished with.
    handled: Handled,
}

impl Sms {
    async fn start(configure: impl FnOnce(&mut TwilioSettings)) -> Self {
        Self::start_hearing(Voice::default(), configure).await
    }

    /// Like [`Self::start`], with voice notes heard by `voice`.
    async fn start_hearing(voice: Voice, configure: impl FnOnce(&mut TwilioSettings)) -> Self {
        let rest = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(format!(
                "/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
            )))
            .and(basic_auth(ACCOUNT, AUTH_TOKEN))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(serde_json::json!({ "sid": "SMout", "status": "queued" })),
            )
            .with_priority(10)
            .mount(&rest)
            .await;
        let anyreply = anyreply().await;
        let mut settings = TwilioSettings {
            account_sid: ACCOUNT.to_owned(),
            auth_token: AUTH_TOKEN.to_owned().into(),
            public_url: PUBLIC_URL.to_owned(),
            api_url: rest.uri().parse().unwrap(),
            messaging_service_sid: None,
            mode: ReplyMode::Rest,
            max_chars: 1600,
            send_backoff: Duration::from_millis(10),
        };
        configure(&mut settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut bridge = bridge(&anyreply.uri());
        bridge.voice = voice;
        let handled = bridge.handled.clone();
        let running = tokio::spawn(twilio::run(settings, bridge, listener, async move {
            let _ = stopped.await;
        }));
        Self {
            rest,
            anyreply,
            base,
            http: reqwest::Client::new(),
            stop: Some(stop),
            running,
            handled,
        }
    }

    /// Shuts the bridge down and waits until it has.
    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.running).await.unwrap().unwrap();
    }

    /// Posts an inbound SMS as Twilio does, signed for `signed_url` (or unsigned, or badly).
    async fn deliver(&self, sid: &str, body: &str, signing: Signing) -> (u16, String) {
        self.deliver_from(sid, body, "+15550001111", "+18005551212", signing)
            .await
    }

    /// Posts an inbound message from the Twilio address `from` to `to` (`whatsapp:+…` on
    /// WhatsApp).
    async fn deliver_from(
        &self,
        sid: &str,
        body: &str,
        from: &str,
        to: &str,
        signing: Signing,
    ) -> (u16, String) {
        let params: Vec<(String, String)> = [
            ("AccountSid", ACCOUNT),
            ("ApiVersion", "2010-04-01"),
            ("Body", body),
            ("From", from),
            ("FromCountry", "US"),
            ("MessageSid", sid),
            ("NumMedia", "0"),
            ("To", to),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        self.post(params, signing).await
    }

    /// A WhatsApp voice note, its audio at `{rest}/…/Media/ME1`, from `whatsapp:+15550001111`.
    async fn deliver_voice(&self, sid: &str) -> (u16, String) {
        let media = format!("{}{VOICE_MEDIA}", self.rest.uri());
        let params: Vec<(String, String)> = [
            ("AccountSid", ACCOUNT),
            ("Body", ""),
            ("From", "whatsapp:+15550001111"),
            ("MediaContentType0", "audio/ogg"),
            ("MediaUrl0", &media),
            ("MessageSid", sid),
            ("MessageType", "audio"),
            ("NumMedia", "1"),
            ("To", "whatsapp:+14155238886"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        self.post(params, Signing::For(PUBLIC_URL)).await
    }

    async fn post(&self, params: Vec<(String, String)>, signing: Signing) -> (u16, String) {
        let mut request = self
            .http
            .post(format!("{}{}", self.base, twilio::WEBHOOK_PATH))
            .form(&params);
        match signing {
            Signing::For(url) => {
                request = request.header(
                    "x-twilio-signature",
                    signature::sign(AUTH_TOKEN, url, &params),
                )
            }
            Signing::WrongToken => {
                request = request.header(
                    "x-twilio-signature",
                    signature::sign("another-token", PUBLIC_URL, &params),
                )
            }
            Signing::None => {}
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// `(To, From, Body)` of every message sent through the REST API.
    async fn sent(&self) -> Vec<(String, String, String)> {
        self.rest
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path().ends_with("/Messages.json"))
            .map(|r| {
                let form: Vec<(String, String)> =
                    url::form_urlencoded::parse(&r.body).into_owned().collect();
                let get = |name: &str| {
                    form.iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                (get("To"), get("From"), get("Body"))
            })
            .collect()
    }
}

enum Signing {
    For(&'static str),
    WrongToken,
    None,
}

const EMPTY_TWIML: &str = "<Response />";

#[tokio::test]
async fn an_sms_is_acknowledged_at_once_and_answered_by_the_rest_api() {
    let sms = Sms::start(|_| {}).await;
    let (status, twiml) = sms
        .deliver("SM1", "Are you open on Sunday?", Signing::For(PUBLIC_URL))
        .await;
    assert_eq!((status, twiml.as_str()), (200, EMPTY_TWIML));
    eventually("the reply", || async { !sms.sent().await.is_empty() }).await;
    assert_eq!(
        sms.sent().await,
        [(
            "+15550001111".to_owned(),
            "+18005551212".to_owned(),
            "echo: Are you open on Sunday?".to_owned()
        )]
    );
    let asked = anyreply_requests(&sms.anyreply).await;
    let body: Value = serde_json::from_slice(&asked[0].body).unwrap();
    assert_eq!(body["customer_identifier"], "+15550001111");
    assert_eq!(
        body["variables"],
        serde_json::json!({
            "channel": "sms", "bridge": "twilio", "phone": "+15550001111", "country": "US",
            "message_kind": "text",
            "business_number": "+18005551212"
        })
    );
    assert_eq!(asked[0].headers["idempotency-key"], "twilio:SM1");
}

#[tokio::test]
async fn bad_or_missing_signatures_get_403_and_nothing_else_happens() {
    let sms = Sms::start(|_| {}).await;
    for signing in [
        Signing::None,
        Signing::WrongToken,
        Signing::For("https://sms.example.com/other"),
    ] {
        let (status, _) = sms.deliver("SM2", "hi", signing).await;
        assert_eq!(status, 403);
    }
    // Refused before anything was queued: nothing can follow.
    assert_eq!(sms.handled.count(), 0);
    assert!(anyreply_requests(&sms.anyreply).await.is_empty());
    assert!(sms.sent().await.is_empty());
}

#[tokio::test]
async fn the_url_is_accepted_with_and_without_port_443() {
    let sms = Sms::start(|_| {}).await;
    let (status, _) = sms
        .deliver(
            "SM3",
            "hi",
            Signing::For("https://sms.example.com:443/twilio/sms"),
        )
        .await;
    assert_eq!(status, 200);
    let with_port =
        Sms::start(|s| s.public_url = "https://sms.example.com:443/twilio/sms".to_owned()).await;
    let (status, _) = with_port
        .deliver("SM4", "hi", Signing::For(PUBLIC_URL))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_redelivered_message_sid_is_not_sent_twice() {
    let sms = Sms::start(|_| {}).await;
    sms.deliver("SM5", "hi", Signing::For(PUBLIC_URL)).await;
    let (status, twiml) = sms.deliver("SM5", "hi", Signing::For(PUBLIC_URL)).await;
    assert_eq!((status, twiml.as_str()), (200, EMPTY_TWIML));
    sms.handled.reach(2).await;
    assert_eq!(sms.sent().await.len(), 1);
    assert_eq!(anyreply_requests(&sms.anyreply).await.len(), 1);
}

#[tokio::test]
async fn opt_out_keywords_never_reach_the_ai() {
    let sms = Sms::start(|_| {}).await;
    for (n, keyword) in ["STOP", "stop", " Unsubscribe ", "START", "HELP", "quit"]
        .iter()
        .enumerate()
    {
        let (status, twiml) = sms
            .deliver(&format!("SMk{n}"), keyword, Signing::For(PUBLIC_URL))
            .await;
        assert_eq!((status, twiml.as_str()), (200, EMPTY_TWIML));
    }
    // A sentence that merely contains one is a question like any other.
    sms.deliver("SMk9", "Please stop by tomorrow?", Signing::For(PUBLIC_URL))
        .await;
    eventually("the one real question", || async {
        sms.sent().await.len() == 1
    })
    .await;
    assert_eq!(anyreply_requests(&sms.anyreply).await.len(), 1);
}

#[tokio::test]
async fn inline_mode_answers_with_message_twiml() {
    let sms = Sms::start(|s| s.mode = ReplyMode::Inline).await;
    let (status, twiml) = sms
        .deliver("SM6", "Hi & <welcome>", Signing::For(PUBLIC_URL))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        twiml,
        "<Response><Message><Body>echo: Hi &amp; &lt;welcome&gt;</Body></Message></Response>"
    );
    assert!(sms.sent().await.is_empty());
}

#[tokio::test]
async fn a_long_reply_is_split_into_messages_sent_in_order() {
    let sms = Sms::start(|_| {}).await;
    sms.deliver("SM7", "long", Signing::For(PUBLIC_URL)).await;
    eventually("six messages", || async { sms.sent().await.len() == 6 }).await;
    let bodies: Vec<String> = sms
        .sent()
        .await
        .into_iter()
        .map(|(_, _, body)| body)
        .collect();
    assert!(bodies.iter().all(|b| b.chars().count() <= 1600));
    assert_eq!(bodies.join(" "), crate::long_reply());
}

#[tokio::test]
async fn takeover_sends_nothing_and_failures_send_the_apology() {
    let sms = Sms::start(|_| {}).await;
    sms.deliver("SM8", "human", Signing::For(PUBLIC_URL)).await;
    sms.deliver("SM9", "poor", Signing::For(PUBLIC_URL)).await;
    sms.deliver("SM10", "lost", Signing::For(PUBLIC_URL)).await;
    sms.handled.reach(3).await;
    let bodies: Vec<String> = sms
        .sent()
        .await
        .into_iter()
        .map(|(_, _, body)| body)
        .collect();
    assert_eq!(bodies, [APOLOGY, APOLOGY]);
}

#[tokio::test]
async fn a_failed_rest_send_is_retried() {
    let sms = Sms::start(|_| {}).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&sms.rest)
        .await;
    sms.deliver("SM11", "hi", Signing::For(PUBLIC_URL)).await;
    eventually("the retried send", || async { sms.sent().await.len() == 2 }).await;
}

#[tokio::test]
async fn health_answers() {
    let sms = Sms::start(|_| {}).await;
    let response = sms
        .http
        .get(format!("{}/health", sms.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn shutdown_finishes_the_replies_in_flight() {
    let mut sms = Sms::start(|s| s.messaging_service_sid = Some("MG1".to_owned())).await;
    let (status, _) = sms
        .deliver("SMslow", "slow one", Signing::For(PUBLIC_URL))
        .await;
    assert_eq!(status, 200);
    assert!(
        sms.sent().await.is_empty(),
        "the reply is still being produced"
    );
    sms.stop().await;
    assert_eq!(
        sms.sent().await.len(),
        1,
        "shutdown waited for the reply to go out"
    );
    let form: Vec<(String, String)> =
        url::form_urlencoded::parse(&sms.rest.received_requests().await.unwrap()[0].body)
            .into_owned()
            .collect();
    assert!(
        form.contains(&("MessagingServiceSid".to_owned(), "MG1".to_owned())),
        "{form:?}"
    );
    assert!(form.contains(&("Body".to_owned(), "echo: slow one".to_owned())));
}

#[tokio::test]
async fn one_customers_messages_are_answered_in_order() {
    let sms = Sms::start(|_| {}).await;
    sms.deliver("SMa", "slow first", Signing::For(PUBLIC_URL))
        .await;
    sms.deliver("SMb", "second", Signing::For(PUBLIC_URL)).await;
    eventually("both replies", || async { sms.sent().await.len() == 2 }).await;
    let bodies: Vec<String> = sms
        .sent()
        .await
        .into_iter()
        .map(|(_, _, body)| body)
        .collect();
    assert_eq!(bodies, ["echo: slow first", "echo: second"]);
}

/// The body of every `Messages.json` request, as form fields.
async fn sent_forms(sms: &Sms) -> Vec<Vec<(String, String)>> {
    sms.rest
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| url::form_urlencoded::parse(&r.body).into_owned().collect())
        .collect()
}

#[tokio::test]
async fn an_operator_message_is_sent_from_the_number_the_customer_wrote_to() {
    let sms = Sms::start(|_| {}).await;
    conversation_with(
        &sms.anyreply,
        serde_json::json!({ "channel": "sms", "business_number": "+18005551212" }),
    )
    .await;
    let log = EventLog::serve(&sms.anyreply).await;
    log.operator_message("telegram:42", "A Telegram customer's: not for SMS.");
    log.operator_message("+15550001111", &long_reply());
    eventually("six SMS", || async { sms.sent().await.len() >= 6 }).await;
    let sent = sms.sent().await;
    assert!(
        sent.iter().all(|(to, from, body)| to == "+15550001111"
            && from == "+18005551212"
            && body.chars().count() <= 1600),
        "{sent:?}"
    );
    let bodies: Vec<_> = sent.iter().map(|(_, _, body)| body.as_str()).collect();
    assert_eq!(bodies.join(" "), long_reply());
}

#[tokio::test]
async fn with_a_messaging_service_operator_messages_are_sent_from_it() {
    let mut sms = Sms::start(|s| s.messaging_service_sid = Some("MG1".to_owned())).await;
    // The conversation says the channel; the service picks the number.
    conversation_with(&sms.anyreply, serde_json::json!({ "channel": "sms" })).await;
    let log = EventLog::serve(&sms.anyreply).await;
    log.operator_message("+15550001111", "Your table is ready.");
    eventually("the SMS", || async { !sms.sent().await.is_empty() }).await;
    let form = &sent_forms(&sms).await[0];
    assert!(form.contains(&("MessagingServiceSid".to_owned(), "MG1".to_owned())));
    assert!(form.contains(&("To".to_owned(), "+15550001111".to_owned())));
    assert!(!form.iter().any(|(name, _)| name == "From"), "{form:?}");
    sms.stop().await;
}

#[tokio::test]
async fn stop_and_start_tell_anyreply_and_never_reach_the_ai() {
    let sms = Sms::start(|_| {}).await;
    for route in ["opt-out", "opt-in"] {
        Mock::given(method("POST"))
            .and(path(format!("/api/automate/{route}")))
            .and(body_json(
                serde_json::json!({ "assistant_id": 7, "customer_identifier": "+15550001111" }),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "status": true, "conversation_id": CONVERSATION, "opted_out": route == "opt-out"
            })))
            .mount(&sms.anyreply)
            .await;
    }
    let told = |route: &'static str| {
        let anyreply = &sms.anyreply;
        async move {
            anyreply
                .received_requests()
                .await
                .unwrap()
                .iter()
                .filter(|r| r.url.path() == format!("/api/automate/{route}"))
                .count()
        }
    };
    let (status, twiml) = sms
        .deliver("SM70", " stop ", Signing::For(PUBLIC_URL))
        .await;
    assert_eq!((status, twiml.as_str()), (200, EMPTY_TWIML));
    eventually("the opt-out", || async { told("opt-out").await == 1 }).await;
    sms.deliver("SM71", "UNSTOP", Signing::For(PUBLIC_URL))
        .await;
    eventually("the opt-in", || async { told("opt-in").await == 1 }).await;
    // A message after them is answered: the keywords before it were not.
    sms.deliver("SM72", "Hello again", Signing::For(PUBLIC_URL))
        .await;
    eventually("the reply", || async { !sms.sent().await.is_empty() }).await;
    let asked = anyreply_requests(&sms.anyreply).await;
    assert_eq!(asked.len(), 1);
    let body: Value = serde_json::from_slice(&asked[0].body).unwrap();
    assert_eq!(body["message"], "Hello again");
    assert_eq!(sms.sent().await.len(), 1);
}

#[tokio::test]
async fn nothing_is_sent_to_a_customer_who_opted_out() {
    let sms = Sms::start(|_| {}).await;
    sms.deliver("SM80", "opted", Signing::For(PUBLIC_URL)).await;
    // The same customer's next message is handled after it: once its reply is out, the first
    // has been answered with nothing.
    sms.deliver("SM81", "next", Signing::For(PUBLIC_URL)).await;
    eventually("the second reply", || async {
        !sms.sent().await.is_empty()
    })
    .await;
    let bodies: Vec<_> = sms
        .sent()
        .await
        .into_iter()
        .map(|(_, _, body)| body)
        .collect();
    assert_eq!(bodies, ["echo: next"]);
}

const WHATSAPP_CUSTOMER: &str = "whatsapp:+15550001111";
const WHATSAPP_BUSINESS: &str = "whatsapp:+14155238886";

#[tokio::test]
async fn a_whatsapp_message_is_answered_on_whatsapp_by_the_same_customers_conversation() {
    let sms = Sms::start(|_| {}).await;
    let (status, twiml) = sms
        .deliver_from(
            "SMw1",
            "Do you deliver?",
            WHATSAPP_CUSTOMER,
            WHATSAPP_BUSINESS,
            Signing::For(PUBLIC_URL),
        )
        .await;
    assert_eq!((status, twiml.as_str()), (200, EMPTY_TWIML));
    eventually("the reply", || async { !sms.sent().await.is_empty() }).await;
    assert_eq!(
        sms.sent().await,
        [(
            WHATSAPP_CUSTOMER.to_owned(),
            WHATSAPP_BUSINESS.to_owned(),
            "echo: Do you deliver?".to_owned()
        )]
    );
    // The same person by SMS: the same customer, another channel.
    sms.deliver("SMw2", "And on Sunday?", Signing::For(PUBLIC_URL))
        .await;
    eventually("the SMS reply", || async { sms.sent().await.len() == 2 }).await;
    let asked = anyreply_requests(&sms.anyreply).await;
    let bodies: Vec<Value> = asked
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(bodies[0]["customer_identifier"], "+15550001111");
    assert_eq!(bodies[1]["customer_identifier"], "+15550001111");
    assert_eq!(
        bodies[0]["variables"],
        serde_json::json!({
            "channel": "whatsapp", "bridge": "twilio", "phone": "+15550001111", "country": "US",
            "message_kind": "text",
            "business_number": WHATSAPP_BUSINESS
        })
    );
    assert_eq!(bodies[1]["variables"]["channel"], "sms");
    assert_eq!(
        sms.sent().await[1],
        (
            "+15550001111".to_owned(),
            "+18005551212".to_owned(),
            "echo: And on Sunday?".to_owned()
        )
    );
}

#[tokio::test]
async fn on_whatsapp_help_is_a_question_and_stop_still_opts_out() {
    let sms = Sms::start(|_| {}).await;
    Mock::given(method("POST"))
        .and(path("/api/automate/opt-out"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "status": true, "conversation_id": CONVERSATION, "opted_out": true
        })))
        .mount(&sms.anyreply)
        .await;
    sms.deliver_from(
        "SMw3",
        "HELP",
        WHATSAPP_CUSTOMER,
        WHATSAPP_BUSINESS,
        Signing::For(PUBLIC_URL),
    )
    .await;
    eventually("the answer to HELP", || async {
        !sms.sent().await.is_empty()
    })
    .await;
    sms.deliver_from(
        "SMw4",
        "STOP",
        WHATSAPP_CUSTOMER,
        WHATSAPP_BUSINESS,
        Signing::For(PUBLIC_URL),
    )
    .await;
    eventually("the opt-out", || async {
        sms.anyreply
            .received_requests()
            .await
            .unwrap()
            .iter()
            .any(|r| r.url.path() == "/api/automate/opt-out")
    })
    .await;
    let asked = anyreply_requests(&sms.anyreply).await;
    assert_eq!(asked.len(), 1, "only HELP reached the AI");
}

#[tokio::test]
async fn an_operator_message_goes_back_on_the_channel_the_customer_last_used() {
    let sms = Sms::start(|_| {}).await;
    conversation_with(
        &sms.anyreply,
        serde_json::json!({ "channel": "whatsapp", "business_number": WHATSAPP_BUSINESS }),
    )
    .await;
    let log = EventLog::serve(&sms.anyreply).await;
    log.operator_message("+15550001111", "Your parcel left this morning.");
    eventually("the WhatsApp message", || async {
        !sms.sent().await.is_empty()
    })
    .await;
    assert_eq!(
        sms.sent().await,
        [(
            WHATSAPP_CUSTOMER.to_owned(),
            WHATSAPP_BUSINESS.to_owned(),
            "Your parcel left this morning.".to_owned()
        )]
    );
}

#[tokio::test]
async fn an_operator_message_to_a_whatsapp_cloud_customer_is_left_to_that_bridge() {
    let sms = Sms::start(|_| {}).await;
    conversation_with(
        &sms.anyreply,
        serde_json::json!({ "channel": "whatsapp", "bridge": "whatsapp-cloud", "business_number": "+18005551212" }),
    )
    .await;
    let log = EventLog::serve(&sms.anyreply).await;
    log.operator_message("+15550001111", "For the Cloud API bridge.");
    // The follower has read the conversation, and sent nothing.
    eventually("the conversation read", || async {
        sms.anyreply
            .received_requests()
            .await
            .unwrap()
            .iter()
            .any(|r| r.url.path() == format!("/api/conversations/{CONVERSATION}"))
    })
    .await;
    sms.handled.reach(1).await;
    assert!(sms.sent().await.is_empty());
}

#[tokio::test]
async fn a_coalesced_message_sends_nothing() {
    let sms = Sms::start(|_| {}).await;
    sms.deliver("SMc1", "burst", Signing::For(PUBLIC_URL)).await;
    sms.deliver("SMc2", "the rest of it", Signing::For(PUBLIC_URL))
        .await;
    sms.handled.reach(2).await;
    let bodies: Vec<_> = sms
        .sent()
        .await
        .into_iter()
        .map(|(_, _, body)| body)
        .collect();
    assert_eq!(bodies, ["echo: the rest of it"]);
}

/// Where Twilio keeps the voice note's audio (it wants the account's credentials).
const VOICE_MEDIA: &str =
    "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/MM1/Media/ME1";

async fn serve_the_note(rest: &MockServer) {
    Mock::given(method("GET"))
        .and(path(VOICE_MEDIA))
        .and(basic_auth(ACCOUNT, AUTH_TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_raw(VOICE_BYTES, "audio/ogg"))
        .mount(rest)
        .await;
}

#[tokio::test]
async fn a_whatsapp_voice_note_is_transcribed_and_answered_in_both_modes() {
    for mode in [ReplyMode::Rest, ReplyMode::Inline] {
        let heard = transcription().await;
        let sms = Sms::start_hearing(voice_by(&heard), |s| s.mode = mode).await;
        serve_the_note(&sms.rest).await;
        let (status, twiml) = sms.deliver_voice("MM1").await;
        assert_eq!(status, 200);
        sms.handled.reach(1).await;
        let reply = format!("echo: {TRANSCRIPT}");
        match mode {
            ReplyMode::Rest => assert_eq!(sms.sent().await[0].2, reply),
            ReplyMode::Inline => assert!(twiml.contains(&reply), "{twiml}"),
        }
        assert_transcribed(&heard, "voice.ogg", "audio/ogg").await;
        let asked = anyreply_requests(&sms.anyreply).await;
        let request: Value = serde_json::from_slice(&asked[0].body).unwrap();
        assert_eq!(request["message"], TRANSCRIPT);
        assert_eq!(request["variables"]["message_kind"], "voice_note");
        assert_eq!(request["variables"]["channel"], "whatsapp");
    }
}

#[tokio::test]
async fn a_voice_note_without_a_model_gets_the_only_text_sentence() {
    let sms = Sms::start(|_| {}).await;
    serve_the_note(&sms.rest).await;
    sms.deliver_voice("MM2").await;
    sms.handled.reach(1).await;
    assert_eq!(sms.sent().await[0].2, text::VOICE_OFF);
    assert!(anyreply_requests(&sms.anyreply).await.is_empty());
}

#[tokio::test]
async fn a_transcription_that_fails_gets_a_sentence_not_silence() {
    let broken = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(serde_json::json!({ "error": { "message": "model overloaded" } })),
        )
        .mount(&broken)
        .await;
    let sms = Sms::start_hearing(voice_by(&broken), |_| {}).await;
    serve_the_note(&sms.rest).await;
    sms.deliver_voice("MM3").await;
    sms.handled.reach(1).await;
    assert_eq!(sms.sent().await[0].2, text::VOICE_FAILED);
    assert!(anyreply_requests(&sms.anyreply).await.is_empty());
}
