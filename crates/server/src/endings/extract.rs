//! The post-call schema of an ended conversation, asked of the assistant's model once: a JSON
//! object of the schema's fields (OpenAI's `response_format` with the JSON schema, Anthropic's
//! forced tool call). The answer is checked field by field: a value of the wrong type is
//! dropped, never guessed; an answer that is no object, or a model that fails, leaves nothing
//! extracted and says why. The call is billed like a reply.

use anyreply_core::wire::PostCallField;
use serde_json::{Map, Value, json};

use super::notify::Line;
use crate::app::App;
use crate::llm::{AnswerSchema, Completion, PromptMessage, TokenUsage};
use crate::models::account;
use crate::models::assistant::AssistantRow;
use crate::models::conversation_ending::{Ending, ModelCall};

/// What the extraction came to.
#[derive(Debug, Clone, Default)]
pub struct Extraction {
    pub values: Map<String, Value>,
    /// Why some or all values are missing: the model failed, answered nonsense, or gave a
    /// field of the wrong type.
    pub error: Option<String>,
    /// The model call to bill, when one was made.
    pub billed: Option<Billed>,
}

/// A model call made, to bill.
#[derive(Debug, Clone)]
pub struct Billed {
    pub model: String,
    pub usage: TokenUsage,
    /// In subunits.
    pub cost: i64,
}

impl Billed {
    pub fn call<'a>(&'a self, ending: &Ending) -> ModelCall<'a> {
        ModelCall {
            account_id: ending.account_id,
            conversation_id: ending.conversation_id,
            purpose: "extraction",
            model: &self.model,
            prompt_tokens: i64::from(self.usage.prompt_tokens),
            completion_tokens: i64::from(self.usage.completion_tokens),
            cost: self.cost,
        }
    }
}

const INSTRUCTIONS: &str = "The conversation below, between a customer and a business (its AI \
    assistant and its staff), has ended. Extract the fields asked for from what was said. Use \
    null for a field the conversation does not tell; never invent a value.";

/// Asks `assistant`'s model for `schema`'s fields in `transcript`.
pub async fn extract(
    app: &App,
    assistant: &AssistantRow,
    schema: &[PostCallField],
    transcript: &[Line],
) -> Extraction {
    match has_balance(app, assistant.account_id).await {
        Ok(true) => {}
        Ok(false) => return failed("the account's balance is empty: nothing was extracted"),
        Err(error) => return failed(&format!("the balance could not be read: {error}")),
    }
    let answer_schema = AnswerSchema {
        name: "extracted_variables",
        description: "The values of the conversation's fields.",
        schema: json_schema(schema),
    };
    let fields: String = schema
        .iter()
        .map(|field| {
            format!(
                "- {} ({}): {}\n",
                field.name,
                field.kind.as_str(),
                field.description
            )
        })
        .collect();
    let messages = [
        PromptMessage::System(format!("{INSTRUCTIONS}\n\nThe fields:\n{fields}")),
        PromptMessage::User(super::notify::formatted(transcript)),
    ];
    let completion = Completion {
        model: &assistant.llm_model,
        temperature: 0.0,
        max_output_tokens: app.settings.llm_max_output_tokens,
        messages: &messages,
        functions: &[],
        may_call_functions: false,
        stream: None,
        answer_schema: Some(&answer_schema),
    };
    let primary = (assistant.provider(), assistant.llm_model.as_str());
    let (answer, (_, model)) = match app
        .llm
        .complete(primary, assistant.fallback(), completion)
        .await
    {
        Ok(answered) => answered,
        Err(error) => {
            tracing::warn!(%error, assistant = assistant.id, "the post-call extraction failed");
            return failed(&format!("the model gave no answer ({error})"));
        }
    };
    let usage = answer
        .usage
        .unwrap_or_else(|| TokenUsage::estimate(&completion, &answer.output));
    let billed = Billed {
        model: model.to_owned(),
        usage,
        cost: app.settings.pricing.cost(model, usage).subunits(),
    };
    let mut extraction = match answer.output.json() {
        Some(object) => checked(schema, &object),
        None => failed("the model's answer was not a JSON object: nothing was extracted"),
    };
    extraction.billed = Some(billed);
    extraction
}

fn failed(why: &str) -> Extraction {
    Extraction {
        error: Some(why.to_owned()),
        ..Extraction::default()
    }
}

async fn has_balance(app: &App, account_id: i64) -> anyhow::Result<bool> {
    let mut conn = app.db().await?;
    Ok(account::find(&mut conn, account_id)
        .await?
        .is_some_and(|account| account.balance > 0))
}

/// The schema's fields as a JSON Schema object: each of its type or null, all required and
/// nothing else (as OpenAI's strict mode asks).
pub fn json_schema(schema: &[PostCallField]) -> Value {
    let properties: Map<String, Value> = schema
        .iter()
        .map(|field| {
            let property = json!({
                "type": [field.kind.as_str(), "null"],
                "description": field.description,
            });
            (field.name.clone(), property)
        })
        .collect();
    let required: Vec<&str> = schema.iter().map(|field| field.name.as_str()).collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// The answer's values of the schema's fields, each of its type; nulls and unknown fields
/// left out, a wrong type dropped and named.
pub fn checked(schema: &[PostCallField], answer: &Map<String, Value>) -> Extraction {
    let mut values = Map::new();
    let mut dropped = Vec::new();
    for field in schema {
        match answer.get(&field.name) {
            None | Some(Value::Null) => {}
            Some(value) if field.kind.holds(value) => {
                values.insert(field.name.clone(), value.clone());
            }
            Some(_) => dropped.push(field.name.as_str()),
        }
    }
    let error = (!dropped.is_empty())
        .then(|| format!("dropped, as not of their type: {}", dropped.join(", ")));
    Extraction {
        values,
        error,
        billed: None,
    }
}

#[cfg(test)]
mod tests {
    use anyreply_core::wire::PostCallType;

    use super::*;

    fn field(name: &str, kind: PostCallType) -> PostCallField {
        PostCallField {
            name: name.into(),
            kind,
            description: String::new(),
        }
    }

    #[test]
    fn a_wrong_type_is_dropped_not_guessed() {
        let schema = [
            field("name", PostCallType::String),
            field("seats", PostCallType::Number),
            field("booked", PostCallType::Boolean),
            field("email", PostCallType::String),
        ];
        let answer =
            json!({ "name": "Ada", "seats": "two", "booked": true, "email": null, "extra": 1 });
        let extraction = checked(&schema, answer.as_object().unwrap());
        assert_eq!(
            Value::Object(extraction.values),
            json!({ "name": "Ada", "booked": true })
        );
        assert_eq!(
            extraction.error.as_deref(),
            Some("dropped, as not of their type: seats")
        );
    }

    #[test]
    fn the_schema_is_strict() {
        let schema = json_schema(&[field("seats", PostCallType::Number)]);
        assert_eq!(schema["required"], json!(["seats"]));
        assert_eq!(
            schema["properties"]["seats"]["type"],
            json!(["number", "null"])
        );
        assert_eq!(schema["additionalProperties"], false);
    }
}
