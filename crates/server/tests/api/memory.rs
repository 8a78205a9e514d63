//! Memory past the budget: the turns a prompt leaves out are folded into a rolling summary by
//! the assistant's model after the reply, the summary goes into every later prompt, each range
//! of turns is summarised once (across processes too), and its tokens are billed.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyreply_server::reply::prompt::SUMMARY_HEADING;
use anyreply_server::testing::{chat_completion, eventually};
use diesel::QueryableByName;
use diesel::sql_types::{Int8, Nullable, Timestamptz};
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::util::{TestAccount, TestApp, anthropic_message, body_of, is_summary_request};

/// The facts (`FACT-…`) in `text`, each once, in order.
fn facts(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || c == ',' || c == '.') {
        if word.starts_with("FACT-") && !found.iter().any(|f| f == word) {
            found.push(word.to_owned());
        }
    }
    found
}

/// A summary that can be checked: the facts of the summary so far and of the new messages,
/// and the last message taken in (`Through: Customer: …`).
fn checkable_summary(material: &str) -> String {
    let last = material.lines().rfind(|l| !l.is_empty()).unwrap();
    format!("Facts: {}. Through: {last}", facts(material).join(" "))
}

/// The summary model of the Chat Completions stub.
fn summarises(request: &wiremock::Request) -> ResponseTemplate {
    let body = body_of(request);
    let material = body["messages"][1]["content"].as_str().unwrap();
    ResponseTemplate::new(200).set_body_json(chat_completion(&checkable_summary(material)))
}

/// The lines a summary request asked to add ("Customer: …", "Assistant: …").
fn lines_added(body: &Value) -> Vec<String> {
    let material = body["messages"][1]["content"].as_str().unwrap();
    let (_, added) = material
        .split_once("Messages to add, oldest first:\n")
        .unwrap();
    added.lines().map(str::to_owned).collect()
}

async fn say(app: &TestApp, account: &TestAccount, assistant: i64, text: &str) -> Value {
    let (status, body) = app.reply(&account.key, assistant, "c", text).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn conversation(app: &TestApp, account: &TestAccount, id: Uuid) -> Value {
    let (status, body, _) = app
        .get(&account.key, &format!("/api/conversations/{id}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[derive(Debug, QueryableByName)]
struct Books {
    #[diesel(sql_type = Int8)]
    balance: i64,
    #[diesel(sql_type = Int8)]
    replies: i64,
    #[diesel(sql_type = Int8)]
    replies_cost: i64,
    #[diesel(sql_type = Int8)]
    folds: i64,
    #[diesel(sql_type = Int8)]
    folds_cost: i64,
    #[diesel(sql_type = Int8)]
    total_cost: i64,
    #[diesel(sql_type = Int8)]
    prompt_tokens: i64,
    #[diesel(sql_type = Int8)]
    completion_tokens: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    claimed_until: Option<chrono::DateTime<chrono::Utc>>,
}

/// The conversation's books in one snapshot.
async fn books(app: &TestApp, id: Uuid) -> Books {
    let mut conn = app.db.connect().await;
    diesel::sql_query(
        "SELECT a.balance,
             (SELECT count(*) FROM messages WHERE conversation_id = c.id AND role = 'assistant') AS replies,
             (SELECT coalesce(sum(cost), 0)::int8 FROM messages
              WHERE conversation_id = c.id AND role = 'assistant') AS replies_cost,
             (SELECT count(*) FROM summary_folds WHERE conversation_id = c.id) AS folds,
             (SELECT coalesce(sum(cost), 0)::int8 FROM summary_folds
              WHERE conversation_id = c.id) AS folds_cost,
             c.total_cost, c.prompt_tokens, c.completion_tokens,
             c.summary_claimed_until AS claimed_until
         FROM conversations c JOIN accounts a ON a.id = c.account_id WHERE c.id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .get_result(&mut conn)
    .await
    .unwrap()
}

/// The conversation's folds, `(after_seq, through_seq)`, in order.
async fn folds(app: &TestApp, id: Uuid) -> Vec<(i64, i64)> {
    #[derive(QueryableByName)]
    struct Fold {
        #[diesel(sql_type = Int8)]
        after_seq: i64,
        #[diesel(sql_type = Int8)]
        through_seq: i64,
    }
    let mut conn = app.db.connect().await;
    let rows: Vec<Fold> = diesel::sql_query(
        "SELECT after_seq, through_seq FROM summary_folds WHERE conversation_id = $1 ORDER BY after_seq",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .load(&mut conn)
    .await
    .unwrap();
    rows.into_iter()
        .map(|f| (f.after_seq, f.through_seq))
        .collect()
}

/// Waits until no fold is under way: no claim held, and every summary the model was asked
/// for stored (the stub never fails).
async fn until_folded(app: &TestApp, id: Uuid) {
    let settled = || async {
        let books = books(app, id).await;
        books.claimed_until.is_none() && app.summary_requests().await.len() as i64 == books.folds
    };
    // A fold starts on a task of its own after its reply's settlement, so a quiet moment may
    // come before the last one starts: quiet, and still quiet half a second later.
    loop {
        eventually("the summaries to be stored", settled).await;
        let folds = books(app, id).await.folds;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if settled().await && books(app, id).await.folds == folds {
            return;
        }
    }
}

/// `sent`, a prompt's history, is the newest of the conversation `shown` (before its last
/// exchange, the prompt's own) after the last message `summary` holds.
fn assert_sent_after(sent: &[&str], summary: &str, shown: &Value) {
    let history: Vec<String> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let who = if m["role"] == "user" {
                "Customer"
            } else {
                "Assistant"
            };
            format!("{who}: {}", m["content"].as_str().unwrap())
        })
        .collect();
    assert_eq!(history.len(), 2 + 2 + 80 + 2, "one page holds it all");
    let through = summary.split_once("Through: ").unwrap().1;
    let summarised = history.iter().position(|line| line == through).unwrap();
    let newest = history.len() - 2;
    let oldest_sent = newest - sent.len();
    assert!(
        oldest_sent > summarised,
        "{sent:?} reaches back past {through}"
    );
    let expected: Vec<&str> = history[oldest_sent..newest]
        .iter()
        .map(|line| line.split_once(": ").unwrap().1)
        .collect();
    assert_eq!(sent, expected);
}

#[tokio::test]
async fn a_fact_from_the_third_message_reaches_the_model_through_the_summary() {
    let app = TestApp::spawn_with(|s| s.context_token_budget = 200).await;
    app.script_summaries(summarises).await;
    let account = app.db_account("10").await;
    let assistant = app
        .assistant(
            &account,
            &json!({ "name": "A", "system_prompt": "Be brief." }),
        )
        .await;
    let first = say(&app, &account, assistant, "Hello").await;
    let id: Uuid = first["conversation_id"].as_str().unwrap().parse().unwrap();
    say(
        &app,
        &account,
        assistant,
        "Remember my locker code, FACT-7431.",
    )
    .await;
    // About eight messages fit the budget: forty exchanges push the third far out.
    for n in 1..=40 {
        let filler = format!("Filler message number {n}, nothing to remember here.");
        say(&app, &account, assistant, &filler).await;
    }
    eventually("the fact in the summary", || async {
        let shown = conversation(&app, &account, id).await;
        shown["summary"]
            .as_str()
            .is_some_and(|s| s.contains("FACT-7431"))
    })
    .await;

    say(&app, &account, assistant, "What is my locker code?").await;
    let prompt = app.llm_requests().await.pop().unwrap();
    let messages = prompt["messages"].as_array().unwrap();
    let contents: Vec<&str> = messages
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents[0], "Be brief.");
    let summary = contents[1]
        .strip_prefix(SUMMARY_HEADING)
        .unwrap_or_else(|| panic!("no summary after the system prompt: {contents:?}"));
    assert_eq!(messages[1]["role"], "system");
    assert!(
        summary.starts_with("Facts: FACT-7431. Through: "),
        "{summary}"
    );
    assert_eq!(
        contents.iter().filter(|c| c.contains("FACT-7431")).count(),
        1,
        "the fact comes through the summary only: {contents:?}"
    );
    // The history sent is the newest messages after the summary's last: none is sent twice.
    let shown = conversation(&app, &account, id).await;
    assert_sent_after(&contents[2..contents.len() - 1], summary, &shown);

    // GET shows the summary and how far it reaches.
    assert!(shown["summary"].as_str().unwrap().contains("FACT-7431"));
    assert!(shown["summary_through"].as_str().is_some(), "{shown}");
    // And so does the console's page of the conversation.
    let mut browser = crate::console::signed_in(&app, &account).await;
    let page = browser.get(&format!("/console/conversations/{id}")).await;
    assert!(
        page.html
            .contains("What the assistant remembers of earlier messages")
    );
    assert!(page.html.contains("FACT-7431"), "{}", page.html);
}

#[tokio::test]
async fn summaries_are_billed_and_counted_in_usage() {
    let app = TestApp::spawn_with(|s| s.context_token_budget = 200).await;
    app.script_summaries(summarises).await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let first = say(&app, &account, assistant, "Hello").await;
    let id: Uuid = first["conversation_id"].as_str().unwrap().parse().unwrap();
    for n in 1..=30 {
        say(
            &app,
            &account,
            assistant,
            &format!("Message {n} of a long talk."),
        )
        .await;
    }
    until_folded(&app, id).await;
    let today = chrono::Utc::now().date_naive();
    let usage_path = format!("/api/user/usage?from={today}&to={today}&group_by=assistant");
    // Every fold costs 0.002 (the stub's 1,000 tokens in and 500 out), as a reply does.
    let per_call = 200_000;
    eventually("the books to balance", || async {
        let books = books(&app, id).await;
        let (_, usage, _) = app.get(&account.key, &usage_path).await;
        let row = &usage["data"][0];
        let calls = books.replies + books.folds;
        books.folds > 0
            && books.folds_cost == books.folds * per_call
            && books.balance == 1_000_000_000 - books.replies_cost - books.folds_cost
            && books.total_cost == books.replies_cost + books.folds_cost
            && books.prompt_tokens == 1_000 * calls
            && books.completion_tokens == 500 * calls
            && row["replies"] == books.replies
            && row["prompt_tokens"] == 1_000 * calls
            && row["completion_tokens"] == 500 * calls
            && row["cost"].as_f64() == Some((books.total_cost as f64) / 1e8)
    })
    .await;
    let shown = conversation(&app, &account, id).await;
    let books = books(&app, id).await;
    assert_eq!(
        shown["total_cost"].as_f64(),
        Some(books.total_cost as f64 / 1e8)
    );
    assert_eq!(shown["prompt_tokens"], books.prompt_tokens);
}

#[tokio::test]
async fn each_range_of_turns_is_summarised_once_under_concurrent_replies() {
    let mut app = TestApp::spawn_with(|s| s.context_token_budget = 400).await;
    // Slow summaries, so that replies come while one is being made.
    app.script_summaries(|request| summarises(request).set_delay(Duration::from_millis(100)))
        .await;
    let other = app.start_server(app.settings.clone()).await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let first = say(&app, &account, assistant, "start").await;
    let id: Uuid = first["conversation_id"].as_str().unwrap().parse().unwrap();
    app.db_seed_history(id, 300).await;

    let calls = (0..16).map(|n| {
        let base = if n % 2 == 0 { &app.base } else { &other };
        let body = json!({ "assistant_id": assistant, "customer_identifier": "c", "message": format!("burst {n}") });
        let (app, key) = (&app, &account.key);
        async move {
            app.request(base, reqwest::Method::POST, key, "/api/ai/generate-reply", Some(&body))
                .await
        }
    });
    for (status, body, _) in futures::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
    }
    until_folded(&app, id).await;

    let folds = folds(&app, id).await;
    let requests = app.summary_requests().await;
    assert!(folds.len() >= 2, "{folds:?}");
    assert_eq!(
        requests.len(),
        folds.len(),
        "the model was asked once per range"
    );
    let mut after = 0;
    for &(from, through) in &folds {
        assert_eq!(from, after, "ranges follow one another: {folds:?}");
        after = through;
    }
    let mut seen = HashSet::new();
    for request in &requests {
        for line in lines_added(request) {
            assert!(seen.insert(line.clone()), "{line} summarised twice");
        }
    }
    assert!(seen.contains("Assistant: history line 2"), "{seen:?}");
}

#[tokio::test]
async fn a_failed_summary_never_fails_a_reply_and_a_later_reply_makes_it() {
    let app = TestApp::spawn_with(|s| s.context_token_budget = 200).await;
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    app.script_summaries(move |request| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            ResponseTemplate::new(400).set_body_json(json!({ "error": { "message": "no" } }))
        } else {
            summarises(request)
        }
    })
    .await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let first = say(&app, &account, assistant, "Hello FACT-1").await;
    let id: Uuid = first["conversation_id"].as_str().unwrap().parse().unwrap();
    let mut n = 0;
    while app.summary_requests().await.is_empty() {
        n += 1;
        assert!(n < 100, "no summary asked for");
        say(
            &app,
            &account,
            assistant,
            &format!("Message {n} of a long talk."),
        )
        .await;
    }
    say(&app, &account, assistant, "One more.").await;
    eventually("a later reply's summary", || async {
        let shown = conversation(&app, &account, id).await;
        shown["summary"]
            .as_str()
            .is_some_and(|s| s.contains("FACT-1"))
    })
    .await;
    assert!(AtomicUsize::load(&asked, Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn an_anthropic_assistant_remembers_through_its_own_model() {
    let anthropic = MockServer::start().await;
    let base = anthropic.uri();
    let app = TestApp::spawn_with(move |s| {
        s.anthropic_base_url = base.parse().unwrap();
        s.anthropic_api_key = Some("sk-ant-test".to_owned().into());
        s.context_token_budget = 200;
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(|request: &wiremock::Request| {
            let body = body_of(request);
            let last = body["messages"].as_array().unwrap().last().unwrap();
            let text = last["content"][0]["text"].as_str().unwrap();
            let answer = if is_summary_request(&body) {
                checkable_summary(text)
            } else {
                format!("echo: {text}")
            };
            ResponseTemplate::new(200).set_body_json(anthropic_message(
                json!([{ "type": "text", "text": answer }]),
                "end_turn",
            ))
        })
        .mount(&anthropic)
        .await;
    let account = app.db_account("10").await;
    let assistant = app
        .assistant(
            &account,
            &json!({ "name": "Claude", "llm_provider": "anthropic", "llm_model": "claude-sonnet-4-5" }),
        )
        .await;
    let first = say(&app, &account, assistant, "Hello").await;
    let id: Uuid = first["conversation_id"].as_str().unwrap().parse().unwrap();
    say(&app, &account, assistant, "My order is FACT-88.").await;
    for n in 1..=30 {
        say(
            &app,
            &account,
            assistant,
            &format!("Message {n} of a long talk."),
        )
        .await;
    }
    eventually("the fact in the summary", || async {
        let shown = conversation(&app, &account, id).await;
        shown["summary"]
            .as_str()
            .is_some_and(|s| s.contains("FACT-88"))
    })
    .await;
    say(&app, &account, assistant, "Which order?").await;
    let requests: Vec<Value> = anthropic
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(body_of)
        .filter(|body| !is_summary_request(body))
        .collect();
    let system = requests.last().unwrap()["system"].to_string();
    assert!(
        system.contains(SUMMARY_HEADING) && system.contains("FACT-88"),
        "{system}"
    );
    assert!(
        app.llm_requests().await.is_empty(),
        "OpenAI was never asked"
    );
}
