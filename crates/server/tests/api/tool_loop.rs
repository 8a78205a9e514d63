//! The model calls the account's tools: exact requests to the endpoints, results back to the
//! model, caps, failures that never fail the reply, and addresses a tool may not reach.

use std::time::Duration;

use anyreply_server::config::Settings;
use anyreply_server::tools::guard::AddressPolicy;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::util::{TestAccount, TestApp, body_of, chat_completion, money, openai_tool_calls};

fn allow_local(settings: &mut Settings) {
    settings.outbound_allowed_hosts = AddressPolicy::parse("127.0.0.1").unwrap();
}

async fn create_tool(app: &TestApp, account: &TestAccount, tool: Value) -> i64 {
    let (status, body, _) = app.post(&account.key, "/api/user/tools", &tool).await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_i64().unwrap()
}

/// An assistant with one tool, `ping`, whose endpoint (returned) answers `{"ok": true}`.
async fn pinging_assistant(app: &TestApp, account: &TestAccount) -> (MockServer, i64) {
    let crm = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "ok": true })))
        .mount(&crm)
        .await;
    let ping = create_tool(app, account, json!({
        "name": "ping", "description": "d", "endpoint": format!("{}/ping", crm.uri()), "method": "GET"
    }))
    .await;
    let assistant = app
        .assistant(account, &json!({ "name": "A", "tool_ids": [ping] }))
        .await;
    (crm, assistant)
}

/// How many tool results the model has been given so far in this request.
fn tool_results(request: &Request) -> usize {
    body_of(request)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .count()
}

#[tokio::test]
async fn a_multi_round_conversation_calls_the_endpoints_exactly_and_records_the_calls() {
    let app = TestApp::spawn_with(allow_local).await;
    let account = app.db_account("10").await;
    let crm = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/slots"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "slots": ["10:00", "14:00"] })),
        )
        .mount(&crm)
        .await;
    Mock::given(method("POST"))
        .and(path("/book"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "booking": "B-17" })))
        .mount(&crm)
        .await;
    let calendar = create_tool(
        &app,
        &account,
        json!({
            "name": "check_calendar", "description": "Free slots on a day",
            "endpoint": format!("{}/slots?source=ai", crm.uri()), "method": "GET",
            "headers": [{ "name": "X-Api-Key", "value": "crm-secret-key-123" }],
            "schema": [{ "name": "date", "type": "string", "description": "YYYY-MM-DD" }]
        }),
    )
    .await;
    let booking = create_tool(
        &app,
        &account,
        json!({
            "name": "book_appointment", "description": "Books a slot",
            "endpoint": format!("{}/book", crm.uri()), "method": "POST",
            "schema": [
                { "name": "date", "type": "string" }, { "name": "time", "type": "string" },
                { "name": "people", "type": "number", "required": false }
            ]
        }),
    )
    .await;
    let assistant = app
        .assistant(
            &account,
            &json!({ "name": "Booker", "tool_ids": [calendar, booking] }),
        )
        .await;
    app.script_model(|request: &Request| {
        let answer = match tool_results(request) {
            0 => {
                openai_tool_calls(&[("call_1", "check_calendar", json!({ "date": "2026-12-01" }))])
            }
            1 => openai_tool_calls(&[(
                "call_2",
                "book_appointment",
                json!({ "date": "2026-12-01", "time": "14:00", "people": 2 }),
            )]),
            _ => chat_completion("Booked for 14:00."),
        };
        ResponseTemplate::new(200).set_body_json(answer)
    })
    .await;

    let (status, reply) = app
        .reply(&account.key, assistant, "+4915", "Book me in on Dec 1st")
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["reply"], "Booked for 14:00.");
    let expected_calls = json!([
        { "name": "check_calendar", "arguments": { "date": "2026-12-01" }, "result": { "slots": ["10:00", "14:00"] } },
        { "name": "book_appointment", "arguments": { "date": "2026-12-01", "time": "14:00", "people": 2 }, "result": { "booking": "B-17" } }
    ]);
    assert_eq!(reply["function_calls"], expected_calls);

    // The endpoints got exactly what the schema allows, with the configured headers.
    let received = crm.received_requests().await.unwrap();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].method.as_str(), "GET");
    assert_eq!(received[0].url.path(), "/slots");
    assert_eq!(received[0].url.query(), Some("source=ai&date=2026-12-01"));
    assert_eq!(received[0].headers["x-api-key"], "crm-secret-key-123");
    assert_eq!(received[1].method.as_str(), "POST");
    assert_eq!(
        body_of(&received[1]),
        json!({ "date": "2026-12-01", "time": "14:00", "people": 2 })
    );
    assert_eq!(received[1].headers["content-type"], "application/json");

    // The model saw the functions, then each result under its call's id.
    let prompts = app.llm_requests().await;
    assert_eq!(prompts.len(), 3);
    assert_eq!(prompts[0]["tool_choice"], "auto");
    assert_eq!(
        prompts[0]["tools"][0],
        json!({ "type": "function", "function": {
            "name": "check_calendar", "description": "Free slots on a day",
            "parameters": { "type": "object", "properties": { "date": { "type": "string", "description": "YYYY-MM-DD" } },
                            "required": ["date"], "additionalProperties": false }
        }})
    );
    let second: Vec<Value> = prompts[1]["messages"].as_array().unwrap().clone();
    assert_eq!(second[1]["tool_calls"][0]["id"], "call_1");
    assert_eq!(
        second[2],
        json!({ "role": "tool", "tool_call_id": "call_1", "content": "{\"slots\":[\"10:00\",\"14:00\"]}" })
    );

    // The calls are in the history, and every model call was paid for: 3 x 0.002.
    let id = reply["conversation_id"].as_str().unwrap();
    let (_, history, _) = app
        .get(&account.key, &format!("/api/conversations/{id}"))
        .await;
    assert_eq!(history["history"][1]["function_calls"], expected_calls);
    assert_eq!(app.balance(&account).await, money("9.994"));
}

#[tokio::test]
async fn a_failing_tool_never_fails_the_reply() {
    let app = TestApp::spawn_with(allow_local).await;
    let account = app.db_account("10").await;
    let crm = MockServer::start().await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&crm)
        .await;
    Mock::given(path("/broken"))
        .respond_with(ResponseTemplate::new(500).set_body_string("database on fire"))
        .mount(&crm)
        .await;
    Mock::given(path("/book"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&crm)
        .await;
    let slow = create_tool(&app, &account, json!({
        "name": "slow", "description": "d", "endpoint": format!("{}/slow", crm.uri()), "method": "GET", "timeout": 1
    })).await;
    let broken = create_tool(&app, &account, json!({
        "name": "broken", "description": "d", "endpoint": format!("{}/broken", crm.uri()), "method": "POST"
    })).await;
    let book = create_tool(&app, &account, json!({
        "name": "book", "description": "d", "endpoint": format!("{}/book", crm.uri()), "method": "POST",
        "schema": [{ "name": "people", "type": "number" }]
    })).await;
    let assistant = app
        .assistant(
            &account,
            &json!({ "name": "A", "tool_ids": [slow, broken, book] }),
        )
        .await;
    app.script_model(|request: &Request| {
        let answer = match tool_results(request) {
            0 => openai_tool_calls(&[
                ("c1", "slow", json!({})),
                ("c2", "broken", json!({})),
                (
                    "c3",
                    "book",
                    json!({ "people": "two", "url": "http://169.254.169.254/" }),
                ),
            ]),
            _ => chat_completion("Sorry, the booking system is down."),
        };
        ResponseTemplate::new(200).set_body_json(answer)
    })
    .await;

    let (status, reply) = app
        .reply(&account.key, assistant, "c", "book 2 people")
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["reply"], "Sorry, the booking system is down.");
    let calls = reply["function_calls"].as_array().unwrap();
    assert_eq!(calls[0]["result"]["error"], "timeout");
    assert_eq!(
        calls[1]["result"],
        json!({
            "error": "http_status", "message": "the endpoint answered HTTP 500", "status": 500, "body": "database on fire"
        })
    );
    assert_eq!(calls[2]["result"]["error"], "invalid_arguments");
    assert_eq!(
        calls[2]["result"]["message"],
        "people must be a number; url is not a parameter"
    );
    let paths: Vec<String> = crm
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(paths.len(), 2);
    assert!(!paths.contains(&"/book".to_owned()), "{paths:?}");
    // The model was told each call failed.
    let last = app.llm_requests().await.pop().unwrap();
    let results: Vec<&Value> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(results.len(), 3);
    assert!(results[0]["content"].as_str().unwrap().contains("timeout"));
}

#[tokio::test]
async fn past_the_round_cap_the_model_must_answer_in_words() {
    let app = TestApp::spawn_with(|s| {
        allow_local(s);
        s.tool_max_rounds = 2;
    })
    .await;
    let account = app.db_account("10").await;
    let (crm, assistant) = pinging_assistant(&app, &account).await;
    // A model that calls tools whenever it may.
    app.script_model(|request: &Request| {
        let body = body_of(request);
        let answer = if body["tool_choice"] == "none" {
            chat_completion("Done pinging.")
        } else {
            openai_tool_calls(&[(&format!("c{}", tool_results(request)), "ping", json!({}))])
        };
        ResponseTemplate::new(200).set_body_json(answer)
    })
    .await;
    let (status, reply) = app
        .reply(&account.key, assistant, "c", "ping forever")
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["reply"], "Done pinging.");
    assert_eq!(reply["function_calls"].as_array().unwrap().len(), 2);
    let prompts = app.llm_requests().await;
    let choices: Vec<&Value> = prompts.iter().map(|p| &p["tool_choice"]).collect();
    assert_eq!(choices, [&json!("auto"), &json!("auto"), &json!("none")]);
    assert_eq!(crm.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn calls_past_the_call_cap_are_not_made() {
    let app = TestApp::spawn_with(|s| {
        allow_local(s);
        s.tool_max_calls = 2;
    })
    .await;
    let account = app.db_account("10").await;
    let (crm, assistant) = pinging_assistant(&app, &account).await;
    app.script_model(|request: &Request| {
        let answer = match tool_results(request) {
            0 => openai_tool_calls(&[
                ("a", "ping", json!({})),
                ("b", "ping", json!({})),
                ("c", "ping", json!({})),
            ]),
            _ => chat_completion("Pinged."),
        };
        ResponseTemplate::new(200).set_body_json(answer)
    })
    .await;
    let (_, reply) = app.reply(&account.key, assistant, "c", "ping thrice").await;
    let results: Vec<&Value> = reply["function_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["result"])
        .collect();
    assert_eq!(results[0], &json!({ "ok": true }));
    assert_eq!(results[1], &json!({ "ok": true }));
    assert_eq!(results[2]["error"], "call_limit");
    assert_eq!(crm.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn tools_cannot_reach_this_machine_by_address_or_by_name() {
    // No allowed hosts: the default.
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let target = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&target)
        .await;
    let port = target.address().port();
    let endpoints = [
        (
            "loopback_address",
            format!("http://127.0.0.1:{port}/x"),
            "loopback",
        ),
        (
            "loopback_name",
            format!("http://localhost:{port}/x"),
            "loopback",
        ),
        (
            "mapped_address",
            format!("http://[::ffff:127.0.0.1]:{port}/x"),
            "IPv4-mapped",
        ),
        ("loopback_six", format!("http://[::1]:{port}/x"), "loopback"),
    ];
    let mut ids = Vec::new();
    for (name, endpoint, _) in &endpoints {
        ids.push(
            create_tool(
                &app,
                &account,
                json!({ "name": name, "description": "d", "endpoint": endpoint, "method": "GET" }),
            )
            .await,
        );
    }
    let assistant = app
        .assistant(&account, &json!({ "name": "A", "tool_ids": ids }))
        .await;
    let calls: Vec<(String, String, Value)> = endpoints
        .iter()
        .map(|(name, _, _)| (format!("id_{name}"), name.to_string(), json!({})))
        .collect();
    app.script_model(move |request: &Request| {
        let answer = match tool_results(request) {
            0 => openai_tool_calls(
                &calls
                    .iter()
                    .map(|(i, n, a)| (i.as_str(), n.as_str(), a.clone()))
                    .collect::<Vec<_>>(),
            ),
            _ => chat_completion("I could not check."),
        };
        ResponseTemplate::new(200).set_body_json(answer)
    })
    .await;
    let (status, reply) = app.reply(&account.key, assistant, "c", "check").await;
    assert_eq!(status, 200, "{reply}");
    for (call, (name, _, class)) in reply["function_calls"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&endpoints)
    {
        assert_eq!(call["name"], *name);
        assert_eq!(call["result"]["error"], "refused_address", "{call}");
        let message = call["result"]["message"].as_str().unwrap();
        assert!(message.contains(class), "{call}");
        // The refusal says which setting would allow it.
        assert!(
            message.contains("ANYREPLY_OUTBOUND_ALLOWED_HOSTS"),
            "{call}"
        );
    }
    assert_eq!(
        target.received_requests().await.unwrap().len(),
        0,
        "a refused address was connected to"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let app = TestApp::spawn_with(allow_local).await;
    let account = app.db_account("10").await;
    let inner = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&inner)
        .await;
    let outer = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", format!("{}/admin", inner.uri())),
        )
        .mount(&outer)
        .await;
    let hop = create_tool(&app, &account, json!({
        "name": "hop", "description": "d", "endpoint": format!("{}/start", outer.uri()), "method": "GET"
    })).await;
    let assistant = app
        .assistant(&account, &json!({ "name": "A", "tool_ids": [hop] }))
        .await;
    app.script_model(|request: &Request| {
        let answer = match tool_results(request) {
            0 => openai_tool_calls(&[("h", "hop", json!({}))]),
            _ => chat_completion("ok"),
        };
        ResponseTemplate::new(200).set_body_json(answer)
    })
    .await;
    let (_, reply) = app.reply(&account.key, assistant, "c", "go").await;
    assert_eq!(reply["function_calls"][0]["result"]["status"], 302);
    assert_eq!(outer.received_requests().await.unwrap().len(), 1);
    assert_eq!(inner.received_requests().await.unwrap().len(), 0);
}

/// NUL characters, which PostgreSQL cannot store, from a tool or the model are dropped.
#[tokio::test]
async fn nul_characters_from_tools_and_models_are_dropped() {
    let app = TestApp::spawn_with(allow_local).await;
    let account = app.db_account("10").await;
    let crm = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw(r#"{"name":"Ad\u0000a"}"#, "application/json"),
        )
        .mount(&crm)
        .await;
    let who = create_tool(&app, &account, json!({
        "name": "who", "description": "d", "endpoint": format!("{}/who", crm.uri()), "method": "GET"
    }))
    .await;
    let assistant = app
        .assistant(&account, &json!({ "name": "A", "tool_ids": [who] }))
        .await;
    app.script_model(|request: &Request| {
        let answer = match tool_results(request) {
            0 => openai_tool_calls(&[("w", "who", json!({}))]),
            _ => chat_completion("Hello Ada\u{0}!"),
        };
        ResponseTemplate::new(200).set_body_json(answer)
    })
    .await;
    let (status, reply) = app.reply(&account.key, assistant, "c", "who am I?").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["reply"], "Hello Ada!");
    assert_eq!(
        reply["function_calls"][0]["result"],
        json!({ "name": "Ada" })
    );
    let id = reply["conversation_id"].as_str().unwrap();
    let (_, history, _) = app
        .get(&account.key, &format!("/api/conversations/{id}"))
        .await;
    assert_eq!(history["history"][1]["content"], "Hello Ada!");
}

#[tokio::test]
async fn large_responses_are_read_up_to_a_limit_and_cut() {
    let app = TestApp::spawn_with(allow_local).await;
    let account = app.db_account("10").await;
    let crm = MockServer::start().await;
    // 1 MiB of text: only 256 KiB is read, 8,000 characters are kept.
    Mock::given(path("/text"))
        .respond_with(ResponseTemplate::new(200).set_body_string("x".repeat(1 << 20)))
        .mount(&crm)
        .await;
    // JSON longer than 8,000 characters once printed: kept as cut text.
    let rows: Vec<Value> = (0..2_000).map(|n| json!({ "row": n })).collect();
    Mock::given(path("/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(rows))
        .mount(&crm)
        .await;
    let mut ids = Vec::new();
    for name in ["text", "json"] {
        ids.push(create_tool(&app, &account, json!({
            "name": name, "description": "d", "endpoint": format!("{}/{name}", crm.uri()), "method": "GET"
        })).await);
    }
    let assistant = app
        .assistant(&account, &json!({ "name": "A", "tool_ids": ids }))
        .await;
    app.script_model(|request: &Request| {
        let answer = match tool_results(request) {
            0 => openai_tool_calls(&[("t", "text", json!({})), ("j", "json", json!({}))]),
            _ => chat_completion("read"),
        };
        ResponseTemplate::new(200).set_body_json(answer)
    })
    .await;
    let (status, reply) = app.reply(&account.key, assistant, "c", "read them").await;
    assert_eq!(status, 200, "{reply}");
    for call in reply["function_calls"].as_array().unwrap() {
        let result = call["result"].as_str().unwrap();
        assert!(
            result.ends_with(" …[truncated]"),
            "{}",
            &result[result.len() - 20..]
        );
        assert_eq!(
            result.chars().count(),
            8_000 + " …[truncated]".chars().count()
        );
    }
    assert!(
        reply["function_calls"][1]["result"]
            .as_str()
            .unwrap()
            .starts_with("[{\"row\":0}")
    );
}
