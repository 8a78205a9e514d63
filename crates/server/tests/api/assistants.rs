use reqwest::StatusCode;
use serde_json::json;

use crate::util::{TestApp, assert_error};

#[tokio::test]
async fn create_list_and_update_assistants() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let (status, created, _) = app
        .post(
            &account.key,
            "/api/user/assistant",
            &json!({ "name": "Sales", "system_prompt": "Sell." }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let assistant = &created["data"];
    assert_eq!(assistant["llm_model"], "gpt-4o-mini");
    assert_eq!(assistant["llm_temperature"], 0.7);
    assert_eq!(assistant["tool_ids"], json!([]));
    assert_eq!(assistant["variables"], json!({}));
    assert_eq!(assistant["initial_message"], json!(null));
    let id = assistant["id"].as_i64().unwrap();

    let (status, updated, _) = app
        .put(
            &account.key,
            &format!("/api/user/assistant/{id}"),
            &json!({ "llm_temperature": 1.5, "initial_message": "Hi!", "variables": { "x": "y" } }),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["data"]["name"], "Sales");
    assert_eq!(updated["data"]["system_prompt"], "Sell.");
    assert_eq!(updated["data"]["llm_temperature"], 1.5);
    assert_eq!(updated["data"]["initial_message"], "Hi!");

    let (status, list, _) = app.get(&account.key, "/api/user/assistants/get").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0], updated["data"]);
}

#[tokio::test]
async fn bad_assistant_input_is_rejected() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let (status, body, _) = app
        .post(
            &account.key,
            "/api/user/assistant",
            &json!({ "llm_temperature": 9, "variables": [] }),
        )
        .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    let fields: Vec<_> = body["errors"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(fields, ["llm_temperature", "name", "variables"]);

    // Tools arrive with the next issue; until then no tool id exists.
    let (status, body, _) = app
        .post(
            &account.key,
            "/api/user/assistant",
            &json!({ "name": "A", "tool_ids": [1] }),
        )
        .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    assert!(body["errors"]["tool_ids"].is_array());
}

#[tokio::test]
async fn another_accounts_assistants_are_invisible() {
    let app = TestApp::spawn().await;
    let owner = app.db_account("10").await;
    let other = app.db_account("10").await;
    let id = app.assistant(&owner, &json!({ "name": "Mine" })).await;
    let (status, list, _) = app.get(&other.key, "/api/user/assistants/get").await;
    assert_eq!(
        (status.as_u16(), list),
        (200, json!({ "data": [], "next_cursor": null }))
    );
    for path in [
        format!("/api/user/assistant/{id}"),
        "/api/user/assistant/abc".to_owned(),
    ] {
        let (status, body, _) = app
            .put(&other.key, &path, &json!({ "name": "Stolen" }))
            .await;
        assert_error(status, &body, 404, "ASSISTANT_NOT_FOUND");
    }
    let (_, list, _) = app.get(&owner.key, "/api/user/assistants/get").await;
    assert_eq!(list["data"][0]["name"], "Mine");
}

#[tokio::test]
async fn an_assistant_uses_at_most_32_tools() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let ids = |n: i64| (1..=n).collect::<Vec<_>>();
    let (status, body, _) = app
        .post(
            &account.key,
            "/api/user/assistant",
            &json!({ "name": "Busy", "tool_ids": ids(33) }),
        )
        .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    assert_eq!(
        body["errors"],
        json!({ "tool_ids": ["The tool_ids field must not have more than 32 items."] })
    );
    assert_eq!(app.count("assistants").await, 0);

    let id = app.assistant(&account, &json!({ "name": "Calm" })).await;
    let (status, body, _) = app
        .put(
            &account.key,
            &format!("/api/user/assistant/{id}"),
            &json!({ "tool_ids": ids(33) }),
        )
        .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    assert!(body["errors"]["tool_ids"].is_array(), "{body}");
    let (_, list, _) = app.get(&account.key, "/api/user/assistants/get").await;
    assert_eq!(list["data"][0]["tool_ids"], json!([]));

    // 32 is allowed.
    app.db_seed_tools(&account, 32).await;
    let (_, tools, _) = app.get(&account.key, "/api/user/tools").await;
    let tool_ids: Vec<i64> = tools["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(tool_ids.len(), 32);
    let (status, body, _) = app
        .put(
            &account.key,
            &format!("/api/user/assistant/{id}"),
            &json!({ "tool_ids": tool_ids }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["tool_ids"], json!(tool_ids));
}

#[tokio::test]
async fn an_account_has_at_most_1000_assistants_even_when_creations_race() {
    let mut app = TestApp::spawn().await;
    let second = app.start_server(app.settings.clone()).await;
    let account = app.db_account("10").await;
    let other = app.db_account("10").await;
    app.db_seed_assistants(&account, 999).await;

    // Ten creations at once through two server processes, with room for one.
    let bases = [app.base.clone(), second];
    let bodies = (0..10)
        .map(|n| json!({ "name": format!("Racer {n}") }))
        .collect();
    let created = app
        .race_past_a_limit(
            &account.key,
            &bases,
            "/api/user/assistant",
            bodies,
            "An account may have at most 1000 assistants.",
        )
        .await;
    assert_eq!(app.count("assistants").await, 1_000);

    // The 1,001st, with an idempotency key too, stores nothing.
    let (status, body, _) = app
        .post_keyed(
            &account.key,
            "one-too-many",
            "/api/user/assistant",
            &json!({ "name": "One too many" }),
        )
        .await;
    assert_error(status, &body, 422, "LIMIT_EXCEEDED");
    assert_eq!(app.count("assistants").await, 1_000);

    // Updating one still works, and the cap is the account's own.
    let (status, body, _) = app
        .put(
            &account.key,
            &format!("/api/user/assistant/{}", created["data"]["id"]),
            &json!({ "name": "Renamed" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    app.assistant(&other, &json!({ "name": "Elsewhere" })).await;
    assert_eq!(app.count("assistants").await, 1_001);
}

#[tokio::test]
async fn assistant_pages_concatenate_to_every_assistant_once_in_id_order() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let other = app.db_account("10").await;
    app.db_seed_assistants(&account, 150).await;
    app.db_seed_assistants(&other, 30).await;
    app.db_seed_assistants(&account, 50).await;
    let all = app.ids_of("assistants", &account).await;
    assert_eq!(all.len(), 200);

    // By default 100 a page; a full last page has no empty page after it.
    let path = "/api/user/assistants/get";
    let (ids, sizes) = app.walk_pages(&account.key, path, "").await;
    assert_eq!(
        (ids.as_slice(), sizes.as_slice()),
        (all.as_slice(), &[100, 100][..])
    );
    let (ids, sizes) = app.walk_pages(&account.key, path, "per_page=7").await;
    assert_eq!(ids, all);
    assert_eq!(sizes.len(), 29);
    assert!(
        sizes[..28].iter().all(|&n| n == 7) && sizes[28] == 4,
        "{sizes:?}"
    );
    for per_page in [1, 100] {
        let (status, page, _) = app
            .get(&account.key, &format!("{path}?per_page={per_page}"))
            .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["data"].as_array().unwrap().len(), per_page);
        assert!(page["next_cursor"].is_string());
    }

    // The other account's are not in them.
    let (ids, _) = app.walk_pages(&other.key, path, "per_page=100").await;
    assert_eq!(ids, app.ids_of("assistants", &other).await);
}

#[tokio::test]
async fn a_small_accounts_assistants_come_in_famulors_shape() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let first = app.assistant(&account, &json!({ "name": "One" })).await;
    let second = app.assistant(&account, &json!({ "name": "Two" })).await;
    let (status, list, _) = app.get(&account.key, "/api/user/assistants/get").await;
    assert_eq!(status, 200);
    let fields: Vec<_> = list.as_object().unwrap().keys().cloned().collect();
    assert_eq!(fields, ["data", "next_cursor"]);
    assert_eq!(list["next_cursor"], json!(null));
    let ids: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [first, second]);
}

#[tokio::test]
async fn bad_page_parameters_are_validation_errors() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    for (query, field) in [
        ("per_page=0", "per_page"),
        ("per_page=101", "per_page"),
        ("per_page=ten", "per_page"),
        ("per_page=", "per_page"),
        ("cursor=", "cursor"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=eyJhZnRlciI6IngifQ", "cursor"),
    ] {
        let (status, body, _) = app
            .get(&account.key, &format!("/api/user/assistants/get?{query}"))
            .await;
        assert_error(status, &body, 422, "VALIDATION_ERROR");
        let fields: Vec<_> = body["errors"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(fields, [field], "{query}: {body}");
    }
    // Without a key it is 401 all the same.
    let (status, body, _) = app
        .get("ark_wrong", "/api/user/assistants/get?per_page=0")
        .await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
}

/// Found by schemathesis: PostgreSQL prints a `jsonb` number in full (`1e308` as 309 digits),
/// which JSON parsing must read back as the number it was, not refuse as out of range.
#[tokio::test]
async fn variables_keep_numbers_at_the_edge_of_the_double_range() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let variables = json!({ "largest": -1.7976931348623157e308, "tiny": 5e-324, "big": 1e300 });
    let id = app
        .assistant(&account, &json!({ "name": "Edge", "variables": variables }))
        .await;
    let (status, body, _) = app
        .put(
            &account.key,
            &format!("/api/user/assistant/{id}"),
            &json!({ "variables": variables }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["variables"], variables);

    let (status, reply) = app.reply(&account.key, id, "c1", "Hi").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let conversation = reply["conversation_id"].as_str().unwrap();
    let (status, body, _) = app
        .get(&account.key, &format!("/api/conversations/{conversation}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["variables"], variables);
}
