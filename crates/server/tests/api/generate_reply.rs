use serde_json::json;

use crate::util::TestApp;

#[tokio::test]
async fn answers_with_famulors_shape_and_remembers_the_customer() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app
        .assistant(
            &account,
            &json!({
                "name": "Support",
                "system_prompt": "You help {{name}} of {{company}}.{{missing}}",
                "variables": { "company": "Acme", "name": "friend" },
                "llm_model": "gpt-4o",
                "llm_temperature": 0.2
            }),
        )
        .await;

    let body = json!({
        "assistant_id": assistant, "customer_identifier": "+49155551234",
        "message": "Hello", "variables": { "name": "John" }
    });
    let (status, first, headers) = app
        .post(&account.key, "/api/ai/generate-reply", &body)
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["success"], true);
    assert_eq!(first["reply"], "echo: Hello");
    assert_eq!(first["customer_identifier"], "+49155551234");
    assert_eq!(first["function_calls"], json!([]));
    assert_eq!(first["ai_disabled"], false);
    let conversation: uuid::Uuid = first["conversation_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(headers["ratelimit-limit"], "10000");

    let (status, second) = app
        .reply(&account.key, assistant, "+49155551234", "And again")
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["conversation_id"], conversation.to_string());

    let requests = app.llm_requests().await;
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["model"], "gpt-4o");
    assert_eq!(requests[0]["temperature"], 0.2);
    assert_eq!(requests[0]["max_tokens"], 1000);
    assert_eq!(
        requests[1]["messages"],
        json!([
            { "role": "system", "content": "You help John of Acme." },
            { "role": "user", "content": "Hello" },
            { "role": "assistant", "content": "echo: Hello" },
            { "role": "user", "content": "And again" },
        ])
    );

    let (status, history, _) = app
        .get(&account.key, &format!("/api/conversations/{conversation}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(history["status"], true);
    let roles: Vec<_> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].clone())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!(history["history"][1]["content"], "echo: Hello");
    assert_eq!(history["history"][1]["function_calls"], json!([]));
    assert!(history["history"][0]["created_at"].is_string());
    assert_eq!(
        history["variables"],
        json!({ "company": "Acme", "name": "John" })
    );
}

#[tokio::test]
async fn a_new_customer_gets_a_new_conversation() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (_, a) = app
        .reply(&account.key, assistant, "a@example.com", "hi")
        .await;
    let (_, b) = app
        .reply(&account.key, assistant, "b@example.com", "hi")
        .await;
    assert_ne!(a["conversation_id"], b["conversation_id"]);
    // The second customer's prompt holds nothing of the first's.
    let requests = app.llm_requests().await;
    assert_eq!(
        requests[1]["messages"],
        json!([{ "role": "user", "content": "hi" }])
    );
}

#[tokio::test]
async fn variables_merge_defaults_stored_and_request_and_persist() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app
        .assistant(
            &account,
            &json!({
                "name": "A",
                "system_prompt": "{{a}}-{{b}}-{{c}}",
                "initial_message": "Hi {{a}}",
                "variables": { "a": "default-a", "b": "default-b", "c": "default-c" }
            }),
        )
        .await;
    let send = |vars: serde_json::Value| {
        let body = json!({ "assistant_id": assistant, "customer_identifier": "c1", "message": "m", "variables": vars });
        let app = &app;
        let key = account.key.clone();
        async move { app.post(&key, "/api/ai/generate-reply", &body).await }
    };
    let (status, first, _) = send(json!({ "b": "stored-b", "c": "stored-c" })).await;
    assert_eq!(status, 200, "{first}");
    send(json!({ "c": 3 })).await;

    let requests = app.llm_requests().await;
    assert_eq!(
        requests[0]["messages"][0]["content"],
        "default-a-stored-b-stored-c"
    );
    assert_eq!(
        requests[0]["messages"][1],
        json!({ "role": "assistant", "content": "Hi default-a" })
    );
    assert_eq!(
        requests[1]["messages"][0]["content"],
        "default-a-stored-b-3"
    );

    let (_, history, _) = app
        .get(
            &account.key,
            &format!(
                "/api/conversations/{}",
                first["conversation_id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(
        history["variables"],
        json!({ "a": "default-a", "b": "stored-b", "c": 3 })
    );
}

#[tokio::test]
async fn a_reply_sees_its_own_messages_variables_not_a_later_ones() {
    let app = TestApp::spawn_with_model_delay(std::time::Duration::from_millis(300), |_| {}).await;
    let account = app.db_account("10").await;
    let assistant = app
        .assistant(
            &account,
            &json!({ "name": "A", "system_prompt": "Customer: {{name}}" }),
        )
        .await;
    let send = |name: &'static str, after_model_calls: usize| {
        let (app, key) = (&app, &account.key);
        async move {
            // Jane writes while John's reply is with the model.
            app.until_model_requests(after_model_calls).await;
            let body = json!({ "assistant_id": assistant, "customer_identifier": "c", "message": name, "variables": { "name": name } });
            app.post(key, "/api/ai/generate-reply", &body).await
        }
    };
    let (first, second) = tokio::join!(send("John", 0), send("Jane", 1));
    assert_eq!((first.0.as_u16(), second.0.as_u16()), (200, 200));
    let prompts = app.llm_requests().await;
    assert_eq!(prompts[0]["messages"][0]["content"], "Customer: John");
    assert_eq!(prompts[1]["messages"][0]["content"], "Customer: Jane");

    // A failed reply leaves its variables out of the conversation.
    app.model_answers(wiremock::ResponseTemplate::new(400))
        .await;
    let body = json!({ "assistant_id": assistant, "customer_identifier": "c", "message": "x", "variables": { "name": "Nobody" } });
    let (status, _, _) = app
        .post(&account.key, "/api/ai/generate-reply", &body)
        .await;
    assert_eq!(status, 502);
    let id = first.1["conversation_id"].as_str().unwrap();
    let (_, history, _) = app
        .get(&account.key, &format!("/api/conversations/{id}"))
        .await;
    assert_eq!(history["variables"], json!({ "name": "Jane" }));
}
