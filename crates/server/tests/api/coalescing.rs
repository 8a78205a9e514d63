//! Burst coalescing: a customer's messages less than the assistant's `coalesce_ms` apart get
//! one reply, to the last, that sees them all; the earlier calls answer `coalesced`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::util::{TestApp, assert_error, money};

/// Sends `messages` of one customer, each `gap` after the one before, all in flight at once.
async fn burst(
    app: &TestApp,
    key: &str,
    assistant: i64,
    messages: &[&str],
    gap: Duration,
) -> Vec<(StatusCode, Value)> {
    futures::future::join_all(messages.iter().enumerate().map(|(n, message)| async move {
        tokio::time::sleep(gap * n as u32).await;
        app.reply(key, assistant, "+4915550007", message).await
    }))
    .await
}

#[tokio::test]
async fn a_burst_is_answered_once_by_its_last_call_and_charged_once() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let assistant = app
        .assistant(&account, &json!({ "name": "Desk", "coalesce_ms": 500 }))
        .await;
    let answers = burst(
        &app,
        &account.key,
        assistant,
        &["I would like", "to book a table", "for two tonight"],
        Duration::from_millis(100),
    )
    .await;
    for (status, answer) in &answers[..2] {
        assert_eq!(*status, StatusCode::OK);
        assert_eq!(answer["reply"], "");
        assert_eq!(answer["coalesced"], true, "{answer}");
    }
    let (status, last) = &answers[2];
    assert_eq!(*status, StatusCode::OK);
    assert_eq!(last["reply"], "echo: for two tonight");
    assert!(last.get("coalesced").is_none(), "Famulor's shape: {last}");

    // One model call, whose prompt holds the whole burst.
    let asked = app.llm_requests().await;
    assert_eq!(asked.len(), 1);
    let prompt = asked[0]["messages"].to_string();
    for part in ["I would like", "to book a table", "for two tonight"] {
        assert!(prompt.contains(part), "{part} in {prompt}");
    }
    // One charge: the balance lost what one reply cost.
    assert_eq!(app.balance(&account).await, money("0.998"));
    let conversation = last["conversation_id"].as_str().unwrap();
    let history = app.history_contents(&account.key, conversation).await;
    assert_eq!(
        history,
        [
            "I would like",
            "to book a table",
            "for two tonight",
            "echo: for two tonight"
        ]
    );
}

#[tokio::test]
async fn messages_further_apart_than_the_window_are_each_answered() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let assistant = app
        .assistant(&account, &json!({ "name": "Desk", "coalesce_ms": 100 }))
        .await;
    let answers = burst(
        &app,
        &account.key,
        assistant,
        &["first", "second"],
        Duration::from_millis(700),
    )
    .await;
    assert_eq!(answers[0].1["reply"], "echo: first");
    assert_eq!(answers[1].1["reply"], "echo: second");
    assert_eq!(app.llm_requests().await.len(), 2);
}

#[tokio::test]
async fn a_coalesced_answer_is_replayed_for_its_idempotency_key() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let assistant = app
        .assistant(&account, &json!({ "name": "Desk", "coalesce_ms": 300 }))
        .await;
    let body = |message: &str| json!({ "assistant_id": assistant, "customer_identifier": "+4915550008", "message": message });
    let (one, two) = (body("one"), body("two"));
    let (first, second) = tokio::join!(
        app.post_keyed(&account.key, "burst-1", "/api/ai/generate-reply", &one),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            app.post_keyed(&account.key, "burst-2", "/api/ai/generate-reply", &two)
                .await
        }
    );
    assert_eq!(first.1["coalesced"], true);
    assert_eq!(second.1["reply"], "echo: two");
    let (status, replayed, _) = app
        .post_keyed(
            &account.key,
            "burst-1",
            "/api/ai/generate-reply",
            &body("one"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replayed, first.1);
    assert_eq!(app.llm_requests().await.len(), 1);
}

#[tokio::test]
async fn coalesce_ms_is_validated_and_kept() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    for bad in [json!(10_001), json!(-1), json!("soon")] {
        let (status, body, _) = app
            .post(
                &account.key,
                "/api/user/assistant",
                &json!({ "name": "Desk", "coalesce_ms": bad }),
            )
            .await;
        assert_error(status, &body, 422, "VALIDATION_ERROR");
        assert!(body["errors"]["coalesce_ms"].is_array(), "{body}");
    }
    let (_, created, _) = app
        .post(
            &account.key,
            "/api/user/assistant",
            &json!({ "name": "Desk" }),
        )
        .await;
    assert_eq!(created["data"]["coalesce_ms"], 0);
    let id = created["data"]["id"].as_i64().unwrap();
    let (_, changed, _) = app
        .put(
            &account.key,
            &format!("/api/user/assistant/{id}"),
            &json!({ "coalesce_ms": 10_000 }),
        )
        .await;
    assert_eq!(changed["data"]["coalesce_ms"], 10_000);
}

/// A message is coalesced only into one that came less than the window after it, not into
/// one queued behind it for long (here, behind a slow reply).
#[tokio::test]
async fn a_message_waiting_behind_a_slow_reply_is_not_coalesced_into_a_later_one() {
    let app = TestApp::spawn_with_model_delay(Duration::from_millis(900), |_| {}).await;
    let account = app.db_account("1").await;
    let assistant = app
        .assistant(&account, &json!({ "name": "Desk", "coalesce_ms": 150 }))
        .await;
    let answers = burst(
        &app,
        &account.key,
        assistant,
        &["first", "second", "third"],
        Duration::from_millis(450),
    )
    .await;
    let replies: Vec<&Value> = answers.iter().map(|(_, answer)| &answer["reply"]).collect();
    assert_eq!(replies, ["echo: first", "echo: second", "echo: third"]);
    assert_eq!(app.llm_requests().await.len(), 3);
}
