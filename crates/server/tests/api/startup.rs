//! What the binary says when it cannot start, or starts: one sentence per problem, naming
//! the setting and an example; never a panic.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::TestApp;

fn server(envs: &[(&str, &str)], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_anyreply-server"));
    // The test runner's own settings must not leak in.
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("ANYREPLY_")) {
        command.env_remove(name);
    }
    command.args(args).envs(envs.iter().copied());
    command
}

fn fails(output: &Output) -> Vec<String> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "it started: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
    stderr
        .lines()
        .filter(|line| line.starts_with("error: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_bad_setting_is_named_at_once_with_an_example() {
    let output = server(
        &[
            ("ANYREPLY_LISTEN", "8080"),
            ("ANYREPLY_RATE_LIMIT_PER_MINUTE", "lots"),
            ("ANYREPLY_MODEL_PRICES", "gpt-4o=2.50"),
        ],
        &["migrate"],
    )
    .output()
    .unwrap();
    let errors = fails(&output);
    assert_eq!(errors.len(), 3, "{errors:?}");
    for (setting, example) in [
        ("ANYREPLY_LISTEN=\"8080\"", "ANYREPLY_LISTEN=127.0.0.1:8080"),
        (
            "ANYREPLY_RATE_LIMIT_PER_MINUTE=\"lots\"",
            "ANYREPLY_RATE_LIMIT_PER_MINUTE=60",
        ),
        (
            "ANYREPLY_MODEL_PRICES=\"gpt-4o=2.50\"",
            "ANYREPLY_MODEL_PRICES=gpt-4o=2.50/10.00",
        ),
    ] {
        assert!(
            errors
                .iter()
                .any(|e| e.contains(setting) && e.contains(example)),
            "{setting} in {errors:?}"
        );
    }
}

#[test]
fn an_unreachable_database_is_named_with_its_cause_and_no_password() {
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://bob:hunter2@127.0.0.1:{free_port}/shop");
    let output = server(&[("ANYREPLY_DATABASE_URL", &url)], &["migrate"])
        .output()
        .unwrap();
    let errors = fails(&output);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let error = &errors[0];
    assert!(error.contains(&format!("127.0.0.1:{free_port}")), "{error}");
    assert!(error.contains("refused"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}

#[tokio::test]
async fn a_port_in_use_is_named_with_its_setting() {
    let app = TestApp::spawn().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = server(
        &[
            ("ANYREPLY_DATABASE_URL", app.db.url()),
            ("ANYREPLY_LISTEN", &address),
        ],
        &["serve"],
    )
    .output()
    .unwrap();
    let errors = fails(&output);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(&address) && errors[0].contains("ANYREPLY_LISTEN"),
        "{errors:?}"
    );
}

/// The start-up log says which database and provider, warns about a missing provider key,
/// unknown `ANYREPLY_*` variables and bad log settings.
#[tokio::test]
async fn the_start_up_log_says_what_it_runs_on_and_what_it_ignores() {
    let app = TestApp::spawn().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = server(
        &[
            ("ANYREPLY_DATABASE_URL", app.db.url()),
            ("ANYREPLY_LISTEN", &format!("127.0.0.1:{port}")),
            ("ANYREPLY_LISTN", "127.0.0.1:1"),
            ("ANYREPLY_LOG_FORMAT", "xml"),
        ],
        &["serve"],
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    let started = Instant::now();
    while !log.contains("serving") && started.elapsed() < Duration::from_secs(30) {
        match stderr.next() {
            Some(Ok(line)) => log.push_str(&(line + "\n")),
            _ => break,
        }
    }
    // The warning about the key comes right after.
    if let Some(Ok(line)) = stderr.next() {
        log.push_str(&line);
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(log.contains("ANYREPLY_LISTN is not a setting"), "{log}");
    assert!(log.contains("ANYREPLY_LOG_FORMAT=\"xml\""), "{log}");
    // At a host and port, or on the tests' private cluster's socket.
    assert!(
        log.contains("database=PostgreSQL at")
            || log.contains("database=PostgreSQL on the Unix socket"),
        "{log}"
    );
    assert!(
        log.contains("llm_base_url=https://api.openai.com/v1"),
        "{log}"
    );
    assert!(log.contains("llm_api_key_set=false"), "{log}");
    assert!(log.contains("ANYREPLY_LLM_API_KEY is not set"), "{log}");
}
