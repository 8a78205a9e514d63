//! The team inbox through the API and the console: assignment, internal notes, who wrote
//! what, the views and their counts, and who else has a conversation open.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

use crate::console::{Browser, location};
use crate::handoff::EventStream;
use crate::operators::operator;
use crate::util::{TestAccount, TestApp, assert_error, openai_tool_calls};

/// An account with a conversation (one customer message answered) and its id.
async fn conversation(app: &TestApp, account: &TestAccount, customer: &str) -> String {
    let assistant = app.assistant(account, &json!({ "name": "Desk" })).await;
    let (status, reply) = app.reply(&account.key, assistant, customer, "hello").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["conversation_id"].as_str().unwrap().to_owned()
}

async fn add_operator(app: &TestApp, account: &TestAccount, email: &str, name: &str) -> i64 {
    let (status, body, _) = app
        .post(
            &account.key,
            "/api/user/operators",
            &json!({ "email": email, "name": name, "role": "agent" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["data"]["id"].as_i64().unwrap()
}

async fn list(app: &TestApp, account: &TestAccount, query: &str) -> Vec<Value> {
    let (status, body, _) = app
        .get(&account.key, &format!("/api/user/conversations?{query}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn conversations_are_assigned_and_unassigned_with_their_events() {
    let app = TestApp::spawn().await;
    let account = app.db_account("5").await;
    let other = app.db_account("5").await;
    let id = conversation(&app, &account, "+4915550001").await;
    let anna = add_operator(&app, &account, "anna@acme.example", "Anna 🦀").await;
    let strangers = add_operator(&app, &other, "eve@evil.example", "Eve").await;
    let mut events = EventStream::open(&app, &account.key, "", Some(2)).await;
    let path = format!("/api/conversations/{id}/assign");

    let (status, body, _) = app
        .post(&account.key, &path, &json!({ "operator_id": anna }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["assignee"],
        json!({ "operator_id": anna, "name": "Anna 🦀" })
    );
    // Again: nothing changes, no event.
    app.post(&account.key, &path, &json!({ "operator_id": anna }))
        .await;
    let (_, body, _) = app
        .post(&account.key, &path, &json!({ "operator_id": null }))
        .await;
    assert_eq!(body["assignee"], Value::Null);

    let frames = events.take(2).await;
    assert_eq!(frames[0].kind, "conversation.assigned");
    assert_eq!(frames[0].data["assignee"]["name"], "Anna 🦀");
    assert_eq!(
        frames[0].data["by"],
        json!({ "operator_id": null, "name": "API key" })
    );
    assert_eq!(frames[1].kind, "conversation.assigned");
    assert!(
        frames[1].data.get("assignee").is_none(),
        "{}",
        frames[1].data
    );

    let (status, body, _) = app
        .post(&account.key, &path, &json!({ "operator_id": strangers }))
        .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    assert!(body["errors"]["operator_id"].is_array());
    let (status, body, _) = app.post(&account.key, &path, &json!({})).await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    let (status, body, _) = app
        .post(&other.key, &path, &json!({ "operator_id": null }))
        .await;
    assert_error(status, &body, 404, "CONVERSATION_NOT_FOUND");
    let (status, body, _) = app
        .post(
            &account.key,
            "/api/conversations/nope/assign",
            &json!({ "operator_id": null }),
        )
        .await;
    assert_error(status, &body, 404, "CONVERSATION_NOT_FOUND");

    // Assigned, then the operator is removed: the conversation goes back to no one.
    app.post(&account.key, &path, &json!({ "operator_id": anna }))
        .await;
    assert_eq!(
        list(&app, &account, &format!("assignee_id={anna}"))
            .await
            .len(),
        1
    );
    let (_, got, _) = app
        .get(&account.key, &format!("/api/conversations/{id}"))
        .await;
    assert_eq!(got["assignee_id"], anna);
    app.request(
        &app.base,
        reqwest::Method::DELETE,
        &account.key,
        &format!("/api/user/operators/{anna}"),
        None,
    )
    .await;
    let (_, got, _) = app
        .get(&account.key, &format!("/api/conversations/{id}"))
        .await;
    assert_eq!(got["assignee_id"], Value::Null);
}

#[tokio::test]
async fn notes_are_for_operators_never_for_the_customer_or_the_model() {
    let app = TestApp::spawn().await;
    let account = app.db_account("5").await;
    let id = conversation(&app, &account, "+4915550002").await;
    let bo = add_operator(&app, &account, "bo@acme.example", "Bo").await;
    let path = format!("/api/conversations/{id}/notes");

    let (status, body, _) = app
        .post(
            &account.key,
            &path,
            &json!({ "content": "VIP: refund without asking 🤫", "operator_id": bo }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["data"]["author"],
        json!({ "operator_id": bo, "name": "Bo" })
    );
    let (_, body, _) = app
        .post(&account.key, &path, &json!({ "content": "by the key" }))
        .await;
    assert_eq!(body["data"]["author"]["name"], "API key");
    for bad in [
        json!({ "content": "" }),
        json!({ "content": "a\u{0}b" }),
        json!({ "content": "x", "operator_id": 999_999 }),
    ] {
        let (status, body, _) = app.post(&account.key, &path, &bad).await;
        assert_error(status, &body, 422, "VALIDATION_ERROR");
    }
    let (_, notes, _) = app.get(&account.key, &path).await;
    let contents: Vec<&str> = notes["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["VIP: refund without asking 🤫", "by the key"]);

    // Not in the history, not in the next prompt.
    let (_, history, _) = app
        .get(&account.key, &format!("/api/conversations/{id}"))
        .await;
    assert!(!history.to_string().contains("VIP"), "{history}");
    let (status, _) = app
        .reply(
            &account.key,
            history["assistant_id"].as_i64().unwrap(),
            "+4915550002",
            "and?",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let prompts = app.llm_requests().await;
    assert!(!prompts.last().unwrap().to_string().contains("VIP"));

    let mut events = EventStream::open(&app, &account.key, "", Some(0)).await;
    let frames = events.take(6).await;
    let note = frames.iter().find(|f| f.kind == "note.created").unwrap();
    assert_eq!(
        note.data["note"]["content"],
        "VIP: refund without asking 🤫"
    );
    assert_eq!(note.data["note"]["author"]["name"], "Bo");

    let other = app.db_account("1").await;
    let (status, body, _) = app.get(&other.key, &path).await;
    assert_error(status, &body, 404, "CONVERSATION_NOT_FOUND");
}

#[tokio::test]
async fn operator_messages_say_who_wrote_them() {
    let app = TestApp::spawn().await;
    let account = app.db_account("5").await;
    let id = conversation(&app, &account, "+4915550003").await;
    let cy = add_operator(&app, &account, "cy@acme.example", "Cy").await;
    let path = format!("/api/conversations/{id}/messages");
    let (status, body, _) = app
        .post(
            &account.key,
            &path,
            &json!({ "content": "Hi, Cy here.", "operator_id": cy }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["data"]["author"],
        json!({ "operator_id": cy, "name": "Cy" })
    );
    let (_, body, _) = app
        .post(&account.key, &path, &json!({ "content": "From the CRM." }))
        .await;
    assert_eq!(
        body["data"]["author"],
        json!({ "operator_id": null, "name": "API key" })
    );
    let (status, body, _) = app
        .post(
            &account.key,
            &path,
            &json!({ "content": "x", "operator_id": 424_242 }),
        )
        .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");

    let (_, history, _) = app
        .get(&account.key, &format!("/api/conversations/{id}"))
        .await;
    let messages = history["history"].as_array().unwrap();
    assert_eq!(messages[2]["author"]["name"], "Cy");
    assert!(
        messages[0].get("author").is_none(),
        "a customer message has no author"
    );

    let mut events = EventStream::open(&app, &account.key, "", Some(0)).await;
    let frames = events.take(4).await;
    let written = frames
        .iter()
        .find(|f| f.kind == "operator.message")
        .unwrap();
    assert_eq!(
        written.data["message"]["author"],
        json!({ "operator_id": cy, "name": "Cy" })
    );
}

#[tokio::test]
async fn a_handoff_puts_the_conversation_in_needs_a_human_until_someone_has_it() {
    let app = TestApp::spawn().await;
    let account = app.db_account("5").await;
    let assistant = app
        .assistant(
            &account,
            &json!({ "name": "Shoes", "handoff": { "enabled": true } }),
        )
        .await;
    app.script_model(|request: &Request| {
        let asks_for_a_person = String::from_utf8_lossy(&request.body).contains("I want a person");
        let answer = if asks_for_a_person {
            openai_tool_calls(&[(
                "h",
                "transfer_to_human",
                json!({ "reason": "asked for a person" }),
            )])
        } else {
            anyreply_server::testing::chat_completion("Happy to help.")
        };
        ResponseTemplate::new(200).set_body_json(answer)
    })
    .await;
    let (_, handed) = app
        .reply(&account.key, assistant, "+491", "I want a person")
        .await;
    assert_eq!(handed["ai_disabled"], true, "{handed}");
    let (_, answered) = app.reply(&account.key, assistant, "+492", "Shoes?").await;
    assert_eq!(answered["ai_disabled"], false);
    let handed_id = handed["conversation_id"].as_str().unwrap();

    let needing = list(&app, &account, "view=needs_human").await;
    assert_eq!(needing.len(), 1);
    assert_eq!(needing[0]["id"], handed_id);
    assert!(needing[0]["handoff_requested_at"].is_string());
    assert_eq!(list(&app, &account, "view=unassigned").await.len(), 1);
    let (status, body, _) = app
        .get(&account.key, "/api/user/conversations?view=everything")
        .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");
    let (status, body, _) = app
        .get(
            &account.key,
            "/api/user/conversations?view=unassigned&assignee_id=1",
        )
        .await;
    assert_error(status, &body, 422, "VALIDATION_ERROR");

    // An agent signs in, sees the badge and the counts, and takes it over: it is theirs.
    let (agent_id, mut agent) = operator(&app, &account, "dee@acme.example", "agent").await;
    let badge = agent.get("/console/inbox/badge").await;
    assert!(
        badge.html.contains("1 conversation needs a human"),
        "{}",
        badge.html
    );
    let inbox = agent.get("/console/conversations?view=needs_human").await;
    assert!(
        inbox
            .html
            .contains("Needs a human <span class=\"badge\">1</span>"),
        "{}",
        inbox.html
    );
    assert!(inbox.html.contains("+491") && !inbox.html.contains("+492"));
    agent
        .get(&format!("/console/conversations/{handed_id}"))
        .await;
    let page = agent
        .post(
            &format!("/console/conversations/{handed_id}/take-over"),
            &[],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(list(&app, &account, "view=needs_human").await.is_empty());
    assert_eq!(
        list(&app, &account, &format!("assignee_id={agent_id}"))
            .await
            .len(),
        1
    );
    let mine = agent.get("/console/conversations?view=mine").await;
    assert!(
        mine.html.contains("Mine <span class=\"badge\">1</span>") && mine.html.contains("+491")
    );
    let badge = agent.get("/console/inbox/badge").await;
    assert!(!badge.html.contains("need"), "{}", badge.html);

    // Handing back turns the AI on: no longer a handoff.
    agent
        .get(&format!("/console/conversations/{handed_id}"))
        .await;
    agent
        .post(
            &format!("/console/conversations/{handed_id}/hand-back"),
            &[],
        )
        .await;
    let (_, got, _) = app
        .get(&account.key, &format!("/api/conversations/{handed_id}"))
        .await;
    assert_eq!(got["handoff_requested_at"], Value::Null);
    assert_eq!(got["ai_enabled"], true);
}

#[tokio::test]
async fn the_console_assigns_notes_and_shows_who_else_has_a_conversation_open() {
    let app = TestApp::spawn().await;
    let account = app.db_account("5").await;
    let id = conversation(&app, &account, "+4915550004").await;
    let (fay, mut first) = operator(&app, &account, "fay@acme.example", "agent").await;
    let (_, mut second) = operator(&app, &account, "gil@acme.example", "admin").await;
    let page = format!("/console/conversations/{id}");

    first.get(&page).await;
    let alone = first.get(&format!("{page}/viewers")).await;
    assert!(!alone.html.contains("Also open"), "{}", alone.html);
    second.get(&page).await;
    let seen = second.get(&format!("{page}/viewers")).await;
    assert!(seen.html.contains("Also open by fay"), "{}", seen.html);

    let done = first
        .post(&format!("{page}/assign"), &[("operator_id", "me")])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&done), page);
    let shown = second.get(&page).await;
    assert!(shown.html.contains("Assigned to fay"), "{}", shown.html);

    let noted = second
        .post(
            &format!("{page}/notes"),
            &[("note", "Customer is <b>upset</b>")],
        )
        .await;
    assert_eq!(noted.status, StatusCode::SEE_OTHER);
    let shown = first.get(&page).await;
    assert!(
        shown.html.contains("Note by gil (operators only)"),
        "{}",
        shown.html
    );
    assert!(
        shown
            .html
            .contains("Customer is &#60;b&#62;upset&#60;/b&#62;")
            || shown.html.contains("Customer is &lt;b&gt;upset&lt;/b&gt;"),
        "escaped: {}",
        shown.html
    );
    let refused = second
        .post(&format!("{page}/notes"), &[("note", "   ")])
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused
            .html
            .contains("The content field must not be empty."),
        "{}",
        refused.html
    );

    first.get(&page).await;
    first
        .post(
            &format!("{page}/messages"),
            &[("content", "Fay here, sorting it out.")],
        )
        .await;
    let shown = second.get(&page).await;
    assert!(shown.html.contains("Operator · fay"), "{}", shown.html);

    // Unassign through the select; a forged id of no operator of the account is refused.
    let forged = second
        .post(&format!("{page}/assign"), &[("operator_id", "424242")])
        .await;
    assert_eq!(forged.status, StatusCode::UNPROCESSABLE_ENTITY);
    second.get(&page).await;
    second
        .post(&format!("{page}/assign"), &[("operator_id", "none")])
        .await;
    let (_, got, _) = app
        .get(&account.key, &format!("/api/conversations/{id}"))
        .await;
    assert_eq!(got["assignee_id"], Value::Null);
    let _ = fay;
}

#[tokio::test]
async fn the_inbox_counts_each_view() {
    let app = TestApp::spawn().await;
    let account = app.db_account("5").await;
    let first = conversation(&app, &account, "+4915550005").await;
    let (_, mut agent) = operator(&app, &account, "hu@acme.example", "agent").await;
    let tabs = agent.get("/console/inbox/tabs?view=all").await;
    assert!(
        tabs.html.contains("All <span class=\"badge\">1</span>"),
        "{}",
        tabs.html
    );
    assert!(
        tabs.html
            .contains("Unassigned <span class=\"badge\">0</span>")
    );
    app.post(
        &account.key,
        &format!("/api/automate/conversations/{first}/disable-ai"),
        &json!({}),
    )
    .await;
    let tabs = agent.get("/console/inbox/tabs?view=unassigned").await;
    assert!(
        tabs.html
            .contains("Unassigned <span class=\"badge\">1</span>"),
        "{}",
        tabs.html
    );
    assert!(tabs.html.contains("aria-current=\"page\">Unassigned"));
    // The owner's key session has no "Mine".
    let mut owner = Browser::new(&app);
    owner.sign_in(&account.key).await;
    let tabs = owner.get("/console/inbox/tabs?view=all").await;
    assert!(!tabs.html.contains("Mine"), "{}", tabs.html);
}

#[tokio::test]
async fn the_daily_sweep_forgets_pages_closed_an_hour_ago() {
    use diesel_async::RunQueryDsl;
    let app = TestApp::spawn().await;
    let account = app.db_account("5").await;
    let id = conversation(&app, &account, "+4915550006").await;
    let (_, mut first) = operator(&app, &account, "ian@acme.example", "agent").await;
    let (_, mut second) = operator(&app, &account, "jan@acme.example", "agent").await;
    first
        .get(&format!("/console/conversations/{id}/viewers"))
        .await;
    second
        .get(&format!("/console/conversations/{id}/viewers"))
        .await;
    let mut conn = app.db.connect().await;
    diesel::sql_query(
        "UPDATE conversation_viewers SET seen_at = now() - interval '61 minutes'
         WHERE name = 'ian'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let purged = anyreply_server::models::conversation_viewer::purge_gone(&mut conn)
        .await
        .unwrap();
    assert_eq!(purged, 1);
    assert_eq!(
        app.count("conversation_viewers").await,
        1,
        "the open page stays"
    );
}
