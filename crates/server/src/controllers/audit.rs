//! `GET /api/user/audit`: the account's audit log, newest first.

use anyreply_core::ErrorBody;
use anyreply_core::limits::{DEFAULT_PER_PAGE, MAX_PER_PAGE};
use anyreply_core::validate::Fields;
use anyreply_core::wire::{AuditAction, AuditPage, AuditQuery};
use axum::Json;
use axum::extract::{RawQuery, State};

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, query_params};
use crate::models::audit_log::{self, BeforeId};
use crate::models::page::OpaqueCursor;

/// A page's query, read: the action, the page size and where it starts.
#[derive(Debug)]
pub struct AuditPageQuery {
    pub action: Option<AuditAction>,
    pub per_page: u32,
    pub before: Option<BeforeId>,
}

/// Reads `?per_page=&cursor=&action=`, every bad one at once.
pub fn read_query(query: Option<&str>) -> ApiResult<AuditPageQuery> {
    let params = query_params(query);
    let mut fields = Fields::new(&params);
    let per_page = fields
        .optional_integer("per_page", 1..=i64::from(MAX_PER_PAGE))
        .map_or(DEFAULT_PER_PAGE, |n| n as u32);
    let cursor = fields.optional_string("cursor", 1..=512);
    let action = fields.optional_string("action", 1..=64);
    let mut errors = fields.errors;
    let before = cursor.and_then(|text| {
        let decoded = BeforeId::decode(&text);
        if decoded.is_none() {
            errors.add("cursor", "The cursor is invalid.");
        }
        decoded
    });
    let action = action.and_then(|text| {
        let parsed = AuditAction::parse(&text);
        if parsed.is_none() {
            errors.add("action", "The action is not one the audit log records.");
        }
        parsed
    });
    errors
        .finish(AuditPageQuery {
            action,
            per_page,
            before,
        })
        .map_err(ApiError::validation)
}

/// The account's audit log, newest first, one page: who did what, and when (kept 180 days).
#[utoipa::path(
    get,
    path = "/api/user/audit",
    tag = "audit",
    security(("api_key" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "One page of the audit log", body = AuditPage),
        (status = 422, description = "`VALIDATION_ERROR`: a bad `per_page`, `cursor` or `action`", body = ErrorBody),
    )
)]
pub async fn list_audit(
    State(app): State<App>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<AuditPage>> {
    let query = read_query(query.as_deref())?;
    let mut conn = app.db().await?;
    let (rows, next_cursor) = audit_log::page(
        &mut conn,
        caller.account_id,
        query.action,
        query.per_page,
        query.before,
    )
    .await?;
    Ok(Json(AuditPage {
        data: rows.into_iter().filter_map(|row| row.into_wire()).collect(),
        per_page: query.per_page,
        next_cursor,
    }))
}
