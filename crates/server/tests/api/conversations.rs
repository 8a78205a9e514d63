use std::collections::HashSet;

use serde_json::{Value, json};

use crate::util::{TestApp, assert_error};

#[tokio::test]
async fn lists_filter_and_paginate_with_cursors() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let first = app.assistant(&account, &json!({ "name": "A" })).await;
    let second = app.assistant(&account, &json!({ "name": "B" })).await;
    for n in 0..5 {
        app.reply(&account.key, first, &format!("customer-{n}"), "hi")
            .await;
    }
    app.reply(&account.key, second, "customer-0", "hi").await;

    let (status, page, _) = app.get(&account.key, "/api/user/conversations").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["per_page"], 15);
    assert_eq!(page["path"], "/api/user/conversations");
    assert_eq!(page["data"].as_array().unwrap().len(), 6);
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(page["prev_cursor"], Value::Null);
    let newest = &page["data"][0];
    assert_eq!(newest["assistant_id"], second);
    assert_eq!(newest["type"], "api");
    assert_eq!(newest["external_identifier"], "customer-0");
    assert_eq!(newest["message_count"], 2);
    assert_eq!(newest["ai_enabled"], true);
    assert_eq!(newest["total_cost"], 0.002);

    // Walk forward two at a time, then back.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let query = match &cursor {
            Some(c) => {
                format!("/api/user/conversations?assistant_id={first}&per_page=2&cursor={c}")
            }
            None => format!("/api/user/conversations?assistant_id={first}&per_page=2"),
        };
        let (status, page, _) = app.get(&account.key, &query).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["external_identifier"].as_str().unwrap().to_owned()),
        );
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        pages.push(page);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            "customer-4",
            "customer-3",
            "customer-2",
            "customer-1",
            "customer-0"
        ]
    );
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[0]["prev_cursor"], Value::Null);
    let back = pages[2]["prev_cursor"].as_str().unwrap();
    let (_, previous, _) = app
        .get(
            &account.key,
            &format!("/api/user/conversations?assistant_id={first}&per_page=2&cursor={back}"),
        )
        .await;
    assert_eq!(previous["data"], pages[1]["data"]);
    let back = previous["prev_cursor"].as_str().unwrap();
    let (_, previous, _) = app
        .get(
            &account.key,
            &format!("/api/user/conversations?assistant_id={first}&per_page=2&cursor={back}"),
        )
        .await;
    assert_eq!(previous["data"], pages[0]["data"]);
    assert_eq!(previous["prev_cursor"], Value::Null);

    let (_, by_customer, _) = app
        .get(
            &account.key,
            "/api/user/conversations?external_identifier=customer-0&type=api",
        )
        .await;
    let assistants: HashSet<i64> = by_customer["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["assistant_id"].as_i64().unwrap())
        .collect();
    assert_eq!(assistants, HashSet::from([first, second]));
    let (_, other_type, _) = app
        .get(&account.key, "/api/user/conversations?type=widget")
        .await;
    assert_eq!(other_type["data"], json!([]));
}

#[tokio::test]
async fn bad_list_parameters_are_rejected() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    for (query, field) in [
        ("per_page=0", "per_page"),
        ("per_page=101", "per_page"),
        ("assistant_id=x", "assistant_id"),
        ("cursor=garbage", "cursor"),
    ] {
        let (status, body, _) = app
            .get(&account.key, &format!("/api/user/conversations?{query}"))
            .await;
        assert_error(status, &body, 422, "VALIDATION_ERROR");
        assert!(body["errors"][field].is_array(), "{query}: {body}");
    }
}

#[tokio::test]
async fn another_accounts_conversations_are_not_found_anywhere() {
    let app = TestApp::spawn().await;
    let owner = app.db_account("10").await;
    let other = app.db_account("10").await;
    let assistant = app.assistant(&owner, &json!({ "name": "A" })).await;
    let (_, reply) = app.reply(&owner.key, assistant, "c", "hi").await;
    let id = reply["conversation_id"].as_str().unwrap();

    let (status, body, _) = app
        .get(&other.key, &format!("/api/conversations/{id}"))
        .await;
    assert_error(status, &body, 404, "CONVERSATION_NOT_FOUND");
    assert_eq!(body["error"], "Conversation not found");
    for action in ["disable-ai", "enable-ai"] {
        let (status, body, _) = app
            .post(
                &other.key,
                &format!("/api/automate/conversations/{id}/{action}"),
                &json!({}),
            )
            .await;
        assert_error(status, &body, 404, "CONVERSATION_NOT_FOUND");
    }
    let (_, list, _) = app.get(&other.key, "/api/user/conversations").await;
    assert_eq!(list["data"], json!([]));
    let (status, body, _) = app.get(&owner.key, "/api/conversations/not-a-uuid").await;
    assert_error(status, &body, 404, "CONVERSATION_NOT_FOUND");
    let (status, body, _) = app.get(&owner.key, "/api/conversations/%FF%FE").await;
    assert_error(status, &body, 404, "NOT_FOUND");
    // The owner's conversation is untouched.
    let (_, mine, _) = app
        .get(&owner.key, &format!("/api/conversations/{id}"))
        .await;
    assert_eq!(mine["ai_enabled"], true);
}
