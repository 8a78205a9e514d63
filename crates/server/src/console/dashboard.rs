//! `GET /console`: the account's name and balance, its replies and their cost per day for
//! the last 30 days (an SVG chart drawn here), and its busiest assistants.

use std::collections::HashMap;

use anyreply_core::Money;
use anyreply_core::wire::UsageGroup;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{Duration, NaiveDate, Utc};

use super::session::Operator;
use super::{ConsoleError, Layout};
use crate::app::App;
use crate::models::{account, assistant, usage};

const DAYS: i64 = 30;
const BUSIEST: usize = 5;
const CHART_WIDTH: i64 = 600;
const CHART_HEIGHT: i64 = 160;

/// One day's bar (replies) and its point on the cost line.
pub(super) struct Bar {
    pub(super) x: i64,
    pub(super) y: i64,
    pub(super) width: i64,
    pub(super) height: i64,
    pub(super) label: String,
}

pub(super) struct Busy {
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) replies: i64,
    pub(super) cost: Money,
}

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "console/dashboard.html")]
pub(super) struct DashboardPage {
    layout: Layout,
    name: String,
    balance: Money,
    replies: i64,
    cost: Money,
    bars: Vec<Bar>,
    /// The cost line's points, `x,y …`.
    cost_points: String,
    chart_width: i64,
    chart_height: i64,
    first_day: NaiveDate,
    last_day: NaiveDate,
    busiest: Vec<Busy>,
}

pub(super) async fn show(
    State(app): State<App>,
    operator: Operator,
) -> Result<Response, ConsoleError> {
    let account_id = operator.caller.account_id;
    let mut conn = app.db().await?;
    let me = account::find(&mut conn, account_id)
        .await?
        .ok_or(ConsoleError::SignedOut)?
        .into_me();
    let last_day = Utc::now().date_naive();
    let first_day = last_day - Duration::days(DAYS - 1);
    let by_day =
        usage::of_account(&mut conn, account_id, first_day, last_day, UsageGroup::Day).await?;
    let mut by_assistant = usage::of_account(
        &mut conn,
        account_id,
        first_day,
        last_day,
        UsageGroup::Assistant,
    )
    .await?;
    by_assistant.sort_by_key(|row| std::cmp::Reverse(row.replies));
    by_assistant.truncate(BUSIEST);
    let ids: Vec<i64> = by_assistant
        .iter()
        .filter_map(|row| row.assistant_id)
        .collect();
    let names: HashMap<i64, String> = assistant::names(&mut conn, account_id, &ids)
        .await?
        .into_iter()
        .collect();
    let busiest = by_assistant
        .into_iter()
        .filter_map(|row| {
            let id = row.assistant_id?;
            Some(Busy {
                id,
                name: names.get(&id).cloned().unwrap_or_else(|| format!("#{id}")),
                replies: row.replies,
                cost: row.cost,
            })
        })
        .collect();

    let days: Vec<(NaiveDate, i64, Money)> = (0..DAYS)
        .map(|n| {
            let day = first_day + Duration::days(n);
            let found = by_day.iter().find(|row| row.period == Some(day));
            (
                day,
                found.map_or(0, |row| row.replies),
                found.map_or(Money::ZERO, |row| row.cost),
            )
        })
        .collect();
    let most_replies = days.iter().map(|d| d.1).max().unwrap_or(0).max(1);
    let most_cost = days
        .iter()
        .map(|d| d.2.subunits())
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = CHART_WIDTH / DAYS;
    let bars = days
        .iter()
        .enumerate()
        .map(|(n, (day, replies, cost))| {
            let height = replies * (CHART_HEIGHT - 10) / most_replies;
            Bar {
                x: n as i64 * slot + 2,
                y: CHART_HEIGHT - height,
                width: slot - 4,
                height,
                label: format!("{day}: {replies} replies, cost {cost}"),
            }
        })
        .collect();
    let cost_points = days
        .iter()
        .enumerate()
        .map(|(n, (_, _, cost))| {
            let y = CHART_HEIGHT - (cost.subunits() * (CHART_HEIGHT - 10) / most_cost);
            format!("{},{}", n as i64 * slot + slot / 2, y)
        })
        .collect::<Vec<_>>()
        .join(" ");
    let page = DashboardPage {
        layout: Layout::signed_in(&operator, "dashboard"),
        name: me.name,
        balance: me.total_balance,
        replies: days.iter().map(|d| d.1).sum(),
        cost: Money::from_subunits(days.iter().map(|d| d.2.subunits()).sum()),
        bars,
        cost_points,
        chart_width: CHART_WIDTH,
        chart_height: CHART_HEIGHT,
        first_day,
        last_day,
        busiest,
    };
    Ok(page.into_response())
}
