//! The account's conversations: a searchable list, and a conversation's page, whose panel
//! (history and takeover switch) reloads itself on each of the conversation's events, with
//! the operator's "Take over", "Hand back to AI" and "Send", all through the functions the
//! API's handlers call.

use std::collections::HashMap;
use std::convert::Infallible;

use anyreply_core::wire::{HistoryMessage, Note, OperatorMessageInput, Role};
use anyreply_core::{ErrorCode, Money};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{self, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use diesel_async::AsyncConnection;
use futures::Stream;
use serde::Deserialize;
use uuid::Uuid;

use super::form::Pairs;
use super::inbox::{self, Tabs};
use super::session::{Operator, Submitted};
use super::{ConsoleError, FormErrors, Layout, form_errors};
use crate::app::App;
use crate::controllers::{conversations as api, handoff};
use crate::error::ApiError;
use crate::models::conversation::{self, ConversationRow, Cursor, ListFilter};
use crate::models::event::EventFilter;
use crate::models::page::OpaqueCursor;
use crate::models::{account, assistant, note, operator};

const PER_PAGE: u32 = 25;

#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    assistant: String,
    /// `on`, `off` or empty.
    #[serde(default)]
    ai: String,
    /// The inbox's view: `needs_human`, `mine`, `unassigned`, or all (anything else).
    #[serde(default)]
    view: String,
    #[serde(default)]
    cursor: String,
}

pub(super) struct Row {
    id: Uuid,
    customer_identifier: String,
    assistant: String,
    ai_enabled: bool,
    opted_out: bool,
    needs_human: bool,
    assignee: String,
    message_count: i64,
    total_cost: Money,
    updated_at: String,
}

impl Row {
    /// A conversation as the list shows it, its assistant and assignee by name.
    fn of(
        row: ConversationRow,
        assistants: &HashMap<i64, String>,
        operators: &HashMap<i64, String>,
    ) -> Self {
        let named = |names: &HashMap<i64, String>, id: i64| {
            names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"))
        };
        Row {
            id: row.id,
            customer_identifier: row.customer_identifier,
            assistant: named(assistants, row.assistant_id),
            ai_enabled: row.ai_enabled,
            opted_out: row.opted_out,
            needs_human: row.handoff_requested_at.is_some() && row.assignee_id.is_none(),
            assignee: row
                .assignee_id
                .map(|id| named(operators, id))
                .unwrap_or_default(),
            message_count: row.message_count,
            total_cost: Money::from_subunits(row.total_cost),
            updated_at: row.updated_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    }
}

pub(super) struct AssistantChoice {
    id: i64,
    name: String,
    chosen: bool,
}

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "console/conversations.html")]
pub(super) struct ListPage {
    layout: Layout,
    tabs: Tabs,
    query: ListQuery,
    assistants: Vec<AssistantChoice>,
    rows: Vec<Row>,
    /// Query strings of the neighbouring pages, and of this one (which reloads its rows when
    /// the account's events say the inbox changed).
    older: Option<String>,
    newer: Option<String>,
    this: String,
}

pub(super) async fn list(
    State(app): State<App>,
    operator: Operator,
    Query(mut query): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    let account_id = operator.account_id;
    let assistant_id = query.assistant.parse::<i64>().ok();
    let view = inbox::view_named(&query.view, &operator);
    if view.is_none() {
        query.view = "all".to_owned();
    }
    let filter = ListFilter {
        view,
        assistant_id,
        customer_contains: Some(query.q.trim().to_owned()).filter(|q| !q.is_empty()),
        ai_enabled: match query.ai.as_str() {
            "on" => Some(true),
            "off" => Some(false),
            _ => None,
        },
        ..ListFilter::default()
    };
    let cursor = Cursor::decode(&query.cursor);
    let mut conn = app.db().await?;
    let page = conversation::list(&mut conn, account_id, &filter, PER_PAGE, cursor).await?;
    let counts = conversation::view_counts(&mut conn, account_id, operator.operator_id).await?;
    let names: HashMap<i64, String> = assistant::list(&mut conn, account_id, 1_000, None)
        .await?
        .rows
        .into_iter()
        .map(|row| (row.id, row.name))
        .collect();
    let people = operator_names(&mut conn, account_id).await?;
    let rows = page
        .rows
        .into_iter()
        .map(|row| Row::of(row, &names, &people))
        .collect();
    let at = |cursor: &str| {
        serde_urlencoded::to_string([
            ("q", query.q.as_str()),
            ("assistant", query.assistant.as_str()),
            ("ai", query.ai.as_str()),
            ("view", query.view.as_str()),
            ("cursor", cursor),
        ])
        .unwrap_or_default()
    };
    let link = |cursor: Option<String>| cursor.map(|cursor| at(&cursor));
    let this = at(&query.cursor);
    let mut assistants: Vec<AssistantChoice> = names
        .into_iter()
        .map(|(id, name)| AssistantChoice {
            chosen: Some(id) == assistant_id,
            id,
            name,
        })
        .collect();
    assistants.sort_by_key(|choice| choice.id);
    Ok(ListPage {
        layout: Layout::signed_in(&operator, "conversations"),
        tabs: Tabs::of(counts, &query.view, &operator),
        older: link(page.next_cursor),
        newer: link(page.prev_cursor),
        this,
        query,
        assistants,
        rows,
    }
    .into_response())
}

/// The account's operators' names, by id.
async fn operator_names(
    conn: &mut diesel_async::AsyncPgConnection,
    account_id: i64,
) -> Result<HashMap<i64, String>, ConsoleError> {
    Ok(operator::list(conn, account_id)
        .await?
        .into_iter()
        .map(|row| (row.id, row.name))
        .collect())
}

/// One message, or note, as the timeline shows it.
pub(super) struct Shown {
    role: &'static str,
    who: String,
    content: String,
    function_calls: Vec<String>,
    cost: Option<Money>,
    at: String,
    when: chrono::DateTime<chrono::Utc>,
}

impl Shown {
    fn of(message: HistoryMessage) -> Self {
        let (role, who) = match (message.role, message.author) {
            (Role::User, _) => ("user", "Customer".to_owned()),
            (Role::Assistant, _) => ("assistant", "Assistant".to_owned()),
            (Role::Operator, Some(author)) => ("operator", format!("Operator · {}", author.name)),
            (Role::Operator, None) => ("operator", "Operator".to_owned()),
        };
        Self {
            when: message.created_at,
            role,
            who,
            content: message.content,
            function_calls: message
                .function_calls
                .unwrap_or_default()
                .into_iter()
                .map(|call| format!("{}({}) → {}", call.name, call.arguments, call.result))
                .collect(),
            cost: message.cost,
            at: message
                .created_at
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
        }
    }

    fn of_note(note: Note) -> Self {
        Self {
            role: "note",
            who: format!("Note by {} (operators only)", note.author.name),
            content: note.content,
            function_calls: Vec::new(),
            cost: None,
            at: note.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            when: note.created_at,
        }
    }
}

/// The messages with the notes written since the oldest of them (all notes when the history
/// is whole), in time order.
fn timeline(history: Vec<HistoryMessage>, whole: bool, notes: Vec<Note>) -> Vec<Shown> {
    let since = history.first().map(|m| m.created_at).filter(|_| !whole);
    let mut shown: Vec<Shown> = history.into_iter().map(Shown::of).collect();
    shown.extend(
        notes
            .into_iter()
            .filter(|note| since.is_none_or(|since| note.created_at >= since))
            .map(Shown::of_note),
    );
    shown.sort_by_key(|item| item.when);
    shown
}

/// The part of the conversation page that reloads itself.
pub(super) struct Panel {
    id: Uuid,
    customer_identifier: String,
    ai_enabled: bool,
    opted_out: bool,
    total_cost: Money,
    /// The model handed over and no one has the conversation yet.
    needs_human: bool,
    /// Who has it (`None`: no one), and whether that is the signed-in operator.
    assignee: Option<String>,
    assignee_id: Option<i64>,
    mine: bool,
    /// Whether the signed-in person is an operator (the owner's key session has no "me").
    can_take: bool,
    /// The operators it may be assigned to: id and name.
    operators: Vec<(i64, String)>,
    history: Vec<Shown>,
    /// When it ended (`None`: active), as shown.
    ended_at: Option<String>,
    /// What the post-call schema found when it ended: name and value, as shown.
    extracted: Vec<(String, String)>,
    /// What the assistant remembers of the messages no longer in its prompts.
    summary: Option<String>,
    /// Where the page follows the conversation's events, from the account's last one.
    events: String,
    csrf: String,
}

impl Panel {
    fn is_assignee(&self, id: &i64) -> bool {
        self.assignee_id == Some(*id)
    }
}

async fn load_panel(app: &App, operator: &Operator, id: &str) -> Result<Panel, ConsoleError> {
    let account_id = operator.account_id;
    let id = api::conversation_id(id)?;
    let conversation = api::history(app, account_id, id, api::HISTORY_PER_PAGE, i64::MAX).await?;
    let mut conn = app.db().await?;
    let last_event = account::last_event_id(&mut conn, account_id).await?;
    let notes = note::of_conversation(&mut conn, id).await?;
    let people = operator_names(&mut conn, account_id).await?;
    let mut operators: Vec<(i64, String)> = people.clone().into_iter().collect();
    operators.sort();
    let whole = conversation.next_cursor.is_none();
    Ok(Panel {
        id: conversation.id,
        customer_identifier: conversation.customer_identifier,
        ai_enabled: conversation.ai_enabled,
        opted_out: conversation.opted_out,
        total_cost: conversation.total_cost,
        needs_human: conversation.handoff_requested_at.is_some()
            && conversation.assignee_id.is_none(),
        assignee: conversation
            .assignee_id
            .map(|id| people.get(&id).cloned().unwrap_or_else(|| format!("#{id}"))),
        assignee_id: conversation.assignee_id,
        mine: conversation.assignee_id.is_some()
            && conversation.assignee_id == operator.operator_id,
        can_take: operator.operator_id.is_some(),
        operators,
        history: timeline(
            conversation.history,
            whole,
            notes.into_iter().map(|row| row.into_wire()).collect(),
        ),
        events: format!(
            "/console/conversations/{}/events?after={last_event}",
            conversation.id
        ),
        summary: conversation.summary,
        ended_at: conversation
            .ended_at
            .map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string()),
        extracted: conversation
            .extracted_variables
            .into_iter()
            .map(|(name, value)| match value {
                serde_json::Value::String(text) => (name, text),
                other => (name, other.to_string()),
            })
            .collect(),
        csrf: operator.csrf.clone(),
    })
}

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "console/conversation.html")]
pub(super) struct ConversationPage {
    layout: Layout,
    panel: Panel,
    draft: String,
    errors: FormErrors,
    note_errors: FormErrors,
}

/// Which of the page's forms was refused, and why.
pub(super) enum Refused {
    /// The message to the customer, with what was typed.
    Message {
        draft: String,
        errors: FormErrors,
    },
    Note(FormErrors),
}

/// The conversation page again with a refused form's errors (422).
pub(super) async fn page_with_errors(
    app: &App,
    operator: &Operator,
    id: &str,
    refused: Refused,
) -> Result<Response, ConsoleError> {
    let panel = load_panel(app, operator, id).await?;
    let (draft, errors, note_errors) = match refused {
        Refused::Message { draft, errors } => (draft, errors, FormErrors::default()),
        Refused::Note(errors) => (String::new(), FormErrors::default(), errors),
    };
    let page = ConversationPage {
        layout: Layout::signed_in(operator, "conversations"),
        panel,
        draft,
        errors,
        note_errors,
    };
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "console/conversation_panel.html")]
pub(super) struct PanelFragment {
    panel: Panel,
}

pub(super) async fn show(
    State(app): State<App>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let panel = load_panel(&app, &operator, &id).await?;
    Ok(ConversationPage {
        layout: Layout::signed_in(&operator, "conversations"),
        panel,
        draft: String::new(),
        errors: FormErrors::default(),
        note_errors: FormErrors::default(),
    }
    .into_response())
}

/// `GET …/panel`: the fragment the page swaps in when an event comes.
pub(super) async fn panel(
    State(app): State<App>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let panel = load_panel(&app, &operator, &id).await?;
    Ok(PanelFragment { panel }.into_response())
}

#[derive(Debug, Deserialize)]
pub(super) struct After {
    #[serde(default)]
    after: i64,
}

/// `GET …/events`: the conversation's events after `after`, as Server-Sent Events (the page
/// reloads its panel on each).
pub(super) async fn events(
    State(app): State<App>,
    operator: Operator,
    Path(id): Path<String>,
    Query(After { after }): Query<After>,
) -> Result<Sse<impl Stream<Item = Result<sse::Event, Infallible>>>, ConsoleError> {
    let conversation_id = api::conversation_id(&id)?;
    let account_id = operator.account_id;
    let mut conn = app.db().await?;
    conversation::find(&mut conn, account_id, conversation_id)
        .await?
        .ok_or(ApiError::new(ErrorCode::ConversationNotFound))?;
    drop(conn);
    let filter = EventFilter {
        conversation_id: Some(conversation_id),
        ..EventFilter::default()
    };
    inbox::live_events(&app, &operator, after, filter).await
}

async fn switch_ai(
    app: App,
    operator: Operator,
    id: String,
    enabled: bool,
) -> Result<Response, ConsoleError> {
    let conversation_id = api::conversation_id(&id)?;
    let account_id = operator.account_id;
    let actor = operator.actor();
    let mut conn = app.db().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        api::switch_ai(conn, account_id, conversation_id, enabled, &actor).await
    })
    .await?;
    Ok(Redirect::to(&format!("/console/conversations/{conversation_id}")).into_response())
}

/// `POST …/take-over`: the AI stops answering; the operator does, and has the conversation
/// assigned to them.
pub(super) async fn take_over(
    State(app): State<App>,
    Path(id): Path<String>,
    submitted: Submitted<Pairs>,
) -> Result<Response, ConsoleError> {
    let operator = submitted.operator;
    if operator.operator_id.is_some() {
        let conversation_id = api::conversation_id(&id)?;
        inbox::assign_to(&app, &operator, conversation_id, operator.operator_id).await?;
    }
    switch_ai(app, operator, id, false).await
}

/// `POST …/hand-back`: the AI answers again.
pub(super) async fn hand_back(
    State(app): State<App>,
    Path(id): Path<String>,
    submitted: Submitted<Pairs>,
) -> Result<Response, ConsoleError> {
    switch_ai(app, submitted.operator, id, true).await
}

/// `POST …/messages`: the operator's message to the customer.
pub(super) async fn send(
    State(app): State<App>,
    Path(id): Path<String>,
    Submitted { operator, form }: Submitted<Pairs>,
) -> Result<Response, ConsoleError> {
    let conversation_id = api::conversation_id(&id)?;
    let content = form.get("content").to_owned();
    let body = serde_json::json!({ "content": content });
    match store(&app, &operator, conversation_id, &body).await {
        Ok(()) => {
            Ok(Redirect::to(&format!("/console/conversations/{conversation_id}")).into_response())
        }
        Err(refusal) => {
            let errors = form_errors(refusal, ErrorCode::ConversationNotFound)?;
            let refused = Refused::Message {
                draft: content,
                errors,
            };
            page_with_errors(&app, &operator, &id, refused).await
        }
    }
}

/// Validates and stores an operator message as `POST /api/conversations/{id}/messages` does.
async fn store(
    app: &App,
    operator: &Operator,
    conversation_id: Uuid,
    body: &serde_json::Value,
) -> Result<(), ApiError> {
    let input: OperatorMessageInput =
        handoff::operator_message_input(body).map_err(ApiError::validation)?;
    let account_id = operator.account_id;
    // Written by whoever is signed in, whatever the form says.
    let author = operator.author();
    let mut conn = app.db().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        handoff::store_operator_message(conn, account_id, conversation_id, &input, &author).await
    })
    .await?;
    Ok(())
}
