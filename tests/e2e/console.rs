//! The operator console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver by `fantoccini`): sign in, create an assistant,
//! open a conversation, see a reply's cost of 0.00000915 exactly and a customer's new message
//! appear without a reload, take over, answer, be led from the sign-in page back to the
//! dashboard, sign out; then an idle session's expiry and a form refused without its CSRF token.
//! A screenshot of each page goes to `target/console-screenshots/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::Stack;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// chromedriver on a port of its own, killed when dropped.
pub(crate) struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    pub(crate) async fn start() -> Self {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists(),
            "{CHROMEDRIVER} is missing: apt-get install chromium chromium-driver (.ci/run does)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, url }
    }

    pub(crate) async fn browser(&self) -> Client {
        // Two crypto providers are built into this test binary (fantoccini's and reqwest's
        // dependencies each bring one); rustls wants one chosen. The driver is plain HTTP.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": CHROMIUM,
                // A phone-sized window: the console must work there.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=412,915"]
            }),
        );
        ClientBuilder::rustls()
            .unwrap()
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Saves what the browser shows as `target/console-screenshots/<name>.png`.
pub(crate) async fn screenshot(browser: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = browser.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

pub(crate) fn field(label: &str) -> String {
    format!("//label[contains(normalize-space(.), '{label}')]//*[self::input or self::textarea]")
}

pub(crate) fn button(name: &str) -> String {
    format!("//button[normalize-space(.)='{name}']")
}

/// The element at `xpath`, once it appears.
pub(crate) async fn wait_for(browser: &Client, xpath: &str) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(xpath))
        .await
        .unwrap_or_else(|error| panic!("{xpath} never appeared: {error}"))
}

/// Waits for the element at `xpath` and clicks it.
pub(crate) async fn click(browser: &Client, xpath: &str) {
    wait_for(browser, xpath).await.click().await.unwrap();
}

pub(crate) fn link(text: &str) -> String {
    format!("//a[normalize-space(.)='{text}']")
}

/// Waits for the form field labelled `label` and types `text` into it.
pub(crate) async fn type_into(browser: &Client, label: &str, text: &str) {
    wait_for(browser, &field(label))
        .await
        .send_keys(text)
        .await
        .unwrap();
}

/// Saves what the browser shows, after checking that every control on the page has an
/// accessible name (a label, or its text for a button or link).
pub(crate) async fn page(browser: &Client, name: &str) {
    let unnamed = browser
        .execute(
            "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button, a')]
                 .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                              && !e.textContent.trim())
                 .map(e => e.outerHTML);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unnamed, json!([]), "{name}: controls without a name");
    screenshot(browser, name).await;
}

pub(crate) async fn wait_for_text(browser: &Client, text: &str) {
    wait_for(browser, &format!("//*[contains(text(), '{text}')]")).await;
}

async fn customer_writes(stack: &Stack, assistant: i64, message: &str) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/ai/generate-reply", stack.base))
        .bearer_auth(&stack.key)
        .json(&json!({ "assistant_id": assistant, "customer_identifier": "+4915550009", "message": message }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Makes every reply of the account's conversations cost `cost`, as the settlement would have
/// written it.
async fn cost_every_reply(stack: &Stack, cost: &str) {
    use diesel_async::RunQueryDsl;
    let subunits = cost.parse::<anyreply_core::Money>().unwrap().subunits();
    let mut conn = stack.db.connect().await;
    for statement in [
        "UPDATE messages SET cost = $1 WHERE role = 'assistant'",
        "UPDATE conversations c SET total_cost = $1 * (SELECT count(*) FROM messages m
             WHERE m.conversation_id = c.id AND m.role = 'assistant')",
    ] {
        diesel::sql_query(statement)
            .bind::<diesel::sql_types::Int8, _>(subunits)
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// Signs in by keyboard alone: the key typed, Enter to send the form.
async fn sign_in(browser: &Client, stack: &Stack) {
    browser
        .goto(&format!("{}/console/sign-in", stack.base))
        .await
        .unwrap();
    // The key's form is for the account's owner, folded under the email and password.
    click(browser, "//summary[contains(., 'sign in with an API key')]").await;
    type_into(browser, "API key", &format!("{}\u{E007}", stack.key)).await;
    wait_for_text(browser, "Busiest assistants").await;
}

#[tokio::test]
async fn an_operator_signs_in_sets_up_an_assistant_and_answers_a_customer_live() {
    let stack = Stack::start(Duration::ZERO).await;
    let driver = Driver::start().await;
    let browser = driver.browser().await;

    browser
        .goto(&format!("{}/console/sign-in", stack.base))
        .await
        .unwrap();
    page(&browser, "01-sign-in").await;
    sign_in(&browser, &stack).await;
    page(&browser, "02-dashboard").await;

    // An assistant, through the form.
    click(&browser, &link("Assistants")).await;
    click(&browser, &link("New assistant")).await;
    type_into(&browser, "Name", "Front desk").await;
    type_into(&browser, "System prompt", "You answer for Acme.").await;
    page(&browser, "03-new-assistant").await;
    click(&browser, &button("Create assistant")).await;
    // The edit form of the new assistant: its URL names it.
    wait_for(&browser, &button("Save")).await;
    let url = browser.current_url().await.unwrap();
    let assistant: i64 = url.path().rsplit('/').next().unwrap().parse().unwrap();

    // A customer writes; the operator opens the conversation.
    customer_writes(&stack, assistant, "Is my order on its way?").await;
    click(&browser, &link("Conversations")).await;
    click(&browser, &link("+4915550009")).await;
    wait_for_text(&browser, "Is my order on its way?").await;
    // What a short prompt on a cheap model costs, which a float would print `9.15e-06`.
    cost_every_reply(&stack, "0.00000915").await;
    browser.refresh().await.unwrap();
    wait_for_text(&browser, "cost 0.00000915").await;
    page(&browser, "04-conversation").await;

    // A new message appears without the page being loaded again: the mark survives.
    browser
        .execute("window.stillTheSamePage = true;", vec![])
        .await
        .unwrap();
    customer_writes(&stack, assistant, "Hello, anyone there?").await;
    wait_for_text(&browser, "echo: Hello, anyone there?").await;
    let same = browser
        .execute("return window.stillTheSamePage === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same, json!(true), "the page was reloaded");

    // Take over, answer, see the answer in the history.
    click(&browser, &button("Take over")).await;
    wait_for(&browser, &button("Hand back to AI")).await;
    type_into(
        &browser,
        "Message to the customer",
        "Anna here: it left this morning.",
    )
    .await;
    click(&browser, &button("Send")).await;
    wait_for_text(&browser, "Anna here: it left this morning.").await;
    page(&browser, "05-taken-over-and-answered").await;

    // The sign-in page of a signed-in operator leads back into the console: the dashboard,
    // its chart now with the day's replies and their cost.
    browser
        .goto(&format!("{}/console/sign-in", stack.base))
        .await
        .unwrap();
    wait_for_text(&browser, "Busiest assistants").await;
    wait_for_text(&browser, "Replies per day (left axis)").await;
    page(&browser, "05b-dashboard").await;

    click(&browser, &button("Sign out")).await;
    wait_for(&browser, &button("Sign in")).await;
    page(&browser, "06-signed-out").await;
    browser.close().await.unwrap();
}

#[tokio::test]
async fn an_idle_session_expires_and_a_form_without_its_token_is_refused() {
    let stack = Stack::start(Duration::ZERO).await;
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    sign_in(&browser, &stack).await;

    // A form posted without the CSRF token (a native submit, past htmx): 403.
    browser
        .execute(
            "const form = document.createElement('form');
             form.method = 'post';
             form.action = '/console/assistants';
             const name = document.createElement('input');
             name.name = 'name';
             name.value = 'Forged';
             form.appendChild(name);
             document.body.appendChild(form);
             form.submit();",
            vec![],
        )
        .await
        .unwrap();
    wait_for_text(&browser, "Forbidden").await;
    page(&browser, "07-csrf-refused").await;

    // Twelve idle hours later, the next page is the sign-in page.
    let mut conn = stack.db.connect().await;
    {
        use diesel_async::RunQueryDsl;
        diesel::sql_query(
            "UPDATE console_sessions SET last_seen_at = now() - interval '12 hours 1 minute'",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    browser
        .goto(&format!("{}/console", stack.base))
        .await
        .unwrap();
    wait_for(&browser, &button("Sign in")).await;
    page(&browser, "08-session-expired").await;
    browser.close().await.unwrap();

    assert_eq!(
        assistants(&stack).await,
        0,
        "the forged form created nothing"
    );
}

async fn assistants(stack: &Stack) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::Int8)]
        n: i64,
    }
    let mut conn = stack.db.connect().await;
    let counted: Count = diesel::sql_query("SELECT count(*) AS n FROM assistants")
        .get_result(&mut conn)
        .await
        .unwrap();
    counted.n
}
