//! Streamed replies: `Accept: text/event-stream` on generate-reply, with both providers'
//! streaming wire formats.

use std::sync::atomic::{AtomicUsize, Ordering};

use anyreply_server::testing::{COMPLETION_TOKENS, PROMPT_TOKENS};
use anyreply_server::tools::guard::AddressPolicy;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::util::{TestAccount, TestApp, assert_error, body_of};

/// A Chat Completions stream: one chunk per piece of text, a usage chunk, `[DONE]`.
fn openai_stream(pieces: &[&str]) -> String {
    let mut chunks: Vec<Value> = pieces
        .iter()
        .map(|piece| chunk(json!({ "content": piece }), None))
        .collect();
    chunks.push(chunk(json!({}), Some("stop")));
    sse_body(chunks, true)
}

fn chunk(delta: Value, finish_reason: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-stream", "object": "chat.completion.chunk", "created": 1_764_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason }]
    })
}

/// `chunks` as `data:` lines, then (with `done`) the usage chunk and `[DONE]`.
fn sse_body(chunks: Vec<Value>, done: bool) -> String {
    let mut body: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    if done {
        let usage = json!({
            "id": "chatcmpl-stream", "object": "chat.completion.chunk", "created": 1_764_000_000,
            "model": "gpt-4o-mini-2024-07-18", "choices": [],
            "usage": { "prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                       "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS }
        });
        body.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
    }
    body
}

fn event_stream(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")
}

/// POSTs a generate-reply asking for events; the status, headers and events (name, data).
async fn post_streaming(
    app: &TestApp,
    key: &str,
    idempotency_key: Option<&str>,
    body: &Value,
) -> (StatusCode, HeaderMap, Vec<(String, Value)>) {
    let mut request = app
        .http
        .post(format!("{}/api/ai/generate-reply", app.base))
        .bearer_auth(key)
        .header("accept", "text/event-stream")
        .json(body);
    if let Some(idempotency_key) = idempotency_key {
        request = request.header("idempotency-key", idempotency_key);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let text = response.text().await.unwrap();
    if !headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream")
    {
        let body: Value = serde_json::from_str(&text).unwrap();
        return (status, headers, vec![("json".to_owned(), body)]);
    }
    let events = text
        .split("\n\n")
        .filter(|block| !block.trim().is_empty() && !block.starts_with(':'))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .unwrap_or_else(|| panic!("no {name} in {block:?}"))
                    .to_owned()
            };
            (
                field("event: "),
                serde_json::from_str(&field("data: ")).unwrap(),
            )
        })
        .collect();
    (status, headers, events)
}

fn message(assistant: i64, text: &str) -> Value {
    json!({ "assistant_id": assistant, "customer_identifier": "+4915550001", "message": text })
}

/// The texts of the `delta` events, and the data of the last event, which must be `reply`.
fn deltas_and_reply(events: &[(String, Value)]) -> (Vec<&str>, &Value) {
    let (last, deltas) = events.split_last().unwrap();
    assert_eq!(last.0, "reply", "{events:?}");
    let texts = deltas
        .iter()
        .map(|(name, data)| {
            assert_eq!(name, "delta");
            data["text"].as_str().unwrap()
        })
        .collect();
    (texts, &last.1)
}

#[tokio::test]
async fn an_openai_reply_streams_as_the_model_writes_and_costs_what_it_would_unstreamed() {
    let app = TestApp::spawn().await;
    let (streamed, unstreamed) = (app.db_account("10").await, app.db_account("10").await);
    let assistant = |account: TestAccount| {
        let app = &app;
        async move {
            (
                app.assistant(&account, &json!({ "name": "A" })).await,
                account,
            )
        }
    };
    let ((streaming_assistant, streamed), (plain_assistant, unstreamed)) =
        (assistant(streamed).await, assistant(unstreamed).await);
    app.script_model(|request: &Request| {
        let body = body_of(request);
        if body["stream"] == true {
            assert_eq!(body["stream_options"], json!({ "include_usage": true }));
            event_stream(openai_stream(&["We ", "have a table ", "at eight."]))
        } else {
            ResponseTemplate::new(200).set_body_json(anyreply_server::testing::chat_completion(
                "We have a table at eight.",
            ))
        }
    })
    .await;

    let (status, headers, events) = post_streaming(
        &app,
        &streamed.key,
        None,
        &message(streaming_assistant, "A table for two?"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-cache");
    let (deltas, reply) = deltas_and_reply(&events);
    assert_eq!(deltas, ["We ", "have a table ", "at eight."]);
    assert_eq!(reply["success"], true);
    assert_eq!(reply["reply"], "We have a table at eight.");
    assert_eq!(reply["customer_identifier"], "+4915550001");
    assert_eq!(reply["ai_disabled"], false);

    // Without the header, nothing changes.
    let (status, plain) = app
        .reply(
            &unstreamed.key,
            plain_assistant,
            "+4915550001",
            "A table for two?",
        )
        .await;
    assert_eq!(status, 200);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(reply), keys(&plain));
    assert_eq!(app.balance(&streamed).await, app.balance(&unstreamed).await);
    assert!(app.balance(&streamed).await < crate::util::money("10"));
    let history = app
        .history_contents(&streamed.key, reply["conversation_id"].as_str().unwrap())
        .await;
    assert_eq!(history, ["A table for two?", "We have a table at eight."]);
}

#[tokio::test]
async fn an_anthropic_reply_streams_from_the_messages_event_stream() {
    let anthropic = MockServer::start().await;
    let base = anthropic.uri();
    let app = TestApp::spawn_with(move |s| {
        s.anthropic_base_url = base.parse().unwrap();
        s.anthropic_api_key = Some("sk-ant-test".to_owned().into());
    })
    .await;
    let account = app.db_account("10").await;
    let assistant = app
        .assistant(
            &account,
            &json!({ "name": "C", "llm_provider": "anthropic", "llm_model": "claude-sonnet-4-5" }),
        )
        .await;
    let events = [
        (
            "message_start",
            json!({ "type": "message_start", "message": { "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5", "stop_reason": null, "usage": { "input_tokens": 2000, "output_tokens": 1 } } }),
        ),
        (
            "content_block_start",
            json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
        ),
        ("ping", json!({ "type": "ping" })),
        (
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": "Yes, " } }),
        ),
        (
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": "at eight." } }),
        ),
        (
            "content_block_stop",
            json!({ "type": "content_block_stop", "index": 0 }),
        ),
        (
            "message_delta",
            json!({ "type": "message_delta", "delta": { "stop_reason": "end_turn", "stop_sequence": null }, "usage": { "output_tokens": 100 } }),
        ),
        ("message_stop", json!({ "type": "message_stop" })),
    ];
    let body: String = events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect();
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(move |request: &Request| {
            assert_eq!(body_of(request)["stream"], true);
            event_stream(body.clone())
        })
        .mount(&anthropic)
        .await;

    let (status, _, events) =
        post_streaming(&app, &account.key, None, &message(assistant, "Tonight?")).await;
    assert_eq!(status, 200);
    let (deltas, reply) = deltas_and_reply(&events);
    assert_eq!(deltas, ["Yes, ", "at eight."]);
    assert_eq!(reply["reply"], "Yes, at eight.");
    // Charged for the stream's usage: 2,000 tokens in, 100 out.
    let mut conn = app.db.connect().await;
    let tokens: Vec<(Option<i32>, Option<i32>)> = {
        use anyreply_server::schema::messages::dsl::*;
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        messages
            .filter(role.eq("assistant"))
            .select((prompt_tokens, completion_tokens))
            .load(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(tokens, [(Some(2000), Some(100))]);
}

#[tokio::test]
async fn tool_rounds_run_before_the_text_streams_and_a_replay_streams_the_stored_reply_at_once() {
    let app = TestApp::spawn_with(|s| {
        s.outbound_allowed_hosts = AddressPolicy::parse("127.0.0.1").unwrap();
    })
    .await;
    let account = app.db_account("10").await;
    let calendar = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/book"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "booked": "20:00" })))
        .expect(1)
        .mount(&calendar)
        .await;
    let (status, tool, _) = app
        .post(
            &account.key,
            "/api/user/tools",
            &json!({
                "name": "book", "description": "Books a table", "method": "POST",
                "endpoint": format!("{}/book", calendar.uri()),
                "schema": [{ "name": "people", "type": "number", "description": "how many" }]
            }),
        )
        .await;
    assert_eq!(status, 201, "{tool}");
    let assistant = app
        .assistant(
            &account,
            &json!({ "name": "A", "tool_ids": [tool["data"]["id"]] }),
        )
        .await;
    app.script_model(|request: &Request| {
        let called = body_of(request)["messages"].to_string().contains("booked");
        if called {
            return event_stream(openai_stream(&["Booked ", "for eight."]));
        }
        // The call's arguments arrive in fragments, after a sentence shown to the customer.
        let call = |delta: Value| chunk(json!({ "tool_calls": [delta] }), None);
        event_stream(sse_body(
            vec![
                chunk(json!({ "role": "assistant", "content": "One moment." }), None),
                call(json!({ "index": 0, "id": "call_1", "type": "function", "function": { "name": "book", "arguments": "" } })),
                call(json!({ "index": 0, "function": { "arguments": "{\"peo" } })),
                call(json!({ "index": 0, "function": { "arguments": "ple\": 2}" } })),
                chunk(json!({}), Some("tool_calls")),
            ],
            true,
        ))
    })
    .await;

    let body = message(assistant, "Book for two");
    let (status, _, events) = post_streaming(&app, &account.key, Some("msg-1"), &body).await;
    assert_eq!(status, 200);
    let (deltas, reply) = deltas_and_reply(&events);
    // What was shown is the reply: the sentence before the call, then the answer.
    assert_eq!(deltas, ["One moment.", "\n\nBooked ", "for eight."]);
    assert_eq!(reply["reply"], deltas.concat());
    assert_eq!(reply["function_calls"][0]["name"], "book");
    assert_eq!(
        reply["function_calls"][0]["arguments"],
        json!({ "people": 2 })
    );
    assert_eq!(
        reply["function_calls"][0]["result"],
        json!({ "booked": "20:00" })
    );
    let first_reply = reply.clone();

    // A retry with the same key: the stored reply at once, nothing called again.
    let (status, headers, events) = post_streaming(&app, &account.key, Some("msg-1"), &body).await;
    assert_eq!(status, 200);
    assert_eq!(headers["idempotent-replayed"], "true");
    let (deltas, reply) = deltas_and_reply(&events);
    assert_eq!(deltas, [first_reply["reply"].as_str().unwrap()]);
    assert_eq!(reply, &first_reply);
    // And unstreamed, the same answer.
    let (status, plain, headers) = app
        .post_keyed(&account.key, "msg-1", "/api/ai/generate-reply", &body)
        .await;
    assert_eq!((status, &plain), (StatusCode::OK, &first_reply));
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(app.llm_requests().await.len(), 2);
}

#[tokio::test]
async fn a_stream_that_breaks_after_text_ends_in_an_error_event_and_costs_nothing() {
    let app = TestApp::spawn_with(|s| s.llm_retries = 2).await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    // First text, then the connection ends without `[DONE]`; later a whole answer.
    let calls = AtomicUsize::new(0);
    app.script_model(
        move |_: &Request| match calls.fetch_add(1, Ordering::SeqCst) {
            0 => event_stream(sse_body(
                vec![chunk(json!({ "content": "We have" }), None)],
                false,
            )),
            _ => event_stream(openai_stream(&["Yes."])),
        },
    )
    .await;

    let body = message(assistant, "Tonight?");
    let (status, _, events) = post_streaming(&app, &account.key, Some("k"), &body).await;
    assert_eq!(status, 200);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[0],
        ("delta".to_owned(), json!({ "text": "We have" }))
    );
    assert_eq!(events[1].0, "error");
    assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        &events[1].1,
        503,
        "LLM_UNAVAILABLE",
    );
    // Shown text cannot be asked for again: one model call, no retry.
    assert_eq!(app.llm_requests().await.len(), 1);
    assert_eq!(app.balance(&account).await, crate::util::money("10"));
    assert_eq!(app.count("messages").await, 0);

    // The retry may be made: the failure left the key free.
    let (status, _, events) = post_streaming(&app, &account.key, Some("k"), &body).await;
    assert_eq!(status, 200);
    assert_eq!(deltas_and_reply(&events).1["reply"], "Yes.");
}

#[tokio::test]
async fn a_refusal_before_any_text_is_answered_with_its_status() {
    let app = TestApp::spawn().await;
    let account = app.db_account("0").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (status, _, events) =
        post_streaming(&app, &account.key, None, &message(assistant, "Hi")).await;
    assert_eq!(events[0].0, "json", "{events:?}");
    assert_error(status, &events[0].1, 402, "INSUFFICIENT_BALANCE");
    let (status, _, events) = post_streaming(&app, &account.key, None, &message(999, "Hi")).await;
    assert_error(status, &events[0].1, 404, "ASSISTANT_NOT_FOUND");
}

/// A Chat Completions server that writes its first piece, then waits for `go` to write the rest.
async fn held_model(go: std::sync::Arc<tokio::sync::Notify>) -> String {
    use axum::body::Body;
    use futures::StreamExt;
    let answer = axum::routing::post(move || {
        let go = go.clone();
        async move {
            let first = sse_body(vec![chunk(json!({ "content": "Written " }), None)], false);
            let rest = sse_body(vec![chunk(json!({ "content": "as we go." }), None)], true);
            let pieces =
                futures::stream::once(async { first }).chain(futures::stream::once(async move {
                    go.notified().await;
                    rest
                }));
            axum::response::Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(
                    pieces.map(Ok::<_, std::convert::Infallible>),
                ))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let router = axum::Router::new().route("/v1/chat/completions", answer);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

#[tokio::test]
async fn text_reaches_the_caller_while_the_model_is_still_writing() {
    use futures::StreamExt;
    let go = std::sync::Arc::new(tokio::sync::Notify::new());
    let model = held_model(go.clone()).await;
    let app = TestApp::spawn_with(|s| s.llm_base_url = model.parse().unwrap()).await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let response = app
        .http
        .post(format!("{}/api/ai/generate-reply", app.base))
        .bearer_auth(&account.key)
        .header("accept", "text/event-stream")
        .json(&message(assistant, "Hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    // The model holds the rest of its answer until told: the first piece must come first.
    while !seen.contains("\n\n") {
        let bytes = tokio::time::timeout(std::time::Duration::from_secs(10), body.next())
            .await
            .expect("the first piece did not arrive while the model was writing")
            .unwrap()
            .unwrap();
        seen.push_str(std::str::from_utf8(&bytes).unwrap());
    }
    assert_eq!(seen, "event: delta\ndata: {\"text\":\"Written \"}\n\n");
    go.notify_one();
    while let Some(bytes) = body.next().await {
        seen.push_str(std::str::from_utf8(&bytes.unwrap()).unwrap());
    }
    assert!(
        seen.contains("event: delta\ndata: {\"text\":\"as we go.\"}\n\n"),
        "{seen}"
    );
    assert!(seen.contains("\"reply\":\"Written as we go.\""), "{seen}");
}
