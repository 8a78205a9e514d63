//! `GET /api/user/usage`: what the account's replies (and the conversation summaries made
//! for them) cost, per day, assistant or model.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::Money;

/// How usage is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum UsageGroup {
    /// One row per day (UTC) with replies or summaries.
    Day,
    /// One row per assistant.
    Assistant,
    /// One row per model that answered.
    Model,
}

impl UsageGroup {
    /// The group named `text` (`day`, `assistant` or `model`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "day" => Some(Self::Day),
            "assistant" => Some(Self::Assistant),
            "model" => Some(Self::Model),
            _ => None,
        }
    }
}

impl UsageGroup {
    /// The group as sent: `day`, `assistant` or `model`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Assistant => "assistant",
            Self::Model => "model",
        }
    }
}

/// Query of `GET /api/user/usage`; every field optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageQuery {
    /// First day (UTC); default 29 days before `to`.
    pub from: Option<NaiveDate>,
    /// Last day, included; default today.
    pub to: Option<NaiveDate>,
    /// Default [`UsageGroup::Day`].
    pub group_by: Option<UsageGroup>,
}

/// One group's usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageRow {
    /// The day (with `group_by=day`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub period: Option<NaiveDate>,
    /// The assistant (with `group_by=assistant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub assistant_id: Option<i64>,
    /// The model (with `group_by=model`; `unknown` for replies stored before models were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub model: Option<String>,
    /// Replies made.
    pub replies: i64,
    /// Prompt tokens the provider counted, of the replies and of the summaries of
    /// conversations past the prompt budget.
    pub prompt_tokens: i64,
    /// Completion tokens the provider counted, of the replies and the summaries.
    pub completion_tokens: i64,
    /// What the replies and summaries were charged: these add up to what the balance lost.
    pub cost: Money,
}

/// Answer of `GET /api/user/usage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageResponse {
    /// Always `true`.
    pub status: bool,
    /// The groups, in order (days, assistant ids, model names).
    pub data: Vec<UsageRow>,
}
