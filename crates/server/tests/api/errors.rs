//! Every non-2xx answer is the error envelope with a machine-readable code.

use serde_json::json;

use crate::util::{TestApp, assert_error};

#[tokio::test]
async fn validation_errors_name_every_bad_field() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let cases = [
        (
            json!({}),
            vec!["assistant_id", "customer_identifier", "message"],
        ),
        (
            json!({ "assistant_id": "x", "customer_identifier": 5, "message": ["m"] }),
            vec!["assistant_id", "customer_identifier", "message"],
        ),
        (
            json!({ "assistant_id": 1, "customer_identifier": "c", "message": "" }),
            vec!["message"],
        ),
        (
            json!({ "assistant_id": 1, "customer_identifier": "c", "message": "   " }),
            vec!["message"],
        ),
        (
            json!({ "assistant_id": 1, "customer_identifier": "x".repeat(256), "message": "m" }),
            vec!["customer_identifier"],
        ),
        (
            json!({ "assistant_id": 1, "customer_identifier": "c", "message": "m".repeat(10_001) }),
            vec!["message"],
        ),
        (
            json!({ "assistant_id": 1, "customer_identifier": "c", "message": "m", "variables": "v" }),
            vec!["variables"],
        ),
        (json!([1, 2]), vec!["body"]),
    ];
    for (body, fields) in cases {
        let (status, answer, _) = app
            .post(&account.key, "/api/ai/generate-reply", &body)
            .await;
        assert_error(status, &answer, 422, "VALIDATION_ERROR");
        let reported: Vec<_> = answer["errors"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(reported, fields, "{body}");
    }
    assert_eq!(app.llm_requests().await.len(), 0);
}

#[tokio::test]
async fn malformed_json_unknown_paths_and_methods_get_the_envelope() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let response = app
        .http
        .post(format!("{}/api/ai/generate-reply", app.base))
        .bearer_auth(&account.key)
        .header("content-type", "application/json")
        .body("{\"assistant_id\": ")
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_error(status, &response.json().await.unwrap(), 400, "INVALID_JSON");

    let (status, body, _) = app.get(&account.key, "/api/nope").await;
    assert_error(status, &body, 404, "NOT_FOUND");
    let (status, body, _) = app.get(&account.key, "/api/ai/generate-reply").await;
    assert_error(status, &body, 405, "METHOD_NOT_ALLOWED");

    let huge = "x".repeat(600 * 1024);
    let response = app
        .http
        .post(format!("{}/api/ai/generate-reply", app.base))
        .bearer_auth(&account.key)
        .body(huge)
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_error(
        status,
        &response.json().await.unwrap(),
        413,
        "PAYLOAD_TOO_LARGE",
    );
}

#[tokio::test]
async fn an_unknown_or_foreign_assistant_is_not_found() {
    let app = TestApp::spawn().await;
    let owner = app.db_account("10").await;
    let other = app.db_account("10").await;
    let assistant = app.assistant(&owner, &json!({ "name": "Mine" })).await;
    for (key, id) in [(&owner.key, 999_999), (&other.key, assistant)] {
        let (status, body) = app.reply(key, id, "c", "hi").await;
        assert_error(status, &body, 404, "ASSISTANT_NOT_FOUND");
    }
    assert_eq!(app.llm_requests().await.len(), 0);
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_its_headers() {
    let app = TestApp::spawn_with(|s| s.rate_limit_per_minute = 2).await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let body = json!({ "assistant_id": assistant, "customer_identifier": "c", "message": "hi" });
    let (_, _, first) = app
        .post(&account.key, "/api/ai/generate-reply", &body)
        .await;
    assert_eq!(first["ratelimit-remaining"], "1");
    app.post(&account.key, "/api/ai/generate-reply", &body)
        .await;
    let (status, answer, headers) = app
        .post(&account.key, "/api/ai/generate-reply", &body)
        .await;
    assert_error(status, &answer, 429, "RATE_LIMITED");
    assert_eq!(headers["ratelimit-limit"], "2");
    assert_eq!(headers["ratelimit-remaining"], "0");
    let reset: u64 = headers["ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&reset));
    assert_eq!(headers["retry-after"], headers["ratelimit-reset"]);
    assert_eq!(app.llm_requests().await.len(), 2);

    // The limit is per key: another key of the same account still gets through.
    let mut conn = app.db.connect().await;
    let second_key = anyreply_server::models::api_key::create(&mut conn, account.id)
        .await
        .unwrap()
        .key;
    let (status, _, _) = app.post(&second_key, "/api/ai/generate-reply", &body).await;
    assert_eq!(status, 200);
}

/// Calls at once past the limit: each is counted at the end of its admission, whose CHECK
/// refuses the calls past the limit and rolls the whole admission back.
#[tokio::test]
async fn calls_at_once_past_the_rate_limit_are_refused_and_leave_nothing() {
    let app = TestApp::spawn_with(|s| s.rate_limit_per_minute = 5).await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    // A window that ends during the calls would let ten through; then try again, in the next.
    for _attempt in 0..3 {
        let key = {
            let mut conn = app.db.connect().await;
            anyreply_server::models::api_key::create(&mut conn, account.id)
                .await
                .unwrap()
                .key
        };
        let minute = || chrono::Utc::now().timestamp() / 60;
        let before = minute();
        let stored_before = app.count("messages").await;
        let answers = futures::future::join_all((0..16).map(|n| {
            let key = key.clone();
            let app = &app;
            async move {
                app.reply(&key, assistant, &format!("customer-{n}"), "hi")
                    .await
            }
        }))
        .await;
        if minute() != before {
            continue;
        }
        let ok = answers.iter().filter(|(status, _)| *status == 200).count();
        assert_eq!(ok, 5, "{answers:?}");
        for (status, body) in answers.iter().filter(|(status, _)| *status != 200) {
            assert_error(*status, body, 429, "RATE_LIMITED");
        }
        // Each call let through stored its message and its reply; a refused one nothing.
        assert_eq!(app.count("messages").await - stored_before, 10);
        return;
    }
    panic!("three windows ended during the calls");
}

/// The admission's last pipeline sends its COMMIT before it knows whether its statements
/// pass: each refusal there (the rate limit, the balance, a key revoked meanwhile) fails a
/// statement, which rolls the whole admission back, and the one pooled connection serves the
/// next call at once.
#[tokio::test]
async fn refusals_at_the_end_of_the_admission_leave_nothing_and_the_connection_serves_on() {
    use anyreply_server::models::api_key;
    let app = TestApp::spawn_with(|s| {
        s.rate_limit_per_minute = 1;
        s.database_pool_size = 1;
    })
    .await;
    let rich = app.db_account("10").await;
    let poor = app.db_account("0.005").await; // below the 0.01 reservation
    let assistant = app.assistant(&rich, &json!({ "name": "A" })).await;
    let poor_assistant = app.assistant(&poor, &json!({ "name": "P" })).await;
    let mut conn = app.db.connect().await;
    let revoked_key = api_key::create(&mut conn, rich.id).await.unwrap().key;
    let last_key = api_key::create(&mut conn, rich.id).await.unwrap().key;

    let (status, body) = app.reply(&rich.key, assistant, "c", "first").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.reply(&rich.key, assistant, "c", "past the limit").await;
    assert_error(status, &body, 429, "RATE_LIMITED");
    let (status, body) = app.reply(&poor.key, poor_assistant, "c", "hi").await;
    assert_error(status, &body, 402, "INSUFFICIENT_BALANCE");
    // Remembered by the server, then revoked behind its back.
    let (status, body) = app.reply(&revoked_key, assistant, "d", "hi").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        api_key::revoke(&mut conn, &revoked_key[..12])
            .await
            .unwrap()
    );
    let (status, body) = app.reply(&revoked_key, assistant, "d", "revoked").await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let (status, body) = app.reply(&last_key, assistant, "c", "last").await;
    assert_eq!(status, 200, "{body}");

    // Three answered calls: three messages and three replies, nothing queued or owed, and
    // the poor account untouched.
    assert_eq!(app.count("messages").await, 6);
    assert_eq!(app.count("pending_replies").await, 0);
    assert_eq!(app.count("settlements_due").await, 0);
    assert_eq!(app.count("events WHERE kind = 'message.received'").await, 3);
    assert_eq!(app.balance(&poor).await, crate::util::money("0.005"));
}
