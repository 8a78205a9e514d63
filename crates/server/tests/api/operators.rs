//! Operators: the API that manages them, their password links, their sign-in, and the role
//! every console page and action checks.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::console::{Browser, location};
use crate::util::{TestAccount, TestApp, assert_error};

pub(crate) const PASSWORD: &str = "plum-anchor-7-orbit";

/// Adds an operator through the API; returns their id and password link's path.
pub(crate) async fn add(
    app: &TestApp,
    account: &TestAccount,
    email: &str,
    role: &str,
) -> (i64, String) {
    let (status, body, _) = app
        .post(
            &account.key,
            "/api/user/operators",
            &json!({ "email": email, "name": email.split('@').next().unwrap(), "role": role }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let link = body["password_link"].as_str().unwrap();
    (body["data"]["id"].as_i64().unwrap(), path_of(link))
}

/// A link's path: the test server does not listen where the links say (`ANYREPLY_PUBLIC_URL`
/// is unset, so they name `ANYREPLY_LISTEN`'s default).
fn path_of(link: &str) -> String {
    link[link.find("/console/").unwrap()..].to_owned()
}

/// A browser signed in as a new operator of `role`, who set their password through the link.
pub(crate) async fn operator(
    app: &TestApp,
    account: &TestAccount,
    email: &str,
    role: &str,
) -> (i64, Browser) {
    let (id, link) = add(app, account, email, role).await;
    let mut browser = Browser::new(app);
    let page = browser.get(&link).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let page = browser
        .post(
            "/console/set-password",
            &[
                ("token", &token),
                ("password", PASSWORD),
                ("confirmation", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    (id, browser)
}

pub(crate) async fn sign_in(
    app: &TestApp,
    email: &str,
    password: &str,
) -> (Browser, StatusCode, String) {
    let mut browser = Browser::new(app);
    browser.get("/console/sign-in").await;
    let page = browser
        .post(
            "/console/sign-in",
            &[("email", email), ("password", password)],
        )
        .await;
    (browser, page.status, page.html)
}

#[tokio::test]
async fn operators_are_added_listed_changed_and_removed_through_the_api() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let other = app.db_account("1").await;

    let (status, body, _) = app
        .post(
            &account.key,
            "/api/user/operators",
            &json!({ "email": " Anna@Acme.Example ", "name": "Anna 🦀", "role": "agent" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["data"]["id"].as_i64().unwrap();
    assert_eq!(body["data"]["email"], "anna@acme.example");
    assert_eq!(body["data"]["name"], "Anna 🦀");
    assert_eq!(body["data"]["role"], "agent");
    assert_eq!(body["data"]["password_set"], false);
    let link = body["password_link"].as_str().unwrap();
    assert!(
        link.starts_with("http://127.0.0.1:8080/console/set-password?token="),
        "{link}"
    );
    assert!(body["password_link_expires_at"].is_string());

    // One operator per address, across accounts.
    let (status, body, _) = app
        .post(
            &other.key,
            "/api/user/operators",
            &json!({ "email": "ANNA@acme.example", "name": "Anna", "role": "owner" }),
        )
        .await;
    assert_error(status, &body, 409, "OPERATOR_EMAIL_TAKEN");

    let (status, body, _) = app
        .post(
            &account.key,
            "/api/user/operators",
            &json!({ "email": "no-at-sign", "name": "", "role": "root" }),
        )
        .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    let fields: Vec<&str> = body["errors"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, ["email", "name", "role"]);
    let (status, body, _) = app
        .post(
            &account.key,
            "/api/user/operators",
            &json!({ "email": "nul@acme.example", "name": "N\u{0}L", "role": "agent" }),
        )
        .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    assert!(body["errors"]["name"].is_array(), "{body}");

    let (_, list, _) = app.get(&account.key, "/api/user/operators").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let (_, list, _) = app.get(&other.key, "/api/user/operators").await;
    assert_eq!(list["data"], json!([]), "another account sees none");

    let path = format!("/api/user/operators/{id}");
    let (status, body, _) = app
        .put(&account.key, &path, &json!({ "role": "admin" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["role"], "admin");
    assert_eq!(body["data"]["name"], "Anna 🦀");
    assert!(body.get("password_link").is_none());
    let (status, body, _) = app
        .put(&other.key, &path, &json!({ "role": "owner" }))
        .await;
    assert_error(status, &body, 404, "OPERATOR_NOT_FOUND");

    let delete = |key: String, path: String| {
        let app = &app;
        async move {
            app.request(&app.base, reqwest::Method::DELETE, &key, &path, None)
                .await
        }
    };
    let (status, body, _) = delete(other.key.clone(), path.clone()).await;
    assert_error(status, &body, 404, "OPERATOR_NOT_FOUND");
    let (status, body, _) = delete(account.key.clone(), path.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, _) = delete(account.key.clone(), path).await;
    assert_error(status, &body, 404, "OPERATOR_NOT_FOUND");
    let (status, body, _) = delete(account.key.clone(), "/api/user/operators/x".into()).await;
    assert_error(status, &body, 404, "OPERATOR_NOT_FOUND");
}

#[tokio::test]
async fn a_replayed_create_does_not_show_the_password_link_again() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let body = json!({ "email": "bo@acme.example", "name": "Bo", "role": "agent" });
    let send = || {
        app.http
            .post(format!("{}/api/user/operators", app.base))
            .bearer_auth(&account.key)
            .header("idempotency-key", "add-bo")
            .json(&body)
            .send()
    };
    let first: Value = send().await.unwrap().json().await.unwrap();
    assert!(first["password_link"].is_string(), "{first}");
    let replay = send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::CREATED);
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["data"], first["data"]);
    assert!(replay.get("password_link").is_none(), "{replay}");
    assert_eq!(app.count("operators").await, 1);
}

#[tokio::test]
async fn a_password_link_sets_a_password_that_passes_the_rules_once() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let (_, link) = add(&app, &account, "cy@acme.example", "agent").await;
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let mut browser = Browser::new(&app);
    let page = browser.get(&link).await;
    assert!(page.html.contains("cy@acme.example"), "{}", page.html);

    for (password, confirmation, says) in [
        ("short pass", "short pass", "at least 12 characters"),
        ("Password1234", "Password1234", "most common"),
        ("cy@acme.example", "cy@acme.example", "email address"),
        (PASSWORD, "something else entirely", "not the same"),
    ] {
        let page = browser
            .post(
                "/console/set-password",
                &[
                    ("token", &token),
                    ("password", password),
                    ("confirmation", confirmation),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{password}");
        assert!(page.html.contains(says), "{password}: {}", page.html);
    }
    // Still no password: signing in fails.
    let (_, status, _) = sign_in(&app, "cy@acme.example", "Password1234").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let page = browser
        .post(
            "/console/set-password",
            &[
                ("token", &token),
                ("password", PASSWORD),
                ("confirmation", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    assert_eq!(location(&page), "/console");
    let page = browser.get("/console/conversations").await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "signed in by setting the password"
    );

    // The link is used up.
    let page = Browser::new(&app).get(&link).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.html.contains("not valid"), "{}", page.html);

    let mut conn = app.db.connect().await;
    let stored: Vec<String> = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        anyreply_server::schema::operators::table
            .select(anyreply_server::schema::operators::password_hash.assume_not_null())
            .load(&mut conn)
            .await
            .unwrap()
    };
    assert!(
        stored[0].starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        stored[0]
    );
}

#[tokio::test]
async fn an_expired_password_link_is_refused() {
    use diesel_async::RunQueryDsl;
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let (_, link) = add(&app, &account, "di@acme.example", "agent").await;
    let mut conn = app.db.connect().await;
    diesel::sql_query(
        "UPDATE operator_password_links SET expires_at = now() - interval '1 second'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let mut browser = Browser::new(&app);
    let page = browser.get(&link).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.html.contains("older than 24 hours"), "{}", page.html);
    // A form sent all the same (its token from the sign-in page) changes nothing.
    browser.get("/console/sign-in").await;
    let token = link.split("token=").nth(1).unwrap().to_owned();
    let page = browser
        .post(
            "/console/set-password",
            &[
                ("token", &token),
                ("password", PASSWORD),
                ("confirmation", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn operators_sign_in_by_email_and_password() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    operator(&app, &account, "ed@acme.example", "agent").await;

    let (_, status, html) = sign_in(&app, "ed@acme.example", "plum-anchor-7-orbiT").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("do not match"), "{html}");
    assert!(
        html.contains("value=\"ed@acme.example\""),
        "the email is kept"
    );
    let (_, status, _) = sign_in(&app, "nobody@acme.example", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (mut browser, status, _) = sign_in(&app, " ED@acme.example ", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let page = browser.get("/console/conversations").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.html
            .contains("ed <span class=\"muted\">(agent)</span>"),
        "{}",
        page.html
    );
}

#[tokio::test]
async fn failed_password_sign_ins_count_toward_the_limit() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    operator(&app, &account, "fay@acme.example", "agent").await;
    for _ in 0..10 {
        let (_, status, _) = sign_in(&app, "fay@acme.example", "wrong password!").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (_, status, html) = sign_in(&app, "fay@acme.example", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{html}");
}

/// Every page and action of the console, with the least role it needs.
const PAGES: &[(&str, &str, &str)] = &[
    ("GET", "/console/conversations", "agent"),
    ("GET", "/console/assistants", "admin"),
    ("GET", "/console/assistants/new", "admin"),
    ("POST", "/console/assistants", "admin"),
    ("GET", "/console/tools", "admin"),
    ("GET", "/console/tools/new", "admin"),
    ("POST", "/console/tools", "admin"),
    ("POST", "/console/assistants/999999", "admin"),
    ("POST", "/console/tools/999999", "admin"),
    ("GET", "/console/knowledge", "admin"),
    ("POST", "/console/knowledge", "admin"),
    ("GET", "/console/knowledge/999999", "admin"),
    ("POST", "/console/knowledge/999999/delete", "admin"),
    ("POST", "/console/knowledge/999999/websites", "admin"),
    ("GET", "/console/operators", "owner"),
    ("POST", "/console/operators", "owner"),
    ("POST", "/console/operators/999999", "owner"),
    ("POST", "/console/operators/999999/link", "owner"),
    ("POST", "/console/operators/999999/delete", "owner"),
    ("GET", "/console/audit", "admin"),
    ("GET", "/console/keys", "owner"),
    ("POST", "/console/keys/999999/revoke", "owner"),
];

#[tokio::test]
async fn every_page_and_action_checks_the_role_and_says_why_it_refuses() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let (_, mut agent) = operator(&app, &account, "gus@acme.example", "agent").await;
    let (_, mut admin) = operator(&app, &account, "hal@acme.example", "admin").await;
    let (_, mut owner) = operator(&app, &account, "ivy@acme.example", "owner").await;

    for (method, path, needs) in PAGES {
        for (role, browser) in [
            ("agent", &mut agent),
            ("admin", &mut admin),
            ("owner", &mut owner),
        ] {
            browser.get("/console/conversations").await;
            let page = match *method {
                "GET" => browser.get(path).await,
                _ => browser.post(path, &[]).await,
            };
            let rank = |role: &str| ["agent", "admin", "owner"].iter().position(|r| *r == role);
            if rank(role) < rank(needs) {
                assert_eq!(page.status, StatusCode::FORBIDDEN, "{role} {method} {path}");
                assert!(
                    page.html.contains(&format!("This needs the role {needs}"))
                        && page.html.contains(&format!("signed in as an {role}")),
                    "{role} {method} {path}: {}",
                    page.html
                );
            } else {
                assert!(
                    page.status != StatusCode::FORBIDDEN && page.status != StatusCode::SEE_OTHER,
                    "{role} {method} {path}: {}",
                    page.status
                );
            }
        }
    }
    // Nothing was created by the refused posts.
    assert_eq!(app.count("assistants").await, 0);
    assert_eq!(app.count("operators").await, 3);

    // An agent's home is the inbox; the navigation shows only what they may open.
    let page = agent.get("/console").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&page), "/console/conversations");
    let page = agent.get("/console/conversations").await;
    assert!(!page.html.contains("href=\"/console/assistants\""));
    assert!(!page.html.contains("href=\"/console/operators\""));
    let page = admin.get("/console").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("href=\"/console/assistants\""));
    assert!(!page.html.contains("href=\"/console/operators\""));
    let page = owner.get("/console").await;
    assert!(page.html.contains("href=\"/console/operators\""));
}

#[tokio::test]
async fn the_owners_api_key_session_may_do_everything() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let mut browser = Browser::new(&app);
    assert_eq!(
        browser.sign_in(&account.key).await.status,
        StatusCode::SEE_OTHER
    );
    for (method, path, _) in PAGES
        .iter()
        .filter(|(method, path, _)| *method == "GET" && !path.contains("999999"))
    {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{method} {path}");
    }
}

#[tokio::test]
async fn removing_an_operator_or_changing_the_role_applies_on_their_next_request() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let (id, mut browser) = operator(&app, &account, "jo@acme.example", "agent").await;
    assert_eq!(
        browser.get("/console/assistants").await.status,
        StatusCode::FORBIDDEN
    );

    let path = format!("/api/user/operators/{id}");
    app.put(&account.key, &path, &json!({ "role": "admin" }))
        .await;
    assert_eq!(
        browser.get("/console/assistants").await.status,
        StatusCode::OK
    );
    app.put(&account.key, &path, &json!({ "role": "agent" }))
        .await;
    assert_eq!(
        browser.get("/console/assistants").await.status,
        StatusCode::FORBIDDEN
    );

    let (status, _, _) = app
        .request(
            &app.base,
            reqwest::Method::DELETE,
            &account.key,
            &path,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let page = browser.get("/console/conversations").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&page), "/console/sign-in");
    let (_, status, _) = sign_in(&app, "jo@acme.example", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.count("console_sessions").await, 0);
}

#[tokio::test]
async fn an_owner_adds_an_operator_in_the_console_and_sees_the_link_once() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let (_, mut owner) = operator(&app, &account, "kim@acme.example", "owner").await;
    owner.get("/console/operators").await;
    let page = owner
        .post(
            "/console/operators",
            &[
                ("email", "lu@acme.example"),
                ("name", "Lu"),
                ("role", "agent"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(
        page.html.contains("/console/set-password?token="),
        "{}",
        page.html
    );
    let page = owner.get("/console/operators").await;
    assert!(!page.html.contains("/console/set-password?token="));
    assert!(page.html.contains("lu@acme.example"));

    let page = owner
        .post(
            "/console/operators",
            &[
                ("email", "lu@acme.example"),
                ("name", "Lu"),
                ("role", "agent"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.html.contains("already exists"), "{}", page.html);
}

#[tokio::test]
async fn an_owner_makes_and_revokes_api_keys_in_the_console_but_not_a_widgets() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let other = app.db_account("1").await;
    let (_, mut owner) = operator(&app, &account, "nia@acme.example", "owner").await;
    owner.get("/console/keys").await;
    let made = owner.post("/console/keys", &[]).await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.html);
    let key = made
        .html
        .split("value=\"ark_")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(|rest| format!("ark_{rest}"))
        .expect("the new key shown");
    let (status, _, _) = app.get(&key, "/api/user/me").await;
    assert_eq!(status, StatusCode::OK, "the new key works");
    let listed = owner.get("/console/keys").await;
    assert!(!listed.html.contains(&key), "shown once only");
    assert!(listed.html.contains(&format!("{}…", &key[..12])));

    // A widget's key is listed with its widget and cannot be revoked here.
    let assistant = app.assistant(&account, &json!({ "name": "Desk" })).await;
    let (status, widget, _) = app
        .post(
            &account.key,
            "/api/user/widgets",
            &json!({ "assistant_id": assistant, "allowed_origins": ["https://shop.example"] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{widget}");
    let ids = app.ids_of("api_keys", &account).await;
    let (widget_key, new_key) = (ids[2], ids[1]);
    let listed = owner.get("/console/keys").await;
    assert!(listed.html.contains("(chat widget"), "{}", listed.html);
    let refused = owner
        .post(&format!("/console/keys/{widget_key}/revoke"), &[])
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    let other_key = app.ids_of("api_keys", &other).await[0];
    owner.get("/console/keys").await;
    let refused = owner
        .post(&format!("/console/keys/{other_key}/revoke"), &[])
        .await;
    assert_eq!(
        refused.status,
        StatusCode::NOT_FOUND,
        "another account's key"
    );
    let (status, _, _) = app.get(&other.key, "/api/user/me").await;
    assert_eq!(status, StatusCode::OK);

    owner.get("/console/keys").await;
    let revoked = owner
        .post(&format!("/console/keys/{new_key}/revoke"), &[])
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    let (status, _, _) = app.get(&key, "/api/user/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked at once");

    let (_, log, _) = app.get(&account.key, "/api/user/audit").await;
    let actions: Vec<(&str, &str)> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"].as_str().unwrap().starts_with("api_key."))
        .map(|entry| {
            (
                entry["action"].as_str().unwrap(),
                entry["actor"]["name"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [("api_key.revoked", "nia"), ("api_key.created", "nia")],
        "{log}"
    );
}
