//! Conversations that end: an assistant's `conversation_inactivity_timeout` ends a quiet
//! conversation (by the server's own loop, once across processes), its `post_call_schema` is
//! extracted by the model (checked, billed), `conversation.ended` is written, and Famulor's
//! conversation-ended webhook is posted, retried after failures; the next message reopens it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyreply_core::webhook_signature::SigningKey;
use anyreply_core::wire::{Event, EventType};
use anyreply_server::config::Settings;
use anyreply_server::models::event::{self, EventFilter};
use anyreply_server::testing::eventually;
use anyreply_server::tools::guard::AddressPolicy;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::util::{TestAccount, TestApp, assert_error, body_of};

/// The webhook's retries after 300, 600 and 1,200 ms (Famulor's 30, 60, 120 s, a hundredth);
/// endings looked for every 50 ms; receivers on 127.0.0.1 allowed.
fn fast_endings(settings: &mut Settings) {
    settings.outbound_allowed_hosts = AddressPolicy::parse("127.0.0.1").unwrap();
    settings.conversation_ended_retry_schedule =
        [300, 600, 1200].map(Duration::from_millis).to_vec();
    settings.conversation_end_recheck = Duration::from_millis(50);
    settings.webhook_timeout = Duration::from_secs(5);
}

const SCHEMA: &str = r#"[
    {"name": "name", "type": "string", "description": "The customer's name"},
    {"name": "seats", "type": "number", "description": "How many seats they booked"},
    {"name": "booked", "type": "boolean", "description": "Whether they booked"},
    {"name": "email", "type": "string", "description": "Their email address"}
]"#;

/// The model: an extraction request (`response_format`) is answered `extracted`, anything
/// else is echoed.
async fn model_extracting(app: &TestApp, extracted: Value) {
    app.script_model(move |request: &Request| {
        let body = body_of(request);
        let answer = if body.get("response_format").is_some() {
            extracted.to_string()
        } else {
            let last = body["messages"].as_array().unwrap().last().unwrap();
            format!("echo: {}", last["content"].as_str().unwrap_or_default())
        };
        ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{ "message": { "role": "assistant", "content": answer } }],
            "usage": { "prompt_tokens": 1000, "completion_tokens": 100 }
        }))
    })
    .await;
}

/// A receiver answering `500` to the first `failures` posts, then `200`; it keeps each post
/// and when it came.
#[derive(Clone)]
struct Receiver {
    posts: Arc<Mutex<Vec<(Instant, Request)>>>,
    failures: usize,
}

impl Respond for Receiver {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut posts = self.posts.lock().unwrap();
        posts.push((Instant::now(), request.clone()));
        if posts.len() <= self.failures {
            ResponseTemplate::new(500)
        } else {
            ResponseTemplate::new(200)
        }
    }
}

async fn receiver(failures: usize) -> (MockServer, Receiver) {
    let server = MockServer::start().await;
    let receiver = Receiver {
        posts: Arc::default(),
        failures,
    };
    Mock::given(method("POST"))
        .and(path("/ended"))
        .respond_with(receiver.clone())
        .mount(&server)
        .await;
    (server, receiver)
}

async fn events_of(app: &TestApp, account: &TestAccount, kind: EventType) -> Vec<Event> {
    let mut conn = app.db.connect().await;
    event::after(&mut conn, account.id, 0, EventFilter::default(), 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|row| row.into_event())
        .filter(|event| event.kind == kind)
        .collect()
}

/// Brings the end of every conversation of the assistant to now, as if its timeout had
/// passed (past the API: the timeout is a minute at least).
async fn db_end_now(app: &TestApp, assistant: i64) {
    use diesel_async::RunQueryDsl;
    let mut conn = app.db.connect().await;
    diesel::sql_query(
        "UPDATE conversations SET ends_at = now() WHERE assistant_id = $1 AND ended_at IS NULL",
    )
    .bind::<diesel::sql_types::Int8, _>(assistant)
    .execute(&mut conn)
    .await
    .unwrap();
}

async fn ending_assistant(app: &TestApp, account: &TestAccount, webhook: &str) -> (i64, Value) {
    let body = json!({
        "name": "Bookings", "system_prompt": "You take bookings.",
        "conversation_inactivity_timeout": 30,
        "post_call_schema": serde_json::from_str::<Value>(SCHEMA).unwrap(),
        "conversation_ended_webhook_url": webhook,
    });
    let (status, created, _) = app.post(&account.key, "/api/user/assistant", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (
        created["data"]["id"].as_i64().unwrap(),
        created["data"].clone(),
    )
}

#[tokio::test]
async fn a_quiet_conversation_ends_is_extracted_and_told_to_the_webhook() {
    let app = TestApp::spawn_with(fast_endings).await;
    let account = app.db_account("10").await;
    let (server, receiver) = receiver(2).await;
    let (assistant, settings) =
        ending_assistant(&app, &account, &format!("{}/ended", server.uri())).await;
    assert_eq!(settings["conversation_inactivity_timeout"], 30);
    let secret = settings["conversation_ended_webhook_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    model_extracting(
        &app,
        json!({ "name": "Ada", "seats": "two", "booked": true, "email": null }),
    )
    .await;
    let body = json!({ "assistant_id": assistant, "customer_identifier": "+4915", "message": "Two seats for Ada 🙂",
                       "variables": { "customer_name": "Ada L." } });
    let (status, reply, _) = app
        .post(&account.key, "/api/ai/generate-reply", &body)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let conversation = reply["conversation_id"].as_str().unwrap().to_owned();
    app.reply(&account.key, assistant, "+4915", "Thanks").await;
    let detail = format!("/api/conversations/{conversation}");
    let (_, before, _) = app.get(&account.key, &detail).await;
    assert_eq!(before["state"], "active");
    assert_eq!(before["ended_at"], Value::Null);
    let balance_before = app.balance(&account).await;

    db_end_now(&app, assistant).await;
    eventually("the webhook delivered", || async {
        receiver.posts.lock().unwrap().len() >= 3
    })
    .await;

    let (_, ended, _) = app.get(&account.key, &detail).await;
    assert_eq!(ended["state"], "ended");
    assert!(ended["ended_at"].is_string());
    assert_eq!(
        ended["extracted_variables"],
        json!({ "name": "Ada", "booked": true }),
        "seats was no number: dropped"
    );
    let events = events_of(&app, &account, EventType::ConversationEnded).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        Value::Object(events[0].extracted_variables.clone().unwrap()),
        json!({ "name": "Ada", "booked": true })
    );
    assert_eq!(
        events[0].extraction_error.as_deref(),
        Some("dropped, as not of their type: seats")
    );
    assert!(
        app.balance(&account).await < balance_before,
        "the extraction is billed"
    );

    // The extraction asked for the schema, strictly, with the transcript.
    let asked: Vec<Value> = app
        .llm_requests()
        .await
        .into_iter()
        .filter(|b| b.get("response_format").is_some())
        .collect();
    assert_eq!(asked.len(), 1, "asked once");
    let format = &asked[0]["response_format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["json_schema"]["strict"], true);
    assert_eq!(
        format["json_schema"]["schema"]["required"],
        json!(["name", "seats", "booked", "email"])
    );
    let prompt = asked[0]["messages"][1]["content"].as_str().unwrap();
    assert!(
        prompt.starts_with("Customer: Two seats for Ada 🙂\nAI: echo: "),
        "{prompt}"
    );

    check_posts(&receiver, &secret, &conversation, assistant);

    // The next message reopens it, the history intact.
    app.reply(&account.key, assistant, "+4915", "One more thing")
        .await;
    let (_, reopened, _) = app.get(&account.key, &detail).await;
    assert_eq!(reopened["state"], "active");
    assert_eq!(reopened["history"].as_array().unwrap().len(), 6);
}

/// Three posts, the 2nd and 3rd after the schedule's pauses, each Famulor's payload, the same
/// bytes, signed with the assistant's secret.
fn check_posts(receiver: &Receiver, secret: &str, conversation: &str, assistant: i64) {
    let posts = receiver.posts.lock().unwrap().clone();
    assert_eq!(posts.len(), 3, "two failures, then delivered");
    assert!(posts[1].0 - posts[0].0 >= Duration::from_millis(300));
    assert!(posts[2].0 - posts[1].0 >= Duration::from_millis(600));
    assert_eq!(
        posts[0].1.body, posts[2].1.body,
        "the same bytes every time"
    );
    let key = SigningKey::from_secret(secret).unwrap();
    for (_, post) in &posts {
        let header = |name: &str| post.headers[name].to_str().unwrap().to_owned();
        let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
        assert!(key.verify(
            &header("webhook-id"),
            timestamp,
            &post.body,
            &header("webhook-signature")
        ));
    }
    let payload = body_of(&posts[2].1);
    assert_eq!(payload["conversation_id"], conversation);
    assert_eq!(payload["assistant_id"], assistant);
    assert_eq!(payload["type"], "api");
    assert_eq!(payload["status"], "ended");
    assert_eq!(payload["message_count"], 4);
    assert_eq!(
        payload["extracted_variables"],
        json!({ "name": "Ada", "booked": true })
    );
    assert_eq!(payload["input_variables"]["customer_name"], "Ada L.");
    assert_eq!(payload["customer_name"], "Ada L.");
    let transcript = payload["transcript"].as_array().unwrap();
    assert_eq!(transcript.len(), 4);
    assert_eq!(transcript[0]["role"], "user");
    assert_eq!(transcript[0]["content"], "Two seats for Ada 🙂");
    assert_eq!(
        payload["formatted_transcript"],
        "Customer: Two seats for Ada 🙂\nAI: echo: Two seats for Ada 🙂\nCustomer: Thanks\nAI: echo: Thanks"
    );
    assert!(payload["created_at"].is_string() && payload["ended_at"].is_string());
}

#[tokio::test]
async fn a_model_that_answers_nonsense_leaves_nothing_extracted_and_says_why() {
    let app = TestApp::spawn_with(fast_endings).await;
    let account = app.db_account("10").await;
    let (server, receiver) = receiver(0).await;
    let (assistant, _) = ending_assistant(&app, &account, &format!("{}/ended", server.uri())).await;
    app.script_model(|request: &Request| {
        let content = if body_of(request).get("response_format").is_some() {
            "I think her name is Ada."
        } else {
            "Hello!"
        };
        ResponseTemplate::new(200).set_body_json(
            json!({ "choices": [{ "message": { "role": "assistant", "content": content } }] }),
        )
    })
    .await;
    app.reply(&account.key, assistant, "ada@example.org", "Hi")
        .await;
    db_end_now(&app, assistant).await;
    eventually("the webhook delivered", || async {
        !receiver.posts.lock().unwrap().is_empty()
    })
    .await;
    let events = events_of(&app, &account, EventType::ConversationEnded).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].extracted_variables.as_ref().map(|v| v.len()),
        Some(0)
    );
    assert_eq!(
        events[0].extraction_error.as_deref(),
        Some("the model's answer was not a JSON object: nothing was extracted")
    );
    let payload = body_of(&receiver.posts.lock().unwrap()[0].1);
    assert_eq!(payload["extracted_variables"], json!({}));
    assert_eq!(payload["status"], "ended");
}

#[tokio::test]
async fn two_servers_end_each_conversation_once() {
    let mut app = TestApp::spawn_with(fast_endings).await;
    let mut second = app.settings.clone();
    fast_endings(&mut second);
    app.start_server(second).await;
    let account = app.db_account("100").await;
    let (server, receiver) = receiver(0).await;
    let (assistant, _) = ending_assistant(&app, &account, &format!("{}/ended", server.uri())).await;
    model_extracting(
        &app,
        json!({ "name": "Ada", "seats": 2, "booked": false, "email": "a@b.c" }),
    )
    .await;
    let customers = 30;
    for n in 0..customers {
        app.reply(&account.key, assistant, &format!("customer-{n}"), "Hello")
            .await;
    }
    db_end_now(&app, assistant).await;
    eventually("every conversation told", || async {
        receiver.posts.lock().unwrap().len() >= customers
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let posts = receiver.posts.lock().unwrap().clone();
    assert_eq!(posts.len(), customers, "one post per conversation");
    let mut told: Vec<String> = posts
        .iter()
        .map(|(_, post)| {
            body_of(post)["conversation_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    told.sort();
    told.dedup();
    assert_eq!(told.len(), customers);
    assert_eq!(
        events_of(&app, &account, EventType::ConversationEnded)
            .await
            .len(),
        customers
    );
    let extractions = app
        .llm_requests()
        .await
        .into_iter()
        .filter(|b| b.get("response_format").is_some())
        .count();
    assert_eq!(extractions, customers, "each extracted once");
    assert_eq!(app.count("conversation_endings").await, 0, "no work left");
}

#[tokio::test]
async fn the_lifecycle_settings_are_checked_and_cleared() {
    let app = TestApp::spawn_with(fast_endings).await;
    let account = app.db_account("10").await;
    let bad = [
        (
            json!({ "name": "A", "conversation_inactivity_timeout": 0 }),
            "conversation_inactivity_timeout",
        ),
        (
            json!({ "name": "A", "conversation_inactivity_timeout": 10_081 }),
            "conversation_inactivity_timeout",
        ),
        (
            json!({ "name": "A", "conversation_inactivity_timeout": "ten" }),
            "conversation_inactivity_timeout",
        ),
        (
            json!({ "name": "A", "post_call_schema": [{ "name": "x", "type": "date" }] }),
            "post_call_schema.0.type",
        ),
        (
            json!({ "name": "A", "post_call_schema": [{ "name": "1x", "type": "string" }] }),
            "post_call_schema.0.name",
        ),
        (
            json!({ "name": "A", "post_call_schema": [{ "name": "x", "type": "string" }, { "name": "x", "type": "number" }] }),
            "post_call_schema.1.name",
        ),
        (
            json!({ "name": "A", "post_call_schema": {} }),
            "post_call_schema",
        ),
        (
            json!({ "name": "A", "conversation_ended_webhook_url": "ftp://example.com" }),
            "conversation_ended_webhook_url",
        ),
    ];
    for (body, field) in bad {
        let (status, answer, _) = app.post(&account.key, "/api/user/assistant", &body).await;
        assert_error(status, &answer, 422, "VALIDATION_ERROR");
        assert!(answer["errors"].get(field).is_some(), "{field}: {answer}");
    }
    assert_eq!(app.count("assistants").await, 0, "nothing written");

    let (assistant, _) = ending_assistant(&app, &account, "https://crm.example.com/ended").await;
    app.reply(&account.key, assistant, "+4915", "Hi").await;
    let cleared = json!({ "conversation_inactivity_timeout": null, "conversation_ended_webhook_url": "", "post_call_schema": [] });
    let (status, updated, _) = app
        .put(
            &account.key,
            &format!("/api/user/assistant/{assistant}"),
            &cleared,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        updated["data"]["conversation_inactivity_timeout"],
        Value::Null
    );
    assert_eq!(
        updated["data"]["conversation_ended_webhook_url"],
        Value::Null
    );
    assert_eq!(updated["data"]["post_call_schema"], json!([]));
    // Its conversations no longer end.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, list, _) = app.get(&account.key, "/api/user/conversations").await;
    assert_eq!(list["data"][0]["state"], "active");
    assert_eq!(list["data"][0]["extracted_variables"], json!({}));
}

#[tokio::test]
async fn an_anthropic_model_extracts_with_a_forced_tool_call() {
    let anthropic = MockServer::start().await;
    let base = anthropic.uri();
    let app = TestApp::spawn_with(|s| {
        fast_endings(s);
        s.anthropic_base_url = base.parse().unwrap();
        s.anthropic_api_key = Some("sk-ant-test".to_owned().into());
    })
    .await;
    let account = app.db_account("10").await;
    let body = json!({
        "name": "Claude", "llm_provider": "anthropic", "llm_model": "claude-sonnet-4-5",
        "conversation_inactivity_timeout": 5,
        "post_call_schema": [{ "name": "seats", "type": "number", "description": "Seats booked" }],
    });
    let assistant = app.assistant(&account, &body).await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(|request: &Request| {
            let content = if body_of(request).get("tool_choice").is_some() {
                json!([{ "type": "tool_use", "id": "toolu_x", "name": "extracted_variables", "input": { "seats": 3 } }])
            } else {
                json!([{ "type": "text", "text": "Booked." }])
            };
            ResponseTemplate::new(200).set_body_json(crate::util::anthropic_message(content, "end_turn"))
        })
        .mount(&anthropic)
        .await;
    app.reply(&account.key, assistant, "+4916", "Three seats, please")
        .await;
    db_end_now(&app, assistant).await;
    eventually("the conversation ended", || async {
        !events_of(&app, &account, EventType::ConversationEnded)
            .await
            .is_empty()
    })
    .await;
    let ended = events_of(&app, &account, EventType::ConversationEnded).await;
    assert_eq!(
        Value::Object(ended[0].extracted_variables.clone().unwrap()),
        json!({ "seats": 3 })
    );
    assert_eq!(ended[0].extraction_error, None);
    let asked: Vec<Value> = anthropic
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(body_of)
        .collect();
    let extraction = asked
        .iter()
        .find(|b| b.get("tool_choice").is_some())
        .unwrap();
    assert_eq!(
        extraction["tool_choice"],
        json!({ "type": "tool", "name": "extracted_variables" })
    );
    assert_eq!(
        extraction["tools"][0]["input_schema"]["properties"]["seats"]["type"],
        json!(["number", "null"])
    );
    // Billed, and counted in usage (tokens, not as a reply).
    let (_, usage, _) = app
        .get(&account.key, "/api/user/usage?group_by=assistant")
        .await;
    assert_eq!(usage["data"][0]["replies"], 1);
    assert_eq!(
        usage["data"][0]["prompt_tokens"], 4_000,
        "the reply's and the extraction's"
    );
}

#[tokio::test]
async fn the_console_edits_the_lifecycle_and_shows_the_ending() {
    let app = TestApp::spawn_with(fast_endings).await;
    let account = app.db_account("10").await;
    let mut browser = crate::console::signed_in(&app, &account).await;
    browser.get("/console/assistants/new").await;
    let fields = [
        ("name", "Front desk"),
        ("conversation_inactivity_timeout", "15"),
        ("schema_name", "customer_name"),
        ("schema_type", "string"),
        ("schema_description", "Their name"),
        ("schema_name", "booked"),
        ("schema_type", "boolean"),
        ("schema_description", "Booked?"),
        ("schema_name", ""),
        ("schema_type", "string"),
        ("schema_description", ""),
        (
            "conversation_ended_webhook_url",
            "https://crm.example.com/ended",
        ),
    ];
    let page = browser.post("/console/assistants", &fields).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    let edit = crate::console::location(&page).to_owned();
    let id: i64 = edit.rsplit('/').next().unwrap().parse().unwrap();
    let (_, listed, _) = app.get(&account.key, "/api/user/assistants/get").await;
    let saved = &listed["data"][0];
    assert_eq!(saved["conversation_inactivity_timeout"], 15);
    assert_eq!(
        saved["post_call_schema"],
        json!([
            { "name": "customer_name", "type": "string", "description": "Their name" },
            { "name": "booked", "type": "boolean", "description": "Booked?" }
        ])
    );
    assert_eq!(
        saved["conversation_ended_webhook_url"],
        "https://crm.example.com/ended"
    );
    let form = browser.get(&edit).await;
    assert!(
        form.html
            .contains(saved["conversation_ended_webhook_secret"].as_str().unwrap())
    );

    // The first field removed, the timeout emptied: never ends.
    let fields = [
        ("name", "Front desk"),
        ("conversation_inactivity_timeout", ""),
        ("schema_name", "customer_name"),
        ("schema_type", "string"),
        ("schema_description", "Their name"),
        ("schema_remove", "0"),
        ("schema_name", "booked"),
        ("schema_type", "boolean"),
        ("schema_description", "Booked?"),
        ("conversation_ended_webhook_url", ""),
    ];
    let page = browser.post(&edit, &fields).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    let (_, listed, _) = app.get(&account.key, "/api/user/assistants/get").await;
    let saved = &listed["data"][0];
    assert_eq!(saved["conversation_inactivity_timeout"], Value::Null);
    assert_eq!(
        saved["post_call_schema"],
        json!([{ "name": "booked", "type": "boolean", "description": "Booked?" }])
    );
    assert_eq!(saved["conversation_ended_webhook_url"], Value::Null);

    // A conversation that ended shows so, with what was extracted.
    let timeout = json!({ "conversation_inactivity_timeout": 1 });
    app.put(&account.key, &format!("/api/user/assistant/{id}"), &timeout)
        .await;
    model_extracting(&app, json!({ "booked": true })).await;
    let (_, reply) = app.reply(&account.key, id, "+4917", "Book it").await;
    db_end_now(&app, id).await;
    eventually("the conversation ended", || async {
        !events_of(&app, &account, EventType::ConversationEnded)
            .await
            .is_empty()
    })
    .await;
    let page = browser
        .get(&format!(
            "/console/conversations/{}",
            reply["conversation_id"].as_str().unwrap()
        ))
        .await;
    assert!(page.html.contains("Ended "), "{}", page.html);
    assert!(page.html.contains("Extracted when it ended"));
    assert!(
        page.html.contains("<dt>booked</dt><dd>true</dd>"),
        "{}",
        page.html
    );
}

/// The conversation-ended webhook obeys the outbound address policy: with loopback not
/// allowed, nothing reaches a receiver there, and the ending is given up after its retries;
/// the conversation still ends, with its event.
#[tokio::test]
async fn the_conversation_ended_webhook_obeys_the_address_policy() {
    let app = TestApp::spawn_with(|s| {
        fast_endings(s);
        s.outbound_allowed_hosts = AddressPolicy::default();
    })
    .await;
    let account = app.db_account("10").await;
    let (server, receiver) = receiver(0).await;
    let (assistant, _) = ending_assistant(&app, &account, &format!("{}/ended", server.uri())).await;
    model_extracting(&app, json!({ "name": "Ada" })).await;
    app.reply(&account.key, assistant, "+4918", "Hi").await;
    db_end_now(&app, assistant).await;
    eventually("the ending given up", || async {
        !events_of(&app, &account, EventType::ConversationEnded)
            .await
            .is_empty()
            && app.count("conversation_endings").await == 0
    })
    .await;
    assert!(
        receiver.posts.lock().unwrap().is_empty(),
        "nothing posted to a refused address"
    );
}

/// The account's own webhooks get `conversation.ended` like any event.
#[tokio::test]
async fn the_accounts_webhooks_get_conversation_ended() {
    let app = TestApp::spawn_with(fast_endings).await;
    let account = app.db_account("10").await;
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&hook)
        .await;
    let body = json!({ "url": format!("{}/hook", hook.uri()), "events": ["conversation.ended"] });
    let (status, created, _) = app.post(&account.key, "/api/user/webhooks", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (assistant, _) = ending_assistant(&app, &account, "https://crm.example.com/ended").await;
    model_extracting(&app, json!({ "name": "Ada", "booked": true })).await;
    app.reply(&account.key, assistant, "+4919", "Hi").await;
    db_end_now(&app, assistant).await;
    eventually("the webhook delivery", || async {
        !hook.received_requests().await.unwrap().is_empty()
    })
    .await;
    let delivered = body_of(&hook.received_requests().await.unwrap()[0]);
    assert_eq!(delivered["type"], "conversation.ended", "{delivered}");
    assert_eq!(
        delivered["data"]["extracted_variables"],
        json!({ "name": "Ada", "booked": true })
    );
}
