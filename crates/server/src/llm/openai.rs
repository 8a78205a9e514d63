//! The OpenAI Chat Completions API, which OpenAI, Ollama, vLLM, llama.cpp's server and
//! OpenRouter all speak: only the base URL differs.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use super::TokenUsage;
use super::{Answer, Completion, LlmError, Output, PromptMessage, ToolCall, send};

/// A client of one Chat Completions endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    http: reqwest::Client,
    endpoint: Url,
    api_key: Option<SecretString>,
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<Value>,
    temperature: f64,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'static str>,
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ResponseMessage,
}

#[derive(Deserialize)]
struct ResponseMessage {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ResponseToolCall>,
}

#[derive(Deserialize)]
struct ResponseToolCall {
    id: String,
    function: ResponseFunction,
}

#[derive(Deserialize)]
struct ResponseFunction {
    name: String,
    /// JSON text, as the model wrote it.
    arguments: String,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: u32,
    completion_tokens: u32,
}

impl OpenAiClient {
    /// `base_url` is the API root, such as `https://api.openai.com/v1`.
    pub fn new(
        base_url: &Url,
        api_key: Option<SecretString>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            http: super::anthropic::http_client(timeout)?,
            endpoint: join(base_url, &["chat", "completions"])?,
            api_key,
        })
    }

    pub async fn complete(&self, completion: &Completion<'_>) -> Result<Answer, LlmError> {
        let tools: Vec<Value> = completion
            .functions
            .iter()
            .map(|f| json!({ "type": "function", "function": { "name": f.name, "description": f.description, "parameters": f.parameters } }))
            .collect();
        let tool_choice = match (tools.is_empty(), completion.may_call_functions) {
            (true, _) => None,
            (false, true) => Some("auto"),
            (false, false) => Some("none"),
        };
        let body = ChatRequest {
            model: completion.model,
            messages: completion.messages.iter().map(wire_message).collect(),
            temperature: completion.temperature,
            max_tokens: completion.max_output_tokens,
            tools,
            tool_choice,
        };
        let mut request = self.http.post(self.endpoint.clone()).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let parsed: ChatResponse = send(request).await?;
        let usage = parsed
            .usage
            .map(|u| TokenUsage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
            })
            .unwrap_or_default();
        let message = parsed
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| LlmError::Failed("no choices".into()))?
            .message;
        let text = message.content.filter(|text| !text.trim().is_empty());
        let output = if message.tool_calls.is_empty() {
            Output::Text(text.ok_or_else(|| LlmError::Failed("the answer holds no text".into()))?)
        } else {
            let calls = message
                .tool_calls
                .into_iter()
                .map(|call| ToolCall {
                    id: call.id,
                    arguments: serde_json::from_str(&call.function.arguments)
                        .unwrap_or(Value::String(call.function.arguments)),
                    name: call.function.name,
                })
                .collect();
            Output::ToolCalls { text, calls }
        };
        Ok(Answer { output, usage })
    }
}

/// `base_url` with `segments` appended to its path.
pub(crate) fn join(base_url: &Url, segments: &[&str]) -> anyhow::Result<Url> {
    let mut url = base_url.clone();
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("{base_url} cannot be a base URL"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

fn wire_message(message: &PromptMessage) -> Value {
    match message {
        PromptMessage::System(text) => json!({ "role": "system", "content": text }),
        PromptMessage::User(text) => json!({ "role": "user", "content": text }),
        PromptMessage::Assistant(text) => json!({ "role": "assistant", "content": text }),
        PromptMessage::ToolCalls { text, calls } => json!({
            "role": "assistant",
            "content": text,
            "tool_calls": calls.iter().map(|call| json!({
                "id": call.id,
                "type": "function",
                "function": { "name": call.name, "arguments": call.arguments.to_string() }
            })).collect::<Vec<_>>()
        }),
        PromptMessage::ToolResult {
            call_id, content, ..
        } => {
            json!({ "role": "tool", "tool_call_id": call_id, "content": content })
        }
    }
}
