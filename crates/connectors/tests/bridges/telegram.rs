//! The Telegram bridge against a `wiremock` Bot API.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyreply_connectors::bridge::Handled;
use anyreply_connectors::telegram::{self, GroupPolicy, TelegramSettings};
use anyreply_connectors::text::{self, Texts};
use anyreply_connectors::transcribe::Voice;
use serde_json::{Value, json};
use teloxide::adaptors::throttle::Limits;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::{
    APOLOGY, EventLog, HANDED_OVER, TRANSCRIPT, VOICE_BYTES, anyreply, anyreply_requests,
    assert_transcribed, bridge, bridge_keeping_state_in, eventually, long_reply, resumed_after,
    state_dir, transcription, voice_by,
};

const TOKEN: &str = "123456:TEST-token";

struct Telegram {
    api: MockServer,
    anyreply: MockServer,
    updates: Arc<Mutex<VecDeque<Vec<Value>>>>,
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The bridge's count of updates and operator messages it has finished with.
    handled: Handled,
}

fn ok(result: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "ok": true, "result": result }))
}

/// A Bot API that serves scripted `getUpdates` batches and records what the bot sends.
async fn bot_api(updates: Arc<Mutex<VecDeque<Vec<Value>>>>) -> MockServer {
    let api = MockServer::start().await;
    Mock::given(path_regex("(?i)/getme$"))
        .respond_with(ok(json!({
            "id": 99, "is_bot": true, "first_name": "Shop", "username": "shop_bot",
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "has_main_web_app": false
        })))
        .mount(&api)
        .await;
    Mock::given(path_regex(
        "(?i)/(deletewebhook|setwebhook|sendchataction)$",
    ))
    .respond_with(ok(json!(true)))
    .mount(&api)
    .await;
    Mock::given(path_regex("(?i)/getupdates$"))
        .respond_with(move |_: &Request| {
            let batch = updates.lock().unwrap().pop_front();
            match batch {
                Some(batch) => ok(Value::Array(batch)),
                None => ok(json!([])).set_delay(Duration::from_millis(50)),
            }
        })
        .mount(&api)
        .await;
    Mock::given(path_regex("(?i)/sendmessage$"))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            ok(json!({
                "message_id": 1000, "date": 1_764_000_000,
                "chat": { "id": body["chat_id"], "type": "private", "first_name": "Ada" },
                "text": body["text"]
            }))
        })
        .with_priority(10)
        .mount(&api)
        .await;
    api
}

/// Settings for a bot on a test Bot API (set `api_url`): quick retries, generous limits.
fn settings_for_tests() -> TelegramSettings {
    TelegramSettings {
        token: TOKEN.to_owned(),
        api_url: "http://127.0.0.1:9".parse().unwrap(),
        webhook_url: None,
        webhook_secret: None,
        id_prefix: "telegram:".to_owned(),
        groups: GroupPolicy::Ignore,
        send_retries: 3,
        send_backoff: Duration::from_millis(10),
        poll_timeout: Duration::from_secs(1),
        typing_every: telegram::TYPING_EVERY,
        limits: Limits {
            messages_per_sec_chat: 100,
            messages_per_min_chat: 1000,
            ..Limits::default()
        },
        texts: Texts {
            apology: APOLOGY.to_owned(),
            ..Texts::default()
        },
    }
}

impl Telegram {
    async fn start(configure: impl FnOnce(&mut TelegramSettings)) -> Self {
        Self::start_against(None, None, configure).await
    }

    /// Like [`Self::start`], with the bridge asking AnyReply at `anyreply_url` instead of the
    /// mock (which is still started, and never asked), and keeping its place in the event
    /// stream in `state` (default a new directory).
    async fn start_against(
        anyreply_url: Option<String>,
        state: Option<PathBuf>,
        configure: impl FnOnce(&mut TelegramSettings),
    ) -> Self {
        Self::start_hearing(Voice::default(), anyreply_url, state, configure).await
    }

    /// Like [`Self::start_against`], with voice notes heard by `voice`.
    async fn start_hearing(
        voice: Voice,
        anyreply_url: Option<String>,
        state: Option<PathBuf>,
        configure: impl FnOnce(&mut TelegramSettings),
    ) -> Self {
        let updates = Arc::new(Mutex::new(VecDeque::new()));
        let api = bot_api(updates.clone()).await;
        let anyreply = anyreply().await;
        let mut settings = TelegramSettings {
            api_url: api.uri().parse().unwrap(),
            ..settings_for_tests()
        };
        configure(&mut settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut bridge = bridge_keeping_state_in(
            &anyreply_url.unwrap_or_else(|| anyreply.uri()),
            state.unwrap_or_else(state_dir),
        );
        bridge.voice = voice;
        let handled = bridge.handled.clone();
        let task = tokio::spawn(telegram::run(settings, bridge, listener, async move {
            let _ = stopped.await;
        }));
        Self {
            api,
            anyreply,
            updates,
            base,
            stop: Some(stop),
            task,
            handled,
        }
    }

    fn push(&self, batch: Vec<Value>) {
        self.updates.lock().unwrap().push_back(batch);
    }

    /// `(chat_id, text)` of every sendMessage, in order.
    async fn sent(&self) -> Vec<(i64, String)> {
        self.calls("sendmessage")
            .await
            .into_iter()
            .map(|body| {
                (
                    body["chat_id"].as_i64().unwrap(),
                    body["text"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    async fn calls(&self, method: &str) -> Vec<Value> {
        self.api
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path().to_ascii_lowercase().ends_with(method))
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    async fn wait_for_sends(&self, count: usize) {
        eventually(&format!("{count} sendMessage calls"), || async {
            self.sent().await.len() >= count
        })
        .await;
    }

    /// Asks the bridge to shut down and waits until it has.
    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }
}

fn text_update(update_id: u32, chat: i64, message_id: i32, text: &str) -> Value {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": message_id, "date": 1_764_000_000,
            "chat": { "id": chat, "type": "private", "first_name": "Ada" },
            "from": { "id": chat, "is_bot": false, "first_name": "Ada", "last_name": "Lovelace", "username": "ada", "language_code": "en" },
            "text": text
        }
    })
}

#[tokio::test]
async fn a_message_gets_the_assistants_reply() {
    let mut bot = Telegram::start(|_| {}).await;
    // `slow…` takes AnyReply 300 ms: long enough that "typing…" is surely shown meanwhile,
    // whatever else (the operator-message follower) the test's one thread is running.
    bot.push(vec![text_update(
        1,
        42,
        10,
        "slow: do you ship to Austria?",
    )]);
    bot.wait_for_sends(1).await;
    assert_eq!(
        bot.sent().await,
        [(42, "echo: slow: do you ship to Austria?".to_owned())]
    );

    let asked = anyreply_requests(&bot.anyreply).await;
    assert_eq!(asked.len(), 1);
    let body: Value = serde_json::from_slice(&asked[0].body).unwrap();
    assert_eq!(body["assistant_id"], 7);
    assert_eq!(body["customer_identifier"], "telegram:42");
    assert_eq!(
        body["variables"],
        json!({
            "channel": "telegram", "name": "Ada Lovelace", "username": "ada", "language": "en",
            "message_kind": "text"
        })
    );
    assert_eq!(asked[0].headers["idempotency-key"], "telegram:42:10");
    let typing = bot.calls("sendchataction").await;
    assert_eq!(typing[0], json!({ "chat_id": 42, "action": "typing" }));
    bot.stop().await;
}

#[tokio::test]
async fn a_burst_in_one_chat_is_answered_in_order() {
    let mut bot = Telegram::start(|_| {}).await;
    // The first messages take longest to answer; order must hold all the same.
    let burst: Vec<Value> = (0..5)
        .map(|n| text_update(10 + n, 42, 20 + n as i32, &format!("slow {n}")))
        .collect();
    bot.push(burst);
    bot.push(vec![text_update(20, 43, 1, "other chat")]);
    bot.wait_for_sends(6).await;
    let in_chat: Vec<String> = bot
        .sent()
        .await
        .into_iter()
        .filter(|(chat, _)| *chat == 42)
        .map(|(_, t)| t)
        .collect();
    assert_eq!(
        in_chat,
        [
            "echo: slow 0",
            "echo: slow 1",
            "echo: slow 2",
            "echo: slow 3",
            "echo: slow 4"
        ]
    );
    bot.stop().await;
}

#[tokio::test]
async fn a_long_reply_is_split_and_sent_in_order() {
    let mut bot = Telegram::start(|_| {}).await;
    bot.push(vec![text_update(1, 42, 10, "long")]);
    bot.wait_for_sends(3).await;
    let pieces: Vec<String> = bot.sent().await.into_iter().map(|(_, text)| text).collect();
    assert_eq!(pieces.len(), 3);
    assert!(
        pieces
            .iter()
            .all(|p| p.chars().count() <= 4096 && p.ends_with('.'))
    );
    assert_eq!(pieces.join(" "), crate::long_reply());
    bot.stop().await;
}

#[tokio::test]
async fn takeover_errors_commands_and_non_text() {
    let mut bot = Telegram::start(|_| {}).await;
    let photo = json!({
        "update_id": 6,
        "message": {
            "message_id": 15, "date": 1_764_000_000, "chat": { "id": 42, "type": "private", "first_name": "Ada" },
            "from": { "id": 42, "is_bot": false, "first_name": "Ada" },
            "photo": [{ "file_id": "f", "file_unique_id": "u", "width": 1, "height": 1 }]
        }
    });
    let group = json!({
        "update_id": 7,
        "message": {
            "message_id": 16, "date": 1_764_000_000, "chat": { "id": -100, "type": "group", "title": "Fans" },
            "from": { "id": 42, "is_bot": false, "first_name": "Ada" }, "text": "hello group"
        }
    });
    bot.push(vec![
        text_update(1, 42, 10, "human"),
        text_update(2, 42, 11, "poor"),
        text_update(3, 42, 12, "lost"),
        text_update(4, 42, 13, "/start"),
        text_update(5, 42, 14, "still there?"),
        photo,
        group,
    ]);
    bot.handled.reach(7).await;
    let texts: Vec<String> = bot.sent().await.into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        texts,
        [
            APOLOGY,
            APOLOGY,
            anyreply_connectors::text::TELEGRAM_GREETING,
            "echo: still there?",
            anyreply_connectors::text::TELEGRAM_NON_TEXT
        ]
    );
    // `/start`, the photo and the group message never reach the AI.
    assert_eq!(anyreply_requests(&bot.anyreply).await.len(), 4);
    bot.stop().await;
}

#[tokio::test]
async fn a_reply_that_hands_over_is_sent_though_the_ai_is_off_after_it() {
    let mut bot = Telegram::start(|_| {}).await;
    bot.push(vec![
        text_update(1, 42, 10, "handoff"),
        text_update(2, 42, 11, "human"),
    ]);
    bot.handled.reach(2).await;
    assert_eq!(bot.sent().await, [(42, HANDED_OVER.to_owned())]);
    bot.stop().await;
}

#[tokio::test]
async fn an_unreachable_api_gets_the_apology_and_the_bridge_keeps_running() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut bot = Telegram::start_against(Some(format!("http://127.0.0.1:{port}")), None, |s| {
        s.send_retries = 0
    })
    .await;
    bot.push(vec![text_update(1, 42, 10, "hi")]);
    bot.wait_for_sends(1).await;
    bot.push(vec![text_update(2, 42, 11, "again")]);
    bot.wait_for_sends(2).await;
    assert_eq!(
        bot.sent().await,
        [(42, APOLOGY.to_owned()), (42, APOLOGY.to_owned())]
    );
    bot.stop().await;
}

#[tokio::test]
async fn a_redelivered_update_is_answered_once() {
    let mut bot = Telegram::start(|_| {}).await;
    bot.push(vec![text_update(1, 42, 10, "hi")]);
    bot.push(vec![
        text_update(1, 42, 10, "hi"),
        text_update(2, 42, 11, "next"),
    ]);
    bot.handled.reach(3).await;
    let texts: Vec<String> = bot.sent().await.into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["echo: hi", "echo: next"]);
    assert_eq!(anyreply_requests(&bot.anyreply).await.len(), 2);
    bot.stop().await;
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out() {
    let mut bot = Telegram::start(|_| {}).await;
    Mock::given(method("POST"))
        .and(path_regex("(?i)/sendmessage$"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1",
            "parameters": { "retry_after": 1 }
        })))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&bot.api)
        .await;
    bot.push(vec![text_update(1, 42, 10, "hi")]);
    bot.wait_for_sends(2).await;
    let sent = bot.sent().await;
    assert_eq!(
        sent,
        [(42, "echo: hi".to_owned()), (42, "echo: hi".to_owned())]
    );
    bot.stop().await;
}

/// teloxide pauses ten seconds after a Bot API 5xx before reporting it; this test waits that out.
#[tokio::test]
async fn a_5xx_on_send_is_retried() {
    let mut bot = Telegram::start(|_| {}).await;
    Mock::given(method("POST"))
        .and(path_regex("(?i)/sendmessage$"))
        .respond_with(ResponseTemplate::new(502).set_body_json(json!({
            "ok": false, "error_code": 502, "description": "Bad Gateway"
        })))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&bot.api)
        .await;
    bot.push(vec![text_update(1, 42, 10, "hi")]);
    bot.wait_for_sends(2).await;
    assert_eq!(bot.sent().await.len(), 2);
    bot.stop().await;
}

#[tokio::test]
async fn webhook_mode_checks_the_secret_token() {
    let mut bot = Telegram::start(|s| {
        s.webhook_url = Some("https://bot.example.com/telegram/hook".parse().unwrap());
        s.webhook_secret = Some("s3cret-Token_1".to_owned());
    })
    .await;
    eventually("setWebhook", || async {
        !bot.calls("setwebhook").await.is_empty()
    })
    .await;
    // setWebhook goes as a multipart form (it may carry a certificate).
    let registered: Vec<String> = bot
        .api
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().to_ascii_lowercase().ends_with("setwebhook"))
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(
        registered[0].contains("https://bot.example.com/telegram/hook"),
        "{}",
        registered[0]
    );
    assert!(registered[0].contains("s3cret-Token_1"));

    let http = reqwest::Client::new();
    let deliver = |secret: Option<&'static str>, update: Value| {
        let mut request = http
            .post(format!("{}/telegram/hook", bot.base))
            .json(&update);
        if let Some(secret) = secret {
            request = request.header("x-telegram-bot-api-secret-token", secret);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        deliver(None, text_update(1, 42, 10, "no secret")).await,
        401
    );
    assert_eq!(
        deliver(Some("wrong"), text_update(2, 42, 11, "bad secret")).await,
        401
    );
    assert_eq!(
        deliver(Some("s3cret-Token_1"), text_update(3, 42, 12, "hi")).await,
        200
    );
    assert_eq!(
        deliver(Some("s3cret-Token_1"), text_update(3, 42, 12, "hi")).await,
        200
    ); // redelivered
    bot.handled.reach(2).await;
    assert_eq!(bot.sent().await, [(42, "echo: hi".to_owned())]);
    assert_eq!(anyreply_requests(&bot.anyreply).await.len(), 1);
    let health = http
        .get(format!("{}/health", bot.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    bot.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_the_message_in_flight() {
    let mut bot = Telegram::start(|_| {}).await;
    let health = reqwest::get(format!("{}/health", bot.base)).await.unwrap();
    assert_eq!(health.status(), 200);
    bot.push(vec![text_update(1, 42, 10, "slow goodbye")]);
    eventually("the question to reach AnyReply", || async {
        !anyreply_requests(&bot.anyreply).await.is_empty()
    })
    .await;
    assert!(
        bot.sent().await.is_empty(),
        "the reply is still being produced"
    );
    bot.stop().await;
    assert_eq!(bot.sent().await, [(42, "echo: slow goodbye".to_owned())]);
}

#[tokio::test]
async fn groups_are_answered_when_allowed_with_a_conversation_per_group() {
    let mut bot = Telegram::start(|s| s.groups = GroupPolicy::All).await;
    let group = json!({
        "update_id": 1,
        "message": {
            "message_id": 16, "date": 1_764_000_000, "chat": { "id": -100, "type": "group", "title": "Fans" },
            "from": { "id": 42, "is_bot": false, "first_name": "Ada" }, "text": "hello group"
        }
    });
    bot.push(vec![group]);
    bot.wait_for_sends(1).await;
    assert_eq!(bot.sent().await, [(-100, "echo: hello group".to_owned())]);
    let asked = anyreply_requests(&bot.anyreply).await;
    let body: Value = serde_json::from_slice(&asked[0].body).unwrap();
    assert_eq!(body["customer_identifier"], "telegram:-100:42");
    bot.stop().await;
}

/// teloxide's dispatcher panics on a token Telegram refuses; the bridge asks first and says
/// which setting is wrong.
#[tokio::test]
async fn a_refused_token_is_a_sentence_not_a_panic() {
    let api = MockServer::start().await;
    Mock::given(path_regex("(?i)/getme$"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({ "ok": false, "error_code": 401, "description": "Unauthorized" }),
        ))
        .mount(&api)
        .await;
    let settings = TelegramSettings {
        api_url: api.uri().parse().unwrap(),
        ..settings_for_tests()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let anyreply = anyreply().await;
    let error = telegram::run(
        settings,
        bridge(&anyreply.uri()),
        listener,
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("refused ANYREPLY_TELEGRAM_TOKEN"),
        "{error:#}"
    );

    // An unreachable Bot API names its setting too.
    let settings = TelegramSettings {
        api_url: "http://127.0.0.1:9".parse().unwrap(),
        ..settings_for_tests()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = telegram::run(
        settings,
        bridge(&anyreply.uri()),
        listener,
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(
        error.to_string().contains("ANYREPLY_TELEGRAM_API_URL"),
        "{error:#}"
    );
}

#[tokio::test]
async fn metrics_count_messages_in_and_out() {
    let mut bot = Telegram::start(|_| {}).await;
    bot.push(vec![text_update(1, 42, 10, "Hi")]);
    bot.wait_for_sends(1).await;
    let text = reqwest::get(format!("{}/metrics", bot.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"anyreply_bridge_messages_in_total{channel="telegram",outcome="replied"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"anyreply_bridge_messages_out_total{channel="telegram",outcome="sent"}"#),
        "{text}"
    );
    bot.stop().await;
}

#[tokio::test]
async fn operator_messages_reach_their_chats_split_and_once_across_a_restart() {
    let anyreply = anyreply().await;
    let log = EventLog::serve(&anyreply).await;
    log.operator_message("telegram:42", "Your parcel left today.");
    log.operator_message("+15550001111", "An SMS customer's: not for Telegram.");
    log.operator_message("telegram:-100777:42", &long_reply());
    let state = state_dir();
    let mut bot = Telegram::start_against(Some(anyreply.uri()), Some(state.clone()), |_| {}).await;
    bot.wait_for_sends(4).await;
    let sent = bot.sent().await;
    assert_eq!(sent[0], (42, "Your parcel left today.".to_owned()));
    // The group conversation goes to the group, in Telegram-sized pieces that lose nothing.
    let group: Vec<_> = sent[1..]
        .iter()
        .map(|(chat, text)| (*chat, text.as_str()))
        .collect();
    assert!(
        group
            .iter()
            .all(|(chat, text)| *chat == -100777 && text.chars().count() <= 4096)
    );
    let pieces: Vec<_> = group.iter().map(|(_, text)| *text).collect();
    assert_eq!(pieces.join(" "), long_reply());
    bot.stop().await;

    // Restarted on the same state: it resumes after the last message it delivered, sending
    // none of the earlier ones again, and the next one still arrives.
    let next = log.operator_message("telegram:42", "It arrives tomorrow.");
    let connections_before = resumed_after(&anyreply).await.len();
    let mut again = Telegram::start_against(Some(anyreply.uri()), Some(state), |_| {}).await;
    eventually(
        "the restarted bridge to follow past the new event",
        || async {
            resumed_after(&anyreply)
                .await
                .contains(&Some(next.to_string()))
        },
    )
    .await;
    assert_eq!(
        again.sent().await,
        [(42, "It arrives tomorrow.".to_owned())]
    );
    assert_eq!(
        resumed_after(&anyreply).await[connections_before],
        Some("3".to_owned()),
        "read from the state file"
    );
    again.stop().await;
}

/// A voice note of `seconds` from Ada, in chat 42.
fn voice_update(update_id: u32, message_id: i32, seconds: u32) -> Value {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": message_id, "date": 1_764_000_000,
            "chat": { "id": 42, "type": "private", "first_name": "Ada" },
            "from": { "id": 42, "is_bot": false, "first_name": "Ada" },
            "voice": {
                "file_id": "AwACAgIAAxkBAAIBZ", "file_unique_id": "AgADcw", "duration": seconds,
                "mime_type": "audio/ogg", "file_size": VOICE_BYTES.len()
            }
        }
    })
}

/// The Bot API's `getFile` and the file's download, at `/file/bot<token>/<file_path>`.
async fn serve_the_note(api: &MockServer) {
    Mock::given(path_regex("(?i)/getfile$"))
        .respond_with(ok(json!({
            "file_id": "AwACAgIAAxkBAAIBZ", "file_unique_id": "AgADcw",
            "file_size": VOICE_BYTES.len(), "file_path": "voice/file_7.oga"
        })))
        .mount(api)
        .await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path(format!(
            "/file/bot{TOKEN}/voice/file_7.oga"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_raw(VOICE_BYTES, "audio/ogg"))
        .mount(api)
        .await;
}

#[tokio::test]
async fn a_voice_note_is_transcribed_and_the_transcript_answered() {
    let heard = transcription().await;
    let mut bot = Telegram::start_hearing(voice_by(&heard), None, None, |_| {}).await;
    serve_the_note(&bot.api).await;
    bot.push(vec![voice_update(1, 10, 4)]);
    bot.wait_for_sends(1).await;
    assert_eq!(bot.sent().await, [(42, format!("echo: {TRANSCRIPT}"))]);
    assert_transcribed(&heard, "voice.ogg", "audio/ogg").await;
    let asked = anyreply_requests(&bot.anyreply).await;
    let body: Value = serde_json::from_slice(&asked[0].body).unwrap();
    assert_eq!(body["message"], TRANSCRIPT);
    assert_eq!(body["variables"]["message_kind"], "voice_note");
    assert_eq!(asked[0].headers["idempotency-key"], "telegram:42:10");
    bot.stop().await;
}

#[tokio::test]
async fn without_a_model_or_over_the_limit_a_voice_note_gets_a_sentence() {
    let mut bot = Telegram::start(|_| {}).await;
    serve_the_note(&bot.api).await;
    bot.push(vec![voice_update(1, 10, 4)]);
    bot.handled.reach(1).await;
    bot.stop().await;
    assert_eq!(bot.sent().await, [(42, text::VOICE_OFF.to_owned())]);
    assert!(anyreply_requests(&bot.anyreply).await.is_empty());
    assert!(bot.calls("getfile").await.is_empty());

    // Five minutes and a second: refused on what Telegram tells, before any download.
    let heard = transcription().await;
    let mut bot = Telegram::start_hearing(voice_by(&heard), None, None, |_| {}).await;
    serve_the_note(&bot.api).await;
    bot.push(vec![voice_update(1, 10, 301)]);
    bot.handled.reach(1).await;
    bot.stop().await;
    assert_eq!(bot.sent().await, [(42, text::VOICE_TOO_LONG.to_owned())]);
    assert!(bot.calls("getfile").await.is_empty());
    assert!(heard.received_requests().await.unwrap().is_empty());
    assert!(anyreply_requests(&bot.anyreply).await.is_empty());
}

#[tokio::test]
async fn typing_is_shown_at_once_and_renewed_until_a_slow_reply() {
    let mut bot = Telegram::start(|s| s.typing_every = Duration::from_millis(50)).await;
    // `slow…` takes AnyReply 300 ms: several renewals.
    bot.push(vec![text_update(1, 42, 10, "slow answer")]);
    bot.wait_for_sends(1).await;
    let methods: Vec<String> = bot
        .api
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            r.url
                .path()
                .rsplit('/')
                .next()
                .unwrap()
                .to_ascii_lowercase()
        })
        .filter(|m| m == "sendchataction" || m == "sendmessage")
        .collect();
    let before_reply = methods
        .iter()
        .take_while(|m| *m == "sendchataction")
        .count();
    assert!(before_reply >= 2, "typing shown and renewed: {methods:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = bot.calls("sendchataction").await.len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        bot.calls("sendchataction").await.len(),
        after,
        "stopped with the reply"
    );
    bot.stop().await;
}

#[tokio::test]
async fn a_slow_or_failing_typing_indicator_never_delays_the_reply() {
    let mut bot = Telegram::start(|_| {}).await;
    Mock::given(path_regex("(?i)/sendchataction$"))
        .respond_with(ok(json!(true)).set_delay(Duration::from_secs(30)))
        .with_priority(1)
        .mount(&bot.api)
        .await;
    let started = std::time::Instant::now();
    bot.push(vec![text_update(1, 42, 10, "quick")]);
    bot.wait_for_sends(1).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(bot.sent().await, [(42, "echo: quick".to_owned())]);
    bot.stop().await;
}
