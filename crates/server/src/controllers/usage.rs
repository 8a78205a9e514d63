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
    let range = read_range(
        query.as_deref(),
        UsageGroup::Day,
        UsageGroup::parse,
        "The group_by must be day, assistant or model.",
    )?;
    let mut conn = app.db().await?;
    let data = usage::of_account(
        &mut conn,
        caller.account_id,
        range.from,
        range.to,
        range.group,
    )
    .await?;
    Ok(Json(UsageResponse { status: true, data }))
}

/// A report's days and grouping (`from`, `to`, `group_by`), as read from its query.
#[derive(Debug, Clone, Copy)]
pub struct Range<G> {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub group: G,
}

/// Reads a report's query (usage, stats): `from` and `to` dates (default: the last 30 days,
/// today included), at most [`MAX_DAYS`] apart, and `group_by` (`default` when absent) by
/// `parse`; every bad field at once, as a `VALIDATION_ERROR` (`bad_group` for `group_by`).
pub fn read_range<G>(
    query: Option<&str>,
    default: G,
    parse: fn(&str) -> Option<G>,
    bad_group: &str,
) -> Result<Range<G>, ApiError> {
    let params = query_params(query);
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
        None => default,
        Some(text) => parse(text).unwrap_or_else(|| {
            errors.add("group_by", bad_group);
            default
        }),
    };
    if from > to {
        errors.add("from", "The from date must not be after the to date.");
    } else if (to - from).num_days() >= MAX_DAYS as i64 {
        errors.add("to", format!("The range may span at most {MAX_DAYS} days."));
    }
    errors
        .finish(Range { from, to, group })
        .map_err(ApiError::validation)
}
