//! The prompt keeps the newest history that fits the token budget, and loading it reads only
//! what is needed.

use serde_json::json;

use crate::util::TestApp;

#[tokio::test]
async fn the_newest_history_that_fits_is_sent() {
    // Each short message is estimated at 1 + 4 tokens ("mN" or "echo: mN" at 2 or 3 tokens + 4).
    let app = TestApp::spawn_with(|s| s.context_token_budget = 40).await;
    // The budget alone: no summary is made of what falls out (memory.rs tests those).
    app.script_summaries(|_| wiremock::ResponseTemplate::new(400))
        .await;
    let account = app.db_account("10").await;
    let assistant = app
        .assistant(
            &account,
            &json!({ "name": "A", "system_prompt": "Be brief." }),
        )
        .await;
    for n in 0..6 {
        let (status, body) = app
            .reply(&account.key, assistant, "c", &format!("m{n}"))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let last = app.llm_requests().await.pop().unwrap();
    let contents: Vec<_> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    // system (3+4=7) + current (1+4=5) leave 28: "echo: m4" (2+4=6), "m4" (5), "echo: m3" (6), "m3" (5) = 22; "echo: m2" would make 28... fits; "m2" (5) does not.
    assert_eq!(
        contents,
        [
            "Be brief.",
            "echo: m2",
            "m3",
            "echo: m3",
            "m4",
            "echo: m4",
            "m5"
        ]
    );
}

#[tokio::test]
async fn a_conversation_of_ten_thousand_messages_sends_only_its_newest() {
    let app = TestApp::spawn_with(|s| s.context_token_budget = 2_000).await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (_, first) = app.reply(&account.key, assistant, "c", "start").await;
    let id: uuid::Uuid = first["conversation_id"].as_str().unwrap().parse().unwrap();
    app.db_seed_history(id, 10_000).await;

    let (status, reply) = app.reply(&account.key, assistant, "c", "latest").await;
    assert_eq!(status, 200, "{reply}");
    let prompt = app.llm_requests().await.pop().unwrap();
    let messages = prompt["messages"].as_array().unwrap();
    // "history line NNNN" is 17 chars: 5 + 4 = 9 tokens; the current message takes 6.
    assert_eq!(messages.len(), (2_000 - 6) / 9 + 1);
    assert_eq!(
        messages[messages.len() - 2]["content"],
        "history line 10000"
    );
    assert_eq!(messages.last().unwrap()["content"], "latest");
}
