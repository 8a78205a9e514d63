//! Web chat widgets: publishable keys, the origin check and CORS, visitor tokens, the
//! per-visitor and per-address limits, the visitor's history, and tools only when enabled.

use anyreply_server::config::TrustedProxies;
use anyreply_server::tools::guard::AddressPolicy;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::util::{
    TestAccount, TestApp, assert_error, body_of, chat_completion, openai_tool_calls,
};

const SHOP: &str = "https://shop.example.com";

/// An account with an assistant and a widget of it for [`SHOP`]: (account, widget's data).
async fn shop_widget(app: &TestApp) -> (TestAccount, Value) {
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "Shop" })).await;
    let widget = widget_of(app, &account, assistant, json!({})).await;
    (account, widget)
}

/// A widget of `assistant` for [`SHOP`] and a local origin, with `extra` fields in its body.
async fn widget_of(app: &TestApp, account: &TestAccount, assistant: i64, extra: Value) -> Value {
    let mut body = json!({
        "assistant_id": assistant,
        "allowed_origins": ["HTTPS://Shop.Example.com/", "http://127.0.0.1:3000"]
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (status, body, _) = app.post(&account.key, "/api/user/widgets", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["data"].clone()
}

/// A call to `/api/widget/messages`, as a page would make it.
struct Call<'a> {
    method: Method,
    key: &'a str,
    origin: Option<&'a str>,
    token: Option<&'a str>,
    forwarded_for: Option<&'a str>,
    body: Option<Value>,
}

impl<'a> Call<'a> {
    fn new(method: Method, key: &'a str) -> Self {
        Self {
            method,
            key,
            origin: Some(SHOP),
            token: None,
            forwarded_for: None,
            body: None,
        }
    }

    async fn send(self, app: &TestApp) -> (StatusCode, HeaderMap, Value) {
        let mut request = app
            .http
            .request(self.method, format!("{}/api/widget/messages", app.base))
            .bearer_auth(self.key);
        if let Some(origin) = self.origin {
            request = request.header("origin", origin);
        }
        if let Some(token) = self.token {
            request = request.header("x-visitor-token", token);
        }
        if let Some(address) = self.forwarded_for {
            request = request.header("x-forwarded-for", address);
        }
        if let Some(body) = self.body {
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
}

/// A visitor's message from [`SHOP`]: as a new visitor without `token`.
async fn say(
    app: &TestApp,
    key: &str,
    token: Option<&str>,
    text: &str,
) -> (StatusCode, HeaderMap, Value) {
    Call {
        token,
        body: Some(json!({ "message": text })),
        ..Call::new(Method::POST, key)
    }
    .send(app)
    .await
}

/// A new visitor's first message, answered: (their token, the answer).
async fn first_message(app: &TestApp, key: &str, text: &str) -> (String, Value) {
    let (status, headers, reply) = say(app, key, None, text).await;
    assert_eq!(status, 200, "{reply}");
    let token = headers["x-visitor-token"].to_str().unwrap().to_owned();
    (token, reply)
}

/// The visitor's history as the widget reads it.
async fn history(app: &TestApp, key: &str, token: Option<&str>) -> (StatusCode, HeaderMap, Value) {
    Call {
        token,
        ..Call::new(Method::GET, key)
    }
    .send(app)
    .await
}

fn contents(history: &Value) -> Vec<(String, String)> {
    history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let text = |field: &str| m[field].as_str().unwrap().to_owned();
            (text("role"), text("content"))
        })
        .collect()
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
    assert_eq!(widget["tools_enabled"], false, "tools are off by default");
    let (status, list, _) = app.get(&account.key, "/api/user/widgets").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"], json!([widget]));
    // Another account sees none of it.
    let other = app.db_account("10").await;
    let (_, list, _) = app.get(&other.key, "/api/user/widgets").await;
    assert_eq!(list["data"], json!([]));
    let path = format!("/api/user/widgets/{}", widget["id"]);
    let (status, body, _) = app
        .request(&app.base, Method::DELETE, &other.key, &path, None)
        .await;
    assert_error(status, &body, 404, "WIDGET_NOT_FOUND");

    let (token, _) = first_message(&app, key, "Hi").await;
    let (status, _, _) = app
        .request(&app.base, Method::DELETE, &account.key, &path, None)
        .await;
    assert_eq!(status, 200);
    let (status, _, body) = say(&app, key, Some(&token), "Hi again").await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    assert_eq!(
        app.count("widget_visitor_tokens").await,
        0,
        "the widget's visitors went with it"
    );
}

#[tokio::test]
async fn bad_widgets_are_refused_with_nothing_stored() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let other = app.db_account("10").await;
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
            json!({ "assistant_id": assistant, "allowed_origins": ["https://a.test"], "tools_enabled": "yes" }),
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
async fn a_visitor_chats_from_a_listed_origin_only_and_other_pages_read_why() {
    let app = TestApp::spawn().await;
    let (account, widget) = shop_widget(&app).await;
    let key = widget["public_key"].as_str().unwrap();

    let (status, headers, reply) = say(&app, key, None, "Do you ship to Austria?").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["reply"], "echo: Do you ship to Austria?");
    assert_eq!(reply["function_calls"], json!([]));
    assert_eq!(headers["access-control-allow-origin"], SHOP);
    assert_eq!(headers["vary"], "Origin");
    let exposed = headers["access-control-expose-headers"].to_str().unwrap();
    assert!(exposed.contains("x-visitor-token"), "{exposed}");
    let token = headers["x-visitor-token"].to_str().unwrap();
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
    let body = json!({ "message": "Hi" });
    for origin in ["https://evil.example.com", "http://shop.example.com"] {
        let (status, headers, answer) = Call {
            origin: Some(origin),
            token: Some(token),
            body: Some(body.clone()),
            ..Call::new(Method::POST, key)
        }
        .send(&app)
        .await;
        assert_error(status, &answer, 403, "ORIGIN_NOT_ALLOWED");
        // The page may read the refusal, and so tell its visitor why nothing works.
        assert_eq!(headers["access-control-allow-origin"], origin);
        let (status, headers, answer) = Call {
            origin: Some(origin),
            token: Some(token),
            ..Call::new(Method::GET, key)
        }
        .send(&app)
        .await;
        assert_error(status, &answer, 403, "ORIGIN_NOT_ALLOWED");
        assert_eq!(headers["access-control-allow-origin"], origin);
    }
    let (status, headers, answer) = Call {
        origin: None,
        body: Some(body.clone()),
        ..Call::new(Method::POST, key)
    }
    .send(&app)
    .await;
    assert_error(status, &answer, 403, "ORIGIN_NOT_ALLOWED");
    assert!(!headers.contains_key("access-control-allow-origin"));
    // The account's API key is no widget key, and a widget key opens nothing else.
    let (status, _, answer) = Call {
        body: Some(body.clone()),
        ..Call::new(Method::POST, &account.key)
    }
    .send(&app)
    .await;
    assert_error(status, &answer, 401, "UNAUTHORIZED");
    let (status, answer) = app
        .reply(key, widget["assistant_id"].as_i64().unwrap(), "+1555", "Hi")
        .await;
    assert_error(status, &answer, 401, "UNAUTHORIZED");
    let (status, answer, _) = app.get(key, "/api/user/conversations").await;
    assert_error(status, &answer, 401, "UNAUTHORIZED");
    let (status, _, answer) = say(&app, key, Some(token), " ").await;
    assert_error(status, &answer, 422, "VALIDATION_ERROR");
    assert_eq!(app.count("messages").await, before);
    assert_eq!(
        app.count("widget_visitor_tokens").await,
        1,
        "no visitor made by a refused call"
    );
}

#[tokio::test]
async fn preflights_are_answered_for_any_origin_and_the_request_is_checked() {
    let app = TestApp::spawn().await;
    shop_widget(&app).await;
    let preflight = |origin: &'static str| {
        app.http
            .request(Method::OPTIONS, format!("{}/api/widget/messages", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, x-visitor-token",
            )
            .send()
    };
    // Another origin's preflight passes too: the request it clears is refused readably.
    for origin in ["http://127.0.0.1:3000", "https://evil.example.com"] {
        let answer = preflight(origin).await.unwrap();
        assert_eq!(answer.status(), 204);
        let headers = answer.headers();
        assert_eq!(headers["access-control-allow-origin"], origin);
        assert_eq!(headers["access-control-allow-methods"], "GET, POST");
        let allowed = headers["access-control-allow-headers"].to_str().unwrap();
        assert!(
            allowed.contains("authorization") && allowed.contains("x-visitor-token"),
            "{allowed}"
        );
    }
}

#[tokio::test]
async fn a_visitor_token_is_issued_once_stored_hashed_and_needed_for_everything() {
    let app = TestApp::spawn().await;
    let (account, widget) = shop_widget(&app).await;
    let key = widget["public_key"].as_str().unwrap();
    let (token, reply) = first_message(&app, key, "first").await;
    // 256 random bits, base64url, after the mark.
    assert!(
        token.starts_with("arvt_") && token.len() == 5 + 43,
        "{token}"
    );

    // The customer is `web:` and a public id that is not the token, and only the token's
    // hash is stored.
    let customer = reply["customer_identifier"].as_str().unwrap();
    let public_id = customer.strip_prefix("web:").unwrap();
    assert!(public_id.len() >= 16, "{public_id}");
    assert!(!token.contains(public_id) && !public_id.contains(&token[5..]));
    let mut conn = app.db.connect().await;
    {
        use anyreply_server::schema::widget_visitor_tokens as t;
        let rows: Vec<(Vec<u8>, String, i64)> = t::table
            .select((t::token_hash, t::public_id, t::widget_id))
            .load(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            rows,
            [(
                Sha256::digest(token.as_bytes()).to_vec(),
                public_id.to_owned(),
                widget["id"].as_i64().unwrap()
            )]
        );
    }

    // Later messages with the token are the same visitor's, and no new token comes.
    let (status, headers, again) = say(&app, key, Some(&token), "second").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["conversation_id"], reply["conversation_id"]);
    assert_eq!(again["customer_identifier"], customer);
    assert!(!headers.contains_key("x-visitor-token"));
    let (status, _, read) = history(&app, key, Some(&token)).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(
        contents(&read),
        [
            ("user", "first"),
            ("assistant", "echo: first"),
            ("user", "second"),
            ("assistant", "echo: second"),
        ]
        .map(|(role, text)| (role.to_owned(), text.to_owned()))
    );

    // Without the token, or with one forged, or another widget's visitor's (of the same
    // account and assistant), nothing is read or written.
    let other_widget = widget_of(
        &app,
        &account,
        widget["assistant_id"].as_i64().unwrap(),
        json!({}),
    )
    .await;
    let (theirs, _) = first_message(
        &app,
        other_widget["public_key"].as_str().unwrap(),
        "elsewhere",
    )
    .await;
    let before = app.count("messages").await;
    let forged = format!("arvt_{}", "A".repeat(43));
    for bad in [
        &forged,
        &theirs,
        "",
        "not-a-token",
        &token[..token.len() - 1],
    ] {
        let (status, headers, answer) = history(&app, key, Some(bad)).await;
        assert_error(status, &answer, 401, "VISITOR_TOKEN_INVALID");
        assert_eq!(headers["access-control-allow-origin"], SHOP);
        let (status, headers, answer) = say(&app, key, Some(bad), "let me in").await;
        assert_error(status, &answer, 401, "VISITOR_TOKEN_INVALID");
        assert!(!headers.contains_key("x-visitor-token"));
    }
    let (status, _, answer) = history(&app, key, None).await;
    assert_error(status, &answer, 401, "VISITOR_TOKEN_INVALID");
    // A customer's id in the URL, as the older script sent it, reads nothing either.
    let legacy = app
        .http
        .get(format!(
            "{}/api/widget/messages?visitor_id={public_id}",
            app.base
        ))
        .bearer_auth(key)
        .header("origin", SHOP)
        .send()
        .await
        .unwrap();
    assert_eq!(legacy.status(), 401);
    assert_eq!(app.count("messages").await, before);
}

#[tokio::test]
async fn a_visitor_of_the_browser_chosen_ids_becomes_a_new_visitor_and_cannot_claim_an_old_conversation()
 {
    let app = TestApp::spawn().await;
    let (account, widget) = shop_widget(&app).await;
    let key = widget["public_key"].as_str().unwrap();
    let assistant = widget["assistant_id"].as_i64().unwrap();
    // A conversation of the older widget, whose id travelled in events and webhooks.
    let (status, _) = app
        .reply(
            &account.key,
            assistant,
            "web:visitor-0001",
            "my address is …",
        )
        .await;
    assert_eq!(status, 200);
    // Whoever sends that id (as the older script did) is a new visitor with a conversation of
    // their own: the id opens nothing.
    let (status, headers, reply) = Call {
        body: Some(json!({ "visitor_id": "visitor-0001", "message": "what is my address?" })),
        ..Call::new(Method::POST, key)
    }
    .send(&app)
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_ne!(reply["customer_identifier"], "web:visitor-0001");
    let token = headers["x-visitor-token"].to_str().unwrap();
    let (_, _, read) = history(&app, key, Some(token)).await;
    assert_eq!(
        contents(&read),
        [
            ("user", "what is my address?"),
            ("assistant", "echo: what is my address?"),
        ]
        .map(|(role, text)| (role.to_owned(), text.to_owned()))
    );
    // The model saw none of the older conversation.
    let last = app.llm_requests().await.pop().unwrap();
    assert!(!last.to_string().contains("my address is"), "{last}");
}

#[tokio::test]
async fn each_visitor_is_rate_limited_on_their_own() {
    let app = TestApp::spawn_with(|s| s.widget_visitor_rate_per_minute = 2).await;
    let (_, widget) = shop_widget(&app).await;
    let key = widget["public_key"].as_str().unwrap();
    let (chatty, _) = first_message(&app, key, "message 0").await;
    let (status, _, _) = say(&app, key, Some(&chatty), "message 1").await;
    assert_eq!(status, 200);
    let before = app.count("messages").await;
    let (status, headers, answer) = say(&app, key, Some(&chatty), "one more").await;
    assert_error(status, &answer, 429, "RATE_LIMITED");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(headers["access-control-allow-origin"], SHOP);
    assert_eq!(app.count("messages").await, before);
    let (_quiet, _) = first_message(&app, key, "hello").await;

    // A minute later (the window moved back by SQL instead of waited out) the count starts
    // again, and the minute's sweep forgets the windows that have ended.
    let mut conn = app.db.connect().await;
    diesel::sql_query("UPDATE widget_visitors SET rate_window = rate_window - 1")
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query("UPDATE widget_addresses SET rate_window = rate_window - 1")
        .execute(&mut conn)
        .await
        .unwrap();
    let (status, _, _) = say(&app, key, Some(&chatty), "later").await;
    assert_eq!(status, 200);
    let purged = anyreply_server::models::widget::purge_past_counts(&mut conn)
        .await
        .unwrap();
    assert_eq!(purged, 1, "the quiet visitor's ended window");
    assert_eq!(app.count("widget_visitors").await, 1);
    assert_eq!(
        app.count("widget_addresses").await,
        1,
        "counted again since"
    );
}

#[tokio::test]
async fn each_client_address_is_limited_preflights_and_reads_included() {
    let app = TestApp::spawn_with(|s| s.widget_ip_rate_per_minute = 3).await;
    let (_, widget) = shop_widget(&app).await;
    let key = widget["public_key"].as_str().unwrap();
    let preflight = app
        .http
        .request(Method::OPTIONS, format!("{}/api/widget/messages", app.base))
        .header("origin", SHOP)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    let (token, _) = first_message(&app, key, "hi").await;
    let (status, _, _) = history(&app, key, Some(&token)).await;
    assert_eq!(status, 200);
    // The fourth request of the minute from this address, whatever it is, and whoever says
    // (without a trusted proxy) that they forward for someone else.
    let before = app.count("messages").await;
    for call in [
        Call {
            token: Some(&token),
            ..Call::new(Method::GET, key)
        },
        Call {
            body: Some(json!({ "message": "more" })),
            forwarded_for: Some("198.51.100.7"),
            ..Call::new(Method::POST, key)
        },
        Call {
            origin: Some("https://evil.example.com"),
            ..Call::new(Method::OPTIONS, key)
        },
    ] {
        let (status, headers, answer) = call.send(&app).await;
        assert_error(status, &answer, 429, "RATE_LIMITED");
        let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(headers.contains_key("access-control-allow-origin"));
    }
    assert_eq!(app.count("messages").await, before);
    assert_eq!(app.count("widget_visitor_tokens").await, 1);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_address_is_limited() {
    let app = TestApp::spawn_with(|s| {
        s.widget_ip_rate_per_minute = 2;
        s.trusted_proxies = "127.0.0.1".parse::<TrustedProxies>().unwrap();
    })
    .await;
    let (_, widget) = shop_widget(&app).await;
    let key = widget["public_key"].as_str().unwrap();
    let read = |address: &'static str| Call {
        forwarded_for: Some(address),
        ..Call::new(Method::GET, key)
    };
    for _ in 0..2 {
        let (status, _, answer) = read("203.0.113.1").send(&app).await;
        assert_error(status, &answer, 401, "VISITOR_TOKEN_INVALID");
    }
    let (status, _, answer) = read("203.0.113.1").send(&app).await;
    assert_error(status, &answer, 429, "RATE_LIMITED");
    // Another client behind the same proxy, and the proxy's own last hop counts.
    let (status, _, answer) = read("10.0.0.1, 203.0.113.2").send(&app).await;
    assert_error(status, &answer, 401, "VISITOR_TOKEN_INVALID");
    let (status, _, answer) = read("203.0.113.1, 203.0.113.2").send(&app).await;
    assert_error(status, &answer, 401, "VISITOR_TOKEN_INVALID");
    let (status, _, answer) = read("203.0.113.2").send(&app).await;
    assert_error(status, &answer, 429, "RATE_LIMITED");
}

#[tokio::test]
async fn a_visitor_streams_replies_through_the_widget() {
    let app = TestApp::spawn().await;
    let (_, widget) = shop_widget(&app).await;
    let key = widget["public_key"].as_str().unwrap();
    // A new visitor's first message, streamed: the token comes in the head.
    let response = app
        .http
        .post(format!("{}/api/widget/messages", app.base))
        .bearer_auth(key)
        .header("origin", SHOP)
        .header("accept", "text/event-stream")
        .json(&json!({ "message": "first one" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], SHOP);
    let token = response.headers()["x-visitor-token"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    assert!(
        text.starts_with("event: delta\ndata: {\"text\":\"echo: \"}\n\n"),
        "{text}"
    );
    assert!(text.contains("event: reply\ndata: {"), "{text}");
    assert!(text.contains("\"reply\":\"echo: first one\""), "{text}");
    assert!(text.contains("\"function_calls\":[]"), "{text}");
    let (status, _, read) = history(&app, key, Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(read["messages"].as_array().unwrap().len(), 2, "{read}");
}

/// An assistant with one tool, `ping`, whose endpoint (returned) answers `{"ok": true}`; the
/// model calls it whenever it is offered tools.
async fn pinging_assistant(app: &TestApp, account: &TestAccount) -> (MockServer, i64) {
    let crm = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "ok": true })))
        .mount(&crm)
        .await;
    let tool = json!({
        "name": "ping", "description": "d", "endpoint": format!("{}/ping", crm.uri()), "method": "GET"
    });
    let (status, body, _) = app.post(&account.key, "/api/user/tools", &tool).await;
    assert_eq!(status, 201, "{body}");
    let ping = body["data"]["id"].as_i64().unwrap();
    let assistant = app
        .assistant(account, &json!({ "name": "A", "tool_ids": [ping] }))
        .await;
    app.script_model(|request: &Request| {
        let body = body_of(request);
        let offered = body.get("tools").is_some_and(|tools| !tools.is_null());
        let answered = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["role"] == "tool");
        let answer = match offered && !answered {
            true => openai_tool_calls(&[("call_1", "ping", json!({}))]),
            false => chat_completion("pong"),
        };
        ResponseTemplate::new(200).set_body_json(answer)
    })
    .await;
    (crm, assistant)
}

#[tokio::test]
async fn a_widgets_replies_call_tools_only_when_the_business_enabled_them() {
    let app = TestApp::spawn_with(|s| {
        s.outbound_allowed_hosts = AddressPolicy::parse("127.0.0.1").unwrap();
    })
    .await;
    let account = app.db_account("10").await;
    let (crm, assistant) = pinging_assistant(&app, &account).await;

    let closed = widget_of(&app, &account, assistant, json!({})).await;
    let (_, reply) = first_message(&app, closed["public_key"].as_str().unwrap(), "ping?").await;
    assert_eq!(reply["reply"], "pong");
    assert!(crm.received_requests().await.unwrap().is_empty());
    let asked = app.llm_requests().await.pop().unwrap();
    assert!(asked.get("tools").is_none_or(Value::is_null), "{asked}");

    let open = widget_of(&app, &account, assistant, json!({ "tools_enabled": true })).await;
    assert_eq!(open["tools_enabled"], true);
    let (status, list, _) = app.get(&account.key, "/api/user/widgets").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"][1]["tools_enabled"], true);
    let (_, reply) = first_message(&app, open["public_key"].as_str().unwrap(), "ping?").await;
    assert_eq!(reply["reply"], "pong");
    assert_eq!(
        reply["function_calls"],
        json!([]),
        "the tool's result stays the business's"
    );
    assert_eq!(crm.received_requests().await.unwrap().len(), 1);
}

/// The real binary, logging JSON: a widget used from an unlisted origin logs that origin at
/// `warn`, with the widget's id, so that whoever embedded it can find out why it is refused.
#[tokio::test]
async fn a_refused_origin_is_logged() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::Duration;

    let app = TestApp::spawn().await;
    let (_, widget) = shop_widget(&app).await;
    let key = widget["public_key"].as_str().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_anyreply-server"))
        .env("ANYREPLY_DATABASE_URL", app.db.url())
        .env("ANYREPLY_LISTEN", format!("127.0.0.1:{port}"))
        .env("ANYREPLY_LLM_BASE_URL", format!("{}/v1", app.llm.uri()))
        .env("ANYREPLY_LOG_FORMAT", "json")
        .env("ANYREPLY_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, received) = std::sync::mpsc::channel::<String>();
    let stderr = server.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    let ready = async {
        while app.http.get(format!("{base}/health")).send().await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .expect("the server starts");
    let response = app
        .http
        .post(format!("{base}/api/widget/messages"))
        .bearer_auth(key)
        .header("origin", "https://elsewhere.example.org")
        .json(&json!({ "message": "hi" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    let logged = loop {
        let line = received
            .recv_timeout(Duration::from_secs(10))
            .expect("a log line about the refused origin");
        let entry: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if entry["fields"]["origin"].is_string() {
            break entry;
        }
    };
    server.kill().unwrap();
    let _ = server.wait();
    assert_eq!(logged["level"], "WARN");
    assert_eq!(logged["fields"]["origin"], "https://elsewhere.example.org");
    assert_eq!(logged["fields"]["widget_id"], widget["id"]);
}
