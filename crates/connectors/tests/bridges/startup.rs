//! The bridge binaries' start: every missing setting named at once, one line each, no panic;
//! and the one start-up path every channel shares (`service::start`), run in the test.

use std::process::Command;
use std::time::Duration;

use anyreply_connectors::service::{self, Channel};
use anyreply_connectors::{email, messenger, twilio, whatsapp};
use anyreply_core::env::Env;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::state_dir;

fn start(binary: &str, envs: &[(&str, &str)]) -> Vec<String> {
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("ANYREPLY_")) {
        command.env_remove(name);
    }
    let output = command.envs(envs.iter().copied()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "it started: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
        .lines()
        .filter(|line| line.starts_with("error: "))
        .map(str::to_owned)
        .collect()
}

fn names(errors: &[String], settings: &[&str]) {
    assert_eq!(errors.len(), settings.len(), "{errors:#?}");
    for setting in settings {
        assert!(
            errors
                .iter()
                .any(|e| e.contains(setting) && e.contains("for example")),
            "{setting} in {errors:#?}"
        );
    }
}

#[test]
fn the_telegram_bridge_names_every_missing_setting() {
    let errors = start(env!("CARGO_BIN_EXE_anyreply-telegram"), &[]);
    names(
        &errors,
        &[
            "ANYREPLY_TELEGRAM_TOKEN",
            "ANYREPLY_API_KEY",
            "ANYREPLY_ASSISTANT_ID",
        ],
    );
}

#[test]
fn the_twilio_bridge_names_every_missing_and_bad_setting() {
    let errors = start(
        env!("CARGO_BIN_EXE_anyreply-twilio"),
        &[
            ("ANYREPLY_TWILIO_MODE", "fast"),
            ("ANYREPLY_BRIDGE_LISTEN", "8090"),
        ],
    );
    names(
        &errors,
        &[
            "ANYREPLY_TWILIO_ACCOUNT_SID",
            "ANYREPLY_TWILIO_AUTH_TOKEN",
            "ANYREPLY_TWILIO_PUBLIC_URL",
            "ANYREPLY_TWILIO_MODE=\"fast\"",
            "ANYREPLY_BRIDGE_LISTEN=\"8090\"",
            "ANYREPLY_API_KEY",
            "ANYREPLY_ASSISTANT_ID",
        ],
    );
}

#[test]
fn the_whatsapp_bridge_names_every_missing_and_bad_setting() {
    let errors = start(
        env!("CARGO_BIN_EXE_anyreply-whatsapp"),
        &[("ANYREPLY_WHATSAPP_PHONE_NUMBER_ID", "+1 555 0100")],
    );
    names(
        &errors,
        &[
            "ANYREPLY_WHATSAPP_TOKEN",
            "ANYREPLY_WHATSAPP_APP_SECRET",
            "ANYREPLY_WHATSAPP_VERIFY_TOKEN",
            "ANYREPLY_WHATSAPP_PHONE_NUMBER_ID=\"+1 555 0100\"",
            "ANYREPLY_API_KEY",
            "ANYREPLY_ASSISTANT_ID",
        ],
    );
}

#[test]
fn the_messenger_bridge_names_every_missing_and_bad_setting() {
    let errors = start(
        env!("CARGO_BIN_EXE_anyreply-messenger"),
        &[("ANYREPLY_MESSENGER_API_URL", "graph.facebook.com")],
    );
    names(
        &errors,
        &[
            "ANYREPLY_MESSENGER_TOKEN",
            "ANYREPLY_MESSENGER_APP_SECRET",
            "ANYREPLY_MESSENGER_VERIFY_TOKEN",
            "ANYREPLY_MESSENGER_API_URL=\"graph.facebook.com\"",
            "ANYREPLY_API_KEY",
            "ANYREPLY_ASSISTANT_ID",
        ],
    );
}

#[test]
fn the_email_bridge_names_every_missing_and_bad_setting() {
    let errors = start(
        env!("CARGO_BIN_EXE_anyreply-email"),
        &[
            ("ANYREPLY_EMAIL_IMAP_SECURITY", "ssl"),
            ("ANYREPLY_EMAIL_CA_FILE", "/nonexistent/ca.pem"),
        ],
    );
    names(
        &errors,
        &[
            "ANYREPLY_EMAIL_ADDRESS",
            "ANYREPLY_EMAIL_CA_FILE=\"/nonexistent/ca.pem\"",
            "ANYREPLY_EMAIL_IMAP_HOST",
            "ANYREPLY_EMAIL_IMAP_SECURITY",
            "ANYREPLY_EMAIL_IMAP_PASSWORD",
            "ANYREPLY_EMAIL_SMTP_HOST",
            "ANYREPLY_API_KEY",
            "ANYREPLY_ASSISTANT_ID",
        ],
    );
    // Mail posted by the provider: no IMAP, but a secret; sendmail: no SMTP.
    let errors = start(
        env!("CARGO_BIN_EXE_anyreply-email"),
        &[
            ("ANYREPLY_EMAIL_ADDRESS", "not an address"),
            ("ANYREPLY_EMAIL_INBOUND", "webhook"),
            ("ANYREPLY_EMAIL_SENDMAIL", "/usr/sbin/sendmail"),
        ],
    );
    names(
        &errors,
        &[
            "ANYREPLY_EMAIL_ADDRESS=\"not an address\"",
            "ANYREPLY_EMAIL_WEBHOOK_SECRET",
            "ANYREPLY_API_KEY",
            "ANYREPLY_ASSISTANT_ID",
        ],
    );
}

/// Settings in order, AnyReply itself unreachable: one sentence naming `ANYREPLY_URL`.
#[test]
fn an_unreachable_anyreply_is_named() {
    let errors = start(
        env!("CARGO_BIN_EXE_anyreply-twilio"),
        &[
            ("ANYREPLY_TWILIO_ACCOUNT_SID", "AC123"),
            ("ANYREPLY_TWILIO_AUTH_TOKEN", "token"),
            (
                "ANYREPLY_TWILIO_PUBLIC_URL",
                "https://sms.example.com/twilio/sms",
            ),
            ("ANYREPLY_API_KEY", "ark_x"),
            ("ANYREPLY_ASSISTANT_ID", "1"),
            ("ANYREPLY_URL", "http://127.0.0.1:9"),
        ],
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("cannot reach AnyReply at http://127.0.0.1:9/ (ANYREPLY_URL)"),
        "{errors:#?}"
    );
}

/// An AnyReply that takes the key and has assistant 7 (the event stream: see `anyreply()`).
pub async fn anyreply_with_assistant_7() -> MockServer {
    let server = crate::anyreply().await;
    Mock::given(method("GET"))
        .and(path("/api/user/me"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "name": "Shop", "email": null, "total_balance": 10.0
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/user/assistants/get"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": [{
            "id": 7, "name": "Support", "system_prompt": "", "initial_message": null, "variables": {},
            "llm_model": "gpt-4o-mini", "llm_temperature": 0.7, "llm_provider": "openai",
            "fallback_llm_model": null, "fallback_llm_provider": null, "tool_ids": [],
            "created_at": "2026-11-25T09:00:00Z", "updated_at": "2026-11-25T09:00:00Z"
        }] })))
        .mount(&server)
        .await;
    server
}

/// Starts channel `C` through the shared start-up with its own settings `own`, waits for its
/// `/health`, and shuts it down: the start must end cleanly.
async fn starts_serves_health_and_stops<C: Channel>(own: &[(&str, &str)]) {
    let anyreply = anyreply_with_assistant_7().await;
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let state = state_dir();
    let mut vars = vec![
        ("ANYREPLY_URL".to_owned(), anyreply.uri()),
        ("ANYREPLY_API_KEY".to_owned(), "ark_x".to_owned()),
        ("ANYREPLY_ASSISTANT_ID".to_owned(), "7".to_owned()),
        ("ANYREPLY_BRIDGE_LISTEN".to_owned(), listen.to_string()),
        (
            "ANYREPLY_BRIDGE_STATE_DIR".to_owned(),
            state.display().to_string(),
        ),
    ];
    vars.extend(own.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = service::start::<C>(Env::from_vars(vars), async {
        let _ = stopped.await;
    });
    let probe = async {
        let health = format!("http://{listen}/health");
        let mut answer = None;
        for _ in 0..100 {
            if let Ok(response) = reqwest::get(&health).await {
                answer = Some(response.json::<serde_json::Value>().await.unwrap());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop.send(());
        answer
    };
    let (ended, answer) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(running, probe)
    })
    .await
    .expect("it stops on shutdown");
    assert_eq!(answer, Some(json!({ "status": "ok" })), "{}", C::PROGRAM);
    assert!(ended.is_ok(), "{}: {ended:?}", C::PROGRAM);
    let _ = std::fs::remove_dir_all(state);
}

#[tokio::test]
async fn every_channel_starts_through_the_shared_path_and_stops_on_shutdown() {
    starts_serves_health_and_stops::<twilio::Twilio>(&[
        ("ANYREPLY_TWILIO_ACCOUNT_SID", "AC123"),
        ("ANYREPLY_TWILIO_AUTH_TOKEN", "token"),
        (
            "ANYREPLY_TWILIO_PUBLIC_URL",
            "https://sms.example.com/twilio/sms",
        ),
    ])
    .await;
    starts_serves_health_and_stops::<whatsapp::Whatsapp>(&[
        ("ANYREPLY_WHATSAPP_TOKEN", "token"),
        ("ANYREPLY_WHATSAPP_APP_SECRET", "secret"),
        ("ANYREPLY_WHATSAPP_VERIFY_TOKEN", "verify"),
        ("ANYREPLY_WHATSAPP_PHONE_NUMBER_ID", "1055501"),
    ])
    .await;
    starts_serves_health_and_stops::<messenger::Messenger>(&[
        ("ANYREPLY_MESSENGER_TOKEN", "token"),
        ("ANYREPLY_MESSENGER_APP_SECRET", "secret"),
        ("ANYREPLY_MESSENGER_VERIFY_TOKEN", "verify"),
    ])
    .await;
    starts_serves_health_and_stops::<email::Email>(&[
        ("ANYREPLY_EMAIL_ADDRESS", "help@shop.example"),
        ("ANYREPLY_EMAIL_INBOUND", "webhook"),
        ("ANYREPLY_EMAIL_WEBHOOK_SECRET", "secret"),
        ("ANYREPLY_EMAIL_SENDMAIL", "/usr/sbin/sendmail"),
    ])
    .await;
}

#[tokio::test]
async fn the_shared_start_names_every_problem_before_contacting_anyreply() {
    let anyreply = MockServer::start().await;
    let env = Env::from_vars([("ANYREPLY_URL".to_owned(), anyreply.uri())]);
    let error = service::start::<whatsapp::Whatsapp>(env, std::future::pending())
        .await
        .unwrap_err();
    let text = format!("{error:#}");
    for setting in [
        "ANYREPLY_WHATSAPP_TOKEN",
        "ANYREPLY_API_KEY",
        "ANYREPLY_ASSISTANT_ID",
    ] {
        assert!(text.contains(setting), "{setting} in {text}");
    }
    assert!(anyreply.received_requests().await.unwrap().is_empty());
}

#[test]
fn bad_transcription_settings_are_named_too() {
    let errors = start(
        env!("CARGO_BIN_EXE_anyreply-telegram"),
        &[
            ("ANYREPLY_TELEGRAM_TOKEN", "123456:ABC"),
            ("ANYREPLY_API_KEY", "ark_x"),
            ("ANYREPLY_ASSISTANT_ID", "1"),
            ("ANYREPLY_TRANSCRIPTION_MODEL", "whisper-1"),
            ("ANYREPLY_TRANSCRIPTION_BASE_URL", "not a url"),
            ("ANYREPLY_TRANSCRIPTION_MAX_SECONDS", "five minutes"),
        ],
    );
    names(
        &errors,
        &[
            "ANYREPLY_TRANSCRIPTION_BASE_URL=\"not a url\"",
            "ANYREPLY_TRANSCRIPTION_MAX_SECONDS=\"five minutes\"",
        ],
    );
}

#[test]
fn voice_notes_are_transcribed_only_when_a_model_is_named() {
    let texts = anyreply_connectors::text::Texts::default();
    let read = |vars: &[(&str, &str)]| {
        let mut env = Env::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        anyreply_connectors::transcribe::Voice::read(&mut env, &texts)
    };
    assert!(read(&[]).transcriber.is_none());
    let voice = read(&[
        ("ANYREPLY_TRANSCRIPTION_MODEL", "whisper-1"),
        ("ANYREPLY_TRANSCRIPTION_MAX_SECONDS", "60"),
    ]);
    let transcriber = voice.transcriber.unwrap();
    assert_eq!(transcriber.max_seconds, 60);
    assert_eq!(transcriber.max_bytes, 25 * 1024 * 1024);
}
