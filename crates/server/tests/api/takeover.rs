use serde_json::json;

use crate::util::{TestApp, money};

#[tokio::test]
async fn while_a_human_has_taken_over_messages_are_stored_unanswered_and_free() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (_, first) = app.reply(&account.key, assistant, "c", "first").await;
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    let balance = app.balance(&account).await;

    let (status, off, _) = app
        .post(
            &account.key,
            &format!("/api/automate/conversations/{id}/disable-ai"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(off, json!({ "status": true, "ai_enabled": false }));

    let (status, silent) = app
        .reply(&account.key, assistant, "c", "is anyone there?")
        .await;
    assert_eq!(status, 200, "{silent}");
    assert_eq!(silent["ai_disabled"], true);
    assert_eq!(silent["reply"], "");
    assert_eq!(silent["conversation_id"], id.as_str());
    assert_eq!(app.llm_requests().await.len(), 1);
    assert_eq!(app.balance(&account).await, balance);

    let (_, on, _) = app
        .post(
            &account.key,
            &format!("/api/automate/conversations/{id}/enable-ai"),
            &json!({}),
        )
        .await;
    assert_eq!(on, json!({ "status": true, "ai_enabled": true }));
    let (_, back) = app.reply(&account.key, assistant, "c", "hello?").await;
    assert_eq!(back["ai_disabled"], false);
    assert_eq!(back["reply"], "echo: hello?");

    // The unanswered message stays in the history and in the next prompt.
    let contents = app.history_contents(&account.key, id).await;
    assert_eq!(
        contents,
        [
            "first",
            "echo: first",
            "is anyone there?",
            "hello?",
            "echo: hello?"
        ]
    );
    let last_prompt = app.llm_requests().await.pop().unwrap();
    assert_eq!(last_prompt["messages"].as_array().unwrap().len(), 4);
    assert_eq!(app.balance(&account).await, money("9.996"));
}
