//! The OpenAI Chat Completions API, which OpenAI, Ollama, vLLM, llama.cpp's server and
//! OpenRouter all speak: only the base URL differs.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use futures::StreamExt;

use super::{Answer, Completion, LlmError, Output, PromptMessage, TextStream, ToolCall};
use super::{TokenUsage, parse_event, send, send_streaming};

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
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    /// Asks for the usage in a last chunk of a stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<Value>,
    /// A structured answer's JSON schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
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

/// One `chat.completion.chunk` of a streamed answer.
#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<Usage>,
    /// Some servers report a failure in the stream itself.
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Delta,
}

#[derive(Deserialize, Default)]
struct Delta {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallDelta>,
}

/// A fragment of the call at `index`: its id and name come first, its arguments in pieces.
#[derive(Deserialize)]
struct ToolCallDelta {
    index: usize,
    id: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
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
            stream: completion.stream.is_some(),
            stream_options: completion.stream.map(|_| json!({ "include_usage": true })),
            response_format: completion.answer_schema.map(|answer| {
                json!({ "type": "json_schema", "json_schema": {
                    "name": answer.name, "description": answer.description,
                    "strict": true, "schema": answer.schema } })
            }),
        };
        let mut request = self.http.post(self.endpoint.clone()).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        if let Some(stream) = completion.stream {
            return read_stream(request, stream).await;
        }
        let parsed: ChatResponse = send(request).await?;
        let usage = parsed
            .usage
            .map(Usage::tokens)
            .and_then(TokenUsage::reported);
        let message = parsed
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| LlmError::Failed("no choices".into()))?
            .message;
        let calls = message
            .tool_calls
            .into_iter()
            .map(|call| tool_call(call.id, call.function.name, call.function.arguments))
            .collect();
        let output = Output::from_parts(message.content.unwrap_or_default(), calls)?;
        Ok(Answer { output, usage })
    }
}

/// Reads a streamed answer, its text sent on to `stream` as it arrives.
async fn read_stream(
    request: reqwest::RequestBuilder,
    stream: &TextStream,
) -> Result<Answer, LlmError> {
    let mut events = send_streaming(request).await?;
    let mut text = String::new();
    // By index: (id, name, arguments so far).
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut usage = TokenUsage::default();
    let mut done = false;
    while let Some(event) = events.next().await {
        let Some(data) = event?.data else { continue };
        if data.trim() == "[DONE]" {
            done = true;
            break;
        }
        let chunk: Chunk = parse_event(&data)?;
        if let Some(error) = chunk.error {
            return Err(LlmError::Unavailable(format!(
                "error in the stream: {error}"
            )));
        }
        if let Some(reported) = chunk.usage {
            usage = reported.tokens();
        }
        let Some(choice) = chunk.choices.into_iter().next() else {
            continue;
        };
        if let Some(piece) = choice.delta.content {
            stream.push(&piece);
            text.push_str(&piece);
        }
        for fragment in choice.delta.tool_calls {
            if calls.len() <= fragment.index {
                calls.resize_with(fragment.index + 1, Default::default);
            }
            let call = &mut calls[fragment.index];
            call.0.push_str(fragment.id.as_deref().unwrap_or_default());
            if let Some(function) = fragment.function {
                call.1
                    .push_str(function.name.as_deref().unwrap_or_default());
                call.2
                    .push_str(function.arguments.as_deref().unwrap_or_default());
            }
        }
    }
    if !done {
        return Err(LlmError::Unavailable(
            "the answer's stream ended early".into(),
        ));
    }
    let calls = calls
        .into_iter()
        .filter(|(_, name, _)| !name.is_empty())
        .map(|(id, name, arguments)| tool_call(id, name, arguments))
        .collect();
    Ok(Answer {
        output: Output::from_parts(text, calls)?,
        usage: usage.reported(),
    })
}

impl Usage {
    fn tokens(self) -> TokenUsage {
        TokenUsage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
        }
    }
}

/// A call as the model wrote it: its arguments JSON text, kept as a string if unparseable.
fn tool_call(id: String, name: String, arguments: String) -> ToolCall {
    ToolCall {
        id,
        arguments: serde_json::from_str(&arguments).unwrap_or(Value::String(arguments)),
        name,
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
