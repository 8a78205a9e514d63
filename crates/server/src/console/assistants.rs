//! The account's assistants: a list with each one's replies and cost of the last 30 days, and
//! a form that creates or changes one through the functions the API's handlers call (so its
//! messages are the API's, next to each field).

use std::collections::HashMap;

use anyreply_core::wire::assistants::DEFAULT_HANDOFF_INSTRUCTIONS;
use anyreply_core::wire::{Assistant, AssistantInput, KnowledgeMode, UsageGroup};
use anyreply_core::{ErrorCode, Money};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Duration, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::{Value, json};

use super::form::{Body, Pairs};
use super::session::{Operator, Submitted};
use super::{ConsoleError, FormErrors, Layout, form_errors};
use crate::app::App;
use crate::controllers::assistants as api;
use crate::error::ApiError;
use crate::models::{assistant, knowledge, tool, usage};

/// Most assistants and tools a page lists (the API's limits are 1,000 each).
const LISTED: u32 = 1_000;

/// Days of replies the list counts.
const USAGE_DAYS: i64 = 30;

/// One assistant of the list.
pub(super) struct Listed {
    assistant: Assistant,
    replies: i64,
    cost: Money,
}

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "console/assistants.html")]
pub(super) struct ListPage {
    layout: Layout,
    assistants: Vec<Listed>,
}

pub(super) async fn list(
    State(app): State<App>,
    operator: Operator,
) -> Result<Response, ConsoleError> {
    let account_id = operator.account_id;
    let mut conn = app.db().await?;
    let page = assistant::list(&mut conn, account_id, LISTED, None).await?;
    let last_day = Utc::now().date_naive();
    let first_day = last_day - Duration::days(USAGE_DAYS - 1);
    let used: HashMap<i64, (i64, Money)> = usage::of_account(
        &mut conn,
        account_id,
        first_day,
        last_day,
        UsageGroup::Assistant,
    )
    .await?
    .into_iter()
    .filter_map(|row| Some((row.assistant_id?, (row.replies, row.cost))))
    .collect();
    let assistants = page
        .rows
        .into_iter()
        .map(|row| {
            let (replies, cost) = used.get(&row.id).copied().unwrap_or((0, Money::ZERO));
            Listed {
                assistant: row.into_wire(),
                replies,
                cost,
            }
        })
        .collect();
    Ok(ListPage {
        layout: Layout::signed_in(&operator, "assistants"),
        assistants,
    }
    .into_response())
}

/// An assistant's fields as the form shows them.
#[derive(Debug, Default)]
pub(super) struct Fields {
    name: String,
    system_prompt: String,
    initial_message: String,
    llm_provider: String,
    llm_model: String,
    llm_temperature: String,
    fallback_llm_provider: String,
    fallback_llm_model: String,
    variables: String,
    coalesce_ms: String,
    /// The knowledge base's id; empty for none.
    knowledgebase_id: String,
    knowledgebase_mode: String,
    handoff_enabled: bool,
    handoff_instructions: String,
    handoff_message: String,
    /// Minutes; empty: never.
    conversation_inactivity_timeout: String,
    /// The post-call schema's rows, then blank ones to add fields with.
    post_call_schema: Vec<SchemaRow>,
    conversation_ended_webhook_url: String,
    /// Shown, never posted.
    conversation_ended_webhook_secret: String,
}

/// One field of the post-call schema, as the form shows it.
#[derive(Debug, Default, Clone)]
pub(super) struct SchemaRow {
    name: String,
    kind: String,
    description: String,
}

/// Blank schema rows under the schema's own: the way to add fields.
const BLANK_SCHEMA_ROWS: usize = 2;

impl SchemaRow {
    fn with_blanks(mut rows: Vec<SchemaRow>) -> Vec<SchemaRow> {
        rows.extend(std::iter::repeat_n(
            SchemaRow {
                kind: "string".to_owned(),
                ..SchemaRow::default()
            },
            BLANK_SCHEMA_ROWS,
        ));
        rows
    }

    /// The rows posted: `schema_name`, `schema_type`, `schema_description` in step; a row
    /// with its `schema_remove` box ticked, or with neither name nor description, is left
    /// out.
    fn posted(form: &Pairs) -> Vec<SchemaRow> {
        let removed: Vec<&str> = form.all("schema_remove").collect();
        form.all("schema_name")
            .zip(form.all("schema_type"))
            .zip(form.all("schema_description"))
            .enumerate()
            .filter(|(n, _)| !removed.contains(&n.to_string().as_str()))
            .map(|(_, ((name, kind), description))| SchemaRow {
                name: name.trim().to_owned(),
                kind: kind.to_owned(),
                description: description.trim().to_owned(),
            })
            .filter(|row| !row.name.is_empty() || !row.description.is_empty())
            .collect()
    }
}

pub(super) struct ToolChoice {
    id: i64,
    name: String,
    chosen: bool,
}

/// One of the account's knowledge bases, for the select.
pub(super) struct KnowledgeChoice {
    id: i64,
    name: String,
}

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "console/assistant_form.html")]
pub(super) struct FormPage {
    layout: Layout,
    /// `None` while creating.
    id: Option<i64>,
    fields: Fields,
    tools: Vec<ToolChoice>,
    knowledge_bases: Vec<KnowledgeChoice>,
    errors: FormErrors,
}

impl FormPage {
    /// What the model is told when the instructions are left empty.
    fn default_handoff_instructions(&self) -> &'static str {
        DEFAULT_HANDOFF_INSTRUCTIONS
    }

    fn action(&self) -> String {
        match self.id {
            Some(id) => format!("/console/assistants/{id}"),
            None => "/console/assistants".to_owned(),
        }
    }
}

fn provider_name(value: impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        _ => String::new(),
    }
}

impl Fields {
    fn of(assistant: &Assistant) -> Self {
        Self {
            name: assistant.name.clone(),
            system_prompt: assistant.system_prompt.clone(),
            initial_message: assistant.initial_message.clone().unwrap_or_default(),
            llm_provider: provider_name(assistant.llm_provider),
            llm_model: assistant.llm_model.clone(),
            llm_temperature: assistant.llm_temperature.to_string(),
            fallback_llm_provider: assistant
                .fallback_llm_provider
                .map(provider_name)
                .unwrap_or_default(),
            fallback_llm_model: assistant.fallback_llm_model.clone().unwrap_or_default(),
            variables: serde_json::to_string_pretty(&assistant.variables).unwrap_or_default(),
            coalesce_ms: assistant.coalesce_ms.to_string(),
            knowledgebase_id: assistant
                .knowledgebase_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            knowledgebase_mode: assistant.knowledgebase_mode.as_str().to_owned(),
            handoff_enabled: assistant.handoff.enabled,
            handoff_instructions: assistant.handoff.instructions.clone(),
            handoff_message: assistant.handoff.message.clone(),
            conversation_inactivity_timeout: assistant
                .conversation_inactivity_timeout
                .map(|minutes| minutes.to_string())
                .unwrap_or_default(),
            post_call_schema: SchemaRow::with_blanks(
                assistant
                    .post_call_schema
                    .iter()
                    .map(|field| SchemaRow {
                        name: field.name.clone(),
                        kind: field.kind.as_str().to_owned(),
                        description: field.description.clone(),
                    })
                    .collect(),
            ),
            conversation_ended_webhook_url: assistant
                .conversation_ended_webhook_url
                .clone()
                .unwrap_or_default(),
            conversation_ended_webhook_secret: assistant.conversation_ended_webhook_secret.clone(),
        }
    }

    fn posted(form: &Pairs) -> Self {
        Self {
            name: form.get("name").to_owned(),
            system_prompt: form.get("system_prompt").to_owned(),
            initial_message: form.get("initial_message").to_owned(),
            llm_provider: form.get("llm_provider").to_owned(),
            llm_model: form.get("llm_model").to_owned(),
            llm_temperature: form.get("llm_temperature").to_owned(),
            fallback_llm_provider: form.get("fallback_llm_provider").to_owned(),
            fallback_llm_model: form.get("fallback_llm_model").to_owned(),
            variables: form.get("variables").to_owned(),
            coalesce_ms: form.get("coalesce_ms").to_owned(),
            knowledgebase_id: form.get("knowledgebase_id").to_owned(),
            knowledgebase_mode: form.get("knowledgebase_mode").to_owned(),
            // A checkbox is sent only when checked.
            handoff_enabled: !form.get("handoff_enabled").is_empty(),
            handoff_instructions: form.get("handoff_instructions").to_owned(),
            handoff_message: form.get("handoff_message").to_owned(),
            conversation_inactivity_timeout: form.get("conversation_inactivity_timeout").to_owned(),
            post_call_schema: SchemaRow::posted(form),
            conversation_ended_webhook_url: form.get("conversation_ended_webhook_url").to_owned(),
            conversation_ended_webhook_secret: String::new(),
        }
    }

    /// The API's JSON body.
    fn body(&self, tool_ids: &[i64]) -> Value {
        Body::default()
            .text("name", &self.name)
            .text("system_prompt", &self.system_prompt)
            .text("initial_message", &self.initial_message)
            .text("llm_provider", &self.llm_provider)
            .text("llm_model", &self.llm_model)
            .number("llm_temperature", &self.llm_temperature)
            .text("fallback_llm_provider", &self.fallback_llm_provider)
            .text("fallback_llm_model", &self.fallback_llm_model)
            .json("variables", &self.variables)
            .number("coalesce_ms", &self.coalesce_ms)
            .value("tool_ids", Value::from(tool_ids.to_vec()))
            // None chosen clears it, as `null` does in the API.
            .value("knowledgebase_id", Value::Null)
            .number("knowledgebase_id", &self.knowledgebase_id)
            .text("knowledgebase_mode", &self.knowledgebase_mode)
            // Whole, empty texts included: emptied fields are cleared.
            .value(
                "handoff",
                json!({
                    "enabled": self.handoff_enabled,
                    "instructions": self.handoff_instructions,
                    "message": self.handoff_message,
                }),
            )
            // Empty means never, as `null` does in the API.
            .value("conversation_inactivity_timeout", Value::Null)
            .number(
                "conversation_inactivity_timeout",
                &self.conversation_inactivity_timeout,
            )
            .value(
                "post_call_schema",
                self.post_call_schema
                    .iter()
                    .map(|row| json!({ "name": row.name, "type": row.kind, "description": row.description }))
                    .collect(),
            )
            .value(
                "conversation_ended_webhook_url",
                Value::from(self.conversation_ended_webhook_url.as_str()),
            )
            .build()
    }
}

async fn tool_choices(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    chosen: &[i64],
) -> Result<Vec<ToolChoice>, ConsoleError> {
    let tools = tool::list(conn, account_id, LISTED, None).await?;
    Ok(tools
        .rows
        .into_iter()
        .map(|row| ToolChoice {
            chosen: chosen.contains(&row.id),
            id: row.id,
            name: row.name,
        })
        .collect())
}

async fn knowledge_choices(
    conn: &mut AsyncPgConnection,
    account_id: i64,
) -> Result<Vec<KnowledgeChoice>, ConsoleError> {
    let bases = knowledge::list_bases(conn, account_id).await?;
    Ok(bases
        .into_iter()
        .map(|row| KnowledgeChoice {
            id: row.id,
            name: row.name,
        })
        .collect())
}

pub(super) async fn new_form(
    State(app): State<App>,
    operator: Operator,
) -> Result<Response, ConsoleError> {
    let mut conn = app.db().await?;
    let tools = tool_choices(&mut conn, operator.account_id, &[]).await?;
    let knowledge_bases = knowledge_choices(&mut conn, operator.account_id).await?;
    Ok(FormPage {
        layout: Layout::signed_in(&operator, "assistants"),
        id: None,
        fields: Fields {
            post_call_schema: SchemaRow::with_blanks(Vec::new()),
            llm_provider: "openai".to_owned(),
            knowledgebase_mode: KnowledgeMode::default().as_str().to_owned(),
            ..Fields::default()
        },
        tools,
        knowledge_bases,
        errors: FormErrors::default(),
    }
    .into_response())
}

pub(super) async fn edit_form(
    State(app): State<App>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::AssistantNotFound))?;
    let mut conn = app.db().await?;
    let found = assistant::find(&mut conn, operator.account_id, id)
        .await?
        .ok_or(ApiError::new(ErrorCode::AssistantNotFound))?
        .into_wire();
    let tools = tool_choices(&mut conn, operator.account_id, &found.tool_ids).await?;
    let knowledge_bases = knowledge_choices(&mut conn, operator.account_id).await?;
    Ok(FormPage {
        layout: Layout::signed_in(&operator, "assistants"),
        id: Some(id),
        fields: Fields::of(&found),
        tools,
        knowledge_bases,
        errors: FormErrors::default(),
    }
    .into_response())
}

pub(super) async fn create(
    State(app): State<App>,
    Submitted { operator, form }: Submitted<Pairs>,
) -> Result<Response, ConsoleError> {
    save(app, operator, None, form).await
}

pub(super) async fn update(
    State(app): State<App>,
    Path(id): Path<String>,
    Submitted { operator, form }: Submitted<Pairs>,
) -> Result<Response, ConsoleError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::AssistantNotFound))?;
    save(app, operator, Some(id), form).await
}

async fn save(
    app: App,
    operator: Operator,
    id: Option<i64>,
    form: Pairs,
) -> Result<Response, ConsoleError> {
    let mut fields = Fields::posted(&form);
    let tool_ids: Vec<i64> = form
        .all("tool_ids")
        .filter_map(|id| id.parse().ok())
        .collect();
    let body = fields.body(&tool_ids);
    match write(&app, &operator, id, &body).await {
        Ok(saved) => Ok(Redirect::to(&format!("/console/assistants/{}", saved.id)).into_response()),
        Err(refusal) => {
            let errors = form_errors(refusal, ErrorCode::AssistantNotFound)?;
            fields.post_call_schema = SchemaRow::with_blanks(fields.post_call_schema);
            let mut conn = app.db().await?;
            let tools = tool_choices(&mut conn, operator.account_id, &tool_ids).await?;
            let knowledge_bases = knowledge_choices(&mut conn, operator.account_id).await?;
            let page = FormPage {
                layout: Layout::signed_in(&operator, "assistants"),
                id,
                fields,
                tools,
                knowledge_bases,
                errors,
            };
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// Validates and stores the assistant as `POST /api/user/assistant` (creating, in a
/// transaction) or `PUT /api/user/assistant/{id}` does.
async fn write(
    app: &App,
    operator: &Operator,
    id: Option<i64>,
    body: &Value,
) -> Result<Assistant, ApiError> {
    crate::extract::refuse_nul(body)?;
    let input = AssistantInput::from_json(body, id.is_none()).map_err(ApiError::validation)?;
    let account_id = operator.account_id;
    let actor = operator.actor();
    let default_model = &app.settings.llm_default_model;
    let mut conn = app.db().await?;
    match id {
        None => {
            conn.transaction::<_, ApiError, _>(async |conn| {
                api::create(conn, account_id, input, default_model, &actor).await
            })
            .await
        }
        Some(id) => api::update(&mut conn, account_id, id, input, default_model, &actor).await,
    }
}
