//! The OpenAI Chat Completions API, which OpenAI, Ollama, vLLM, llama.cpp's server and
//! OpenRouter all speak: only the base URL differs.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{Answer, Completion, LlmError, PromptRole};
use crate::reply::pricing::TokenUsage;

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
    messages: Vec<ChatMessage<'a>>,
    temperature: f64,
    max_tokens: u32,
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'static str,
    content: &'a str,
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
        let mut endpoint = base_url.clone();
        endpoint
            .path_segments_mut()
            .map_err(|()| anyhow::anyhow!("base URL cannot be a base"))?
            .pop_if_empty()
            .extend(["chat", "completions"]);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("anyreply/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            endpoint,
            api_key,
        })
    }

    pub async fn complete(&self, completion: &Completion<'_>) -> Result<Answer, LlmError> {
        let body = ChatRequest {
            model: completion.model,
            messages: completion
                .messages
                .iter()
                .map(|m| ChatMessage {
                    role: role_name(m.role),
                    content: &m.content,
                })
                .collect(),
            temperature: completion.temperature,
            max_tokens: completion.max_output_tokens,
        };
        let mut request = self.http.post(self.endpoint.clone()).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let response = request
            .send()
            .await
            .map_err(|e| LlmError::Unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let detail = format!("HTTP {status}");
            return Err(if is_transient(status) {
                LlmError::Unavailable(detail)
            } else {
                LlmError::Failed(detail)
            });
        }
        let parsed: ChatResponse = response.json().await.map_err(|e| {
            if e.is_timeout() {
                LlmError::Unavailable("timed out reading the answer".into())
            } else {
                LlmError::Failed(format!("unreadable answer: {}", e.without_url()))
            }
        })?;
        let text = parsed
            .choices
            .into_iter()
            .next()
            .and_then(|choice| choice.message.content)
            .filter(|text| !text.trim().is_empty())
            .ok_or_else(|| LlmError::Failed("the answer holds no text".into()))?;
        let usage = parsed
            .usage
            .map(|u| TokenUsage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
            })
            .unwrap_or_default();
        Ok(Answer { text, usage })
    }
}

fn role_name(role: PromptRole) -> &'static str {
    match role {
        PromptRole::System => "system",
        PromptRole::User => "user",
        PromptRole::Assistant => "assistant",
    }
}

fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}
