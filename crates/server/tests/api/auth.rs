use serde_json::json;

use crate::util::{TestApp, assert_error};

#[tokio::test]
async fn missing_malformed_wrong_and_revoked_keys_get_401() {
    let app = TestApp::spawn().await;
    let account = app.account("10").await;
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
    let account = app.account("100.67447094").await;
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
