//! Building the prompt: variables filled into templates, and a token budget that keeps the
//! newest history that fits.

use serde_json::{Map, Value};

use crate::llm::PromptMessage;
use crate::models::message::{MessageRow, ROLE_ASSISTANT};

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

/// The assistant's defaults overlaid with the conversation's own values.
pub fn merge_variables(defaults: &Value, own: &Value) -> Map<String, Value> {
    let mut merged = defaults.as_object().cloned().unwrap_or_default();
    if let Some(own) = own.as_object() {
        merged.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    merged
}

/// Tokens a message is estimated to take: about four characters a token, plus the few
/// tokens each message costs in the chat format. Exact counts vary by model; the budget only
/// needs to be safe, so this errs on the high side for typical text.
pub fn estimate_tokens(text: &str) -> u32 {
    let chars = u32::try_from(text.chars().count()).unwrap_or(u32::MAX);
    chars.div_ceil(4).saturating_add(4)
}

/// A prompt under construction: the fixed parts first, then history from newest to oldest
/// for as long as the budget lasts.
#[derive(Debug)]
pub struct PromptBudget {
    head: Vec<PromptMessage>,
    history_newest_first: Vec<PromptMessage>,
    current: PromptMessage,
    remaining: u32,
    full: bool,
}

impl PromptBudget {
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
            remaining: budget.saturating_sub(fixed),
            full: false,
        }
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

/// A walk back through a conversation's history, a page at a time from the newest message,
/// that ends as soon as the prompt budget is spent: a conversation of 10,000 messages reads no
/// more than one of 1,000 does.
#[derive(Debug)]
pub struct HistoryWalk {
    /// The position (`turn_id`, `id`) the next page ends before; `None` once the walk is over.
    before: Option<(i64, i64)>,
    page_size: usize,
}

impl HistoryWalk {
    /// A walk through the history before the customer message `message_id`.
    pub fn new(message_id: i64, page_size: usize) -> Self {
        Self {
            before: Some((message_id, 0)),
            page_size,
        }
    }

    /// Where the next page to read ends, or `None` when no more is needed.
    pub fn next_page(&self) -> Option<(i64, i64)> {
        self.before
    }

    /// Offers a page (newest first) to the prompt.
    pub fn offer(&mut self, prompt: &mut PromptBudget, page: Vec<MessageRow>) {
        let last_page = page.len() < self.page_size;
        for row in page {
            self.before = Some((row.turn_id, row.id));
            if !prompt.offer(row.role != ROLE_ASSISTANT, &row.content) {
                self.before = None;
                return;
            }
        }
        if last_page {
            self.before = None;
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
    fn conversation_values_win_over_defaults() {
        let merged = merge_variables(&json!({ "a": 1, "b": 2 }), &json!({ "b": 3 }));
        assert_eq!(Value::Object(merged), json!({ "a": 1, "b": 3 }));
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
        // 10,000 messages of 9 estimated tokens each; a budget for about 220 of them.
        let history: Vec<MessageRow> = (1..=10_000)
            .rev()
            .map(|id| MessageRow {
                id,
                turn_id: id,
                role: if id % 2 == 0 {
                    ROLE_ASSISTANT.to_owned()
                } else {
                    "user".to_owned()
                },
                content: format!("line {id:012}"),
                function_calls: None,
                cost: None,
                created_at: chrono::Utc::now(),
            })
            .collect();
        let mut prompt = PromptBudget::new(String::new(), None, "now".into(), 2_000);
        let mut walk = HistoryWalk::new(10_001, 64);
        let mut pages_read = 0;
        while let Some((before, _)) = walk.next_page() {
            pages_read += 1;
            let page: Vec<MessageRow> = history
                .iter()
                .filter(|m| m.turn_id < before)
                .take(64)
                .cloned()
                .collect();
            walk.offer(&mut prompt, page);
        }
        assert_eq!(pages_read, 4, "220 messages fit: four pages of 64, not 157");
        let messages = prompt.into_messages();
        assert_eq!(messages.len(), (2_000 - 5) / 9 + 1);
        assert_eq!(
            messages[messages.len() - 2],
            PromptMessage::Assistant(format!("line {:012}", 10_000))
        );
    }

    #[test]
    fn a_short_history_is_read_in_one_page() {
        let mut prompt = PromptBudget::new(String::new(), None, "now".into(), 2_000);
        let mut walk = HistoryWalk::new(3, 64);
        assert_eq!(walk.next_page(), Some((3, 0)));
        walk.offer(&mut prompt, Vec::new());
        assert_eq!(walk.next_page(), None);
    }
}
