//! `GET /api/user/stats`: the figures a support lead watches, per day or assistant, with the
//! whole range's totals. Counted from the account's events, which are kept 30 days.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// How stats are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum StatsGroup {
    /// One row per day (UTC) with a customer message, a reply or a handoff.
    Day,
    /// One row per assistant with any of those.
    Assistant,
}

impl StatsGroup {
    /// The group named `text` (`day` or `assistant`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "day" => Some(Self::Day),
            "assistant" => Some(Self::Assistant),
            _ => None,
        }
    }

    /// The group as sent: `day` or `assistant`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Assistant => "assistant",
        }
    }
}

/// Query of `GET /api/user/stats`; every field optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsQuery {
    /// First day (UTC); default 29 days before `to`.
    pub from: Option<NaiveDate>,
    /// Last day, included; default today.
    pub to: Option<NaiveDate>,
    /// Default [`StatsGroup::Day`].
    pub group_by: Option<StatsGroup>,
}

/// A handoff reason, as the model gave it, and how often it was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HandoffReason {
    /// The exact text (empty if the model gave none).
    pub reason: String,
    /// Handoffs that gave it.
    pub count: i64,
}

/// One group's figures, or the whole range's (`totals`: neither `period` nor `assistant_id`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatsRow {
    /// The day (with `group_by=day`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub period: Option<NaiveDate>,
    /// The assistant (with `group_by=assistant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub assistant_id: Option<i64>,
    /// Conversations with at least one customer message (`message.received`) in the group.
    pub conversations: i64,
    /// AI replies stored (`reply.created`).
    pub replies: i64,
    /// Of `conversations`, the share (0 to 1) with no handoff in the group; null when
    /// `conversations` is 0.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1))]
    pub ai_resolved_share: Option<f64>,
    /// Handoffs (`handoff.requested`).
    pub handoffs: i64,
    /// The most frequent handoff reasons, at most 5, the most frequent first (ties by text).
    pub reasons: Vec<HandoffReason>,
    /// Handoffs no operator message has followed yet; not in the percentiles.
    pub unanswered_handoffs: i64,
    /// The median of the seconds from each answered handoff to the conversation's first
    /// operator message after it (`percentile_cont`, to the millisecond); null when none.
    pub time_to_operator_median_seconds: Option<f64>,
    /// The 90th percentile of the same (`percentile_cont`); null when none.
    pub time_to_operator_p90_seconds: Option<f64>,
}

/// Answer of `GET /api/user/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatsResponse {
    /// Always `true`.
    pub status: bool,
    /// The whole range at once: a conversation counts once however many days it spans, and
    /// the percentiles are of all its handoffs.
    pub totals: StatsRow,
    /// The groups with any figure, in order (days, assistant ids).
    pub data: Vec<StatsRow>,
}
