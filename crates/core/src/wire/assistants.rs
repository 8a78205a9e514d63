//! `GET /api/user/assistants/get`, `POST /api/user/assistant`, `PUT /api/user/assistant/{id}`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Variables;
use crate::limits::{
    MAX_ASSISTANT_NAME_CHARS, MAX_ASSISTANT_TOOLS, MAX_HANDOFF_INSTRUCTIONS_CHARS,
    MAX_HANDOFF_MESSAGE_CHARS, MAX_INACTIVITY_TIMEOUT_MINUTES, MAX_MODEL_NAME_CHARS,
    MAX_POST_CALL_DESCRIPTION_CHARS, MAX_POST_CALL_FIELDS, MAX_PROMPT_CHARS,
    MAX_VARIABLE_NAME_CHARS, MAX_VARIABLES, MAX_WEBHOOK_URL_CHARS,
};
use crate::validate::{FieldErrors, Fields};

/// The longest burst-coalescing window, in milliseconds.
pub const MAX_COALESCE_MS: u32 = 10_000;

/// An assistant's chat configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Assistant {
    /// The assistant's id, used as `assistant_id`.
    pub id: i64,
    /// The assistant's name.
    pub name: String,
    /// May hold `{{variable}}` placeholders.
    pub system_prompt: String,
    /// The greeting the assistant is assumed to have opened every conversation with.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub initial_message: Option<String>,
    /// Default variables; a conversation's own values win.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub variables: Variables,
    /// The model that answers, as its provider names it.
    pub llm_model: String,
    /// Sampling temperature, 0.0..=2.0.
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0, maximum = 2.0))]
    pub llm_temperature: f64,
    /// The API that serves `llm_model`.
    pub llm_provider: LlmProvider,
    /// Answers when the primary model fails with a retryable error (Famulor: `chat_llm_fallback_id`).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub fallback_llm_model: Option<String>,
    /// The fallback's provider (by default the assistant's).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub fallback_llm_provider: Option<LlmProvider>,
    /// Tools the model may call.
    pub tool_ids: Vec<i64>,
    /// Burst coalescing: a customer's messages less than this many milliseconds apart are
    /// answered by one reply, to the last of them. 0: off.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 10_000))]
    pub coalesce_ms: u32,
    /// The knowledge base it answers from, if any.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub knowledgebase_id: Option<i64>,
    /// How it reads its knowledge base (`prompt` unless set). Defaulted so that answers of
    /// servers without knowledge bases still read.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub knowledgebase_mode: KnowledgeMode,
    /// Handing the conversation to a person. Defaulted so that answers of servers without
    /// handoff still read.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub handoff: Handoff,
    /// Minutes after a conversation's last message at which it ends (1 to 10,080); `null`:
    /// never. Famulor's field.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required, minimum = 1, maximum = 10080))]
    pub conversation_inactivity_timeout: Option<u32>,
    /// Fields the model extracts from a conversation when it ends, as its
    /// `extracted_variables`. Famulor's field.
    #[serde(default)]
    pub post_call_schema: Vec<PostCallField>,
    /// Where Famulor's conversation-ended payload is posted when a conversation ends;
    /// `null`: nowhere.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub conversation_ended_webhook_url: Option<String>,
    /// The secret the conversation-ended posts are signed with (Standard Webhooks headers
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature`), the assistant's own.
    #[serde(default)]
    pub conversation_ended_webhook_secret: String,
    /// When the assistant was created.
    pub created_at: DateTime<Utc>,
    /// When the assistant was last changed.
    pub updated_at: DateTime<Utc>,
}

/// `GET /api/user/assistants/get`: one page, in id order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssistantList {
    /// The assistants of this page.
    pub data: Vec<Assistant>,
    /// Pass as `cursor` for the next page; `None` on the last page (and from servers that do
    /// not page this list, such as Famulor's).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub next_cursor: Option<String>,
}

/// Answer of create and update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssistantResponse {
    /// Always `true`.
    pub status: bool,
    /// The assistant(s).
    pub data: Assistant,
}

/// The body of create (where `name` is required) and update (where every field is optional
/// and absent fields keep their value).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssistantInput {
    /// The assistant's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 255))]
    pub name: Option<String>,
    /// The system prompt; may hold `{{variable}}` placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 100_000))]
    pub system_prompt: Option<String>,
    /// The greeting; empty removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 100_000))]
    pub initial_message: Option<String>,
    /// Default variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub variables: Option<Variables>,
    /// Empty or absent on create: the server's default model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 255))]
    pub llm_model: Option<String>,
    /// 0.0..=2.0; default 0.7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0, maximum = 2.0))]
    pub llm_temperature: Option<f64>,
    /// `openai` (default) or `anthropic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_provider: Option<LlmProvider>,
    /// Empty clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 255))]
    pub fallback_llm_model: Option<String>,
    /// Default: `llm_provider`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_llm_provider: Option<LlmProvider>,
    /// Tools the model may call (at most 32); each must be the account's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_items = 32))]
    pub tool_ids: Option<Vec<i64>>,
    /// 0..=10,000 milliseconds; 0 (the default) turns burst coalescing off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(maximum = 10_000))]
    pub coalesce_ms: Option<u32>,
    /// A knowledge base of the account's to answer from; `null` for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>, minimum = 1))]
    pub knowledgebase_id: Option<Option<i64>>,
    /// `prompt` (the best passages for the customer's message are put in the prompt) or
    /// `function_call` (the model searches with a built-in `search_knowledge` tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knowledgebase_mode: Option<KnowledgeMode>,
    /// Handing the conversation to a person; on update, absent fields of it keep their value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<HandoffInput>,
    /// 1 to 10,080 minutes; `null` turns ending off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>, minimum = 1, maximum = 10080))]
    pub conversation_inactivity_timeout: Option<Option<u32>>,
    /// The fields to extract when a conversation ends (at most 50); `[]` for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_items = 50))]
    pub post_call_schema: Option<Vec<PostCallField>>,
    /// An `http` or `https` URL; `null` or empty removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 2048))]
    pub conversation_ended_webhook_url: Option<Option<String>>,
}

/// One field of an assistant's `post_call_schema` (Famulor's): the model is asked for it when
/// a conversation ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PostCallField {
    /// The variable's name: a letter or `_`, then letters, digits or `_` (at most 64).
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub name: String,
    /// What kind of value it holds.
    #[serde(rename = "type")]
    pub kind: PostCallType,
    /// What the model should put there (at most 1,000 characters).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 1000))]
    pub description: String,
}

/// The types of a [`PostCallField`], Famulor's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PostCallType {
    /// Text.
    String,
    /// A number, whole or not.
    Number,
    /// `true` or `false`.
    Boolean,
}

impl PostCallType {
    /// As sent, and as JSON Schema names it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Boolean => "boolean",
        }
    }

    /// The type named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::String, Self::Number, Self::Boolean]
            .into_iter()
            .find(|t| t.as_str() == text)
    }

    /// Whether `value` is of this type.
    pub fn holds(self, value: &Value) -> bool {
        match self {
            Self::String => value.is_string(),
            Self::Number => value.is_number(),
            Self::Boolean => value.is_boolean(),
        }
    }
}

/// Reads `post_call_schema`: an array of fields with unique names; errors named
/// `post_call_schema.<n>.<field>`.
fn read_post_call_schema(value: &Value, errors: &mut FieldErrors) -> Option<Vec<PostCallField>> {
    let Some(items) = value.as_array() else {
        errors.add("post_call_schema", "The post_call_schema must be an array.");
        return None;
    };
    if items.len() > MAX_POST_CALL_FIELDS {
        errors.add(
            "post_call_schema",
            format!("The post_call_schema may have at most {MAX_POST_CALL_FIELDS} fields."),
        );
        return None;
    }
    let mut fields = Vec::with_capacity(items.len());
    for (n, item) in items.iter().enumerate() {
        let at = |field: &str| format!("post_call_schema.{n}.{field}");
        let name = item["name"].as_str().unwrap_or_default();
        let valid_name = name.len() <= MAX_VARIABLE_NAME_CHARS
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            errors.add(
                at("name"),
                "The name must be a letter or _, then letters, digits or _ (at most 64).",
            );
        } else if fields.iter().any(|f: &PostCallField| f.name == name) {
            errors.add(at("name"), format!("The name {name} is given twice."));
        }
        let kind = item["type"].as_str().and_then(PostCallType::parse);
        if kind.is_none() {
            errors.add(at("type"), "The type must be string, number or boolean.");
        }
        let description = match &item["description"] {
            Value::Null => String::new(),
            Value::String(text)
                if text.chars().count() <= MAX_POST_CALL_DESCRIPTION_CHARS
                    && !text.contains('\0') =>
            {
                text.clone()
            }
            _ => {
                errors.add(
                    at("description"),
                    "The description must be text of at most 1000 characters, without NUL.",
                );
                String::new()
            }
        };
        if let (true, Some(kind)) = (valid_name, kind) {
            fields.push(PostCallField {
                name: name.to_owned(),
                kind,
                description,
            });
        }
    }
    Some(fields)
}

/// Reads `conversation_inactivity_timeout` and `conversation_ended_webhook_url`, where `null`
/// (and for the URL, empty) clears.
fn read_lifecycle(
    body: &Value,
    errors: &mut FieldErrors,
) -> (Option<Option<u32>>, Option<Option<String>>) {
    let timeout = match body.get("conversation_inactivity_timeout") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(value) => match value.as_i64() {
            Some(minutes @ 1..=MAX_INACTIVITY_TIMEOUT_MINUTES) => Some(Some(minutes as u32)),
            _ => {
                errors.add("conversation_inactivity_timeout", "The conversation_inactivity_timeout must be a whole number of minutes from 1 to 10080, or null.");
                None
            }
        },
    };
    let url = match body.get("conversation_ended_webhook_url") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(url)) if url.trim().is_empty() => Some(None),
        Some(Value::String(url))
            if url.chars().count() <= MAX_WEBHOOK_URL_CHARS
                && super::webhooks::check_url(url).is_ok() =>
        {
            Some(Some(url.clone()))
        }
        Some(_) => {
            errors.add("conversation_ended_webhook_url", "The conversation_ended_webhook_url must be an http or https URL (at most 2048 characters), or null.");
            None
        }
    };
    (timeout, url)
}

/// The name of the built-in tool the model hands a conversation to a person with.
pub const HANDOFF_TOOL: &str = "transfer_to_human";

/// What the model is told about `transfer_to_human` when the assistant's `instructions` are
/// empty.
pub const DEFAULT_HANDOFF_INSTRUCTIONS: &str = "You can hand this conversation to a person of \
    the business with the transfer_to_human function. Call it, with the reason, when the \
    customer asks for a person, is upset, or asks something outside what you know.";

/// An assistant's handoff: when `enabled`, the model is offered a built-in `transfer_to_human`
/// function (its argument: `reason`). Calling it turns the conversation's AI off
/// (`handoff.requested` event), and the customer is told `message`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Handoff {
    /// Whether the model may hand over.
    pub enabled: bool,
    /// When to hand over, added to the system prompt; empty: the default (a person asked for,
    /// an upset customer, a question outside what the assistant knows).
    #[cfg_attr(feature = "openapi", schema(max_length = 4000))]
    pub instructions: String,
    /// The reply that hands over; empty: the model's own words.
    #[cfg_attr(feature = "openapi", schema(max_length = 1000))]
    pub message: String,
}

impl Handoff {
    /// The instructions the model is given: the assistant's, or the default.
    pub fn instructions_or_default(&self) -> &str {
        match self.instructions.trim() {
            "" => DEFAULT_HANDOFF_INSTRUCTIONS,
            _ => &self.instructions,
        }
    }
}

/// `handoff` in a create or update body; absent fields are off and empty on create, and keep
/// their value on update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HandoffInput {
    /// Offer the model `transfer_to_human` (default `false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// When to hand over (at most 4,000 characters); empty: the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 4000))]
    pub instructions: Option<String>,
    /// The reply that hands over (at most 1,000 characters); empty: the model's own words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 1000))]
    pub message: Option<String>,
}

impl HandoffInput {
    /// `handoff` of a create or update body, if present; its errors named `handoff.<field>`.
    fn read(fields: &mut Fields<'_>) -> Option<Self> {
        let mut nested = fields.nested("handoff")?;
        let input = Self {
            enabled: nested.optional_bool("enabled"),
            instructions: nested
                .optional_string("instructions", 0..=MAX_HANDOFF_INSTRUCTIONS_CHARS),
            message: nested.optional_string("message", 0..=MAX_HANDOFF_MESSAGE_CHARS),
        };
        fields.errors.extend(nested.errors);
        Some(input)
    }
}

/// How an assistant reads its knowledge base.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum KnowledgeMode {
    /// The passages that best match the customer's message (and the last turns) go in the
    /// prompt.
    #[default]
    Prompt,
    /// The model gets a `search_knowledge` tool and searches when it decides to.
    FunctionCall,
}

impl KnowledgeMode {
    /// As sent on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Prompt => "prompt",
            Self::FunctionCall => "function_call",
        }
    }

    /// The mode written `text`, if any.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Prompt, Self::FunctionCall]
            .into_iter()
            .find(|m| m.as_str() == text)
    }
}

/// A model provider's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LlmProvider {
    /// The OpenAI Chat Completions API, also spoken by Ollama, vLLM, llama.cpp and OpenRouter.
    Openai,
    /// The Anthropic Messages API.
    Anthropic,
}

impl LlmProvider {
    /// The provider as sent on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            LlmProvider::Openai => "openai",
            LlmProvider::Anthropic => "anthropic",
        }
    }

    /// The provider named `text` (`openai` or `anthropic`).
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Openai, Self::Anthropic]
            .into_iter()
            .find(|p| p.as_str() == text)
    }
}

/// Default sampling temperature of a new assistant.
pub const DEFAULT_TEMPERATURE: f64 = 0.7;

impl AssistantInput {
    /// Reads and validates a create (`creating`) or update body.
    pub fn from_json(body: &Value, creating: bool) -> Result<Self, FieldErrors> {
        let mut fields = Fields::new(body);
        let name = if creating {
            fields.required_string("name", 1..=MAX_ASSISTANT_NAME_CHARS)
        } else {
            fields.optional_string("name", 1..=MAX_ASSISTANT_NAME_CHARS)
        };
        let input = Self {
            name,
            system_prompt: fields.optional_string("system_prompt", 0..=MAX_PROMPT_CHARS),
            initial_message: fields.optional_string("initial_message", 0..=MAX_PROMPT_CHARS),
            variables: fields.optional_variables(
                "variables",
                MAX_VARIABLES,
                MAX_VARIABLE_NAME_CHARS,
            ),
            llm_model: fields.optional_string("llm_model", 0..=MAX_MODEL_NAME_CHARS),
            llm_temperature: fields.optional_number("llm_temperature", 0.0..=2.0),
            llm_provider: None,
            fallback_llm_model: fields
                .optional_string("fallback_llm_model", 0..=MAX_MODEL_NAME_CHARS),
            fallback_llm_provider: None,
            tool_ids: fields.optional_ids("tool_ids", MAX_ASSISTANT_TOOLS),
            coalesce_ms: fields
                .optional_integer("coalesce_ms", 0..=i64::from(MAX_COALESCE_MS))
                .map(|ms| ms as u32),
            knowledgebase_id: match body.get("knowledgebase_id") {
                Some(Value::Null) => Some(None),
                _ => fields
                    .optional_integer("knowledgebase_id", 1..=i64::MAX)
                    .map(Some),
            },
            knowledgebase_mode: None,
            handoff: HandoffInput::read(&mut fields),
            conversation_inactivity_timeout: None,
            post_call_schema: None,
            conversation_ended_webhook_url: None,
        };
        let knowledgebase_mode = fields.optional_string("knowledgebase_mode", 1..=32);
        let llm_provider = fields.optional_string("llm_provider", 1..=32);
        let fallback_llm_provider = fields.optional_string("fallback_llm_provider", 1..=32);
        let mut errors = fields.errors;
        let mut provider = |field: &str, text: Option<String>| {
            text.and_then(|text| {
                let parsed = LlmProvider::parse(&text);
                if parsed.is_none() {
                    errors.add(field, format!("The {field} must be openai or anthropic."));
                }
                parsed
            })
        };
        let llm_provider = provider("llm_provider", llm_provider);
        let fallback_llm_provider = provider("fallback_llm_provider", fallback_llm_provider);
        let knowledgebase_mode = knowledgebase_mode.and_then(|text| {
            let parsed = KnowledgeMode::parse(&text);
            if parsed.is_none() {
                errors.add(
                    "knowledgebase_mode",
                    "The knowledgebase_mode must be prompt or function_call.",
                );
            }
            parsed
        });
        let (conversation_inactivity_timeout, conversation_ended_webhook_url) =
            read_lifecycle(body, &mut errors);
        let post_call_schema = match body.get("post_call_schema") {
            None | Some(Value::Null) => None,
            Some(value) => read_post_call_schema(value, &mut errors),
        };
        let input = Self {
            llm_provider,
            fallback_llm_provider,
            knowledgebase_mode,
            conversation_inactivity_timeout,
            post_call_schema,
            conversation_ended_webhook_url,
            ..input
        };
        errors.finish(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_needs_a_name_update_does_not() {
        assert!(
            AssistantInput::from_json(&json!({}), true)
                .unwrap_err()
                .into_map()
                .contains_key("name")
        );
        assert_eq!(
            AssistantInput::from_json(&json!({}), false).unwrap(),
            AssistantInput::default()
        );
    }

    #[test]
    fn an_assistant_uses_at_most_32_tools() {
        let ids = |n: i64| json!({ "tool_ids": (1..=n).collect::<Vec<_>>() });
        let most = AssistantInput::from_json(&ids(32), false).unwrap();
        assert_eq!(most.tool_ids.map(|ids| ids.len()), Some(32));
        let errors = AssistantInput::from_json(&ids(33), false)
            .unwrap_err()
            .into_map();
        assert_eq!(
            errors["tool_ids"],
            ["The tool_ids field must not have more than 32 items."]
        );
    }

    #[test]
    fn handoff_is_read_and_checked() {
        let input = AssistantInput::from_json(
            &json!({ "handoff": { "enabled": true, "message": "A colleague will answer." } }),
            false,
        )
        .unwrap();
        assert_eq!(
            input.handoff,
            Some(HandoffInput {
                enabled: Some(true),
                instructions: None,
                message: Some("A colleague will answer.".into()),
            })
        );
        let errors = AssistantInput::from_json(
            &json!({ "handoff": {
                "enabled": "yes", "instructions": "x".repeat(4001), "message": "a\u{0}b"
            } }),
            false,
        )
        .unwrap_err()
        .into_map();
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            ["handoff.enabled", "handoff.instructions", "handoff.message"]
        );
        let errors = AssistantInput::from_json(&json!({ "handoff": true }), false)
            .unwrap_err()
            .into_map();
        assert_eq!(errors["handoff"], ["The handoff field must be an object."]);
        let defaulted = Handoff::default();
        assert_eq!(
            defaulted.instructions_or_default(),
            DEFAULT_HANDOFF_INSTRUCTIONS
        );
    }

    #[test]
    fn bad_fields_are_reported() {
        let errors = AssistantInput::from_json(
            &json!({ "name": "", "llm_temperature": 3, "tool_ids": ["a"], "variables": "x", "llm_provider": "x" }),
            true,
        )
        .unwrap_err()
        .into_map();
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            [
                "llm_provider",
                "llm_temperature",
                "name",
                "tool_ids",
                "variables"
            ]
        );
    }
}
