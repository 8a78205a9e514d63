//! The audit log: each action logged with who did it (an API key, an operator, the owner's key
//! session, the command line), scoped to its account, paged newest first, shown to admins and
//! owners in the console, and purged after 180 days.

use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::run;
use crate::console::{Browser, location};
use crate::knowledge::upload;
use crate::operators::{PASSWORD, add, operator, sign_in};
use crate::util::{TestAccount, TestApp, assert_error};

/// The account's entries, newest first (one page of 100), as the API gives them.
async fn entries(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let (status, page, _) = app
        .get(key, &format!("/api/user/audit?per_page=100{query}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["data"].as_array().unwrap().clone()
}

/// The actions of `entries`, oldest first.
fn actions(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .rev()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

fn the(entries: &[Value], action: &str) -> Value {
    entries
        .iter()
        .find(|e| e["action"] == action)
        .unwrap_or_else(|| panic!("no {action} in {entries:?}"))
        .clone()
}

/// Inserts `n` entries of the account straight into the database, `days_ago` old.
async fn db_seed_entries(app: &TestApp, account: &TestAccount, n: i64, days_ago: i64) {
    let mut conn = app.db.connect().await;
    diesel::sql_query(format!(
        "INSERT INTO audit_log (account_id, at, actor_type, action, details)
         SELECT {}, now() - make_interval(days => {days_ago}), 'cli', 'api_key.created',
                jsonb_build_object('seed', i)
         FROM generate_series(1, {n}) AS i",
        account.id
    ))
    .execute(&mut conn)
    .await
    .unwrap();
}

#[tokio::test]
async fn what_an_api_key_changes_is_logged_as_the_key_and_only_for_its_account() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let other = app.db_account("1").await;
    let key = &account.key;

    let assistant = app
        .assistant(&account, &json!({ "name": "Front desk 🦀" }))
        .await;
    let path = format!("/api/user/assistant/{assistant}");
    let (status, body, _) = app
        .put(key, &path, &json!({ "llm_temperature": 0.2 }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A name with a NUL is refused: nothing changed, nothing logged.
    let (status, body, _) = app.put(key, &path, &json!({ "name": "N\u{0}L" })).await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");

    let tool = json!({ "name": "check_calendar", "description": "Free slots",
                       "endpoint": "https://crm.example.com/slots", "method": "GET" });
    let (status, body, _) = app.post(key, "/api/user/tools", &tool).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let tool_path = format!("/api/user/tools/{}", body["data"]["id"]);
    app.put(key, &tool_path, &json!({ "timeout": 8 })).await;
    app.request(&app.base, reqwest::Method::DELETE, key, &tool_path, None)
        .await;

    let (status, body, _) = app
        .post(key, "/api/user/knowledgebases", &json!({ "name": "FAQ" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let base = body["data"]["id"].as_i64().unwrap();
    let fields = [("name", "Hours"), ("type", "txt")];
    let (status, body) = upload(&app, key, base, &fields, Some(("h.txt", b"Open 9-18."))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let document = format!(
        "/api/user/knowledgebases/{base}/documents/{}",
        body["data"]["id"]
    );
    app.request(&app.base, reqwest::Method::DELETE, key, &document, None)
        .await;
    let base_path = format!("/api/user/knowledgebases/{base}");
    app.request(&app.base, reqwest::Method::DELETE, key, &base_path, None)
        .await;

    let (status, reply) = app.reply(key, assistant, "c1", "Hello").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let conversation = reply["conversation_id"].as_str().unwrap().to_owned();
    for switch in ["disable-ai", "disable-ai", "enable-ai"] {
        let path = format!("/api/automate/conversations/{conversation}/{switch}");
        let (status, body, _) = app.post(key, &path, &json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    let logged = entries(&app, key, "").await;
    assert_eq!(
        actions(&logged),
        [
            "assistant.created",
            "assistant.updated",
            "tool.created",
            "tool.updated",
            "tool.deleted",
            "knowledge_base.created",
            "document.added",
            "document.deleted",
            "knowledge_base.deleted",
            // Turning off what is off already takes nothing over.
            "conversation.taken_over",
            "conversation.handed_back",
        ]
    );
    for entry in &logged {
        assert_eq!(entry["actor"]["type"], "api_key", "{entry}");
        assert_eq!(entry["actor"]["api_key_prefix"], key[..12], "{entry}");
        assert!(entry["actor"]["api_key_id"].is_i64(), "{entry}");
        assert!(entry["actor"].get("name").is_none(), "{entry}");
    }
    let created = the(&logged, "assistant.created");
    assert_eq!(created["details"]["name"], "Front desk 🦀");
    assert_eq!(
        created["target"],
        json!({ "type": "assistant", "id": assistant.to_string() })
    );
    assert_eq!(
        the(&logged, "assistant.updated")["details"]["fields"],
        json!(["llm_temperature"])
    );
    let taken = the(&logged, "conversation.taken_over");
    assert_eq!(
        taken["target"],
        json!({ "type": "conversation", "id": conversation })
    );
    assert_eq!(
        the(&logged, "document.added")["details"]["knowledge_base_id"],
        base
    );

    assert_eq!(entries(&app, &other.key, "").await, Vec::<Value>::new());
    let only = entries(&app, key, "&action=tool.updated").await;
    assert_eq!(actions(&only), ["tool.updated"]);
}

#[tokio::test]
async fn operators_are_logged_by_name_with_their_sign_ins_and_role_changes() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let (owner_id, mut owner) = operator(&app, &account, "olga@acme.example", "owner").await;
    let (agent_id, _) = add(&app, &account, "ali@acme.example", "agent").await;

    // The owner renames herself to something with an emoji: entries keep the name of then.
    let path = format!("/api/user/operators/{owner_id}");
    app.put(&account.key, &path, &json!({ "name": "Olga 🦀" }))
        .await;
    owner.get("/console/operators").await;
    let page = owner
        .post(
            &format!("/console/operators/{agent_id}"),
            &[("role", "admin")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    let page = owner
        .post(&format!("/console/operators/{agent_id}/delete"), &[])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);

    let (_, status, _) = sign_in(&app, "olga@acme.example", "not the password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // An email of no operator names no account: nothing is logged anywhere.
    let (_, status, _) = sign_in(&app, "nobody@acme.example", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let logged = entries(&app, &account.key, "").await;
    assert_eq!(
        actions(&logged),
        [
            "operator.created",
            "operator.password_set",
            "console.signed_in",
            "operator.created",
            "operator.updated",
            "operator.updated",
            "operator.removed",
            "console.sign_in_failed",
        ]
    );
    // Newest first: the owner's role change and removal in the console, by her new name.
    for entry in &logged[1..3] {
        assert_eq!(entry["actor"]["type"], "operator", "{entry}");
        assert_eq!(entry["actor"]["operator_id"], owner_id);
        assert_eq!(entry["actor"]["name"], "Olga 🦀");
    }
    assert_eq!(logged[1]["details"]["email"], "ali@acme.example");
    assert_eq!(
        logged[2]["details"],
        json!({ "old_role": "agent", "new_role": "admin" })
    );
    assert_eq!(logged[3]["actor"]["type"], "api_key");
    assert_eq!(
        logged[3]["details"],
        json!({ "old_role": "owner", "new_role": "owner", "old_name": "olga", "new_name": "Olga 🦀" })
    );
    // Her sign-in and password, under the name she had then.
    for entry in &logged[5..7] {
        assert_eq!(entry["actor"]["type"], "operator", "{entry}");
        assert_eq!(entry["actor"]["name"], "olga");
    }
    assert_eq!(logged[5]["details"], json!({ "method": "password" }));
    let failed = &logged[0];
    assert_eq!(failed["actor"], json!({ "type": "anonymous" }));
    assert_eq!(failed["details"], json!({ "email": "olga@acme.example" }));
    assert_eq!(
        failed["target"],
        json!({ "type": "operator", "id": owner_id.to_string() })
    );
    assert_eq!(app.count("audit_log").await, 8);
}

#[tokio::test]
async fn the_owner_s_key_session_is_logged_as_such() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let assistant = app.assistant(&account, &json!({ "name": "Desk" })).await;
    let (_, reply) = app.reply(&account.key, assistant, "c1", "Hello").await;
    let conversation = reply["conversation_id"].as_str().unwrap().to_owned();

    let mut browser = Browser::new(&app);
    let page = browser.sign_in(&account.key).await;
    assert_eq!(location(&page), "/console");
    browser
        .get(&format!("/console/conversations/{conversation}"))
        .await;
    let page = browser
        .post(
            &format!("/console/conversations/{conversation}/take-over"),
            &[],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);

    let logged = entries(&app, &account.key, "").await;
    assert_eq!(
        actions(&logged),
        [
            "assistant.created",
            "console.signed_in",
            "conversation.taken_over"
        ]
    );
    for entry in &logged[..2] {
        assert_eq!(entry["actor"]["type"], "console_api_key", "{entry}");
        assert_eq!(entry["actor"]["api_key_prefix"], account.key[..12]);
    }
    assert_eq!(logged[1]["details"], json!({ "method": "api_key" }));
}

#[tokio::test]
async fn the_command_line_is_logged_as_such() {
    let app = TestApp::spawn().await;
    let (ok, created, err) = run(&app, &["account", "create", "--name", "Acme"]);
    assert!(ok, "{err}");
    let first = created["api_key"].as_str().unwrap().to_owned();
    let account = created["account_id"].as_i64().unwrap().to_string();
    let (ok, second, err) = run(&app, &["key", "create", "--account", &account]);
    assert!(ok, "{err}");
    let second = second["api_key"].as_str().unwrap().to_owned();
    let (ok, _, err) = run(&app, &["key", "revoke", &second[..12]]);
    assert!(ok, "{err}");
    let email = "cy@acme.example";
    let args = [
        "operator",
        "create",
        "--account",
        &account,
        "--email",
        email,
        "--role",
        "agent",
    ];
    let (ok, _, err) = run(&app, &args);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&app, &["operator", "link", "--email", email]);
    assert!(ok, "{err}");

    let logged = entries(&app, &first, "").await;
    assert_eq!(
        actions(&logged),
        [
            "api_key.created",
            "api_key.created",
            "api_key.revoked",
            "operator.created",
            "operator.password_link_created",
        ]
    );
    for entry in &logged {
        assert_eq!(entry["actor"], json!({ "type": "cli" }), "{entry}");
    }
    assert_eq!(logged[4]["details"]["prefix"], first[..12]);
    assert_eq!(logged[2]["details"]["prefix"], second[..12]);
    assert_eq!(logged[1]["details"]["role"], "agent");
}

#[tokio::test]
async fn pages_walk_every_entry_newest_first() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    db_seed_entries(&app, &account, 37, 0).await;
    let other = app.db_account("1").await;
    db_seed_entries(&app, &other, 5, 0).await;

    let (ids, sizes) = app
        .walk_pages(&account.key, "/api/user/audit", "per_page=10")
        .await;
    assert_eq!(sizes, [10, 10, 10, 7]);
    let mut expected = app.ids_of("audit_log", &account).await;
    expected.reverse();
    assert_eq!(ids, expected, "every entry once, newest first");
    let (_, page, _) = app.get(&account.key, "/api/user/audit").await;
    assert_eq!(page["per_page"], 15);
    assert_eq!(page["data"].as_array().unwrap().len(), 15);

    for query in [
        "per_page=0",
        "per_page=101",
        "cursor=nonsense",
        "action=tool.renamed",
    ] {
        let (status, body, _) = app
            .get(&account.key, &format!("/api/user/audit?{query}"))
            .await;
        assert_error(status, &body, 422, "VALIDATION_ERROR");
    }
}

#[tokio::test]
async fn the_console_page_is_for_admins_and_owners_and_escapes_what_it_shows() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    app.assistant(&account, &json!({ "name": "<script>alert(1)</script>" }))
        .await;
    let (_, mut agent) = operator(&app, &account, "ag@acme.example", "agent").await;
    let (_, mut admin) = operator(&app, &account, "ad@acme.example", "admin").await;

    let page = agent.get("/console/audit").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.html);
    assert!(!page.html.contains("Audit log</a>"), "{}", page.html);

    let page = admin.get("/console/audit").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(page.html.contains("<caption>"), "{}", page.html);
    assert!(
        page.html.contains("<th scope=\"col\">Who</th>"),
        "{}",
        page.html
    );
    assert!(
        page.html
            .contains("href=\"/console/audit\" aria-current=\"page\"")
    );
    assert!(page.html.contains("assistant.created"));
    assert!(page.html.contains("API key ark_"), "{}", page.html);
    assert!(!page.html.contains("<script>alert"), "{}", page.html);
    assert!(page.html.contains("&#60;script&#62;"), "{}", page.html);

    // Paged: 50 a page, the older ones behind a link that keeps the filter.
    db_seed_entries(&app, &account, 60, 0).await;
    let page = admin.get("/console/audit?action=api_key.created").await;
    assert_eq!(page.html.matches("<tr>").count(), 51, "the header and 50");
    let older = page.html.split("href=\"/console/audit?").nth(1).unwrap();
    let older = older.split('"').next().unwrap().replace("&#38;", "&");
    assert!(
        older.starts_with("action=api_key.created&cursor="),
        "{older}"
    );
    let page = admin.get(&format!("/console/audit?{older}")).await;
    assert_eq!(page.html.matches("<tr>").count(), 11);
    assert!(!page.html.contains(">Older<"));
}

#[tokio::test]
async fn the_purge_deletes_only_entries_older_than_180_days() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    // More than a batch of old entries, and some just inside the 180 days.
    db_seed_entries(&app, &account, 2_500, 181).await;
    db_seed_entries(&app, &account, 3, 179).await;
    db_seed_entries(&app, &account, 2, 0).await;
    let mut conn = app.db.connect().await;
    let purged = anyreply_server::models::audit_log::purge_older_than(&mut conn, 180)
        .await
        .unwrap();
    assert_eq!(purged, 2_500);
    assert_eq!(app.count("audit_log").await, 5);
}
