//! `GET /console`: the account's name and balance, its replies and their cost per day for
//! the last 30 days (an SVG chart drawn here, with both axes, their labels and a legend), and
//! its busiest assistants; then the support figures (support.rs).

use std::collections::HashMap;

use anyreply_core::Money;
use anyreply_core::wire::{OperatorRole, UsageGroup};
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Duration, NaiveDate, Utc};

use super::session::Operator;
use super::support::{self, Support};
use super::{ConsoleError, Layout};
use crate::app::App;
use crate::models::{account, assistant, usage};

pub(super) const DAYS: i64 = 30;
const BUSIEST: usize = 5;

// The chart's geometry, in SVG units: the plot, with room left for the replies' axis, right
// for the cost's (exact amounts are long), above for the axes' titles and below for the days
// and the legend.
pub(super) const SLOT: i64 = 15;
pub(super) const PLOT_LEFT: i64 = 56;
pub(super) const PLOT_TOP: i64 = 28;
const PLOT_WIDTH: i64 = SLOT * DAYS;
pub(super) const PLOT_HEIGHT: i64 = 160;
pub(super) const PLOT_RIGHT: i64 = PLOT_LEFT + PLOT_WIDTH;
pub(super) const PLOT_BOTTOM: i64 = PLOT_TOP + PLOT_HEIGHT;
pub(super) const CHART_WIDTH: i64 = PLOT_RIGHT + 128;
pub(super) const CHART_HEIGHT: i64 = PLOT_BOTTOM + 52;
/// Days between two labels of the time axis.
const DAY_LABEL_EVERY: i64 = 7;

/// One day's bar (replies).
pub(super) struct Bar {
    pub(super) x: i64,
    pub(super) y: i64,
    pub(super) width: i64,
    pub(super) height: i64,
    pub(super) label: String,
}

/// A labelled value on a vertical axis, at height `y`.
pub(super) struct Tick {
    pub(super) y: i64,
    pub(super) label: String,
}

/// A labelled day on the time axis, centred on `x`.
pub(super) struct DayLabel {
    pub(super) x: i64,
    pub(super) label: String,
}

/// What the template draws: the plot's corners, its bars and cost line, the ticks of the
/// replies' axis (left) and the cost's (right), and the days below.
pub(super) struct Chart {
    pub(super) width: i64,
    pub(super) height: i64,
    pub(super) left: i64,
    pub(super) right: i64,
    pub(super) top: i64,
    pub(super) bottom: i64,
    pub(super) bars: Vec<Bar>,
    /// The cost line's points, `x,y …`.
    pub(super) cost_points: String,
    pub(super) reply_ticks: Vec<Tick>,
    pub(super) cost_ticks: Vec<Tick>,
    pub(super) days: Vec<DayLabel>,
    /// Where the legend's second entry starts.
    pub(super) legend_cost_x: i64,
}

/// How high `value` of `most` stands on the plot (`most` at its top).
pub(super) fn height_of(value: i64, most: i64) -> i64 {
    (i128::from(value) * i128::from(PLOT_HEIGHT) / i128::from(most.max(1))) as i64
}

/// Ticks at 0, half and the most (half only when it is a value of its own).
pub(super) fn ticks(most: i64, label: impl Fn(i64) -> String) -> Vec<Tick> {
    let mut values = vec![0];
    if most >= 2 {
        values.push(most / 2);
    }
    if most >= 1 {
        values.push(most);
    }
    values
        .into_iter()
        .map(|value| Tick {
            y: PLOT_BOTTOM - height_of(value, most),
            label: label(value),
        })
        .collect()
}

/// The labels of the time axis: the first day, every week, the last.
pub(super) fn day_labels(days: &[NaiveDate]) -> Vec<DayLabel> {
    let last = days.len() as i64 - 1;
    days.iter()
        .zip(0..)
        .filter(|(_, n)| {
            (n % DAY_LABEL_EVERY == 0 && last - n >= DAY_LABEL_EVERY / 2) || *n == last
        })
        .map(|(day, n)| DayLabel {
            x: PLOT_LEFT + n * SLOT + SLOT / 2,
            label: day.format("%b %-d").to_string(),
        })
        .collect()
}

fn chart(days: &[(NaiveDate, i64, Money)]) -> Chart {
    let most_replies = days.iter().map(|d| d.1).max().unwrap_or(0);
    let most_cost = days.iter().map(|d| d.2.subunits()).max().unwrap_or(0);
    let bars = days
        .iter()
        .zip(0..)
        .map(|((day, replies, cost), n)| {
            let height = height_of(*replies, most_replies);
            Bar {
                x: PLOT_LEFT + n * SLOT + 2,
                y: PLOT_BOTTOM - height,
                width: SLOT - 4,
                height,
                label: format!("{day}: {replies} replies, cost {cost}"),
            }
        })
        .collect();
    let cost_points = days
        .iter()
        .zip(0..)
        .map(|((_, _, cost), n)| {
            let y = PLOT_BOTTOM - height_of(cost.subunits(), most_cost);
            format!("{},{}", PLOT_LEFT + n * SLOT + SLOT / 2, y)
        })
        .collect::<Vec<_>>()
        .join(" ");
    let day_labels = day_labels(&days.iter().map(|d| d.0).collect::<Vec<_>>());
    Chart {
        width: CHART_WIDTH,
        height: CHART_HEIGHT,
        left: PLOT_LEFT,
        right: PLOT_RIGHT,
        top: PLOT_TOP,
        bottom: PLOT_BOTTOM,
        bars,
        cost_points,
        reply_ticks: ticks(most_replies, |n| n.to_string()),
        cost_ticks: ticks(most_cost, |n| Money::from_subunits(n).to_string()),
        days: day_labels,
        legend_cost_x: PLOT_LEFT + 220,
    }
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
    chart: Chart,
    first_day: NaiveDate,
    last_day: NaiveDate,
    busiest: Vec<Busy>,
    support: Support,
}

pub(super) async fn show(
    State(app): State<App>,
    operator: Operator,
) -> Result<Response, ConsoleError> {
    // Usage and costs are for admins; an agent's home is the inbox.
    if operator.role < OperatorRole::Admin {
        return Ok(Redirect::to("/console/conversations").into_response());
    }
    let account_id = operator.account_id;
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
    let page = DashboardPage {
        layout: Layout::signed_in(&operator, "dashboard"),
        name: me.name,
        balance: me.total_balance,
        replies: days.iter().map(|d| d.1).sum(),
        cost: days
            .iter()
            .fold(Money::ZERO, |sum, day| sum.saturating_add(day.2)),
        chart: chart(&days),
        first_day,
        last_day,
        busiest,
        support: support::support(&mut conn, account_id, first_day, last_day).await?,
    };
    Ok(page.into_response())
}
