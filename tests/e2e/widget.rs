//! The web chat widget in a real headless Chromium, on a page of another origin than the
//! server's: the chat button, a message typed and sent with Enter, the reply streamed in, the
//! page's styles kept out, the visitor's token kept in `localStorage` and the conversation
//! there again after a reload; and on a page of an origin the widget does not list, the
//! panel saying so.

use std::time::Duration;

use anyreply_client::AssistantInput;
use fantoccini::elements::{Element, ShadowRoot};
use fantoccini::{Client, Locator};
use serde_json::json;

use crate::console::{Driver, WAIT, screenshot};
use crate::{Stack, quick_retries};

/// Serves, on `listener` (an origin of its own), a shop's page that embeds the widget with
/// `key` and styles every button and field on it loudly.
fn serve_shop_page(listener: tokio::net::TcpListener, server: &str, key: &str) {
    let html = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<style>button, input {{ background: rgb(255, 0, 0) !important; font-size: 40px !important; }}</style>
</head><body><h1>The shop</h1><button>Buy</button>
<script src="{server}/widget.js" data-key="{key}" defer></script></body></html>"#
    );
    let page = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let html = html.clone();
            async move { axum::response::Html(html) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, page).await.unwrap() });
}

/// The widget's shadow root, once the script has drawn it.
async fn widget(browser: &Client) -> ShadowRoot {
    let host = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("[data-anyreply-widget]"))
        .await
        .expect("the widget never appeared");
    host.shadow_root().await.unwrap()
}

/// The chat button: the visible button whose accessible name says "chat".
async fn chat_button(root: &ShadowRoot) -> Element {
    for button in root
        .find_all(Locator::Css("button[aria-label*='chat' i]"))
        .await
        .unwrap()
    {
        if button.is_displayed().await.unwrap() {
            return button;
        }
    }
    panic!("no visible button named chat")
}

/// The field labelled "Message".
async fn message_field(root: &ShadowRoot) -> Element {
    let label = root.find(Locator::Css("label[for]")).await.unwrap();
    assert_eq!(
        label.prop("textContent").await.unwrap().as_deref(),
        Some("Message")
    );
    let id = label.attr("for").await.unwrap().unwrap();
    root.find(Locator::Css(&format!("#{id}"))).await.unwrap()
}

/// Waits until the conversation shows `texts`, in order.
async fn wait_for_log(root: &ShadowRoot, texts: &[&str]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut shown = Vec::new();
        for message in root.find_all(Locator::Css(".log .msg")).await.unwrap() {
            shown.push(
                message
                    .prop("textContent")
                    .await
                    .unwrap()
                    .unwrap_or_default(),
            );
        }
        if shown == texts {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the conversation shows {shown:?}, not {texts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A widget of a new assistant for `origin`: its publishable key.
async fn make_widget(stack: &Stack, origin: &str) -> String {
    let client = stack.client(&stack.base, quick_retries());
    let assistant = client
        .assistants()
        .create(&AssistantInput {
            name: Some("Shop".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/api/user/widgets", stack.base))
        .bearer_auth(&stack.key)
        .json(&json!({ "assistant_id": assistant.id, "allowed_origins": [origin] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["data"]["public_key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_visitor_chats_on_a_shop_page_and_finds_the_conversation_after_a_reload() {
    let stack = Stack::start(Duration::ZERO).await;
    let client = stack.client(&stack.base, quick_retries());
    // The shop's origin, for which the widget is made.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop = format!("http://{}", listener.local_addr().unwrap());
    let key = make_widget(&stack, &shop).await;
    serve_shop_page(listener, &stack.base, &key);

    let driver = Driver::start().await;
    let browser = driver.browser().await;
    browser.goto(&format!("{shop}/")).await.unwrap();
    let root = widget(&browser).await;
    let launcher = chat_button(&root).await;
    // The page's loud styles stay out of the widget.
    assert_eq!(
        launcher.css_value("background-color").await.unwrap(),
        "rgba(47, 91, 234, 1)"
    );
    launcher.click().await.unwrap();
    let field = message_field(&root).await;
    assert_eq!(field.css_value("font-size").await.unwrap(), "15px");
    field
        .send_keys("Do you ship to Austria?\u{E007}")
        .await
        .unwrap();
    wait_for_log(
        &root,
        &["Do you ship to Austria?", "echo: Do you ship to Austria?"],
    )
    .await;
    screenshot(&browser, "widget-chat").await;

    // The browser keeps the token the server issued; the conversation is the visitor's,
    // under `web:<public id>`, which is not the token, and streamed replies were stored.
    let token = browser
        .execute(
            "return localStorage.getItem('anyreply.visitor-token.' + arguments[0]);",
            vec![json!(key)],
        )
        .await
        .unwrap();
    let token = token.as_str().expect("no token in localStorage");
    assert!(token.starts_with("arvt_"), "{token}");
    let page = client
        .conversations()
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(page.data.len(), 1);
    let customer = &page.data[0].external_identifier;
    assert!(
        customer.starts_with("web:") && !customer.contains(&token[5..]),
        "{:?}",
        page.data[0]
    );

    browser.refresh().await.unwrap();
    let root = widget(&browser).await;
    chat_button(&root).await.click().await.unwrap();
    wait_for_log(
        &root,
        &["Do you ship to Austria?", "echo: Do you ship to Austria?"],
    )
    .await;
    let field = message_field(&root).await;
    field.send_keys("And to Italy?\u{E007}").await.unwrap();
    wait_for_log(
        &root,
        &[
            "Do you ship to Austria?",
            "echo: Do you ship to Austria?",
            "And to Italy?",
            "echo: And to Italy?",
        ],
    )
    .await;
    screenshot(&browser, "widget-reopened").await;
    let page = client
        .conversations()
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(page.data.len(), 1, "one visitor, one conversation");
    browser.close().await.unwrap();
}

#[tokio::test]
async fn a_page_of_an_unlisted_origin_says_the_chat_is_not_allowed_there() {
    let stack = Stack::start(Duration::ZERO).await;
    // The widget lists the shop; the page that embeds it is elsewhere.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page = format!("http://{}", listener.local_addr().unwrap());
    let key = make_widget(&stack, "https://shop.example.com").await;
    serve_shop_page(listener, &stack.base, &key);

    let driver = Driver::start().await;
    let browser = driver.browser().await;
    browser.goto(&format!("{page}/")).await.unwrap();
    let root = widget(&browser).await;
    chat_button(&root).await.click().await.unwrap();
    let field = message_field(&root).await;
    field.send_keys("Hello?\u{E007}").await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let notes = root.find_all(Locator::Css(".log .note")).await.unwrap();
        let mut shown = Vec::new();
        for note in notes {
            shown.push(note.prop("textContent").await.unwrap().unwrap_or_default());
        }
        if shown == ["This site is not allowed to use this chat"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the panel shows {shown:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!field.is_enabled().await.unwrap(), "the field stays usable");
    screenshot(&browser, "widget-not-allowed").await;
    assert_eq!(stack.messages().await, 0);
    browser.close().await.unwrap();
}

#[tokio::test]
async fn typing_dots_show_while_a_slow_model_answers_and_go_with_the_reply() {
    // The model takes 2 s: long enough to see the dots, short enough for a test.
    let stack = Stack::start(Duration::from_secs(2)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop = format!("http://{}", listener.local_addr().unwrap());
    let key = make_widget(&stack, &shop).await;
    serve_shop_page(listener, &stack.base, &key);

    let driver = Driver::start().await;
    let browser = driver.browser().await;
    browser.goto(&format!("{shop}/")).await.unwrap();
    let root = widget(&browser).await;
    chat_button(&root).await.click().await.unwrap();
    let field = message_field(&root).await;
    field.send_keys("Anyone there?\u{E007}").await.unwrap();

    // The dots, announced as "typing…" to screen readers, while the model works.
    let dots = root
        .find(Locator::Css(".log .assistant .typing[role='status']"))
        .await
        .expect("no typing dots while the reply is made");
    assert!(dots.is_displayed().await.unwrap());
    assert_eq!(
        dots.prop("textContent").await.unwrap().as_deref(),
        Some("typing\u{2026}")
    );
    assert_eq!(
        root.find_all(Locator::Css(".typing .dot"))
            .await
            .unwrap()
            .len(),
        3
    );
    screenshot(&browser, "widget-typing").await;

    wait_for_log(&root, &["Anyone there?", "echo: Anyone there?"]).await;
    assert!(
        root.find_all(Locator::Css(".typing"))
            .await
            .unwrap()
            .is_empty(),
        "the dots are gone with the reply"
    );
    browser.close().await.unwrap();
}
