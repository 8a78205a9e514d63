//! Nothing silently lost or free: a failed burst's messages are named and answered by the
//! next reply, a reply without reported token counts is charged by an estimate, a presumed-dead
//! attempt calls no tool, a webhook's secret is not kept with its idempotency key, and no
//! idempotency key is logged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyreply_core::ErrorCode;
use anyreply_core::wire::{Event, EventType};
use anyreply_server::models::event::{self, EventFilter};
use anyreply_server::tools::guard::AddressPolicy;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::util::{
    TestAccount, TestApp, anthropic_message, assert_error, body_of, chat_completion, money,
    openai_tool_calls,
};

/// The account's events, as the API sends them.
async fn events(app: &TestApp, account: &TestAccount) -> Vec<Event> {
    let mut conn = app.db.connect().await;
    event::after(&mut conn, account.id, 0, EventFilter::default(), 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|row| row.into_event())
        .collect()
}

/// The id of the customer message `content`, from its `message.received` event.
fn received_id(events: &[Event], content: &str) -> i64 {
    events
        .iter()
        .filter(|e| e.kind == EventType::MessageReceived)
        .filter_map(|e| e.message.as_ref())
        .find(|m| m.content == content)
        .unwrap_or_else(|| panic!("no message.received for {content:?}"))
        .id
}

/// The texts of the customer's messages in a prompt the model received.
fn customer_lines(prompt: &Value) -> Vec<String> {
    prompt["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

/// Sends "I would like" and, 100 ms later, "to book a table" (one burst of a 300 ms window);
/// returns both answers.
async fn send_burst(
    app: &TestApp,
    account: &TestAccount,
    assistant: i64,
) -> [(StatusCode, Value); 2] {
    let (first, second) = tokio::join!(
        app.reply(&account.key, assistant, "+4915550009", "I would like"),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            app.reply(&account.key, assistant, "+4915550009", "to book a table")
                .await
        }
    );
    assert_eq!(first.0, StatusCode::OK, "{}", first.1);
    assert_eq!(first.1["coalesced"], true, "{}", first.1);
    [first, second]
}

/// After the burst's reply failed (`why`): its `reply.failed` event names both messages, the
/// first stays in the history, and the next message's reply has it in its prompt.
async fn the_burst_is_named_and_answered_next(
    app: &TestApp,
    account: &TestAccount,
    assistant: i64,
    why: Option<ErrorCode>,
) {
    let all = events(app, account).await;
    let (first, second) = (
        received_id(&all, "I would like"),
        received_id(&all, "to book a table"),
    );
    let failed: Vec<&Event> = all
        .iter()
        .filter(|e| e.kind == EventType::ReplyFailed)
        .collect();
    assert_eq!(failed.len(), 1, "{all:?}");
    let message = failed[0].message.as_ref().unwrap();
    assert_eq!(message.id, second);
    assert_eq!(message.error_code, why);
    assert_eq!(message.burst_message_ids, Some(vec![first, second]));

    let (status, next) = app
        .reply(&account.key, assistant, "+4915550009", "hello?")
        .await;
    assert_eq!(status, StatusCode::OK, "{next}");
    assert_eq!(next["reply"], "echo: hello?");
    let prompt = app.llm_requests().await.pop().unwrap();
    assert_eq!(customer_lines(&prompt), ["I would like", "hello?"]);
    let conversation = next["conversation_id"].as_str().unwrap();
    assert_eq!(
        app.history_contents(&account.key, conversation).await,
        ["I would like", "hello?", "echo: hello?"]
    );
}

#[tokio::test]
async fn a_failed_burst_is_named_in_its_event_and_answered_by_the_next_reply() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app
        .assistant(&account, &json!({ "name": "Desk", "coalesce_ms": 300 }))
        .await;
    // The burst's reply is refused once (a 400 is not retried); then the echo model answers.
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": { "message": "bad request", "type": "invalid_request_error" }
        })))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.llm)
        .await;
    let [_, (status, body)] = send_burst(&app, &account, assistant).await;
    assert_error(status, &body, 502, "LLM_ERROR");
    the_burst_is_named_and_answered_next(&app, &account, assistant, Some(ErrorCode::LlmError))
        .await;
    // Two replies asked for, one recorded and charged (1,000 and 500 tokens at 1 and 2 per M).
    assert_eq!(app.balance(&account).await, money("9.998"));
}

#[tokio::test]
async fn a_released_burst_is_named_in_its_event_and_answered_by_the_next_reply() {
    // A lease no renewal touches while the test runs: the sweep alone ends the turn.
    let app = TestApp::spawn_with(|s| s.reply_lease = Duration::from_secs(3_600)).await;
    let account = app.db_account("10").await;
    let assistant = app
        .assistant(&account, &json!({ "name": "Desk", "coalesce_ms": 300 }))
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(anyreply_server::testing::EchoModel {
            delay: Duration::from_millis(1_500),
        })
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.llm)
        .await;
    let release = async {
        app.until_model_requests(1).await;
        // Its process presumed dead, the sweep releases the burst's reply.
        app.db_expire_leases().await;
        let sweeper = anyreply_server::App::new(app.settings.clone()).unwrap();
        let released = anyreply_server::reply::queue::reclaim_expired(&sweeper, None)
            .await
            .unwrap();
        assert_eq!(released, 1);
    };
    let ([_, (status, body)], ()) = tokio::join!(send_burst(&app, &account, assistant), release);
    assert_error(status, &body, 503, "SERVICE_UNAVAILABLE");
    the_burst_is_named_and_answered_next(&app, &account, assistant, None).await;
    assert_eq!(app.balance(&account).await, money("9.998"));
}

/// A customer message of 400 characters (100 estimated tokens) answered with 200 characters
/// (50): at 1 and 2 per million tokens, 0.0002.
const LONG_QUESTION_CHARS: usize = 400;
const LONG_ANSWER_CHARS: usize = 200;
const BALANCE_AFTER: &str = "9.9998";

/// After one reply of the long question and answer: charged by the estimate, and recorded so.
async fn charged_by_the_estimate(app: &TestApp, account: &TestAccount, reply: &Value) {
    assert_eq!(reply["reply"], "y".repeat(LONG_ANSWER_CHARS), "{reply}");
    assert_eq!(app.balance(account).await, money(BALANCE_AFTER));
    let id = reply["conversation_id"].as_str().unwrap();
    let (_, conversation, _) = app
        .get(&account.key, &format!("/api/conversations/{id}"))
        .await;
    assert_eq!(conversation["prompt_tokens"], 100, "{conversation}");
    assert_eq!(conversation["completion_tokens"], 50, "{conversation}");
    assert_eq!(conversation["history"][1]["cost"], 0.0002, "{conversation}");
}

#[tokio::test]
async fn an_openai_answer_without_usage_is_charged_by_an_estimate() {
    let app = TestApp::spawn().await;
    let mut answer = chat_completion(&"y".repeat(LONG_ANSWER_CHARS));
    answer.as_object_mut().unwrap().remove("usage");
    app.model_answers(ResponseTemplate::new(200).set_body_json(answer))
        .await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let question = "x".repeat(LONG_QUESTION_CHARS);
    let (status, reply) = app.reply(&account.key, assistant, "c", &question).await;
    assert_eq!(status, 200, "{reply}");
    charged_by_the_estimate(&app, &account, &reply).await;
}

#[tokio::test]
async fn a_streamed_openai_answer_without_usage_is_charged_by_an_estimate() {
    let app = TestApp::spawn().await;
    // Some servers ignore `stream_options.include_usage`: no usage chunk.
    let chunk = |delta: Value| {
        json!({ "id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1_764_000_000,
                "model": "llama3", "choices": [{ "index": 0, "delta": delta, "finish_reason": null }] })
    };
    let body = format!(
        "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
        chunk(json!({ "content": "y".repeat(LONG_ANSWER_CHARS / 2) })),
        chunk(json!({ "content": "y".repeat(LONG_ANSWER_CHARS / 2) })),
    );
    app.model_answers(ResponseTemplate::new(200).set_body_raw(body, "text/event-stream"))
        .await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let question = "x".repeat(LONG_QUESTION_CHARS);
    let response = app
        .http
        .post(format!("{}/api/ai/generate-reply", app.base))
        .bearer_auth(&account.key)
        .header("accept", "text/event-stream")
        .json(
            &json!({ "assistant_id": assistant, "customer_identifier": "c", "message": question }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = response.text().await.unwrap();
    let reply = events
        .split("\n\n")
        .find_map(|event| event.strip_prefix("event: reply\ndata: "))
        .unwrap_or_else(|| panic!("no reply event in {events}"));
    let reply: Value = serde_json::from_str(reply).unwrap();
    charged_by_the_estimate(&app, &account, &reply).await;
}

#[tokio::test]
async fn an_anthropic_answer_without_usage_is_charged_by_an_estimate() {
    let anthropic = MockServer::start().await;
    let base = anthropic.uri();
    let app = TestApp::spawn_with(move |s| s.anthropic_base_url = base.parse().unwrap()).await;
    let mut answer = anthropic_message(
        json!([{ "type": "text", "text": "y".repeat(LONG_ANSWER_CHARS) }]),
        "end_turn",
    );
    answer.as_object_mut().unwrap().remove("usage");
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .mount(&anthropic)
        .await;
    let account = app.db_account("10").await;
    let assistant = app
        .assistant(
            &account,
            &json!({ "name": "Claude", "llm_provider": "anthropic", "llm_model": "claude-sonnet-4-5" }),
        )
        .await;
    let question = "x".repeat(LONG_QUESTION_CHARS);
    let (status, reply) = app.reply(&account.key, assistant, "c", &question).await;
    assert_eq!(status, 200, "{reply}");
    charged_by_the_estimate(&app, &account, &reply).await;
}

/// Runs SQL statements on the test's database.
async fn run_sql(app: &TestApp, sql: &str) {
    use diesel_async::SimpleAsyncConnection;
    app.db.connect().await.batch_execute(sql).await.unwrap();
}

/// Whether every reply lease and idempotency claim has run out.
async fn every_lease_ran_out(app: &TestApp) -> bool {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Live {
        #[diesel(sql_type = diesel::sql_types::Int8)]
        n: i64,
    }
    let mut conn = app.db.connect().await;
    let live: Live = diesel::sql_query(
        "SELECT (SELECT count(*) FROM pending_replies WHERE lease_until > now())
              + (SELECT count(*) FROM idempotency_keys
                 WHERE response_status IS NULL AND locked_until > now()) AS n",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    live.n == 0
}

/// A reply whose process stopped renewing its lease (presumed dead) is taken over by a retry
/// under its idempotency key, which books; when the first attempt's model then asks for the
/// same booking, the first attempt no longer holds the turn and may not call the tool.
#[tokio::test]
async fn a_presumed_dead_attempt_cannot_call_a_tool_after_a_retry_took_over() {
    let mut app = TestApp::spawn_with(|s| {
        s.outbound_allowed_hosts = AddressPolicy::parse("127.0.0.1").unwrap();
        s.llm_retries = 0;
    })
    .await;
    // The first attempt's process: a lease of one second.
    let mut short = app.settings.clone();
    short.reply_lease = Duration::from_secs(1);
    let first_base = app.start_server(short).await;
    let account = app.db_account("10").await;
    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "booked": "10:00" })))
        .mount(&crm)
        .await;
    let assistant = app.booking_assistant(&account, &crm).await;
    // The model asks to book, then answers with the result; the first attempt's ask comes late,
    // after the retry is done.
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    app.script_model(move |request: &Request| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let body = body_of(request);
        let result = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["role"] == "tool")
            .map(|m| m["content"].as_str().unwrap().to_owned());
        match result {
            Some(result) => ResponseTemplate::new(200)
                .set_body_json(chat_completion(&format!("done: {result}"))),
            None => ResponseTemplate::new(200)
                .set_delay(Duration::from_millis(if n == 0 { 4_000 } else { 0 }))
                .set_body_json(openai_tool_calls(&[(
                    "call_1",
                    "book",
                    json!({ "slot": "10:00" }),
                )])),
        }
    })
    .await;
    // Every lease renewal is refused, as if the first attempt's process had stalled.
    run_sql(
        &app,
        "CREATE FUNCTION refuse_renewal() RETURNS trigger LANGUAGE plpgsql
             AS $$ BEGIN RAISE EXCEPTION 'renewals blocked by the test'; END $$;
         CREATE TRIGGER renewals_blocked BEFORE UPDATE ON pending_replies
             FOR EACH ROW EXECUTE FUNCTION refuse_renewal()",
    )
    .await;

    let body = json!({ "assistant_id": assistant, "customer_identifier": "+4915", "message": "book 10:00" });
    let first = async {
        let response = app
            .http
            .post(format!("{first_base}/api/ai/generate-reply"))
            .bearer_auth(&account.key)
            .header("idempotency-key", "booking-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json::<Value>().await.unwrap())
    };
    let retry = async {
        app.until_model_requests(1).await;
        let ran_out = async {
            while !every_lease_ran_out(&app).await {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), ran_out)
            .await
            .expect("the first attempt's lease never ran out");
        let answered = app
            .post_keyed(&account.key, "booking-1", "/api/ai/generate-reply", &body)
            .await;
        // Done before the first attempt's model answers.
        assert!(asked.load(Ordering::SeqCst) >= 3);
        answered
    };
    let ((first_status, first_body), (status, reply, _)) = tokio::join!(first, retry);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["reply"], r#"done: {"booked":"10:00"}"#);
    assert_eq!(
        reply["function_calls"][0]["result"],
        json!({ "booked": "10:00" })
    );
    // The first attempt's model did ask for the booking, and the attempt gave up instead.
    assert_eq!(asked.load(Ordering::SeqCst), 3);
    assert_error(first_status, &first_body, 503, "SERVICE_UNAVAILABLE");
    assert_eq!(crm.received_requests().await.unwrap().len(), 1);
    assert_eq!(app.count("tool_calls").await, 1);
    let conversation = reply["conversation_id"].as_str().unwrap();
    assert_eq!(
        app.history_contents(&account.key, conversation).await,
        ["book 10:00", r#"done: {"booked":"10:00"}"#]
    );
    // One reply of two model calls (1,000 + 500 tokens each at 1 and 2 per million).
    assert_eq!(app.balance(&account).await, money("9.996"));
}

/// The answer stored under a webhook's idempotency key: its body as stored, in SQL.
async fn stored_answers(app: &TestApp) -> Vec<Value> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Stored {
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        response_body: Value,
    }
    let mut conn = app.db.connect().await;
    diesel::sql_query("SELECT response_body FROM idempotency_keys WHERE response_body IS NOT NULL")
        .load::<Stored>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.response_body)
        .collect()
}

#[tokio::test]
async fn a_webhook_secret_is_not_kept_with_its_idempotency_key_and_a_replay_masks_it() {
    let app = TestApp::spawn_with(|s| {
        s.outbound_allowed_hosts = AddressPolicy::parse("127.0.0.1").unwrap();
    })
    .await;
    let account = app.db_account("10").await;
    let receiver = MockServer::start().await;
    let body = json!({ "url": format!("{}/hook", receiver.uri()), "events": ["reply.created"] });
    let (status, created, _) = app
        .post_keyed(&account.key, "hook-1", "/api/user/webhooks", &body)
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["data"]["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");

    let stored = stored_answers(&app).await;
    assert_eq!(stored.len(), 1);
    let text = stored[0].to_string();
    assert!(!text.contains(&secret), "the secret is stored: {text}");
    let masked = format!("****{}", &secret[secret.len() - 4..]);
    assert_eq!(stored[0]["data"]["secret"], masked);

    let (status, replayed, headers) = app
        .post_keyed(&account.key, "hook-1", "/api/user/webhooks", &body)
        .await;
    assert_eq!(status, 201);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(replayed["data"]["secret"], masked);
    let mut expected = created.clone();
    expected["data"]["secret"] = masked.into();
    assert_eq!(replayed, expected, "the rest of the answer is as it was");
    assert_eq!(app.ids_of("webhooks", &account).await.len(), 1);
}

/// Log lines written on this thread, as a `tracing` writer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Everything a request with an idempotency key can do (first run, replay, a conflicting and a
/// reused key, a dead attempt taken over, a simple POST) logs no key, with the server's log
/// filter at its most verbose (the database driver, which logs every statement's parameters
/// at `debug`, is held at `info` by that filter).
#[tokio::test]
async fn idempotency_keys_are_never_logged() {
    let logs = Captured::default();
    let writer = logs.clone();
    // This test's thread (the runtime's, the server's tasks included) logs to `logs`.
    let _capture = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_env_filter(anyreply_server::telemetry::log_filter(Some("trace")).unwrap())
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    );
    // Records of the `log` crate (the database driver's) at every level, whoever set it lower.
    log::set_max_level(log::LevelFilter::Trace);
    let app = TestApp::spawn_with_model_delay(Duration::from_millis(300), |_| {}).await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let key = "order-4711-KEYVALUE-9c1e";
    let body = json!({ "assistant_id": assistant, "customer_identifier": "c", "message": "hi" });
    let path = "/api/ai/generate-reply";

    let (first, conflict) = tokio::join!(app.post_keyed(&account.key, key, path, &body), async {
        app.until_model_requests(1).await;
        app.post_keyed(&account.key, key, path, &body).await
    });
    assert_eq!(first.0, 200, "{}", first.1);
    assert_error(conflict.0, &conflict.1, 409, "IDEMPOTENCY_CONFLICT");
    let replay = app.post_keyed(&account.key, key, path, &body).await;
    assert_eq!(replay.2["idempotent-replayed"], "true");
    let other =
        json!({ "assistant_id": assistant, "customer_identifier": "c", "message": "other" });
    let reused = app.post_keyed(&account.key, key, path, &other).await;
    assert_error(reused.0, &reused.1, 422, "IDEMPOTENCY_KEY_REUSED");
    // A dead attempt's claim (never renewed), taken over by the retry.
    let dead = format!("{key}-dead");
    run_sql(
        &app,
        &format!(
            "INSERT INTO idempotency_keys (account_id, key, fingerprint, locked_until, token, message_id)
             SELECT account_id, key || '-dead', fingerprint, now() - interval '1 second', gen_random_uuid(), 0
             FROM idempotency_keys WHERE account_id = {}",
            account.id
        ),
    )
    .await;
    let taken_over = app.post_keyed(&account.key, &dead, path, &body).await;
    assert_eq!(taken_over.0, 200, "{}", taken_over.1);
    let hook = app
        .post_keyed(&account.key, key, "/api/user/tools", &json!({
            "name": "ping", "description": "d", "endpoint": "https://example.com", "method": "GET"
        }))
        .await;
    assert_error(hook.0, &hook.1, 422, "IDEMPOTENCY_KEY_REUSED");

    let text = logs.text();
    // The capture saw the requests and the driver's statements: the check below means something.
    assert!(text.contains("answered"), "nothing captured: {text}");
    assert!(
        text.contains("taking over an idempotency key whose request died"),
        "{text}"
    );
    // Neither as text nor as the driver prints a parameter, its bytes in decimal.
    let bytes = |text: &str| {
        text.bytes()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (form, needle) in [
        ("text", "KEYVALUE".to_owned()),
        ("bytes", bytes("KEYVALUE")),
    ] {
        assert!(
            !text.contains(&needle),
            "a key was logged as {form}:\n{text}"
        );
    }
}
