//! Web chat widgets: publishable keys, the origin check and CORS, the per-visitor limit, the
//! visitor's history.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::util::{TestAccount, TestApp, assert_error};

const SHOP: &str = "https://shop.example.com";

/// An account with an assistant and a widget of it for [`SHOP`]: (account, widget's data).
async fn shop_widget(app: &TestApp) -> (TestAccount, Value) {
    let account = app.account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "Shop" })).await;
    let (status, body, _) = app
        .post(
            &account.key,
            "/api/user/widgets",
            &json!({ "assistant_id": assistant, "allowed_origins": ["HTTPS://Shop.Example.com/", "http://127.0.0.1:3000"] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (account, body["data"].clone())
}

/// A visitor's call to `/api/widget/messages` with `key`, from `origin`.
async fn visitor_call(
    app: &TestApp,
    method: reqwest::Method,
    key: &str,
    origin: Option<&str>,
    query: &str,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = app
        .http
        .request(method, format!("{}/api/widget/messages{query}", app.base))
        .bearer_auth(key);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let text = response.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

async fn say(
    app: &TestApp,
    key: &str,
    visitor: &str,
    text: &str,
) -> (StatusCode, HeaderMap, Value) {
    let body = json!({ "visitor_id": visitor, "message": text });
    visitor_call(app, reqwest::Method::POST, key, Some(SHOP), "", Some(body)).await
}

#[tokio::test]
async fn a_widget_is_created_listed_and_deleted_and_its_key_dies_with_it() {
    let app = TestApp::spawn().await;
    let (account, widget) = shop_widget(&app).await;
    let key = widget["public_key"].as_str().unwrap();
    assert!(key.starts_with("arpk_") && key.len() > 20, "{key}");
    assert_eq!(
        widget["allowed_origins"],
        json!([SHOP, "http://127.0.0.1:3000"])
    );
    let (status, list, _) = app.get(&account.key, "/api/user/widgets").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"], json!([widget]));
    // Another account sees none of it.
    let other = app.account("10").await;
    let (_, list, _) = app.get(&other.key, "/api/user/widgets").await;
    assert_eq!(list["data"], json!([]));
    let path = format!("/api/user/widgets/{}", widget["id"]);
    let (status, body, _) = app
        .request(&app.base, reqwest::Method::DELETE, &other.key, &path, None)
        .await;
    assert_error(status, &body, 404, "WIDGET_NOT_FOUND");

    let (status, _, _) = say(&app, key, "visitor-0001", "Hi").await;
    assert_eq!(status, 200);
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
    let (status, _, body) = say(&app, key, "visitor-0001", "Hi again").await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
}

#[tokio::test]
async fn bad_widgets_are_refused_with_nothing_stored() {
    let app = TestApp::spawn().await;
    let account = app.account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let other = app.account("10").await;
    let theirs = app.assistant(&other, &json!({ "name": "B" })).await;
    for (body, status, code) in [
        (
            json!({ "assistant_id": assistant, "allowed_origins": [] }),
            422,
            "VALIDATION_ERROR",
        ),
        (
            json!({ "assistant_id": assistant, "allowed_origins": ["https://a.test/path"] }),
            422,
            "VALIDATION_ERROR",
        ),
        (
            json!({ "assistant_id": assistant, "allowed_origins": "https://a.test" }),
            422,
            "VALIDATION_ERROR",
        ),
        (
            json!({ "allowed_origins": ["https://a.test"] }),
            422,
            "VALIDATION_ERROR",
        ),
        (
            json!({ "assistant_id": theirs, "allowed_origins": ["https://a.test"] }),
            404,
            "ASSISTANT_NOT_FOUND",
        ),
    ] {
        let (got, answer, _) = app.post(&account.key, "/api/user/widgets", &body).await;
        assert_error(got, &answer, status, code);
    }
    assert_eq!(app.count("widgets").await, 0);
}

#[tokio::test]
async fn a_visitor_chats_from_a_listed_origin_only() {
    let app = TestApp::spawn().await;
    let (account, widget) = shop_widget(&app).await;
    let key = widget["public_key"].as_str().unwrap();

    let (status, headers, reply) = say(&app, key, "visitor-0001", "Do you ship to Austria?").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["reply"], "echo: Do you ship to Austria?");
    assert_eq!(reply["customer_identifier"], "web:visitor-0001");
    assert_eq!(reply["function_calls"], json!([]));
    assert_eq!(headers["access-control-allow-origin"], SHOP);
    assert_eq!(headers["vary"], "Origin");
    // The visitor's conversation is the account's like any other, with `channel` set.
    let (_, conversation, _) = app
        .get(
            &account.key,
            &format!(
                "/api/conversations/{}",
                reply["conversation_id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(conversation["variables"]["channel"], "web");

    let before = app.count("messages").await;
    let body = json!({ "visitor_id": "visitor-0001", "message": "Hi" });
    for origin in [
        Some("https://evil.example.com"),
        Some("http://shop.example.com"),
        None,
    ] {
        let (status, headers, answer) = visitor_call(
            &app,
            reqwest::Method::POST,
            key,
            origin,
            "",
            Some(body.clone()),
        )
        .await;
        assert_error(status, &answer, 403, "ORIGIN_NOT_ALLOWED");
        assert!(
            !headers.contains_key("access-control-allow-origin"),
            "{origin:?}"
        );
    }
    // The account's API key is no widget key, and a widget key opens nothing else.
    let (status, _, answer) = visitor_call(
        &app,
        reqwest::Method::POST,
        &account.key,
        Some(SHOP),
        "",
        Some(body.clone()),
    )
    .await;
    assert_error(status, &answer, 401, "UNAUTHORIZED");
    let (status, answer) = app
        .reply(key, widget["assistant_id"].as_i64().unwrap(), "+1555", "Hi")
        .await;
    assert_error(status, &answer, 401, "UNAUTHORIZED");
    let (status, answer, _) = app.get(key, "/api/user/conversations").await;
    assert_error(status, &answer, 401, "UNAUTHORIZED");
    for bad in [
        json!({ "visitor_id": "x", "message": "Hi" }),
        json!({ "visitor_id": "visitor-0001", "message": " " }),
    ] {
        let (status, _, answer) =
            visitor_call(&app, reqwest::Method::POST, key, Some(SHOP), "", Some(bad)).await;
        assert_error(status, &answer, 422, "VALIDATION_ERROR");
    }
    assert_eq!(app.count("messages").await, before);
}

#[tokio::test]
async fn preflights_are_answered_for_listed_origins_only() {
    let app = TestApp::spawn().await;
    shop_widget(&app).await;
    let preflight = |origin: &'static str| {
        app.http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/widget/messages", app.base),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("http://127.0.0.1:3000").await.unwrap();
    assert_eq!(allowed.status(), 204);
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://127.0.0.1:3000"
    );
    assert_eq!(headers["access-control-allow-methods"], "GET, POST");
    assert!(
        headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let refused = preflight("https://evil.example.com").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

#[tokio::test]
async fn each_visitor_is_rate_limited_on_their_own() {
    let app = TestApp::spawn_with(|s| s.widget_visitor_rate_per_minute = 2).await;
    let (_, widget) = shop_widget(&app).await;
    let key = widget["public_key"].as_str().unwrap();
    for n in 0..2 {
        let (status, _, _) = say(&app, key, "chatty-visitor", &format!("message {n}")).await;
        assert_eq!(status, 200);
    }
    let before = app.count("messages").await;
    let (status, headers, answer) = say(&app, key, "chatty-visitor", "one more").await;
    assert_error(status, &answer, 429, "RATE_LIMITED");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(headers["access-control-allow-origin"], SHOP);
    assert_eq!(app.count("messages").await, before);
    let (status, _, _) = say(&app, key, "quiet-visitor", "hello").await;
    assert_eq!(status, 200);

    // A minute later (the window moved back by SQL instead of waited out) the count starts
    // again, and the minute's sweep forgets the windows that have ended.
    let mut conn = app.db.connect().await;
    {
        use diesel_async::RunQueryDsl;
        diesel::sql_query("UPDATE widget_visitors SET rate_window = rate_window - 1")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let (status, _, _) = say(&app, key, "chatty-visitor", "later").await;
    assert_eq!(status, 200);
    let purged = anyreply_server::models::widget::purge_past_counts(&mut conn)
        .await
        .unwrap();
    assert_eq!(purged, 1, "the quiet visitor's ended window");
    assert_eq!(app.count("widget_visitors").await, 1);
}

#[tokio::test]
async fn a_visitor_reads_their_own_history_and_streams_replies() {
    let app = TestApp::spawn().await;
    let (account, widget) = shop_widget(&app).await;
    let key = widget["public_key"].as_str().unwrap();
    let history = |visitor: &'static str| {
        let (app, query) = (&app, format!("?visitor_id={visitor}"));
        async move { visitor_call(app, reqwest::Method::GET, key, Some(SHOP), &query, None).await }
    };
    let (status, _, empty) = history("visitor-0001").await;
    assert_eq!((status, empty), (StatusCode::OK, json!({ "messages": [] })));

    say(&app, key, "visitor-0001", "first").await;
    // Streamed, through the widget's endpoint.
    let response = app
        .http
        .post(format!("{}/api/widget/messages", app.base))
        .bearer_auth(key)
        .header("origin", SHOP)
        .header("accept", "text/event-stream")
        .json(&json!({ "visitor_id": "visitor-0001", "message": "second one" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], SHOP);
    let text = response.text().await.unwrap();
    assert!(
        text.starts_with("event: delta\ndata: {\"text\":\"echo: \"}\n\n"),
        "{text}"
    );
    assert!(text.contains("event: reply\ndata: {"), "{text}");
    assert!(text.contains("\"reply\":\"echo: second one\""), "{text}");
    assert!(text.contains("\"function_calls\":[]"), "{text}");

    let (status, _, read) = history("visitor-0001").await;
    assert_eq!(status, 200);
    let messages: Vec<(&str, &str)> = read["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(
        messages,
        [
            ("user", "first"),
            ("assistant", "echo: first"),
            ("user", "second one"),
            ("assistant", "echo: second one"),
        ]
    );
    let (_, _, theirs) = history("visitor-0002").await;
    assert_eq!(theirs, json!({ "messages": [] }));
    let (status, _, answer) = history("no").await;
    assert_error(status, &answer, 422, "VALIDATION_ERROR");
    // The account's other conversations are not the widget's.
    app.reply(
        &account.key,
        widget["assistant_id"].as_i64().unwrap(),
        "web:visitor-0003",
        "hi",
    )
    .await;
    let (_, _, read) = history("visitor-0003").await;
    assert_eq!(read["messages"].as_array().unwrap().len(), 2);
}
