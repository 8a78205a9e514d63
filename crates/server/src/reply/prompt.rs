//! Building the prompt: variables filled into templates, and a token budget that keeps the
//! conversation's summary (of the turns that fell out of earlier prompts) and the newest
//! history that fits.

use serde_json::{Map, Value};

use crate::llm::{PromptMessage, estimate_tokens};
use crate::models::message::{PromptLine, ROLE_USER};

/// Fills `{{name}}` (spaces inside the braces allowed) from `variables`. A variable that is
/// missing or null renders as an empty string; strings render as-is, other values as JSON.
pub fn render(template: &str, variables: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        let name = rest[start + 2..start + 2 + len].trim();
        match variables.get(name) {
            Some(Value::String(text)) => out.push_str(text),
            Some(Value::Null) | None => {}
            Some(other) => out.push_str(&other.to_string()),
        }
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    out
}

/// How the summary of the earlier conversation starts in a prompt.
pub const SUMMARY_HEADING: &str =
    "Summary of the earlier conversation (its messages are not shown): ";

/// A prompt under construction: the fixed parts first, then history from newest to oldest
/// for as long as the budget lasts.
#[derive(Debug)]
pub struct PromptBudget {
    head: Vec<PromptMessage>,
    history_newest_first: Vec<PromptMessage>,
    current: PromptMessage,
    fixed: u32,
    remaining: u32,
    full: bool,
}

impl PromptBudget {
    /// Estimated tokens of the parts that always go in.
    pub fn fixed_tokens(&self) -> u32 {
        self.fixed
    }

    /// The system prompt, the greeting and the customer's message always go in.
    pub fn new(system: String, greeting: Option<String>, current: String, budget: u32) -> Self {
        let mut fixed = estimate_tokens(&current);
        let mut head = Vec::new();
        if !system.trim().is_empty() {
            fixed += estimate_tokens(&system);
            head.push(PromptMessage::System(system));
        }
        if let Some(greeting) = greeting.filter(|g| !g.trim().is_empty()) {
            fixed += estimate_tokens(&greeting);
            head.push(PromptMessage::Assistant(greeting));
        }
        Self {
            head,
            history_newest_first: Vec::new(),
            current: PromptMessage::User(current),
            fixed,
            remaining: budget.saturating_sub(fixed),
            full: false,
        }
    }

    /// The conversation's summary of its earlier turns goes in too, after the system prompt
    /// and greeting: the history walk stops where it ends, so those turns reach the model
    /// only through it.
    pub fn remember(&mut self, summary: Option<&str>) {
        let Some(summary) = summary.filter(|s| !s.trim().is_empty()) else {
            return;
        };
        let text = format!("{SUMMARY_HEADING}{summary}");
        let cost = estimate_tokens(&text);
        self.fixed += cost;
        self.remaining = self.remaining.saturating_sub(cost);
        self.head.push(PromptMessage::System(text));
    }

    /// Estimated tokens still free for history.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Offers the next older message, the customer's (`from_customer`) or the assistant's;
    /// `false` once the budget is spent (offer no more).
    pub fn offer(&mut self, from_customer: bool, content: &str) -> bool {
        let cost = estimate_tokens(content);
        if self.full || cost > self.remaining {
            self.full = true;
            return false;
        }
        self.remaining -= cost;
        let content = content.to_owned();
        self.history_newest_first.push(if from_customer {
            PromptMessage::User(content)
        } else {
            PromptMessage::Assistant(content)
        });
        true
    }

    /// The messages in the order the model reads them.
    pub fn into_messages(self) -> Vec<PromptMessage> {
        let mut messages = self.head;
        messages.extend(self.history_newest_first.into_iter().rev());
        messages.push(self.current);
        messages
    }
}

/// A walk back through a conversation's history, a range of places at a time from the newest,
/// that ends as soon as the prompt budget is spent: a conversation of 10,000 messages reads no
/// more than one of 1,000 does. After the first page, each spans as many places as the
/// budget left would hold at the sizes seen so far (at least the first page's, at most
/// [`MAX_SPAN`]), so a long history of short messages takes few reads, and long messages no
/// more rows than fit.
#[derive(Debug)]
pub struct HistoryWalk {
    /// The place the next page ends before; `None` once the walk is over.
    before: Option<i64>,
    /// The newest place the conversation's summary holds: the walk reads only after it.
    floor: i64,
    /// The newest place the budget left out, if it left any out.
    dropped: Option<i64>,
    span: i64,
    first_span: i64,
    /// Rows offered so far, and their estimated tokens.
    seen_rows: u32,
    seen_tokens: u32,
}

/// The most places one page of a [`HistoryWalk`] spans.
pub const MAX_SPAN: i64 = 1024;

impl HistoryWalk {
    /// A walk through the history before place `seq` and after place `floor` (where the
    /// summary ends; 0 without one), the first page `span` places.
    pub fn new(seq: i64, span: i64, floor: i64) -> Self {
        Self {
            before: (seq > floor + 1).then_some(seq),
            floor,
            dropped: None,
            span,
            first_span: span,
            seen_rows: 0,
            seen_tokens: 0,
        }
    }

    /// Where the next page to read ends, and how many places it spans; `None` when no more is
    /// needed.
    pub fn next_page(&self) -> Option<(i64, i64)> {
        self.before.map(|before| (before, self.span_before(before)))
    }

    /// A page's span, cut short at the floor.
    fn span_before(&self, before: i64) -> i64 {
        self.span.min(before - 1 - self.floor)
    }

    /// The newest place the budget left out of the prompt: it and the places down to the
    /// floor are what the summary should take in next. `None` if the history all fit.
    pub fn dropped_through(&self) -> Option<i64> {
        self.dropped
    }

    /// Offers a page (newest first) to the prompt.
    pub fn offer(&mut self, prompt: &mut PromptBudget, page: Vec<PromptLine>) {
        let (mut rows, mut tokens) = (0, 0);
        for row in page {
            let cost = estimate_tokens(&row.content);
            // An operator's words are the business speaking, as the assistant does.
            if !prompt.offer(row.role == ROLE_USER, &row.content) {
                self.before = None;
                self.dropped = Some(row.seq);
                return;
            }
            rows += 1;
            tokens += cost;
        }
        let floor = self.floor;
        self.before = self
            .before
            .map(|before| before - self.span_before(before))
            .filter(|&before| before > floor + 1);
        self.seen_rows += rows;
        self.seen_tokens += tokens;
        if let Some(per_row) = self.seen_tokens.checked_div(self.seen_rows) {
            let wanted = i64::from(prompt.remaining() / per_row.max(1)) * 5 / 4 + 1;
            self.span = wanted.clamp(self.first_span, MAX_SPAN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_variables_and_blanks_missing_ones() {
        let vars = json!({ "name": "John", "visits": 3, "vip": null })
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(
            render(
                "Hi {{name}}, visit {{ visits }}{{vip}}{{missing}}. {{unclosed",
                &vars
            ),
            "Hi John, visit 3. {{unclosed"
        );
        assert_eq!(render("ünïcode {{name}}!", &vars), "ünïcode John!");
    }

    #[test]
    fn keeps_the_newest_history_that_fits() {
        // Fixed part: system (2+4) + current (1+4) = 11 tokens of 31.
        let mut prompt = PromptBudget::new("sys ".repeat(2), None, "now".into(), 31);
        assert!(prompt.offer(false, "newest..")); // 6
        assert!(prompt.offer(true, &"x".repeat(40))); // 14
        assert!(!prompt.offer(false, "old")); // 5 > 0 left
        assert!(!prompt.offer(true, "")); // nothing after the first refusal
        assert_eq!(
            prompt.into_messages(),
            [
                PromptMessage::System("sys sys ".into()),
                PromptMessage::User("x".repeat(40)),
                PromptMessage::Assistant("newest..".into()),
                PromptMessage::User("now".into()),
            ]
        );
    }

    #[test]
    fn the_history_walk_stops_reading_once_the_budget_is_spent() {
        // 10,000 messages of 9 estimated tokens each at places 1..=10,000; a budget for
        // about 220 of them.
        let history: Vec<(i64, PromptLine)> = (1..=10_000)
            .rev()
            .map(|seq| {
                let line = PromptLine {
                    seq,
                    role: if seq % 2 == 0 {
                        crate::models::message::ROLE_ASSISTANT.to_owned()
                    } else {
                        ROLE_USER.to_owned()
                    },
                    content: format!("line {seq:012}"),
                };
                (seq, line)
            })
            .collect();
        let mut prompt = PromptBudget::new(String::new(), None, "now".into(), 2_000);
        let mut walk = HistoryWalk::new(10_001, 64, 0);
        let mut spans = Vec::new();
        while let Some((before, span)) = walk.next_page() {
            spans.push(span);
            let page: Vec<PromptLine> = history
                .iter()
                .filter(|(seq, _)| *seq < before && *seq >= before - span)
                .map(|(_, line)| line.clone())
                .collect();
            assert!(page.len() as i64 <= span);
            walk.offer(&mut prompt, page);
        }
        // 64 rows of 9 tokens leave 1,419 of 1,995 tokens: 157 rows, asked for with a margin.
        assert_eq!(spans, [64, 197], "220 messages fit: two pages, not 157");
        assert_eq!(walk.dropped_through(), Some(10_000 - 221));
        let messages = prompt.into_messages();
        assert_eq!(messages.len(), (2_000 - 5) / 9 + 1);
        assert_eq!(
            messages[messages.len() - 2],
            PromptMessage::Assistant(format!("line {:012}", 10_000))
        );
    }

    #[test]
    fn a_short_history_is_read_in_one_page_and_a_first_message_in_none() {
        let mut prompt = PromptBudget::new(String::new(), None, "now".into(), 2_000);
        let mut walk = HistoryWalk::new(3, 64, 0);
        assert_eq!(walk.next_page(), Some((3, 2)), "places 1 and 2");
        walk.offer(&mut prompt, Vec::new());
        assert_eq!(walk.next_page(), None);
        assert_eq!(HistoryWalk::new(1, 64, 0).next_page(), None);
    }

    fn lines(places: std::ops::RangeInclusive<i64>) -> Vec<PromptLine> {
        places
            .rev()
            .map(|seq| PromptLine {
                seq,
                role: ROLE_USER.to_owned(),
                content: format!("m{seq}"),
            })
            .collect()
    }

    #[test]
    fn the_walk_stops_where_the_summary_ends_and_the_summary_goes_in() {
        let mut prompt = PromptBudget::new("sys".into(), None, "now".into(), 2_000);
        prompt.remember(Some("the code is 42"));
        // Places 11..=99 are after the summary's end at 10: a first page of 64, then 25.
        let mut walk = HistoryWalk::new(100, 64, 10);
        assert_eq!(walk.next_page(), Some((100, 64)));
        walk.offer(&mut prompt, lines(36..=99));
        assert_eq!(walk.next_page(), Some((36, 25)));
        walk.offer(&mut prompt, lines(11..=35));
        assert_eq!(walk.next_page(), None);
        assert_eq!(walk.dropped_through(), None, "all fit: nothing to fold in");
        let messages = prompt.into_messages();
        assert_eq!(
            messages[..3],
            [
                PromptMessage::System("sys".into()),
                PromptMessage::System(format!("{SUMMARY_HEADING}the code is 42")),
                PromptMessage::User("m11".into()),
            ]
        );
        assert_eq!(messages.len(), 2 + 89 + 1);
        // At the summary's end already: nothing to read.
        assert_eq!(HistoryWalk::new(11, 64, 10).next_page(), None);
    }

    #[test]
    fn the_newest_place_left_out_is_what_the_summary_takes_in_next() {
        // "now" takes 5 tokens, each "mN" 5 (or 6): room for 3 of them.
        let mut prompt = PromptBudget::new(String::new(), None, "now".into(), 20);
        let mut walk = HistoryWalk::new(9, 64, 2);
        walk.offer(&mut prompt, lines(3..=8));
        assert_eq!(walk.next_page(), None);
        assert_eq!(walk.dropped_through(), Some(5));
    }
}
