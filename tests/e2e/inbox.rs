//! The team inbox in two real headless Chromiums at once: an agent and an admin set their
//! passwords from their links, sign in by email and password, and see a handoff raised by the
//! stub model arrive without a reload (the badge and the page's title); the agent assigns it
//! to themselves, the admin sees who has it open and writes a note, which the agent's page
//! shows live, as the admin's shows the agent's answer; the agent is refused the admin's
//! pages. Controls are found by their accessible names.

use std::time::Duration;

use fantoccini::Client;
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, ResponseTemplate};

use crate::Stack;
use crate::console::{
    Driver, button, click, field, link, page, type_into, wait_for, wait_for_text,
};

const PASSWORD: &str = "plum-anchor-7-orbit";

/// Adds an operator through the API; returns their password link.
async fn add_operator(stack: &Stack, email: &str, name: &str, role: &str) -> String {
    let added: Value = reqwest::Client::new()
        .post(format!("{}/api/user/operators", stack.base))
        .bearer_auth(&stack.key)
        .json(&json!({ "email": email, "name": name, "role": role }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let link = added["password_link"].as_str().unwrap();
    // The link names ANYREPLY_LISTEN's default; the test server listens elsewhere.
    let path = &link[link.find("/console/").unwrap()..];
    format!("{}{path}", stack.base)
}

/// Opens the password link, sets the password, and lands in the console.
async fn set_password(browser: &Client, link: &str) {
    browser.goto(link).await.unwrap();
    type_into(browser, "New password", PASSWORD).await;
    type_into(browser, "New password again", PASSWORD).await;
    click(browser, &button("Set password and sign in")).await;
    wait_for(browser, &button("Sign out")).await;
}

async fn sign_in(browser: &Client, stack: &Stack, email: &str) {
    browser
        .goto(&format!("{}/console/sign-in", stack.base))
        .await
        .unwrap();
    type_into(browser, "Email", email).await;
    type_into(browser, "Password", PASSWORD).await;
    click(browser, &button("Sign in")).await;
    wait_for(browser, &button("Sign out")).await;
}

/// The inbox's view named `name` (its link says the name, then the count).
fn tab(name: &str) -> String {
    format!("//nav[@aria-label='Inbox views']//a[starts-with(normalize-space(.), '{name}')]")
}

async fn title_of(browser: &Client) -> String {
    browser.title().await.unwrap()
}

/// Waits until the page's title starts with `prefix` (the page's script sets it).
async fn title_starts_with(browser: &Client, prefix: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let title = title_of(browser).await;
        if title.starts_with(prefix) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the title stayed {title:?}, not {prefix}…"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn handing_assistant(stack: &Stack) -> i64 {
    // The stub model hands over when the customer asks for a person, and echoes otherwise.
    let handoff = json!({
        "id": "chatcmpl-h", "object": "chat.completion", "created": 0, "model": "stub",
        "choices": [{ "index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{ "id": "call_h", "type": "function", "function": {
                "name": "transfer_to_human",
                "arguments": "{\"reason\":\"The customer asks for a person.\"}" } }] } }],
        "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 }
    });
    Mock::given(method("POST"))
        .and(body_string_contains("I want to talk to a person"))
        .respond_with(ResponseTemplate::new(200).set_body_json(handoff))
        .with_priority(1)
        .mount(&stack.llm)
        .await;
    let created: Value = reqwest::Client::new()
        .post(format!("{}/api/user/assistant", stack.base))
        .bearer_auth(&stack.key)
        .json(&json!({
            "name": "Shoes",
            "handoff": { "enabled": true, "message": "A colleague will answer you here shortly." }
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["data"]["id"].as_i64().unwrap()
}

#[tokio::test]
async fn an_agent_and_an_admin_take_a_handoff_through_the_inbox() {
    let stack = Stack::start(Duration::ZERO).await;
    let assistant = handing_assistant(&stack).await;
    let agent_link = add_operator(&stack, "ada@acme.example", "Ada", "agent").await;
    let admin_link = add_operator(&stack, "bea@acme.example", "Bea", "admin").await;
    let driver = Driver::start().await;
    let agent = driver.browser().await;
    let admin = driver.browser().await;

    // Each sets a password from their link; the agent signs out and in again by email.
    set_password(&agent, &agent_link).await;
    set_password(&admin, &admin_link).await;
    click(&agent, &button("Sign out")).await;
    wait_for(&agent, &field("Email")).await;
    page(&agent, "inbox-01-sign-in").await;
    sign_in(&agent, &stack, "ada@acme.example").await;
    // An agent's home is the inbox.
    wait_for(&agent, "//h1[normalize-space(.)='Inbox']").await;
    admin
        .goto(&format!("{}/console/conversations", stack.base))
        .await
        .unwrap();
    wait_for(&admin, "//h1[normalize-space(.)='Inbox']").await;

    // The customer asks for a person: the model hands over. Both pages show it unreloaded.
    for browser in [&agent, &admin] {
        browser
            .execute("window.stillTheSamePage = true;", vec![])
            .await
            .unwrap();
    }
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/api/ai/generate-reply", stack.base))
        .bearer_auth(&stack.key)
        .json(
            &json!({ "assistant_id": assistant, "customer_identifier": "+4915550077",
                       "message": "I want to talk to a person!" }),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["ai_disabled"], true, "{answer}");
    for browser in [&agent, &admin] {
        wait_for_text(browser, "1 conversation needs a human").await;
        title_starts_with(browser, "(1) ").await;
        wait_for(
            browser,
            "//a[contains(normalize-space(.), 'Needs a human 1')]",
        )
        .await;
    }
    // The admin's list (All) shows the new conversation too.
    wait_for(&admin, &link("+4915550077")).await;
    for browser in [&agent, &admin] {
        let same = browser
            .execute("return window.stillTheSamePage === true;", vec![])
            .await
            .unwrap();
        assert_eq!(same, json!(true), "the inbox was reloaded");
    }
    page(&agent, "inbox-02-handoff-arrived").await;

    // The agent opens Needs a human, the conversation, and assigns it to themselves.
    click(&agent, &tab("Needs a human")).await;
    wait_for(
        &agent,
        &format!("{}[@aria-current='page']", tab("Needs a human")),
    )
    .await;
    click(&agent, &link("+4915550077")).await;
    wait_for_text(&agent, "Needs a human: the AI handed over").await;
    click(&agent, &button("Assign to me")).await;
    wait_for_text(&agent, "Assigned to Ada").await;
    page(&agent, "inbox-03-assigned").await;
    title_starts_with(&agent, "+4915550077").await;

    // The admin opens it: sees who else has it open, and writes a note the agent sees live.
    click(&admin, &link("+4915550077")).await;
    wait_for_text(&admin, "Also open by Ada").await;
    type_into(&admin, "Internal note", "She ordered twice; refund one.").await;
    click(&admin, &button("Add a note")).await;
    wait_for_text(&agent, "She ordered twice; refund one.").await;
    wait_for_text(&agent, "Note by Bea (operators only)").await;

    // The agent answers; the admin's page shows who wrote it.
    type_into(
        &agent,
        "Message to the customer",
        "Ada here: refunding one now.",
    )
    .await;
    click(&agent, &button("Send")).await;
    wait_for_text(&admin, "Ada here: refunding one now.").await;
    wait_for_text(&admin, "Operator · Ada").await;
    page(&admin, "inbox-04-note-and-answer").await;

    // The agent may not open the admins' pages; the refusal says why.
    agent
        .goto(&format!("{}/console/assistants", stack.base))
        .await
        .unwrap();
    wait_for_text(&agent, "This needs the role admin or higher").await;
    page(&agent, "inbox-05-refused").await;
    agent.close().await.unwrap();
    admin.close().await.unwrap();
}
