//! The Anthropic Messages API, with its tool use.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use futures::StreamExt;

use super::{Answer, Completion, LlmError, Output, PromptMessage, TextStream, ToolCall};
use super::{TokenUsage, parse_event, send, send_streaming};

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

/// One event of a streamed answer (its `type` repeats the SSE event's name).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: StartedMessage,
    },
    ContentBlockStart {
        index: usize,
        content_block: Block,
    },
    ContentBlockDelta {
        index: usize,
        delta: BlockDelta,
    },
    MessageDelta {
        usage: Option<OutputUsage>,
    },
    MessageStop,
    Error {
        error: StreamError,
    },
    /// `ping`, `content_block_stop` and whatever is added later.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct StartedMessage {
    usage: Option<Usage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct OutputUsage {
    output_tokens: u32,
}

#[derive(Deserialize)]
struct StreamError {
    #[serde(rename = "type")]
    kind: String,
}

/// A content block being streamed.
enum Building {
    Text,
    ToolUse {
        id: String,
        name: String,
        /// The input as given at the start (`{}`), unless fragments follow.
        input: Value,
        json: String,
    },
    Other,
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
        if let Some(answer) = completion.answer_schema {
            // Anthropic's structured answer: a tool the model must call, its input the answer.
            body["tools"] = json!([{ "name": answer.name, "description": answer.description, "input_schema": answer.schema }]);
            body["tool_choice"] = json!({ "type": "tool", "name": answer.name });
        }
        if completion.stream.is_some() {
            body["stream"] = Value::Bool(true);
        }
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .header("anthropic-version", API_VERSION)
            .json(&body);
        if let Some(key) = &self.api_key {
            request = request.header("x-api-key", key.expose_secret());
        }
        if let Some(stream) = completion.stream {
            return read_stream(request, stream).await;
        }
        // 529, Anthropic's "overloaded", is a 5xx: retryable.
        let parsed: MessagesResponse = send(request).await?;
        let usage = parsed
            .usage
            .map(Usage::tokens)
            .and_then(TokenUsage::reported);
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
        let output = Output::from_parts(texts.join("\n"), calls)?;
        Ok(Answer { output, usage })
    }
}

impl Usage {
    fn tokens(self) -> TokenUsage {
        TokenUsage {
            prompt_tokens: self.input_tokens,
            completion_tokens: self.output_tokens,
        }
    }
}

/// Reads a streamed answer, its text sent on to `stream` as it arrives. Text blocks are
/// joined by a line break, as in an answer read whole.
async fn read_stream(
    request: reqwest::RequestBuilder,
    stream: &TextStream,
) -> Result<Answer, LlmError> {
    let mut events = send_streaming(request).await?;
    let mut answer = StreamedAnswer::default();
    while let Some(event) = events.next().await {
        let Some(data) = event?.data else { continue };
        if answer.apply(parse_event::<StreamEvent>(&data)?, stream)? == Stream::Stopped {
            return answer.finish();
        }
    }
    Err(LlmError::Unavailable(
        "the answer's stream ended early".into(),
    ))
}

/// Whether a streamed answer goes on.
#[derive(Debug, PartialEq, Eq)]
enum Stream {
    Continues,
    Stopped,
}

/// A streamed answer as its events have built it so far.
#[derive(Default)]
struct StreamedAnswer {
    blocks: Vec<Building>,
    text: String,
    usage: TokenUsage,
}

impl StreamedAnswer {
    fn apply(&mut self, event: StreamEvent, stream: &TextStream) -> Result<Stream, LlmError> {
        match event {
            StreamEvent::MessageStart { message } => {
                self.usage = message.usage.map(Usage::tokens).unwrap_or_default();
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => self.start_block(index, content_block, stream),
            StreamEvent::ContentBlockDelta { index, delta } => {
                match (self.blocks.get_mut(index), delta) {
                    (Some(Building::Text), BlockDelta::TextDelta { text: piece }) => {
                        stream.push(&piece);
                        self.text.push_str(&piece);
                    }
                    (
                        Some(Building::ToolUse { json, .. }),
                        BlockDelta::InputJsonDelta { partial_json },
                    ) => json.push_str(&partial_json),
                    _ => {}
                }
            }
            StreamEvent::MessageDelta { usage: Some(out) } => {
                self.usage.completion_tokens = out.output_tokens;
            }
            StreamEvent::MessageStop => return Ok(Stream::Stopped),
            // `overloaded_error` and `api_error` pass; anything else is a refusal.
            StreamEvent::Error { error } => {
                let detail = format!("{} in the stream", error.kind);
                return Err(match error.kind.as_str() {
                    "overloaded_error" | "api_error" => LlmError::Unavailable(detail),
                    _ => LlmError::Failed(detail),
                });
            }
            StreamEvent::MessageDelta { usage: None } | StreamEvent::Other => {}
        }
        Ok(Stream::Continues)
    }

    fn start_block(&mut self, index: usize, block: Block, stream: &TextStream) {
        if self.blocks.len() <= index {
            self.blocks.resize_with(index + 1, || Building::Other);
        }
        self.blocks[index] = match block {
            Block::Text { text: start } => {
                if !self.text.is_empty() {
                    stream.push("\n");
                    self.text.push('\n');
                }
                stream.push(&start);
                self.text.push_str(&start);
                Building::Text
            }
            Block::ToolUse { id, name, input } => Building::ToolUse {
                id,
                name,
                input,
                json: String::new(),
            },
            Block::Other => Building::Other,
        };
    }

    fn finish(self) -> Result<Answer, LlmError> {
        let calls = self
            .blocks
            .into_iter()
            .filter_map(|block| match block {
                Building::ToolUse {
                    id,
                    name,
                    input,
                    json,
                } => Some(ToolCall {
                    id,
                    name,
                    arguments: if json.trim().is_empty() {
                        input
                    } else {
                        serde_json::from_str(&json).unwrap_or(Value::String(json))
                    },
                }),
                _ => None,
            })
            .collect();
        Ok(Answer {
            output: Output::from_parts(self.text, calls)?,
            usage: self.usage.reported(),
        })
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
