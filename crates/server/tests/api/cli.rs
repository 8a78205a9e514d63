//! The `anyreply-server` binary's account and key commands, against a test database.

use std::process::Command;

use serde_json::Value;

use crate::util::{TestApp, assert_error};

fn run(app: &TestApp, args: &[&str]) -> (bool, Value, String) {
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
