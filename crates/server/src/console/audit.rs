//! The audit log (admins and owners): the account's newest entries, a page at a time, by
//! action.

use anyreply_core::FieldErrors;
use anyreply_core::wire::{AuditAction, AuditActorType, AuditEntry};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::session::Operator;
use super::{ConsoleError, Layout};
use crate::app::App;
use crate::error::ApiError;
use crate::models::audit_log::{self, BeforeId};
use crate::models::page::OpaqueCursor;

/// Entries a page shows.
const PER_PAGE: u32 = 50;

/// One entry as the page shows it.
pub(super) struct Row {
    at: String,
    who: String,
    action: &'static str,
    target: String,
    details: String,
}

impl Row {
    fn of(entry: AuditEntry) -> Self {
        let actor = entry.actor;
        let key = actor.api_key_prefix.unwrap_or_default();
        let who = match actor.kind {
            AuditActorType::Operator => format!(
                "{} (operator #{})",
                actor.name.unwrap_or_default(),
                actor.operator_id.unwrap_or_default()
            ),
            AuditActorType::ApiKey => format!("API key {key}"),
            AuditActorType::ConsoleApiKey => format!("Owner, console with API key {key}"),
            AuditActorType::Cli => "Command line".to_owned(),
            AuditActorType::Anonymous => "Not signed in".to_owned(),
        };
        let empty = entry.details.as_object().is_some_and(|d| d.is_empty());
        Self {
            at: entry.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            who,
            action: entry.action.as_str(),
            target: entry
                .target
                .map(|t| format!("{} {}", t.kind.replace('_', " "), t.id))
                .unwrap_or_default(),
            details: if empty {
                String::new()
            } else {
                entry.details.to_string()
            },
        }
    }
}

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "console/audit.html")]
pub(super) struct AuditLogPage {
    layout: Layout,
    rows: Vec<Row>,
    /// The action shown (empty: all).
    action: String,
    /// The query of the next (older) page.
    older: Option<String>,
}

impl AuditLogPage {
    fn actions(&self) -> Vec<&'static str> {
        AuditAction::ALL.iter().map(|a| a.as_str()).collect()
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditQuery {
    #[serde(default)]
    action: String,
    #[serde(default)]
    cursor: String,
}

/// `GET /console/audit?action=&cursor=`.
pub(super) async fn list(
    State(app): State<App>,
    operator: Operator,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ConsoleError> {
    let action = AuditAction::parse(&query.action);
    let before = match query.cursor.as_str() {
        "" => None,
        text => Some(BeforeId::decode(text).ok_or_else(|| {
            ApiError::validation(FieldErrors::single("cursor", "The cursor is invalid."))
        })?),
    };
    let mut conn = app.db().await?;
    let (rows, next) =
        audit_log::page(&mut conn, operator.account_id, action, PER_PAGE, before).await?;
    let shown = action.map_or("", AuditAction::as_str);
    let older = next.map(|cursor| {
        serde_urlencoded::to_string([("action", shown), ("cursor", cursor.as_str())])
            .unwrap_or_default()
    });
    Ok(AuditLogPage {
        layout: Layout::signed_in(&operator, "audit"),
        rows: rows
            .into_iter()
            .filter_map(|row| row.into_wire())
            .map(Row::of)
            .collect(),
        action: shown.to_owned(),
        older,
    }
    .into_response())
}
