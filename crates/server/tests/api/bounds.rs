//! What one conversation may grow to and what one reply may take: each bound a clear 422 or
//! 429 (or 503 for time) with nothing stored.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use serde_json::{Value, json};

use crate::util::{TestApp, assert_error, money};

fn with_variables(assistant: i64, variables: Value) -> Value {
    json!({ "assistant_id": assistant, "customer_identifier": "c", "message": "hi", "variables": variables })
}

#[tokio::test]
async fn conversation_variables_stop_at_64_kib_in_total() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let big = "x".repeat(40 * 1024);
    let (status, body, _) = app
        .post(
            &account.key,
            "/api/ai/generate-reply",
            &with_variables(assistant, json!({ "a": big })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let balance = app.balance(&account).await;
    let messages = app.count("messages").await;

    // Another 40 KiB under a new name would make 80 KiB: refused, nothing stored.
    let (status, body, _) = app
        .post(
            &account.key,
            "/api/ai/generate-reply",
            &with_variables(assistant, json!({ "b": big })),
        )
        .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    assert!(body["errors"]["variables"].is_array(), "{body}");
    assert_eq!(app.count("messages").await, messages);
    assert_eq!(app.balance(&account).await, balance);

    // Replacing the value keeps the total within the bound.
    let (status, body, _) = app
        .post(
            &account.key,
            "/api/ai/generate-reply",
            &with_variables(assistant, json!({ "a": "small", "b": big })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Queues `count` messages of `conversation` as a live process would: stored, money held,
/// leases running.
async fn queue_messages(app: &TestApp, conversation: uuid::Uuid, account_id: i64, count: i64) {
    let mut conn = app.db.connect().await;
    diesel::sql_query(
        "WITH place AS (SELECT next_seq FROM conversations WHERE id = $1),
         m AS (
             INSERT INTO messages (id, conversation_id, turn_id, seq, role, content)
             SELECT id, $1, id, place.next_seq + 2 * (n - 1), 'user', 'queued'
             FROM place, (SELECT n, nextval('messages_id_seq') AS id FROM generate_series(1, $3) AS n) AS rows
             RETURNING id),
         counted AS (UPDATE conversations SET message_count = message_count + $3, next_seq = next_seq + 2 * $3 WHERE id = $1)
         INSERT INTO pending_replies (message_id, conversation_id, account_id, hold, lease_until)
         SELECT id, $1, $2, 0, now() + interval '1 hour' FROM m",
    )
    .bind::<diesel::sql_types::Uuid, _>(conversation)
    .bind::<diesel::sql_types::Int8, _>(account_id)
    .bind::<diesel::sql_types::Int8, _>(count)
    .execute(&mut conn)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_full_queue_answers_conversation_busy() {
    let app = TestApp::spawn_with(|s| s.conversation_queue_limit = 3).await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (_, first) = app.reply(&account.key, assistant, "c", "first").await;
    let conversation = first["conversation_id"].as_str().unwrap().parse().unwrap();
    queue_messages(&app, conversation, account.id, 3).await;
    let (balance, messages) = (app.balance(&account).await, app.count("messages").await);

    let (status, body, headers) = app
        .post(
            &account.key,
            "/api/ai/generate-reply",
            &json!({ "assistant_id": assistant, "customer_identifier": "c", "message": "one more" }),
        )
        .await;
    assert_error(status, &body, 429, "CONVERSATION_BUSY");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(app.count("messages").await, messages);
    assert_eq!(app.balance(&account).await, balance);
    // Other conversations are not held up.
    let (status, body) = app.reply(&account.key, assistant, "d", "hello").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_reply_past_its_time_is_given_up_and_its_reservation_released() {
    let app = TestApp::spawn_with_model_delay(Duration::from_secs(5), |s| {
        s.reply_timeout = Duration::from_secs(1);
    })
    .await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (status, body) = app.reply(&account.key, assistant, "c", "hi").await;
    assert_error(status, &body, 503, "LLM_UNAVAILABLE");
    assert_eq!(app.balance(&account).await, money("10"));
    assert_eq!(app.count("messages").await, 0);
    assert_eq!(app.count("pending_replies").await, 0);
}

/// The reservation covers the whole prompt: a system prompt larger than the history budget
/// is reserved for, not just the budget.
#[tokio::test]
async fn the_reservation_covers_a_long_system_prompt() {
    // Budget 8,000 tokens + 1,000 output: 0.01 reserved. A 40,000-character system prompt is
    // about 10,000 tokens: 0.012.
    let app = TestApp::spawn().await;
    let account = app.db_account("0.011").await;
    let short = app.assistant(&account, &json!({ "name": "Short" })).await;
    let long = app
        .assistant(
            &account,
            &json!({ "name": "Long", "system_prompt": "y".repeat(40_000) }),
        )
        .await;
    let (status, body) = app.reply(&account.key, long, "c", "hi").await;
    assert_error(status, &body, 402, "INSUFFICIENT_BALANCE");
    let (status, body) = app.reply(&account.key, short, "c", "hi").await;
    assert_eq!(status, 200, "{body}");
}
