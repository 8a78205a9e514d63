//! The `anyreply-server` binary's account and key commands, against a test database.

use std::process::Command;

use serde_json::Value;

use crate::util::{TestApp, assert_error};

pub(crate) fn run(app: &TestApp, args: &[&str]) -> (bool, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_anyreply-server"))
        .args(args)
        .env("ANYREPLY_DATABASE_URL", app.db.url())
        .env("ANYREPLY_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (output.status.success(), json, stderr)
}

#[tokio::test]
async fn accounts_and_keys_from_the_command_line() {
    let app = TestApp::spawn().await;
    let (ok, created, err) = run(
        &app,
        &[
            "account",
            "create",
            "--name",
            "Acme",
            "--email",
            "a@acme.test",
            "--balance",
            "10.50",
        ],
    );
    assert!(ok, "{err}");
    let key = created["api_key"].as_str().unwrap().to_owned();
    let account_id = created["account_id"].as_i64().unwrap();
    assert!(key.starts_with("ark_") && key.len() == 44, "{key}");

    let (_, me, _) = app.get(&key, "/api/user/me").await;
    assert_eq!(me["total_balance"], 10.5);
    assert_eq!(me["email"], "a@acme.test");

    let (ok, topped, err) = run(
        &app,
        &[
            "account",
            "top-up",
            "--account",
            &account_id.to_string(),
            "--amount",
            "0.25",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(topped["total_balance"], 10.75);

    let (ok, second, err) = run(
        &app,
        &["key", "create", "--account", &account_id.to_string()],
    );
    assert!(ok, "{err}");
    let second_key = second["api_key"].as_str().unwrap();
    assert_ne!(second_key, key);

    let (ok, _, err) = run(&app, &["key", "revoke", &key[..12]]);
    assert!(ok, "{err}");
    let (status, body, _) = app.get(&key, "/api/user/me").await;
    assert_error(status, &body, 401, "UNAUTHORIZED");
    let (status, _, _) = app.get(second_key, "/api/user/me").await;
    assert_eq!(status, 200);

    // Bad input fails with a message and changes nothing.
    let (ok, _, err) = run(
        &app,
        &[
            "account",
            "top-up",
            "--account",
            &account_id.to_string(),
            "--amount",
            "1.5.0",
        ],
    );
    assert!(!ok && err.contains("amount"), "{err}");
    let (ok, _, err) = run(
        &app,
        &["account", "top-up", "--account", "999999", "--amount", "1"],
    );
    assert!(!ok && err.contains("no such account"), "{err}");
    let (ok, _, _) = run(&app, &["key", "revoke", &key[..12]]);
    assert!(!ok);
}

#[tokio::test]
async fn migrate_creates_the_database_and_serve_is_the_default() {
    use diesel_async::RunQueryDsl;

    let app = TestApp::spawn().await; // for its PostgreSQL server
    let name = format!("anyreply_cli_{}", uuid::Uuid::new_v4().simple());
    let mut url = url::Url::parse(app.db.url()).unwrap();
    url.set_path(&format!("/{name}"));
    let migrate = Command::new(env!("CARGO_BIN_EXE_anyreply-server"))
        .arg("migrate")
        .env("ANYREPLY_DATABASE_URL", url.as_str())
        .env("ANYREPLY_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    // No subcommand: migrate (nothing left to do), then serve.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_anyreply-server"))
        .env("ANYREPLY_DATABASE_URL", url.as_str())
        .env("ANYREPLY_LISTEN", format!("127.0.0.1:{port}"))
        .env("ANYREPLY_LOG", "warn")
        .spawn()
        .unwrap();
    let mut ready = None;
    for _ in 0..100 {
        if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/ready")).await {
            ready = Some(response.status().as_u16());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(ready, Some(200), "the server did not come up");

    let mut admin = app.db.connect().await;
    diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn operators_from_the_command_line_get_a_password_link() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let account_id = account.id.to_string();
    let (ok, added, err) = run(
        &app,
        &[
            "operator",
            "create",
            "--account",
            &account_id,
            "--email",
            "Mo@Acme.Example",
            "--role",
            "admin",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(added["email"], "mo@acme.example");
    assert_eq!(added["role"], "admin");
    let link = added["password_link"].as_str().unwrap();
    // ANYREPLY_PUBLIC_URL unset: the listen address.
    assert!(
        link.starts_with("http://127.0.0.1:8080/console/set-password?token="),
        "{link}"
    );
    assert!(added["expires_at"].is_string());
    let (_, list, _) = app.get(&account.key, "/api/user/operators").await;
    assert_eq!(list["data"][0]["name"], "Mo");
    assert_eq!(list["data"][0]["password_set"], false);

    // The link works on the server (whose address the test server has instead).
    let path = link.strip_prefix("http://127.0.0.1:8080").unwrap();
    let page = app
        .http
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);

    let (ok, _, err) = run(
        &app,
        &[
            "operator",
            "create",
            "--account",
            &account_id,
            "--email",
            "mo@acme.example",
            "--role",
            "agent",
        ],
    );
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
    let (ok, _, err) = run(
        &app,
        &[
            "operator",
            "create",
            "--account",
            &account_id,
            "--email",
            "x@y.z",
            "--role",
            "boss",
        ],
    );
    assert!(!ok);
    assert!(err.contains("owner, admin or agent"), "{err}");

    let (ok, relinked, err) = run(&app, &["operator", "link", "--email", "MO@acme.example"]);
    assert!(ok, "{err}");
    assert_ne!(relinked["password_link"], added["password_link"]);
    let old = app
        .http
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        old.status(),
        reqwest::StatusCode::NOT_FOUND,
        "the old link stops working"
    );
}
