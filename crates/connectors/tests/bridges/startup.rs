//! The bridge binaries' start: every missing setting named at once, one line each, no panic.

use std::process::Command;

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
