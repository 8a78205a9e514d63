//! The email bridge against real mail servers on loopback ([`crate::mail_servers`]: Dovecot
//! for IMAP, aiosmtpd as the SMTP sink) and a mock AnyReply: mail delivered into the mailbox,
//! the answer read back from the sink with its threading headers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyreply_connectors::bridge::Handled;
use anyreply_connectors::email::{self, EmailSettings};
use anyreply_core::env::Env;
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wiremock::MockServer;

use crate::mail_servers::{MailOptions, MailServers, Security, Sent};
use crate::{EventLog, anyreply, anyreply_requests, bridge_keeping_state_in, state_dir};

const CUSTOMER: &str = "ada@example.org";
const WAIT: Duration = Duration::from_secs(20);

/// A running bridge, stopped (as by SIGTERM) on [`Running::stop`].
struct Running {
    handled: Handled,
    base: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn start(env: Vec<(String, String)>, anyreply: &MockServer, state: &Path) -> Self {
        let mut env = Env::from_vars(env);
        let settings = EmailSettings::read(&mut env);
        env.finish(&[]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let bridge = bridge_keeping_state_in(&anyreply.uri(), state.to_owned());
        let handled = bridge.handled.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(email::run(settings, bridge, listener, shutdown));
        Self {
            handled,
            base,
            stop,
            task,
        }
    }

    /// Waits until `count` mails (and operator messages) are finished with.
    async fn handled(&self, count: u64) {
        let reached = tokio::time::timeout(WAIT, self.handled.reach(count)).await;
        assert!(
            reached.is_ok(),
            "{} of {count} handled",
            self.handled.count()
        );
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

fn settings(servers: &MailServers, more: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = servers.env();
    env.push(("ANYREPLY_EMAIL_NAME".into(), "Shop Help".into()));
    env.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// A customer's mail as a mail program writes it: text and HTML, the words quoted-printable,
/// the quoted history and a signature below them.
fn customer_mail(from: &str, id: &str, subject: &str, words: &str, headers: &str) -> Vec<u8> {
    let plain = format!(
        "{words}\r\n\r\nOn Mon, 1 Dec 2026 at 10:00, Shop Help <help@shop.example> wrote:\r\n> Earlier words\r\n\r\n-- \r\nAda Lovelace\r\n"
    );
    format!(
        "From: \"Ada Lovelace\" <{from}>\r\nTo: Shop Help <help@shop.example>\r\nSubject: {subject}\r\nDate: Sat, 05 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{id}>\r\n{headers}MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{plain}\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<div>{words}</div><blockquote>Earlier words</blockquote>\r\n--b1--\r\n"
    )
    .into_bytes()
}

/// What the sink received, parsed; panics on a mail that is not one.
fn parsed(sent: &Sent) -> mail_parser::Message<'static> {
    MessageParser::default()
        .parse(&sent.data)
        .unwrap()
        .into_owned()
}

/// A header's value, unfolded.
fn header(message: &mail_parser::Message<'_>, name: &str) -> Option<String> {
    let value = message.header_raw(name)?;
    Some(value.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The customer's question as AnyReply was asked it.
async fn questions(anyreply: &MockServer) -> Vec<Value> {
    anyreply_requests(anyreply)
        .await
        .iter()
        .map(|request| serde_json::from_slice(&request.body).unwrap())
        .collect()
}

async fn servers(imap: Security, smtp: Security, idle: bool) -> MailServers {
    MailServers::start(MailOptions { imap, smtp, idle }).await
}

#[tokio::test]
async fn a_mail_is_answered_in_its_thread_over_tls() {
    let servers = servers(Security::Tls, Security::StartTls, true).await;
    let anyreply = anyreply().await;
    let state = state_dir();
    let bridge = Running::start(settings(&servers, &[]), &anyreply, &state).await;
    let mail = customer_mail(
        "Ada@Example.ORG",
        "q1@example.org",
        "Where is my order? 🚚",
        "Where is order 12?\0 🙂",
        "References: <root@example.org>\r\n",
    );
    servers.deliver(&mail, "ada@example.org").await;
    let sent = servers.wait_sent(1, WAIT).await;

    let asked = questions(&anyreply).await;
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0]["customer_identifier"], CUSTOMER, "lower-cased");
    // The new words only; the NUL reaches no API (mail-parser reads it as U+FFFD).
    let message = asked[0]["message"].as_str().unwrap();
    assert!(!message.contains('\0'), "{message:?}");
    assert!(
        message.starts_with("Where is order 12?") && message.ends_with(" 🙂"),
        "{message:?}"
    );
    assert_eq!(asked[0]["variables"]["channel"], "email");
    assert_eq!(asked[0]["variables"]["name"], "Ada Lovelace");
    assert_eq!(asked[0]["variables"]["subject"], "Where is my order? 🚚");

    assert_eq!(sent[0].rcpt_to, [CUSTOMER]);
    assert_eq!(sent[0].mail_from, "help@shop.example");
    let answer = parsed(&sent[0]);
    assert_eq!(answer.subject(), Some("Re: Where is my order? 🚚"));
    assert_eq!(
        answer.from().unwrap().first().unwrap().address(),
        Some("help@shop.example")
    );
    assert_eq!(
        answer.to().unwrap().first().unwrap().address(),
        Some(CUSTOMER)
    );
    assert_eq!(
        header(&answer, "In-Reply-To").as_deref(),
        Some("<q1@example.org>")
    );
    assert_eq!(
        header(&answer, "References").as_deref(),
        Some("<root@example.org> <q1@example.org>")
    );
    assert_eq!(
        header(&answer, "Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
    assert!(answer.message_id().unwrap().ends_with("@shop.example"));
    assert_eq!(
        answer.body_text(0).unwrap().trim(),
        format!("echo: {message}")
    );
    let html = answer.body_html(0).unwrap();
    assert!(html.contains(&format!("<p>echo: {message}</p>")), "{html}");
    assert_eq!(
        answer.html_part(0).unwrap().content_type().unwrap().c_type,
        "text"
    );
    bridge.handled(1).await;

    // The bridge now waits in IDLE: a new mail is answered at once (polling would take 60 s).
    let next = customer_mail(
        CUSTOMER,
        "q2@example.org",
        "Re: Where is my order? 🚚",
        "Thanks!",
        "",
    );
    servers.deliver(&next, CUSTOMER).await;
    let sent = servers.wait_sent(2, WAIT).await;
    assert_eq!(
        parsed(&sent[1]).body_text(0).unwrap().trim(),
        "echo: Thanks!"
    );
    bridge.handled(2).await;
    bridge.stop().await;
}

#[tokio::test]
async fn without_idle_the_mailbox_is_polled_over_starttls() {
    let servers = servers(Security::StartTls, Security::Plain, false).await;
    let anyreply = anyreply().await;
    let bridge = Running::start(
        settings(&servers, &[("ANYREPLY_EMAIL_POLL_SECONDS", "1")]),
        &anyreply,
        &state_dir(),
    )
    .await;
    servers
        .deliver(
            &customer_mail(CUSTOMER, "p1@example.org", "Hours", "When do you open?", ""),
            CUSTOMER,
        )
        .await;
    servers.wait_sent(1, WAIT).await;
    // Mail arriving later is found by the next poll.
    servers
        .deliver(
            &customer_mail(
                CUSTOMER,
                "p2@example.org",
                "Re: Hours",
                "And on Sunday?",
                "",
            ),
            CUSTOMER,
        )
        .await;
    let sent = servers.wait_sent(2, WAIT).await;
    let second = parsed(&sent[1]);
    assert_eq!(second.body_text(0).unwrap().trim(), "echo: And on Sunday?");
    assert_eq!(second.subject(), Some("Re: Hours"));
    bridge.handled(2).await;
    bridge.stop().await;
}

/// An auto-responder at the customer's end answers every mail it gets, as vacation programs
/// do; the bridge never answers it back, nor bounces, lists or its own mail.
#[tokio::test]
async fn two_auto_responders_cannot_loop() {
    let servers = servers(Security::Plain, Security::Plain, true).await;
    let anyreply = anyreply().await;
    let bridge = Running::start(settings(&servers, &[]), &anyreply, &state_dir()).await;
    servers
        .deliver(
            &customer_mail(CUSTOMER, "l1@example.org", "Hello", "Are you open?", ""),
            CUSTOMER,
        )
        .await;
    let answer = parsed(&servers.wait_sent(1, WAIT).await[0]);
    let answer_id = answer.message_id().unwrap().to_owned();
    // The customer's auto-responder answers our answer, in each of the ways they mark it.
    let marks = [
        "Auto-Submitted: auto-replied\r\n",
        "Precedence: bulk\r\n",
        "X-Autoreply: yes\r\n",
        "List-Id: <news.example.org>\r\n",
    ];
    for (n, mark) in marks.iter().enumerate() {
        let headers = format!("In-Reply-To: <{answer_id}>\r\n{mark}");
        let auto = customer_mail(
            CUSTOMER,
            &format!("auto{n}@example.org"),
            "Out of office",
            "I am away.",
            &headers,
        );
        servers.deliver(&auto, CUSTOMER).await;
    }
    // A bounce (the null sender) and our own answer come back too.
    let bounce = customer_mail(
        "mailer-daemon@example.org",
        "b1@example.org",
        "Undelivered",
        "Failed",
        "",
    );
    servers.deliver(&bounce, "").await;
    let mut own = servers.sent()[0].data.clone();
    own.splice(0..0, b"Delivered-To: help@shop.example\r\n".iter().copied());
    servers.deliver(&own, "help@shop.example").await;
    bridge.handled(1 + marks.len() as u64 + 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        servers.sent().len(),
        1,
        "only the customer's mail was answered"
    );
    assert_eq!(questions(&anyreply).await.len(), 1);
    bridge.stop().await;
}

#[tokio::test]
async fn each_mail_is_answered_once_across_restarts() {
    let servers = servers(Security::Tls, Security::Tls, true).await;
    let anyreply = anyreply().await;
    let state = state_dir();
    let first = Running::start(settings(&servers, &[]), &anyreply, &state).await;
    for n in 1..=2 {
        let mail = customer_mail(
            CUSTOMER,
            &format!("r{n}@example.org"),
            "Order",
            &format!("Question {n}"),
            "",
        );
        servers.deliver(&mail, CUSTOMER).await;
    }
    servers.wait_sent(2, WAIT).await;
    first.handled(2).await;
    first.stop().await;

    let second = Running::start(settings(&servers, &[]), &anyreply, &state).await;
    servers
        .deliver(
            &customer_mail(CUSTOMER, "r3@example.org", "Order", "Question 3", ""),
            CUSTOMER,
        )
        .await;
    // The same mail delivered again (a forwarding loop, a copy) is not answered again.
    servers
        .deliver(
            &customer_mail(CUSTOMER, "r1@example.org", "Order", "Question 1", ""),
            CUSTOMER,
        )
        .await;
    second.handled(2).await;
    let sent = servers.wait_sent(3, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(servers.sent().len(), 3);
    let answered: Vec<String> = sent
        .iter()
        .map(|sent| parsed(sent).body_text(0).unwrap().trim().to_owned())
        .collect();
    assert_eq!(
        answered,
        ["echo: Question 1", "echo: Question 2", "echo: Question 3"]
    );
    assert_eq!(questions(&anyreply).await.len(), 3);
    second.stop().await;
}

#[tokio::test]
async fn operator_messages_go_as_mail_in_the_thread() {
    let servers = servers(Security::Plain, Security::StartTls, true).await;
    let anyreply = anyreply().await;
    let events = EventLog::serve(&anyreply).await;
    let bridge = Running::start(settings(&servers, &[]), &anyreply, &state_dir()).await;
    servers
        .deliver(
            &customer_mail(CUSTOMER, "o1@example.org", "Refund", "I want a refund", ""),
            CUSTOMER,
        )
        .await;
    let answer = parsed(&servers.wait_sent(1, WAIT).await[0]);
    bridge.handled(1).await;

    events.operator_message(CUSTOMER, "Hello Ada, this is Grace. Refunded!");
    events.operator_message("telegram:42", "another channel's");
    let sent = servers.wait_sent(2, WAIT).await;
    bridge.handled(3).await;
    let operator = parsed(&sent[1]);
    assert_eq!(sent[1].rcpt_to, [CUSTOMER]);
    assert_eq!(operator.subject(), Some("Re: Refund"));
    let answer_id = answer.message_id().unwrap();
    assert_eq!(
        header(&operator, "In-Reply-To"),
        Some(format!("<{answer_id}>")),
        "in reply to the last mail of the thread"
    );
    assert_eq!(
        header(&operator, "References"),
        Some(format!("<o1@example.org> <{answer_id}>"))
    );
    assert_eq!(
        header(&operator, "Auto-Submitted"),
        None,
        "a person wrote it"
    );
    assert_eq!(
        operator.body_text(0).unwrap().trim(),
        "Hello Ada, this is Grace. Refunded!"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        servers.sent().len(),
        2,
        "the other channel's message is not mailed"
    );
    bridge.stop().await;
}

/// A `sendmail` that keeps its arguments and the mail it is given in `dir`.
fn fake_sendmail(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let program = dir.join("sendmail");
    let script = format!(
        "#!/bin/sh\nn=$(ls {0} | grep -c '^mail') \necho \"$@\" > {0}/args$n\ncat > {0}/mail$n\n",
        dir.display()
    );
    std::fs::write(&program, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    program
}

#[tokio::test]
async fn mail_posted_by_a_provider_is_answered_through_sendmail() {
    let anyreply = anyreply().await;
    let state = state_dir();
    let sendmail = fake_sendmail(&state.join("sendmail"));
    let env: Vec<(String, String)> = [
        ("ANYREPLY_EMAIL_ADDRESS", "help@shop.example"),
        ("ANYREPLY_EMAIL_INBOUND", "webhook"),
        ("ANYREPLY_EMAIL_WEBHOOK_SECRET", "a-long-shared-secret"),
        ("ANYREPLY_EMAIL_SENDMAIL", sendmail.to_str().unwrap()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let bridge = Running::start(env, &anyreply, &state).await;
    let url = format!("{}/email/inbound", bridge.base);
    let http = reqwest::Client::new();
    let mail = customer_mail(
        CUSTOMER,
        "w1@example.org",
        "Sizes",
        "Do you have it in M?",
        "",
    );
    let post = |secret: Option<&str>, body: Vec<u8>| {
        let mut request = http.post(&url).body(body);
        if let Some(secret) = secret {
            request = request.bearer_auth(secret);
        }
        request.send()
    };
    assert_eq!(post(None, mail.clone()).await.unwrap().status(), 401);
    assert_eq!(
        post(Some("wrong"), mail.clone()).await.unwrap().status(),
        401
    );
    assert_eq!(
        post(Some("a-long-shared-secret"), b"not a mail".to_vec())
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post(Some("a-long-shared-secret"), mail.clone())
            .await
            .unwrap()
            .status(),
        202
    );
    bridge.handled(2).await;
    // A provider that posts again (it did not see our answer in time) gets "handled before".
    let again = http
        .post(format!("{url}?secret=a-long-shared-secret"))
        .body(mail)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    bridge.handled(3).await;

    let dir = state.join("sendmail");
    let args = std::fs::read_to_string(dir.join("args0")).unwrap();
    assert!(args.contains("-f help@shop.example"), "{args}");
    assert!(args.trim_end().ends_with(CUSTOMER), "{args}");
    let answer = MessageParser::default()
        .parse(&std::fs::read(dir.join("mail0")).unwrap())
        .unwrap()
        .into_owned();
    assert_eq!(
        answer.body_text(0).unwrap().trim(),
        "echo: Do you have it in M?"
    );
    assert_eq!(
        header(&answer, "In-Reply-To").as_deref(),
        Some("<w1@example.org>")
    );
    assert!(!dir.join("mail1").exists(), "answered once");
    assert_eq!(questions(&anyreply).await.len(), 1);
    bridge.stop().await;
}

/// The `anyreply-email` binary, killed (SIGKILL) when dropped.
struct Process(std::process::Child);

impl Process {
    fn start(servers: &MailServers, anyreply: &MockServer, state: &Path) -> Self {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_anyreply-email"));
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("ANYREPLY_")) {
            command.env_remove(name);
        }
        let child = command
            .envs(servers.env())
            .env("ANYREPLY_URL", anyreply.uri())
            .env("ANYREPLY_API_KEY", "ark_bridge")
            .env("ANYREPLY_ASSISTANT_ID", "7")
            .env("ANYREPLY_BRIDGE_LISTEN", "127.0.0.1:0")
            .env("ANYREPLY_BRIDGE_STATE_DIR", state)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A bridge killed while AnyReply is making the answer loses nothing: started again, it
/// fetches the mail again and answers it, with the same idempotency key (so AnyReply replays
/// rather than answers and charges twice).
#[tokio::test]
async fn a_bridge_killed_mid_answer_loses_no_mail() {
    let servers = servers(Security::Plain, Security::Plain, true).await;
    let state = state_dir();
    let stalled = crate::startup::anyreply_with_assistant_7().await;
    wiremock::Mock::given(wiremock::matchers::path("/api/ai/generate-reply"))
        .respond_with(wiremock::ResponseTemplate::new(500).set_delay(Duration::from_secs(60)))
        .with_priority(1)
        .mount(&stalled)
        .await;
    let first = Process::start(&servers, &stalled, &state);
    servers
        .deliver(
            &customer_mail(CUSTOMER, "k1@example.org", "Order", "Is it shipped?", ""),
            CUSTOMER,
        )
        .await;
    crate::eventually("AnyReply asked for the answer", || async {
        !anyreply_requests(&stalled).await.is_empty()
    })
    .await;
    let asked = anyreply_requests(&stalled).await;
    drop(first);
    assert!(servers.sent().is_empty());

    let anyreply = crate::startup::anyreply_with_assistant_7().await;
    let second = Process::start(&servers, &anyreply, &state);
    let sent = servers.wait_sent(1, WAIT).await;
    assert_eq!(
        parsed(&sent[0]).body_text(0).unwrap().trim(),
        "echo: Is it shipped?"
    );
    let again = anyreply_requests(&anyreply).await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].headers["idempotency-key"],
        asked[0].headers["idempotency-key"]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(servers.sent().len(), 1);
    drop(second);
}
