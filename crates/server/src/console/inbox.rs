//! The team inbox's live parts and actions: the views' counts and the "needs a human" badge
//! (each page reloads them when the account's events say something changed), who else has a
//! conversation open, and assigning and noting, through the functions the API's handlers call.

use std::convert::Infallible;
use std::time::Duration;

use anyreply_core::wire::Author;
use axum::extract::{Path, Query, State};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use diesel_async::AsyncConnection;
use futures::{Stream, StreamExt};
use serde::Deserialize;

use super::conversations;
use super::form::Pairs;
use super::session::{Operator, Submitted};
use super::{ConsoleError, FormErrors, form_errors};
use crate::app::App;
use crate::controllers::{conversations as api, inbox};
use crate::error::ApiError;
use crate::events::{self, Holder};
use crate::models::conversation::{self, ALL_COUNTED, View, ViewCounts};
use crate::models::event::EventFilter;
use crate::models::{account, conversation_viewer};
use anyreply_core::ErrorCode;

/// One of the inbox's views, by the name its links use.
pub(super) fn view_named(name: &str, operator: &Operator) -> Option<View> {
    match name {
        "needs_human" => Some(View::NeedsHuman),
        "unassigned" => Some(View::Unassigned),
        "mine" => operator.operator_id.map(View::AssignedTo),
        _ => None,
    }
}

/// A view's link, with its count.
pub(super) struct Tab {
    pub(super) name: &'static str,
    pub(super) label: &'static str,
    pub(super) count: String,
    pub(super) current: bool,
}

/// The views' links, the current one marked.
pub(super) struct Tabs {
    pub(super) tabs: Vec<Tab>,
    pub(super) view: String,
}

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "console/inbox_tabs.html")]
pub(super) struct TabsFragment {
    tabs: Tabs,
}

impl Tabs {
    pub(super) fn of(counts: ViewCounts, current: &str, operator: &Operator) -> Self {
        let all = if counts.all > ALL_COUNTED {
            format!("{ALL_COUNTED}+")
        } else {
            counts.all.to_string()
        };
        let mut tabs = vec![(
            "needs_human",
            "Needs a human",
            counts.needs_human.to_string(),
        )];
        if operator.operator_id.is_some() {
            tabs.push(("mine", "Mine", counts.mine.to_string()));
        }
        tabs.push(("unassigned", "Unassigned", counts.unassigned.to_string()));
        tabs.push(("all", "All", all));
        Self {
            tabs: tabs
                .into_iter()
                .map(|(name, label, count)| Tab {
                    name,
                    label,
                    count,
                    current: name == current,
                })
                .collect(),
            view: current.to_owned(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct TabsQuery {
    #[serde(default)]
    view: String,
}

/// `GET /console/inbox/tabs?view=…`: the views with their counts, as the inbox shows them.
pub(super) async fn tabs(
    State(app): State<App>,
    operator: Operator,
    Query(query): Query<TabsQuery>,
) -> Result<Response, ConsoleError> {
    let mut conn = app.db().await?;
    let counts =
        conversation::view_counts(&mut conn, operator.account_id, operator.operator_id).await?;
    Ok(TabsFragment {
        tabs: Tabs::of(counts, &query.view, &operator),
    }
    .into_response())
}

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "console/inbox_badge.html")]
pub(super) struct Badge {
    needs_human: i64,
}

/// `GET /console/inbox/badge`: how many conversations need a human, for every page's header
/// (and its title, which the page's script prefixes with the count).
pub(super) async fn badge(
    State(app): State<App>,
    operator: Operator,
) -> Result<Response, ConsoleError> {
    let mut conn = app.db().await?;
    let needs_human = conversation::needing_a_human(&mut conn, operator.account_id).await?;
    Ok(Badge { needs_human }.into_response())
}

#[derive(Debug, Deserialize)]
pub(super) struct After {
    after: Option<i64>,
}

/// How often an idle event stream says it is alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /console/inbox/events?after=…`: the account's events (from now, without `after`) as
/// Server-Sent Events whose data is their type and conversation; pages reload their counts on
/// them.
pub(super) async fn events(
    State(app): State<App>,
    operator: Operator,
    Query(After { after }): Query<After>,
) -> Result<Sse<impl Stream<Item = Result<sse::Event, Infallible>>>, ConsoleError> {
    let after = match after {
        Some(after) => after,
        None => account::last_event_id(&mut *app.db().await?, operator.account_id).await?,
    };
    live_events(&app, &operator, after, EventFilter::default()).await
}

/// The account's events after `after` that pass `filter`, as Server-Sent Events whose data is
/// their type and conversation: the console's pages reload parts of themselves on them.
pub(super) async fn live_events(
    app: &App,
    operator: &Operator,
    after: i64,
    filter: EventFilter,
) -> Result<Sse<impl Stream<Item = Result<sse::Event, Infallible>> + use<>>, ConsoleError> {
    let subscription = app
        .event_streams
        .subscribe(
            &app.pool,
            operator.account_id,
            Holder::Session(operator.session_hash().to_vec()),
        )
        .await?;
    let stream = events::stream(app.pool.clone(), subscription, after, filter)
        .flat_map(futures::stream::iter)
        .map(|streamed| {
            let event = &streamed.event;
            let data = format!("{} {}", event.kind.as_str(), event.conversation_id);
            Ok(sse::Event::default().id(event.id.to_string()).data(data))
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "console/viewers.html")]
pub(super) struct Viewers {
    others: Vec<String>,
}

/// `GET /console/conversations/{id}/viewers`: notes that this operator has the conversation
/// open (the page asks every 20 seconds) and says who else has.
pub(super) async fn viewers(
    State(app): State<App>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let id = api::conversation_id(&id)?;
    let mut conn = app.db().await?;
    conversation::find(&mut conn, operator.account_id, id)
        .await?
        .ok_or(ApiError::new(ErrorCode::ConversationNotFound))?;
    let others =
        conversation_viewer::seen(&mut conn, id, operator.session_hash(), &operator.name).await?;
    Ok(Viewers { others }.into_response())
}

/// `POST /console/conversations/{id}/assign`: to the operator the form names (`me` for whoever
/// is signed in), or to no one.
pub(super) async fn assign(
    State(app): State<App>,
    Path(id): Path<String>,
    Submitted { operator, form }: Submitted<Pairs>,
) -> Result<Response, ConsoleError> {
    let conversation_id = api::conversation_id(&id)?;
    let assignee = match form.get("operator_id") {
        "me" => operator.operator_id,
        "" | "none" => None,
        other => Some(other.parse::<i64>().map_err(|_| ConsoleError::BadForm)?),
    };
    assign_to(&app, &operator, conversation_id, assignee).await?;
    Ok(Redirect::to(&format!("/console/conversations/{conversation_id}")).into_response())
}

/// Assigns as `POST /api/conversations/{id}/assign` does, by the signed-in operator.
pub(super) async fn assign_to(
    app: &App,
    operator: &Operator,
    id: uuid::Uuid,
    assignee: Option<i64>,
) -> Result<Option<Author>, ApiError> {
    let by = operator.author();
    let account_id = operator.account_id;
    let mut conn = app.db().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        inbox::assign(conn, account_id, id, assignee, &by).await
    })
    .await
}

/// `POST /console/conversations/{id}/notes`: an internal note by the signed-in operator.
pub(super) async fn add_note(
    State(app): State<App>,
    Path(id): Path<String>,
    Submitted { operator, form }: Submitted<Pairs>,
) -> Result<Response, ConsoleError> {
    let conversation_id = api::conversation_id(&id)?;
    let content = form.get("note").to_owned();
    let written =
        match anyreply_core::wire::NoteInput::from_json(&serde_json::json!({ "content": content }))
        {
            Ok(input) => {
                let author = operator.author();
                let account_id = operator.account_id;
                let mut conn = app.db().await?;
                conn.transaction::<_, ApiError, _>(async |conn| {
                    inbox::write_note(conn, account_id, conversation_id, &input.content, &author)
                        .await
                })
                .await
                .map(drop)
            }
            Err(errors) => Err(ApiError::validation(errors)),
        };
    match written {
        Ok(()) => {
            Ok(Redirect::to(&format!("/console/conversations/{conversation_id}")).into_response())
        }
        Err(refusal) => {
            let errors: FormErrors = form_errors(refusal, ErrorCode::ConversationNotFound)?;
            let refused = conversations::Refused::Note(errors);
            conversations::page_with_errors(&app, &operator, &id, refused).await
        }
    }
}
