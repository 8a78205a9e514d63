//! `GET /api/user/stats`.

use anyreply_core::ErrorBody;
use anyreply_core::wire::{StatsGroup, StatsResponse};
use axum::Json;
use axum::extract::{RawQuery, State};

use crate::app::App;
use crate::controllers::usage::read_range;
use crate::error::ApiResult;
use crate::extract::Caller;
use crate::models::stats;

/// The figures a support lead watches in a range of days (UTC), by day or assistant, with the
/// whole range's totals: conversations, AI replies, the share the AI finished without a
/// handoff, handoffs and their reasons, and how long a handoff waited for a person. Counted
/// from the account's events, which are kept 30 days.
#[utoipa::path(
    get,
    path = "/api/user/stats",
    tag = "account",
    security(("api_key" = [])),
    params(
        ("from" = Option<NaiveDate>, Query, description = "First day, `YYYY-MM-DD` (default: 29 days before `to`)"),
        ("to" = Option<NaiveDate>, Query, description = "Last day, included, `YYYY-MM-DD` (default: today, UTC)"),
        ("group_by" = Option<StatsGroup>, Query, description = "`day` (the default) or `assistant`"),
    ),
    responses(
        (status = 200, description = "The range's totals and one row per group", body = StatsResponse),
        (status = 422, description = "`VALIDATION_ERROR`: a bad date, `from` after `to`, a range over 366 days, an unknown `group_by`", body = ErrorBody),
    )
)]
pub async fn get_stats(
    State(app): State<App>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<StatsResponse>> {
    let range = read_range(
        query.as_deref(),
        StatsGroup::Day,
        StatsGroup::parse,
        "The group_by must be day or assistant.",
    )?;
    let mut conn = app.db().await?;
    let (totals, data) = stats::of_account(
        &mut conn,
        caller.account_id,
        range.from,
        range.to,
        range.group,
    )
    .await?;
    Ok(Json(StatsResponse {
        status: true,
        totals,
        data,
    }))
}
