use serde_json::json;

use crate::util::{TestApp, assert_error};

#[tokio::test]
async fn missing_malformed_wrong_and_revoked_keys_get_401() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let (status, me, _) = app.get(&account.key, "/api/user/me").await;
    assert_eq!(status, 200, "{me}");

    let response = app
        .http
        .get(format!("{}/api/user/me", app.base))
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_error(status, &response.json().await.unwrap(), 401, "UNAUTHORIZED");

    let wrong_secret = format!(
        "{}{}",
        &account.key[..12],
        "0".repeat(account.key.len() - 12)
    );
    for key in ["nonsense", "ark_short", wrong_secret.as_str()] {
        let (status, body, _) = app.get(key, "/api/user/me").await;
        assert_error(status, &body, 401, "UNAUTHORIZED");
    }

    let mut conn = app.db.connect().await;
    assert!(
        anyreply_server::models::api_key::revoke(&mut conn, &account.key[..12])
            .await
            .unwrap()
    );
    let (status, body, _) = app.get(&account.key, "/api/user/me").await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let body = json!({ "assistant_id": 1, "customer_identifier": "c", "message": "m" });
    let (status, answer, _) = app
        .post(&account.key, "/api/ai/generate-reply", &body)
        .await;
    assert_error(status, &answer, 401, "UNAUTHORIZED");
}

#[tokio::test]
async fn me_reports_name_email_and_exact_balance() {
    let app = TestApp::spawn().await;
    let account = app.db_account("100.67447094").await;
    let (status, me, _) = app.get(&account.key, "/api/user/me").await;
    assert_eq!(status, 200);
    assert_eq!(
        me,
        json!({ "name": "Acme", "email": "ops@acme.test", "total_balance": 100.67447094 })
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let (status, body, _) = app.get("", "/health").await;
    assert_eq!((status.as_u16(), body), (200, json!({ "status": "ok" })));
    let (status, body, _) = app.get("", "/ready").await;
    assert_eq!((status.as_u16(), body), (200, json!({ "status": "ready" })));

    // A server whose database is gone is alive but not ready.
    let mut settings = app.settings.clone();
    settings.database_url = Some("postgres://postgres@127.0.0.1:1/nowhere".into());
    let mut app = app;
    let broken = app.start_server(settings).await;
    let (status, body, _) = app
        .request(&broken, reqwest::Method::GET, "", "/ready", None)
        .await;
    assert_error(status, &body, 503, "SERVICE_UNAVAILABLE");
    let (status, _, _) = app
        .request(&broken, reqwest::Method::GET, "", "/health", None)
        .await;
    assert_eq!(status, 200);
}

/// generate-reply remembers the keys it has seen, yet a key revoked elsewhere (by another
/// process, or the CLI) is refused at its next call, with nothing stored: a fresh message, a
/// replay of an answered one, and a message under human takeover alike.
#[tokio::test]
async fn a_key_revoked_elsewhere_is_refused_at_once_by_generate_reply() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let path = "/api/ai/generate-reply";
    let body = |customer: &str| json!({ "assistant_id": assistant, "customer_identifier": customer, "message": "hi" });
    let (status, answered, _) = app.post_keyed(&account.key, "k-1", path, &body("c")).await;
    assert_eq!(status, 200, "{answered}");
    let (status, taken_over) = app.reply(&account.key, assistant, "human", "first").await;
    assert_eq!(status, 200, "{taken_over}");
    let id = taken_over["conversation_id"].as_str().unwrap().to_owned();
    let disable = format!("/api/automate/conversations/{id}/disable-ai");
    let (status, _, _) = app.post(&account.key, &disable, &json!({})).await;
    assert_eq!(status, 200);
    let messages = app.count("messages").await;
    let balance = app.balance(&account).await;
    // A remembered prefix with another secret is no key.
    let wrong_secret = format!(
        "{}{}",
        &account.key[..12],
        "0".repeat(account.key.len() - 12)
    );
    let (status, refused, _) = app.post(&wrong_secret, path, &body("c")).await;
    assert_error(status, &refused, 401, "UNAUTHORIZED");

    let mut conn = app.db.connect().await;
    assert!(
        anyreply_server::models::api_key::revoke(&mut conn, &account.key[..12])
            .await
            .unwrap()
    );
    let (status, refused, _) = app.post(&account.key, path, &body("new")).await;
    assert_error(status, &refused, 401, "UNAUTHORIZED");
    let (status, refused, _) = app.post_keyed(&account.key, "k-1", path, &body("c")).await;
    assert_error(status, &refused, 401, "UNAUTHORIZED");
    let (status, refused, _) = app.post(&account.key, path, &body("human")).await;
    assert_error(status, &refused, 401, "UNAUTHORIZED");
    assert_eq!(app.count("messages").await, messages);
    assert_eq!(app.count("conversations").await, 2);
    assert_eq!(app.balance(&account).await, balance);
}
