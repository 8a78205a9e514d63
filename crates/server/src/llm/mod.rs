//! Language model providers, behind one small vocabulary.

pub mod openai;

use std::fmt;

pub use openai::OpenAiClient;

use crate::reply::pricing::TokenUsage;

/// Who speaks a prompt message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptRole {
    System,
    User,
    Assistant,
}

/// One message of a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptMessage {
    pub role: PromptRole,
    pub content: String,
}

impl PromptMessage {
    pub fn new(role: PromptRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// What to ask the model.
#[derive(Debug, Clone)]
pub struct Completion<'a> {
    pub model: &'a str,
    pub temperature: f64,
    pub max_output_tokens: u32,
    pub messages: &'a [PromptMessage],
}

/// The model's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    pub usage: TokenUsage,
}

/// Why the model gave no answer. The detail is for logs only: it may quote the provider.
#[derive(Debug)]
pub enum LlmError {
    /// Timeout, connection failure, 429 or 5xx: worth retrying later.
    Unavailable(String),
    /// Any other refusal or an unusable answer.
    Failed(String),
}

impl fmt::Display for LlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LlmError::Unavailable(detail) => write!(f, "model unavailable: {detail}"),
            LlmError::Failed(detail) => write!(f, "model failed: {detail}"),
        }
    }
}

impl std::error::Error for LlmError {}
