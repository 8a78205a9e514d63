//! The Anthropic Messages API, with its tool use.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::TokenUsage;
use super::{Answer, Completion, LlmError, Output, PromptMessage, ToolCall, send};

const API_VERSION: &str = "2023-06-01";

/// A client of the Messages API.
#[derive(Debug, Clone)]
pub struct AnthropicClient {
    http: reqwest::Client,
    endpoint: Url,
    api_key: Option<SecretString>,
}

#[derive(Deserialize)]
struct MessagesResponse {
    content: Vec<Block>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Usage {
    input_tokens: u32,
    output_tokens: u32,
}

/// The HTTP client model providers share: bounded time, our user agent.
pub(crate) fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("anyreply/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

impl AnthropicClient {
    /// `base_url` is the API root, such as `https://api.anthropic.com`.
    pub fn new(
        base_url: &Url,
        api_key: Option<SecretString>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            http: http_client(timeout)?,
            endpoint: super::openai::join(base_url, &["v1", "messages"])?,
            api_key,
        })
    }

    pub async fn complete(&self, completion: &Completion<'_>) -> Result<Answer, LlmError> {
        let (system, messages) = wire_messages(completion.messages);
        let mut body = json!({
            "model": completion.model,
            "max_tokens": completion.max_output_tokens,
            // Anthropic's scale ends at 1.
            "temperature": completion.temperature.min(1.0),
            "messages": messages,
        });
        if !system.is_empty() {
            body["system"] = Value::String(system);
        }
        if !completion.functions.is_empty() {
            body["tools"] = completion
                .functions
                .iter()
                .map(|f| json!({ "name": f.name, "description": f.description, "input_schema": f.parameters }))
                .collect();
            body["tool_choice"] =
                json!({ "type": if completion.may_call_functions { "auto" } else { "none" } });
        }
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .header("anthropic-version", API_VERSION)
            .json(&body);
        if let Some(key) = &self.api_key {
            request = request.header("x-api-key", key.expose_secret());
        }
        // 529, Anthropic's "overloaded", is a 5xx: retryable.
        let parsed: MessagesResponse = send(request).await?;
        let usage = parsed
            .usage
            .map(|u| TokenUsage {
                prompt_tokens: u.input_tokens,
                completion_tokens: u.output_tokens,
            })
            .unwrap_or_default();
        let mut texts = Vec::new();
        let mut calls = Vec::new();
        for block in parsed.content {
            match block {
                Block::Text { text } => texts.push(text),
                Block::ToolUse { id, name, input } => calls.push(ToolCall {
                    id,
                    name,
                    arguments: input,
                }),
                Block::Other => {}
            }
        }
        let text = Some(texts.join("\n")).filter(|t| !t.trim().is_empty());
        let output = if calls.is_empty() {
            Output::Text(text.ok_or_else(|| LlmError::Failed("the answer holds no text".into()))?)
        } else {
            Output::ToolCalls { text, calls }
        };
        Ok(Answer { output, usage })
    }
}

/// The system text and the alternating user/assistant messages Anthropic expects: system
/// messages and a leading greeting go to `system`; neighbours of one role are merged.
fn wire_messages(messages: &[PromptMessage]) -> (String, Vec<Value>) {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in messages {
        let (role, block) = match message {
            PromptMessage::System(text) => {
                system.push(text.clone());
                continue;
            }
            PromptMessage::Assistant(text) if turns.is_empty() => {
                system.push(format!("You opened this conversation by saying: {text}"));
                continue;
            }
            PromptMessage::User(text) => ("user", vec![json!({ "type": "text", "text": text })]),
            PromptMessage::Assistant(text) => {
                ("assistant", vec![json!({ "type": "text", "text": text })])
            }
            PromptMessage::ToolCalls { text, calls } => {
                let mut blocks: Vec<Value> = text
                    .iter()
                    .map(|t| json!({ "type": "text", "text": t }))
                    .collect();
                blocks.extend(
                    calls.iter().map(|c| json!({ "type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments })),
                );
                ("assistant", blocks)
            }
            PromptMessage::ToolResult {
                call_id,
                content,
                is_error,
            } => (
                "user",
                vec![
                    json!({ "type": "tool_result", "tool_use_id": call_id, "content": content, "is_error": is_error }),
                ],
            ),
        };
        match turns.last_mut() {
            Some((last_role, blocks)) if *last_role == role => blocks.extend(block),
            _ => turns.push((role, block)),
        }
    }
    let messages = turns
        .into_iter()
        .map(|(role, content)| json!({ "role": role, "content": content }))
        .collect();
    (system.join("\n\n"), messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_and_greeting_go_to_system_and_roles_alternate() {
        let (system, messages) = wire_messages(&[
            PromptMessage::System("Be kind.".into()),
            PromptMessage::Assistant("Hi!".into()),
            PromptMessage::User("one".into()),
            PromptMessage::User("two".into()),
            PromptMessage::ToolCalls {
                text: None,
                calls: vec![ToolCall {
                    id: "t1".into(),
                    name: "f".into(),
                    arguments: json!({ "a": 1 }),
                }],
            },
            PromptMessage::ToolResult {
                call_id: "t1".into(),
                content: "{}".into(),
                is_error: false,
            },
        ]);
        assert_eq!(
            system,
            "Be kind.\n\nYou opened this conversation by saying: Hi!"
        );
        assert_eq!(
            Value::Array(messages),
            json!([
                { "role": "user", "content": [{ "type": "text", "text": "one" }, { "type": "text", "text": "two" }] },
                { "role": "assistant", "content": [{ "type": "tool_use", "id": "t1", "name": "f", "input": { "a": 1 } }] },
                { "role": "user", "content": [{ "type": "tool_result", "tool_use_id": "t1", "content": "{}", "is_error": false }] },
            ])
        );
    }
}
