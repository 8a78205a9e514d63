//! The AI hands over: an assistant with `handoff` offers the model `transfer_to_human`; a call
//! turns the conversation's AI off in the reply's own transaction, with a `handoff.requested`
//! event, and the customer is told so.

use std::time::Duration;

use anyreply_core::wire::assistants::DEFAULT_HANDOFF_INSTRUCTIONS;
use anyreply_server::testing::eventually;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::handoff::EventStream;
use crate::util::{
    TestAccount, TestApp, anthropic_message, assert_error, body_of, money, openai_tool_calls,
};

const HANDED_OVER: &str = "A colleague will answer you here shortly.";

/// A Chat Completions answer calling `transfer_to_human` with `reason`, with `words` beside it.
fn transfer(reason: &str, words: Option<&str>) -> Value {
    let mut answer =
        openai_tool_calls(&[("call_h", "transfer_to_human", json!({ "reason": reason }))]);
    answer["choices"][0]["message"]["content"] = json!(words);
    answer
}

/// An assistant of `account` that may hand over, telling the customer `message`.
async fn handing_assistant(app: &TestApp, account: &TestAccount, message: &str) -> i64 {
    app.assistant(
        account,
        &json!({
            "name": "Shoes", "system_prompt": "You sell shoes.",
            "handoff": { "enabled": true, "message": message }
        }),
    )
    .await
}

fn the_function(body: &Value) -> Option<&Value> {
    body["tools"]
        .as_array()?
        .iter()
        .find(|t| t["function"]["name"] == "transfer_to_human")
}

#[tokio::test]
async fn a_call_of_transfer_to_human_turns_the_ai_off_and_tells_the_customer() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = handing_assistant(&app, &account, HANDED_OVER).await;
    app.script_model(|_: &Request| {
        ResponseTemplate::new(200).set_body_json(transfer("The customer asks for a person.", None))
    })
    .await;

    let body = json!({ "assistant_id": assistant, "customer_identifier": "+4915", "message": "I want a human!" });
    let (status, reply, _) = app
        .post_keyed(&account.key, "m-1", "/api/ai/generate-reply", &body)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["reply"], HANDED_OVER);
    assert_eq!(reply["ai_disabled"], true);
    assert_eq!(
        reply["function_calls"],
        json!([{ "name": "transfer_to_human", "arguments": { "reason": "The customer asks for a person." },
                 "result": { "transferred": true } }])
    );
    let conversation = reply["conversation_id"].as_str().unwrap().to_owned();

    // The model was offered the function, and told when to use it.
    let prompts = app.llm_requests().await;
    assert_eq!(prompts.len(), 1);
    let offered = the_function(&prompts[0]).expect("transfer_to_human offered");
    assert_eq!(
        offered["function"]["parameters"]["required"],
        json!(["reason"])
    );
    assert_eq!(
        prompts[0]["messages"][0]["content"],
        format!("You sell shoes.\n\n{DEFAULT_HANDOFF_INSTRUCTIONS}")
    );

    // Billed as a reply; the conversation's AI is off.
    assert_eq!(app.balance(&account).await, money("9.998"));
    let (_, history, _) = app
        .get(&account.key, &format!("/api/conversations/{conversation}"))
        .await;
    assert_eq!(history["ai_enabled"], false, "{history}");

    // The events, in the order written, with exactly one handoff.
    let mut events = EventStream::open(&app, &account.key, "", Some(0)).await;
    let frames = events.take(4).await;
    assert_eq!(
        frames.iter().map(|f| f.kind.as_str()).collect::<Vec<_>>(),
        [
            "message.received",
            "ai.disabled",
            "handoff.requested",
            "reply.created"
        ]
    );
    let handoff = &frames[2].data;
    assert_eq!(handoff["reason"], "The customer asks for a person.");
    assert_eq!(handoff["conversation_id"], conversation.as_str());
    assert_eq!(handoff["assistant_id"], assistant);
    assert_eq!(handoff["customer_identifier"], "+4915");
    assert!(handoff.get("message").is_none(), "{handoff}");
    assert_eq!(frames[3].data["message"]["content"], HANDED_OVER);
    assert!(
        events
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "one handoff, nothing more"
    );

    // A retry under the key replays the answer; the next message is stored, not answered.
    let (status, replayed, headers) = app
        .post_keyed(&account.key, "m-1", "/api/ai/generate-reply", &body)
        .await;
    assert_eq!((status, &replayed), (StatusCode::OK, &reply));
    assert_eq!(headers["idempotent-replayed"], "true");
    let (status, next) = app
        .reply(&account.key, assistant, "+4915", "Hello? Anyone?")
        .await;
    assert_eq!(status, StatusCode::OK, "{next}");
    assert_eq!(
        (&next["reply"], &next["ai_disabled"]),
        (&json!(""), &json!(true))
    );
    assert_eq!(
        app.llm_requests().await.len(),
        1,
        "the model is not asked again"
    );
    assert_eq!(app.balance(&account).await, money("9.998"));
    assert_eq!(
        app.history_contents(&account.key, &conversation).await,
        ["I want a human!", HANDED_OVER, "Hello? Anyone?"]
    );
}

#[tokio::test]
async fn the_models_own_words_are_the_reply_unless_a_message_is_set() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = handing_assistant(&app, &account, "").await;
    app.script_model(|request: &Request| {
        let said = body_of(request)["messages"].to_string();
        let words = said
            .contains("speak to someone")
            .then_some("Of course, one moment.");
        ResponseTemplate::new(200).set_body_json(transfer("asked for a person", words))
    })
    .await;

    let (_, reply) = app
        .reply(&account.key, assistant, "a", "Can I speak to someone?")
        .await;
    assert_eq!(reply["reply"], "Of course, one moment.", "{reply}");
    assert_eq!(reply["ai_disabled"], true);
    // Nothing said, nothing set: a sentence of ours.
    let (_, silent) = app.reply(&account.key, assistant, "b", "Person!").await;
    assert_eq!(silent["ai_disabled"], true);
    assert_eq!(
        silent["reply"],
        "I'm passing you to a member of our team, who will answer you here as soon as they can."
    );
}

#[tokio::test]
async fn without_handoff_the_function_is_not_offered_and_settings_change_field_by_field() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let (status, created, _) = app
        .post(&account.key, "/api/user/assistant", &json!({ "name": "A" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["data"]["handoff"],
        json!({ "enabled": false, "instructions": "", "message": "" })
    );
    let id = created["data"]["id"].as_i64().unwrap();
    let (_, reply) = app.reply(&account.key, id, "c", "hi").await;
    assert_eq!(reply["ai_disabled"], false);
    let prompt = app.llm_requests().await.pop().unwrap();
    assert!(prompt.get("tools").is_none(), "{prompt}");
    assert!(
        !prompt.to_string().contains("transfer_to_human"),
        "{prompt}"
    );

    let path = format!("/api/user/assistant/{id}");
    let instructions = "Hand over when {{name}} asks about refunds.";
    let (status, on, _) = app
        .put(
            &account.key,
            &path,
            &json!({ "handoff": { "enabled": true, "instructions": instructions } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{on}");
    assert_eq!(
        on["data"]["handoff"],
        json!({ "enabled": true, "instructions": instructions, "message": "" })
    );
    let body = json!({ "assistant_id": id, "customer_identifier": "c", "message": "refund?", "variables": { "name": "Ann" } });
    app.post(&account.key, "/api/ai/generate-reply", &body)
        .await;
    let prompt = app.llm_requests().await.pop().unwrap();
    assert!(the_function(&prompt).is_some(), "{prompt}");
    assert_eq!(prompt["tool_choice"], "auto");
    assert_eq!(
        prompt["messages"][0]["content"],
        "Hand over when Ann asks about refunds."
    );

    // Off again: the instructions are kept for later, the function is gone.
    let (_, off, _) = app
        .put(
            &account.key,
            &path,
            &json!({ "handoff": { "enabled": false } }),
        )
        .await;
    assert_eq!(off["data"]["handoff"]["enabled"], false);
    assert_eq!(off["data"]["handoff"]["instructions"], instructions);
    app.reply(&account.key, id, "c", "again").await;
    let prompt = app.llm_requests().await.pop().unwrap();
    assert!(prompt.get("tools").is_none(), "{prompt}");
}

#[tokio::test]
async fn bad_handoff_settings_are_refused_field_by_field() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let create = |body: Value| {
        let app = &app;
        let key = account.key.clone();
        async move { app.post(&key, "/api/user/assistant", &body).await }
    };

    let (status, body, _) = create(json!({ "name": "A", "handoff": true })).await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    assert_eq!(
        body["errors"]["handoff"],
        json!(["The handoff field must be an object."])
    );

    let (status, body, _) = create(json!({ "name": "A", "handoff": {
        "enabled": "yes", "instructions": "i".repeat(4_001), "message": "m".repeat(1_001)
    } }))
    .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    assert_eq!(
        body["errors"],
        json!({
            "handoff.enabled": ["The handoff.enabled field must be true or false."],
            "handoff.instructions": ["The handoff.instructions field must not be greater than 4000 characters."],
            "handoff.message": ["The handoff.message field must not be greater than 1000 characters."]
        })
    );

    let (status, body, _) =
        create(json!({ "name": "A", "handoff": { "message": "a\u{0}b" } })).await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    assert!(body["errors"].to_string().contains("NUL"), "{body}");

    // At the limits, all is well.
    let (status, body, _) = create(json!({ "name": "A", "handoff": {
        "enabled": true, "instructions": "i".repeat(4_000), "message": "m".repeat(1_000)
    } }))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// A Chat Completions stream: `words` as one chunk (if any), then a call of
/// `transfer_to_human`, usage and `[DONE]`.
fn streamed_transfer(words: Option<&str>) -> ResponseTemplate {
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({
            "id": "chatcmpl-stream", "object": "chat.completion.chunk", "created": 1_764_000_000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }]
        })
    };
    let mut chunks = Vec::new();
    if let Some(words) = words {
        chunks.push(chunk(
            json!({ "role": "assistant", "content": words }),
            None,
        ));
    }
    chunks.push(chunk(
        json!({ "tool_calls": [{ "index": 0, "id": "call_h", "type": "function",
            "function": { "name": "transfer_to_human", "arguments": "{\"reason\":\"upset\"}" } }] }),
        None,
    ));
    chunks.push(chunk(json!({}), Some("tool_calls")));
    chunks.push(json!({
        "id": "chatcmpl-stream", "object": "chat.completion.chunk", "created": 1_764_000_000,
        "model": "gpt-4o-mini-2024-07-18", "choices": [],
        "usage": { "prompt_tokens": 1_000, "completion_tokens": 500, "total_tokens": 1_500 }
    }));
    let mut body: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    body.push_str("data: [DONE]\n\n");
    ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")
}

/// The events of a streamed generate-reply: (name, data).
async fn post_streaming(app: &TestApp, key: &str, body: &Value) -> Vec<(String, Value)> {
    let response = app
        .http
        .post(format!("{}/api/ai/generate-reply", app.base))
        .bearer_auth(key)
        .header("accept", "text/event-stream")
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty() && !block.starts_with(':'))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .unwrap()
                    .to_owned()
            };
            (
                field("event: "),
                serde_json::from_str(&field("data: ")).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_streamed_handoff_shows_the_message_and_ends_with_ai_disabled() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = handing_assistant(&app, &account, HANDED_OVER).await;
    app.script_model(|request: &Request| {
        let said = body_of(request)["messages"].to_string();
        streamed_transfer(said.contains("furious").then_some("I'm sorry."))
    })
    .await;

    let message = |customer: &str, text: &str| json!({ "assistant_id": assistant, "customer_identifier": customer, "message": text });
    let events = post_streaming(&app, &account.key, &message("a", "This is awful")).await;
    assert_eq!(
        events,
        [
            ("delta".to_owned(), json!({ "text": HANDED_OVER })),
            ("reply".to_owned(), events[1].1.clone())
        ]
    );
    let reply = &events[1].1;
    assert_eq!(reply["reply"], HANDED_OVER);
    assert_eq!(reply["ai_disabled"], true);
    assert_eq!(reply["function_calls"][0]["name"], "transfer_to_human");

    // Words shown beside the call stay, the message a paragraph after them.
    let events = post_streaming(&app, &account.key, &message("b", "I am furious")).await;
    let deltas: Vec<&str> = events
        .iter()
        .filter(|(name, _)| name == "delta")
        .map(|(_, data)| data["text"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, ["I'm sorry.", &format!("\n\n{HANDED_OVER}")]);
    let (name, reply) = events.last().unwrap();
    assert_eq!(name, "reply");
    assert_eq!(reply["reply"], format!("I'm sorry.\n\n{HANDED_OVER}"));
    assert_eq!(reply["ai_disabled"], true);
    let (_, history, _) = app
        .get(
            &account.key,
            &format!(
                "/api/conversations/{}",
                reply["conversation_id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(history["ai_enabled"], false);
    assert_eq!(history["history"][1]["content"], reply["reply"]);
}

#[tokio::test]
async fn an_anthropic_model_hands_over_with_a_tool_use_block() {
    let anthropic = MockServer::start().await;
    let base = anthropic.uri();
    let app = TestApp::spawn_with(|s| {
        s.anthropic_base_url = base.parse().unwrap();
        s.anthropic_api_key = Some("sk-ant-test".to_owned().into());
    })
    .await;
    let account = app.db_account("10").await;
    let assistant = app
        .assistant(
            &account,
            &json!({
                "name": "Claude", "llm_provider": "anthropic", "llm_model": "claude-sonnet-4-5",
                "handoff": { "enabled": true, "instructions": "Hand over any question about invoices." }
            }),
        )
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(anthropic_message(
            json!([
                { "type": "text", "text": "A colleague from billing will help you." },
                { "type": "tool_use", "id": "toolu_h", "name": "transfer_to_human", "input": { "reason": "invoice question" } }
            ]),
            "tool_use",
        )))
        .mount(&anthropic)
        .await;

    let (status, reply) = app
        .reply(&account.key, assistant, "c", "My invoice is wrong")
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["reply"], "A colleague from billing will help you.");
    assert_eq!(reply["ai_disabled"], true);
    assert_eq!(
        reply["function_calls"][0]["arguments"],
        json!({ "reason": "invoice question" })
    );
    let requests = anthropic.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let sent = body_of(&requests[0]);
    assert_eq!(sent["system"], "Hand over any question about invoices.");
    assert_eq!(sent["tools"][0]["name"], "transfer_to_human");
    assert_eq!(
        sent["tools"][0]["input_schema"]["required"],
        json!(["reason"])
    );
    let (_, next) = app.reply(&account.key, assistant, "c", "Hello?").await;
    assert_eq!(next["ai_disabled"], true);
    assert_eq!(next["reply"], "");
    assert_eq!(anthropic.received_requests().await.unwrap().len(), 1);
}

/// How many messages wait for a reply, in every conversation.
async fn queued(app: &TestApp) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::Int8)]
        n: i64,
    }
    let mut conn = app.db.connect().await;
    let count: Count = diesel::sql_query("SELECT count(*) AS n FROM pending_replies")
        .get_result(&mut conn)
        .await
        .unwrap();
    count.n
}

#[tokio::test]
async fn a_message_queued_behind_the_handoff_is_not_answered_when_its_turn_comes() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = handing_assistant(&app, &account, HANDED_OVER).await;
    // Slow enough that the second message queues behind the first while the model thinks.
    app.model_answers(
        ResponseTemplate::new(200)
            .set_body_json(transfer("upset", None))
            .set_delay(Duration::from_secs(3)),
    )
    .await;

    let first = app.reply(&account.key, assistant, "q", "This is unacceptable");
    let second = async {
        eventually("the first message with the model", || async {
            app.llm_requests().await.len() == 1
        })
        .await;
        app.reply(&account.key, assistant, "q", "Hello??").await
    };
    let both_queued = eventually("the second message queued behind the first", || async {
        queued(&app).await == 2
    });
    let ((_, first), second, ()) = futures::join!(first, second, both_queued);
    assert_eq!(first["reply"], HANDED_OVER, "{first}");
    let (status, second) = second;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(
        (&second["reply"], &second["ai_disabled"]),
        (&json!(""), &json!(true))
    );
    assert!(second.get("coalesced").is_none(), "{second}");
    assert_eq!(
        app.llm_requests().await.len(),
        1,
        "the model is not asked again"
    );
    // One reply charged; the second's reservation went back.
    assert_eq!(app.balance(&account).await, money("9.998"));
    let conversation = first["conversation_id"].as_str().unwrap();
    assert_eq!(
        app.history_contents(&account.key, conversation).await,
        ["This is unacceptable", HANDED_OVER, "Hello??"]
    );
}
