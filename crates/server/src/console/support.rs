//! The dashboard's support figures for its days: the share of conversations the AI finished
//! without a handoff, the handoffs and their reasons, how long a handoff waited for a person,
//! and a chart of handoffs and the share per day (drawn as the replies' chart is).

use anyreply_core::wire::{HandoffReason, StatsGroup, StatsRow};
use chrono::NaiveDate;
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;

use super::dashboard::{
    Bar, CHART_HEIGHT, CHART_WIDTH, DayLabel, PLOT_BOTTOM, PLOT_HEIGHT, PLOT_LEFT, PLOT_RIGHT,
    PLOT_TOP, SLOT, Tick, day_labels, height_of, ticks,
};
use crate::models::stats;

/// What the template shows; figures without a value (no conversation, no answered handoff)
/// read "–".
pub(super) struct Support {
    pub(super) resolved: String,
    pub(super) handoffs: i64,
    pub(super) unanswered: i64,
    pub(super) median: String,
    pub(super) p90: String,
    pub(super) reasons: Vec<HandoffReason>,
    pub(super) chart: SupportChart,
}

/// Handoffs per day as bars (left axis), the AI-resolved share as a line (right axis, 0 to
/// 100%), broken where a day had no conversation, so no share.
pub(super) struct SupportChart {
    pub(super) width: i64,
    pub(super) height: i64,
    pub(super) left: i64,
    pub(super) right: i64,
    pub(super) top: i64,
    pub(super) bottom: i64,
    pub(super) bars: Vec<Bar>,
    /// The share line's runs of days, each `x,y …`.
    pub(super) share_lines: Vec<String>,
    pub(super) handoff_ticks: Vec<Tick>,
    pub(super) share_ticks: Vec<Tick>,
    pub(super) days: Vec<DayLabel>,
    /// Where the legend's second entry starts.
    pub(super) legend_share_x: i64,
}

/// The account's support figures for days `first..=last`.
pub(super) async fn support(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    first: NaiveDate,
    last: NaiveDate,
) -> QueryResult<Support> {
    let (totals, rows) = stats::of_account(conn, account_id, first, last, StatsGroup::Day).await?;
    let days: Vec<NaiveDate> = first.iter_days().take_while(|day| *day <= last).collect();
    Ok(from_stats(&totals, &rows, &days))
}

fn from_stats(totals: &StatsRow, rows: &[StatsRow], days: &[NaiveDate]) -> Support {
    let dash = || "–".to_owned();
    Support {
        resolved: totals.ai_resolved_share.map_or_else(dash, percent),
        handoffs: totals.handoffs,
        unanswered: totals.unanswered_handoffs,
        median: totals
            .time_to_operator_median_seconds
            .map_or_else(dash, duration),
        p90: totals
            .time_to_operator_p90_seconds
            .map_or_else(dash, duration),
        reasons: totals.reasons.clone(),
        chart: chart(rows, days),
    }
}

fn chart(rows: &[StatsRow], days: &[NaiveDate]) -> SupportChart {
    let of_day = |day: &NaiveDate| rows.iter().find(|row| row.period == Some(*day));
    let most = rows.iter().map(|row| row.handoffs).max().unwrap_or(0);
    let (mut bars, mut share_lines, mut run) = (Vec::new(), Vec::new(), Vec::new());
    for (day, n) in days.iter().zip(0..) {
        let (handoffs, share) =
            of_day(day).map_or((0, None), |r| (r.handoffs, r.ai_resolved_share));
        let height = height_of(handoffs, most);
        let plural = if handoffs == 1 { "" } else { "s" };
        let resolved = share.map_or_else(
            || "no conversations".to_owned(),
            |share| format!("{} resolved by the AI", percent(share)),
        );
        bars.push(Bar {
            x: PLOT_LEFT + n * SLOT + 2,
            y: PLOT_BOTTOM - height,
            width: SLOT - 4,
            height,
            label: format!("{day}: {handoffs} handoff{plural}, {resolved}"),
        });
        match share {
            Some(share) => run.push(format!(
                "{},{}",
                PLOT_LEFT + n * SLOT + SLOT / 2,
                PLOT_BOTTOM - (share * PLOT_HEIGHT as f64).round() as i64
            )),
            None if !run.is_empty() => share_lines.push(std::mem::take(&mut run).join(" ")),
            None => {}
        }
    }
    if !run.is_empty() {
        share_lines.push(run.join(" "));
    }
    SupportChart {
        width: CHART_WIDTH,
        height: CHART_HEIGHT,
        left: PLOT_LEFT,
        right: PLOT_RIGHT,
        top: PLOT_TOP,
        bottom: PLOT_BOTTOM,
        bars,
        share_lines,
        handoff_ticks: ticks(most, |n| n.to_string()),
        share_ticks: ticks(100, |n| format!("{n}%")),
        days: day_labels(days),
        legend_share_x: PLOT_LEFT + 220,
    }
}

/// A share (0 to 1) as a whole percentage.
fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// Seconds as a person reads them: `45 s`, `4 min 24 s`, `2 h 5 min`.
fn duration(seconds: f64) -> String {
    let seconds = seconds.round() as i64;
    if seconds < 60 {
        format!("{seconds} s")
    } else if seconds < 3600 {
        format!("{} min {} s", seconds / 60, seconds % 60)
    } else {
        format!("{} h {} min", seconds / 3600, seconds / 60 % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_shares_read_as_a_person_reads_them() {
        assert_eq!(duration(0.4), "0 s");
        assert_eq!(duration(59.6), "1 min 0 s");
        assert_eq!(duration(264.0), "4 min 24 s");
        assert_eq!(duration(7_500.0), "2 h 5 min");
        assert_eq!(percent(3.0 / 7.0), "43%");
        assert_eq!(percent(1.0), "100%");
    }

    #[test]
    fn the_share_line_breaks_on_days_without_conversations() {
        let day = |n| NaiveDate::from_ymd_opt(2026, 12, n).unwrap();
        let row = |n, share| StatsRow {
            period: Some(day(n)),
            ai_resolved_share: share,
            handoffs: 2,
            ..StatsRow::default()
        };
        let rows = [
            row(1, Some(1.0)),
            row(2, None),
            row(3, Some(0.5)),
            row(4, Some(0.0)),
        ];
        let chart = chart(&rows, &[day(1), day(2), day(3), day(4)]);
        assert_eq!(chart.share_lines.len(), 2);
        assert_eq!(chart.share_lines[0], format!("63,{PLOT_TOP}"));
        assert_eq!(chart.share_lines[1].split(' ').count(), 2);
        assert_eq!(
            chart.bars[1].label,
            "2026-12-02: 2 handoffs, no conversations"
        );
    }
}
