//! `Idempotency-Key`: a retry never answers or charges twice.

use std::time::Duration;

use serde_json::json;
use wiremock::ResponseTemplate;

use crate::util::{TestApp, assert_error, chat_completion, money};

fn message(assistant: i64, text: &str) -> serde_json::Value {
    json!({ "assistant_id": assistant, "customer_identifier": "+4915", "message": text })
}

#[tokio::test]
async fn a_completed_request_is_replayed_without_a_second_reply_or_charge() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (status, first, headers) = app
        .post_keyed(
            &account.key,
            "k-1",
            "/api/ai/generate-reply",
            &message(assistant, "hi"),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    assert!(headers.get("idempotent-replayed").is_none());
    // The same request again, formatted differently: the same answer, marked as a replay.
    let reordered =
        json!({ "message": "hi", "customer_identifier": "+4915", "assistant_id": assistant });
    let (status, again, headers) = app
        .post_keyed(&account.key, "k-1", "/api/ai/generate-reply", &reordered)
        .await;
    assert_eq!(status, 200);
    assert_eq!(again, first);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(app.llm_requests().await.len(), 1);
    assert_eq!(app.count("messages").await, 2);
    assert_eq!(app.balance(&account).await, money("9.998"));

    // Keys belong to the account: another account's same key is another request.
    let other = app.db_account("10").await;
    let theirs = app.assistant(&other, &json!({ "name": "B" })).await;
    let (status, _, headers) = app
        .post_keyed(
            &other.key,
            "k-1",
            "/api/ai/generate-reply",
            &message(theirs, "hi"),
        )
        .await;
    assert_eq!(status, 200);
    assert!(headers.get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn the_same_key_while_running_conflicts_and_with_another_body_is_refused() {
    let app = TestApp::spawn_with_model_delay(Duration::from_millis(800), |_| {}).await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let hi = message(assistant, "hi");
    let first = app.post_keyed(&account.key, "k-2", "/api/ai/generate-reply", &hi);
    let during = async {
        // Once the first is with the model, it holds the key.
        app.until_model_requests(1).await;
        app.post_keyed(
            &account.key,
            "k-2",
            "/api/ai/generate-reply",
            &message(assistant, "hi"),
        )
        .await
    };
    let ((status, _, _), (conflict_status, conflict, headers)) = tokio::join!(first, during);
    assert_eq!(status, 200);
    assert_error(conflict_status, &conflict, 409, "IDEMPOTENCY_CONFLICT");
    assert_eq!(headers["retry-after"], "1");

    let (status, reused, _) = app
        .post_keyed(
            &account.key,
            "k-2",
            "/api/ai/generate-reply",
            &message(assistant, "other"),
        )
        .await;
    assert_error(status, &reused, 422, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.llm_requests().await.len(), 1);
}

#[tokio::test]
async fn errors_before_any_work_and_retryable_failures_are_not_stored() {
    let app = TestApp::spawn_with(|s| s.rate_limit_per_minute = 2).await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;

    // Validation: the key stays free for the corrected request.
    let (status, _, _) = app
        .post_keyed(
            &account.key,
            "k-v",
            "/api/ai/generate-reply",
            &json!({ "assistant_id": assistant }),
        )
        .await;
    assert_eq!(status, 422);
    // A retryable model failure leaves no trace, and the retry runs for real.
    app.model_answers(ResponseTemplate::new(503)).await;
    let (status, _, _) = app
        .post_keyed(
            &account.key,
            "k-v",
            "/api/ai/generate-reply",
            &message(assistant, "hi"),
        )
        .await;
    assert_eq!(status, 503);
    assert_eq!(app.count("idempotency_keys").await, 0);
    app.llm.reset().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(chat_completion("fine now")))
        .mount(&app.llm)
        .await;
    let (status, reply, headers) = app
        .post_keyed(
            &account.key,
            "k-v",
            "/api/ai/generate-reply",
            &message(assistant, "hi"),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["reply"], "fine now");
    assert!(headers.get("idempotent-replayed").is_none());
    // The rate limit (2 a minute) is spent now; a refusal by it is not stored.
    let (status, _, _) = app
        .post_keyed(
            &account.key,
            "k-limited",
            "/api/ai/generate-reply",
            &message(assistant, "hi"),
        )
        .await;
    assert_eq!(status, 429);
    assert_eq!(app.count("idempotency_keys").await, 1);
}

#[tokio::test]
async fn a_stored_refusal_is_replayed() {
    let app = TestApp::spawn().await;
    let account = app.db_account("0").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (status, first, _) = app
        .post_keyed(
            &account.key,
            "k-402",
            "/api/ai/generate-reply",
            &message(assistant, "hi"),
        )
        .await;
    assert_error(status, &first, 402, "INSUFFICIENT_BALANCE");
    let (status, again, headers) = app
        .post_keyed(
            &account.key,
            "k-402",
            "/api/ai/generate-reply",
            &message(assistant, "hi"),
        )
        .await;
    assert_eq!((status.as_u16(), &again), (402, &first));
    assert_eq!(headers["idempotent-replayed"], "true");
}

#[tokio::test]
async fn other_post_endpoints_are_idempotent_too() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let body = json!({ "name": "Support" });
    let (status, first, _) = app
        .post_keyed(&account.key, "create-1", "/api/user/assistant", &body)
        .await;
    assert_eq!(status, 201);
    let (status, again, headers) = app
        .post_keyed(&account.key, "create-1", "/api/user/assistant", &body)
        .await;
    assert_eq!((status.as_u16(), &again), (201, &first));
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(app.count("assistants").await, 1);

    let tool = json!({ "name": "ping", "description": "d", "endpoint": "https://example.com", "method": "GET" });
    app.post_keyed(&account.key, "tool-1", "/api/user/tools", &tool)
        .await;
    let (status, _, headers) = app
        .post_keyed(&account.key, "tool-1", "/api/user/tools", &tool)
        .await;
    assert_eq!(status, 201);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(app.count("tools").await, 1);
}

/// The server loses its database after the model answered and before the reply is recorded.
/// The client's retry with the same key, once the dead request's lease has run out, makes the
/// only reply and the only charge.
#[tokio::test]
async fn a_retry_after_the_database_was_lost_mid_reply_answers_once() {
    let app = TestApp::spawn_with_model_delay(Duration::from_millis(1_000), |_| {}).await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;

    let hi = message(assistant, "hi");
    let first = app.post_keyed(&account.key, "crash-1", "/api/ai/generate-reply", &hi);
    // Once the model has the question (and will answer in a second), the database goes away.
    let cut = async {
        app.until_model_requests(1).await;
        app.db.disconnect_everyone().await;
    };
    let ((status, body, _), ()) = tokio::join!(first, cut);
    assert_error(status, &body, 503, "SERVICE_UNAVAILABLE");
    app.db.reconnect().await;
    assert_eq!(
        app.llm_requests().await.len(),
        1,
        "the model did answer the first attempt"
    );

    // While the dead request's claim lives, a retry is told to wait.
    let (status, body, _) = app
        .post_keyed(
            &account.key,
            "crash-1",
            "/api/ai/generate-reply",
            &message(assistant, "hi"),
        )
        .await;
    assert_error(status, &body, 409, "IDEMPOTENCY_CONFLICT");
    // The dead request's lease runs out.
    app.db_expire_leases().await;
    let (status, reply, _) = app
        .post_keyed(
            &account.key,
            "crash-1",
            "/api/ai/generate-reply",
            &message(assistant, "hi"),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["reply"], "echo: hi");

    let id = reply["conversation_id"].as_str().unwrap();
    let contents = app.history_contents(&account.key, id).await;
    assert_eq!(contents, ["hi", "echo: hi"]);
    assert_eq!(app.balance(&account).await, money("9.998"));
    assert_eq!(app.count("pending_replies").await, 0);
    let (_, again, headers) = app
        .post_keyed(
            &account.key,
            "crash-1",
            "/api/ai/generate-reply",
            &message(assistant, "hi"),
        )
        .await;
    assert_eq!(again, reply);
    assert_eq!(headers["idempotent-replayed"], "true");
}

/// A request whose claim was taken over (it was presumed dead) can no longer store an answer
/// or free the key: the new holder's work stands.
#[tokio::test]
async fn a_claim_taken_over_cannot_be_written_by_its_old_holder() {
    use anyreply_server::controllers::idempotency::request_key;
    use anyreply_server::idempotency::{Begin, IdempotencyError, begin, fingerprint};
    use axum::http::{HeaderMap, HeaderValue, StatusCode};
    use diesel_async::RunQueryDsl;

    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let server = anyreply_server::App::new(app.settings.clone()).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("idempotency-key", HeaderValue::from_static("k-stale"));
    let print = || fingerprint("POST", "/api/user/assistant", Some(&json!({ "name": "A" })));
    let key = request_key(&headers, print()).unwrap().unwrap();
    let lease = Duration::from_secs(30);
    let mut conn = app.db.connect().await;
    let Begin::Run { claim: old, .. } = begin(&mut conn, account.id, &key, lease).await.unwrap()
    else {
        panic!("not claimed")
    };
    // The holder is presumed dead once its lease has run out.
    diesel::sql_query("UPDATE idempotency_keys SET locked_until = now() - interval '1 second'")
        .execute(&mut conn)
        .await
        .unwrap();
    let Begin::Run { claim: new, .. } = begin(&mut conn, account.id, &key, lease).await.unwrap()
    else {
        panic!("not taken over")
    };

    let stale = old
        .complete(
            &mut conn,
            StatusCode::CREATED.as_u16(),
            &json!({ "from": "old" }),
        )
        .await
        .unwrap_err();
    assert!(matches!(stale, IdempotencyError::Conflict));
    let unavailable = anyreply_core::ErrorCode::LlmUnavailable;
    // Must not free the new holder's key.
    old.fail(&server.pool, unavailable, &unavailable.into())
        .await;
    new.complete(
        &mut conn,
        StatusCode::CREATED.as_u16(),
        &json!({ "from": "new" }),
    )
    .await
    .unwrap();
    let Begin::Answer(replayed) = begin(&mut conn, account.id, &key, lease).await.unwrap() else {
        panic!("no answer")
    };
    assert_eq!(replayed.status, StatusCode::CREATED.as_u16());
    assert_eq!(replayed.body, json!({ "from": "new" }));
}

/// Tools act on the world: a reply that fails after calling one frees its key (the failure is
/// retryable), and the retry reuses the journaled call's result instead of calling again.
#[tokio::test]
async fn a_retry_after_a_failure_past_a_tool_call_reuses_the_call() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, Request};

    let app = TestApp::spawn_with(|s| {
        s.outbound_allowed_hosts =
            anyreply_server::tools::guard::AddressPolicy::parse("127.0.0.1").unwrap();
        s.llm_retries = 0;
    })
    .await;
    let account = app.db_account("10").await;
    let crm = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "booked": true })))
        .mount(&crm)
        .await;
    let (_, tool, _) = app
        .post(&account.key, "/api/user/tools", &json!({
            "name": "book", "description": "Books", "endpoint": format!("{}/book", crm.uri()), "method": "POST"
        }))
        .await;
    let assistant = app
        .assistant(
            &account,
            &json!({ "name": "A", "tool_ids": [tool["data"]["id"]] }),
        )
        .await;
    // The model books; the first time it is then down for the answer.
    let answers_with_results = AtomicUsize::new(0);
    app.script_model(move |request: &Request| {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        let results = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "tool")
            .count();
        if results == 0 {
            ResponseTemplate::new(200).set_body_json(crate::util::openai_tool_calls(&[(
                "b",
                "book",
                json!({}),
            )]))
        } else if answers_with_results.fetch_add(1, Ordering::SeqCst) == 0 {
            ResponseTemplate::new(503)
        } else {
            let result = body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["role"] == "tool")
                .unwrap()["content"]
                .clone();
            ResponseTemplate::new(200).set_body_json(chat_completion(&format!(
                "booked: {}",
                result.as_str().unwrap()
            )))
        }
    })
    .await;
    let hi = message(assistant, "book me in");
    let (status, first, _) = app
        .post_keyed(&account.key, "k-book", "/api/ai/generate-reply", &hi)
        .await;
    assert_error(status, &first, 503, "LLM_UNAVAILABLE");
    assert_eq!(
        app.count("idempotency_keys").await,
        0,
        "a retryable failure frees the key"
    );
    let (status, reply, headers) = app
        .post_keyed(&account.key, "k-book", "/api/ai/generate-reply", &hi)
        .await;
    assert_eq!(status, 200, "{reply}");
    assert!(headers.get("idempotent-replayed").is_none());
    assert_eq!(reply["reply"], r#"booked: {"booked":true}"#);
    assert_eq!(
        reply["function_calls"][0]["result"],
        json!({ "booked": true })
    );
    assert_eq!(
        crm.received_requests().await.unwrap().len(),
        1,
        "the endpoint was called once"
    );
    assert_eq!(app.count("tool_calls").await, 1);
    // One reply charged (two model calls of 1,000 + 500 tokens at 1 and 2 per million).
    assert_eq!(app.balance(&account).await, money("9.996"));
}

#[tokio::test]
async fn takeover_switches_are_idempotent_and_old_keys_are_forgotten() {
    use diesel_async::RunQueryDsl;

    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (_, reply) = app.reply(&account.key, assistant, "c", "hi").await;
    let path = format!(
        "/api/automate/conversations/{}/disable-ai",
        reply["conversation_id"].as_str().unwrap()
    );
    let (status, first, _) = app
        .post_keyed(&account.key, "off-1", &path, &json!(null))
        .await;
    assert_eq!(
        (status.as_u16(), &first),
        (200, &json!({ "status": true, "ai_enabled": false }))
    );
    let (_, again, headers) = app
        .post_keyed(&account.key, "off-1", &path, &json!(null))
        .await;
    assert_eq!(again, first);
    assert_eq!(headers["idempotent-replayed"], "true");

    // Keys are kept 48 hours, then purged.
    let mut conn = app.db.connect().await;
    diesel::sql_query(
        "UPDATE idempotency_keys SET created_at = now() - interval '49 hours' WHERE key = 'off-1'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    app.post_keyed(&account.key, "off-2", &path, &json!(null))
        .await;
    let server = anyreply_server::App::new(app.settings.clone()).unwrap();
    assert_eq!(
        anyreply_server::idempotency::purge_expired(&server.pool)
            .await
            .unwrap(),
        1
    );
    assert_eq!(app.count("idempotency_keys").await, 1);
}
