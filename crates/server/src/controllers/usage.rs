//! `GET /api/user/usage`.

use anyreply_core::ErrorBody;
use anyreply_core::validate::Fields;
use anyreply_core::wire::{UsageGroup, UsageResponse};
use axum::Json;
use axum::extract::{RawQuery, State};
use chrono::{Days, NaiveDate, Utc};

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, query_params};
use crate::models::usage;

/// The longest range one call may ask for, in days.
const MAX_DAYS: u64 = 366;
/// The range when none is given: the last 30 days, today included.
const DEFAULT_DAYS: u64 = 30;

/// What the account's replies cost in a range of days (UTC), by day, assistant or model.
/// The costs add up to exactly what the balance was charged for them.
#[utoipa::path(
    get,
    path = "/api/user/usage",
    tag = "account",
    security(("api_key" = [])),
    params(
        ("from" = Option<NaiveDate>, Query, description = "First day, `YYYY-MM-DD` (default: 29 days before `to`)"),
        ("to" = Option<NaiveDate>, Query, description = "Last day, included, `YYYY-MM-DD` (default: today, UTC)"),
        ("group_by" = Option<UsageGroup>, Query, description = "`day` (the default), `assistant` or `model`"),
    ),
    responses(
        (status = 200, description = "One row per group", body = UsageResponse),
        (status = 422, description = "`VALIDATION_ERROR`: a bad date, `from` after `to`, a range over 366 days, an unknown `group_by`", body = ErrorBody),
    )
)]
pub async fn get_usage(
    State(app): State<App>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<UsageResponse>> {
    let params = query_params(query.as_deref());
    let mut fields = Fields::new(&params);
    let from_text = fields.optional_string("from", 1..=10);
    let to_text = fields.optional_string("to", 1..=10);
    let group_text = fields.optional_string("group_by", 1..=16);
    let mut errors = fields.errors;
    let mut date = |field: &str, text: Option<String>| {
        let text = text?;
        let parsed = NaiveDate::parse_from_str(&text, "%Y-%m-%d").ok();
        if parsed.is_none() {
            errors.add(
                field,
                format!("The {field} must be a date such as 2026-12-01."),
            );
        }
        parsed
    };
    let to = date("to", to_text).unwrap_or_else(|| Utc::now().date_naive());
    let from = date("from", from_text).unwrap_or_else(|| {
        to.checked_sub_days(Days::new(DEFAULT_DAYS - 1))
            .unwrap_or(to)
    });
    let group = match group_text.as_deref() {
        None => UsageGroup::Day,
        Some(text) => UsageGroup::parse(text).unwrap_or_else(|| {
            errors.add("group_by", "The group_by must be day, assistant or model.");
            UsageGroup::Day
        }),
    };
    if from > to {
        errors.add("from", "The from date must not be after the to date.");
    } else if (to - from).num_days() >= MAX_DAYS as i64 {
        errors.add("to", format!("The range may span at most {MAX_DAYS} days."));
    }
    errors.finish(()).map_err(ApiError::validation)?;
    let mut conn = app.db().await?;
    let data = usage::of_account(&mut conn, caller.account_id, from, to, group).await?;
    Ok(Json(UsageResponse { status: true, data }))
}
