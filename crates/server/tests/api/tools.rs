//! The tools API: Famulor's fields and rules, scoped to the account, secrets never echoed.

use serde_json::{Value, json};

use crate::util::{TestApp, assert_error};

const SECRET: &str = "Bearer sk-live-0123456789abcdef";

fn calendar_tool() -> Value {
    json!({
        "name": "check_calendar",
        "description": "Free slots on a day",
        "endpoint": "https://crm.example.com/slots",
        "method": "GET",
        "timeout": 5,
        "headers": [{ "name": "Authorization", "value": SECRET }],
        "schema": [{ "name": "date", "type": "string", "description": "YYYY-MM-DD" }]
    })
}

#[tokio::test]
async fn create_read_update_and_delete_a_tool_without_echoing_secrets() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let (status, created, _) = app
        .post(&account.key, "/api/user/tools", &calendar_tool())
        .await;
    assert_eq!(status, 201, "{created}");
    let tool = &created["data"];
    let id = tool["id"].as_i64().unwrap();
    assert_eq!(tool["method"], "GET");
    assert_eq!(tool["timeout"], 5);
    assert_eq!(
        tool["headers"],
        json!([{ "name": "Authorization", "value": "****cdef" }])
    );
    assert_eq!(
        tool["schema"],
        json!([{ "name": "date", "type": "string", "description": "YYYY-MM-DD", "required": true }])
    );

    let (_, got, _) = app
        .get(&account.key, &format!("/api/user/tools/{id}"))
        .await;
    assert_eq!(got["data"], created["data"]);
    let (_, list, _) = app.get(&account.key, "/api/user/tools").await;
    assert_eq!(list["data"], json!([created["data"]]));
    for answer in [&created, &got, &list] {
        assert!(!answer.to_string().contains("sk-live"), "{answer}");
    }

    // A partial update; the masked header sent back keeps its secret.
    let (status, updated, _) = app
        .put(
            &account.key,
            &format!("/api/user/tools/{id}"),
            &json!({ "description": "Slots", "headers": [{ "name": "Authorization", "value": "****cdef" }, { "name": "X-Extra", "value": "1" }] }),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["data"]["description"], "Slots");
    assert_eq!(updated["data"]["endpoint"], "https://crm.example.com/slots");
    let mut conn = app.db.connect().await;
    let stored = anyreply_server::models::tool::find(&mut conn, account.id, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.headers()[0].value, SECRET);
    assert_eq!(stored.headers()[1].value, "1");

    // Attached to an assistant, then deleted: the assistant lets go of it.
    let assistant = app
        .assistant(&account, &json!({ "name": "A", "tool_ids": [id] }))
        .await;
    let (status, deleted, _) = app
        .request(
            &app.base,
            reqwest::Method::DELETE,
            &account.key,
            &format!("/api/user/tools/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(deleted["status"], true);
    let (status, body, _) = app
        .get(&account.key, &format!("/api/user/tools/{id}"))
        .await;
    assert_error(status, &body, 404, "TOOL_NOT_FOUND");
    let (_, assistants, _) = app.get(&account.key, "/api/user/assistants/get").await;
    assert_eq!(assistants["data"][0]["id"], assistant);
    assert_eq!(assistants["data"][0]["tool_ids"], json!([]));
}

#[tokio::test]
async fn tool_rules_are_enforced() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let (status, _, _) = app
        .post(&account.key, "/api/user/tools", &calendar_tool())
        .await;
    assert_eq!(status, 201);
    let (status, body, _) = app
        .post(&account.key, "/api/user/tools", &calendar_tool())
        .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    assert!(
        body["errors"]["name"][0]
            .as_str()
            .unwrap()
            .contains("already")
    );

    let mut bad = calendar_tool();
    bad["name"] = json!("CheckCalendar");
    bad["endpoint"] = json!("file:///etc/passwd");
    bad["method"] = json!("TRACE");
    bad["timeout"] = json!(0);
    bad["description"] = json!("d".repeat(256));
    bad["schema"] = json!([{ "name": "when", "type": "date" }]);
    let (status, body, _) = app.post(&account.key, "/api/user/tools", &bad).await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    let fields: Vec<_> = body["errors"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        fields,
        [
            "description",
            "endpoint",
            "method",
            "name",
            "schema.0.type",
            "timeout"
        ]
    );
}

#[tokio::test]
async fn another_accounts_tools_are_out_of_reach() {
    let app = TestApp::spawn().await;
    let owner = app.db_account("10").await;
    let other = app.db_account("10").await;
    let (_, created, _) = app
        .post(&owner.key, "/api/user/tools", &calendar_tool())
        .await;
    let id = created["data"]["id"].as_i64().unwrap();
    let path = format!("/api/user/tools/{id}");
    let (status, body, _) = app.get(&other.key, &path).await;
    assert_error(status, &body, 404, "TOOL_NOT_FOUND");
    let (status, body, _) = app
        .put(&other.key, &path, &json!({ "name": "stolen" }))
        .await;
    assert_error(status, &body, 404, "TOOL_NOT_FOUND");
    let (status, body, _) = app
        .request(&app.base, reqwest::Method::DELETE, &other.key, &path, None)
        .await;
    assert_error(status, &body, 404, "TOOL_NOT_FOUND");
    let (_, list, _) = app.get(&other.key, "/api/user/tools").await;
    assert_eq!(list["data"], json!([]));
    // Nor can it be attached to another account's assistant.
    let (status, body, _) = app
        .post(
            &other.key,
            "/api/user/assistant",
            &json!({ "name": "A", "tool_ids": [id] }),
        )
        .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    assert!(body["errors"]["tool_ids"].is_array());
    let (_, still, _) = app.get(&owner.key, &path).await;
    assert_eq!(still["data"]["name"], "check_calendar");
}

#[tokio::test]
async fn moving_the_endpoint_to_another_host_needs_the_secrets_again() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let (_, created, _) = app
        .post(&account.key, "/api/user/tools", &calendar_tool())
        .await;
    let path = format!("/api/user/tools/{}", created["data"]["id"]);
    let elsewhere = "https://collector.example.net/steal";
    for body in [
        json!({ "endpoint": elsewhere }),
        json!({ "endpoint": elsewhere, "headers": [{ "name": "Authorization", "value": "****cdef" }] }),
    ] {
        let (status, answer, _) = app.put(&account.key, &path, &body).await;
        assert_error(status, &answer, 422, "VALIDATION_ERROR");
        assert!(answer["errors"]["headers"].is_array(), "{answer}");
    }
    // Same host, another path: the secrets may stay.
    let (status, _, _) = app
        .put(
            &account.key,
            &path,
            &json!({ "endpoint": "https://crm.example.com/v2/slots" }),
        )
        .await;
    assert_eq!(status, 200);
    // Another host with the values sent again.
    let body = json!({ "endpoint": elsewhere, "headers": [{ "name": "Authorization", "value": "Bearer new-token-for-them" }] });
    let (status, moved, _) = app.put(&account.key, &path, &body).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["data"]["endpoint"], elsewhere);
}

fn tool_named(name: &str) -> Value {
    let mut tool = calendar_tool();
    tool["name"] = json!(name);
    tool
}

#[tokio::test]
async fn an_account_has_at_most_1000_tools_even_when_creations_race() {
    let mut app = TestApp::spawn().await;
    let second = app.start_server(app.settings.clone()).await;
    let account = app.db_account("10").await;
    let other = app.db_account("10").await;
    app.db_seed_tools(&account, 999).await;

    // Ten creations at once through two server processes, with room for one.
    let bases = [app.base.clone(), second];
    let names = [
        "racer_a", "racer_b", "racer_c", "racer_d", "racer_e", "racer_f", "racer_g", "racer_h",
        "racer_i", "racer_j",
    ];
    let created = app
        .race_past_a_limit(
            &account.key,
            &bases,
            "/api/user/tools",
            names.iter().map(|name| tool_named(name)).collect(),
            "An account may have at most 1000 tools; delete one to make room.",
        )
        .await;
    assert_eq!(app.count("tools").await, 1_000);

    // The 1,001st stores nothing; deleting one makes room for it.
    let (status, body, _) = app
        .post(&account.key, "/api/user/tools", &tool_named("one_too_many"))
        .await;
    assert_error(status, &body, 422, "LIMIT_EXCEEDED");
    assert_eq!(app.count("tools").await, 1_000);
    let path = format!("/api/user/tools/{}", created["data"]["id"]);
    let (status, _, _) = app
        .request(
            &app.base,
            reqwest::Method::DELETE,
            &account.key,
            &path,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, body, _) = app
        .post(&account.key, "/api/user/tools", &tool_named("one_too_many"))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(app.count("tools").await, 1_000);

    // The cap is the account's own.
    let (status, body, _) = app
        .post(&other.key, "/api/user/tools", &calendar_tool())
        .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn tool_pages_concatenate_to_every_tool_once_in_id_order() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let other = app.db_account("10").await;
    app.db_seed_tools(&account, 120).await;
    app.db_seed_tools(&other, 20).await;
    let (status, created, _) = app
        .post(&account.key, "/api/user/tools", &calendar_tool())
        .await;
    assert_eq!(status, 201, "{created}");
    let all = app.ids_of("tools", &account).await;
    assert_eq!(all.len(), 121);

    let path = "/api/user/tools";
    let (ids, sizes) = app.walk_pages(&account.key, path, "").await;
    assert_eq!(
        (ids.as_slice(), sizes.as_slice()),
        (all.as_slice(), &[100, 21][..])
    );
    let (ids, sizes) = app.walk_pages(&account.key, path, "per_page=11").await;
    assert_eq!(ids, all);
    assert_eq!(sizes, [11; 11]);
    let (ids, _) = app.walk_pages(&other.key, path, "per_page=3").await;
    assert_eq!(ids, app.ids_of("tools", &other).await);

    // Header values stay masked on every page.
    let (_, first, _) = app.get(&account.key, &format!("{path}?per_page=100")).await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, rest, _) = app
        .get(&account.key, &format!("{path}?cursor={cursor}"))
        .await;
    assert_eq!(rest["data"][20]["id"], created["data"]["id"]);
    assert_eq!(rest["data"][20]["headers"][0]["value"], "****cdef");
    assert_eq!(rest["next_cursor"], json!(null));
}

#[tokio::test]
async fn a_page_follows_its_cursor_when_the_tool_it_names_is_deleted() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    app.db_seed_tools(&account, 6).await;
    let all = app.ids_of("tools", &account).await;
    let (_, first, _) = app.get(&account.key, "/api/user/tools?per_page=3").await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let (status, _, _) = app
        .request(
            &app.base,
            reqwest::Method::DELETE,
            &account.key,
            &format!("/api/user/tools/{}", all[2]),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, second, _) = app
        .get(
            &account.key,
            &format!("/api/user/tools?per_page=3&cursor={cursor}"),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    let ids: Vec<_> = second["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, all[3..]);
    assert_eq!(second["next_cursor"], json!(null));
}

#[tokio::test]
async fn the_tool_list_keeps_famulors_shape_and_refuses_bad_pages() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let (_, list, _) = app.get(&account.key, "/api/user/tools").await;
    assert_eq!(list, json!({ "data": [], "next_cursor": null }));
    for (query, field) in [
        ("per_page=0", "per_page"),
        ("per_page=500", "per_page"),
        ("cursor=%%%", "cursor"),
    ] {
        let (status, body, _) = app
            .get(&account.key, &format!("/api/user/tools?{query}"))
            .await;
        assert_error(status, &body, 422, "VALIDATION_ERROR");
        assert!(body["errors"][field].is_array(), "{query}: {body}");
    }
}
