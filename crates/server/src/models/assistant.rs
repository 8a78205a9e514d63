//! Assistants: one account's chat configurations.

use anyreply_core::limits::MAX_ASSISTANTS_PER_ACCOUNT;
use anyreply_core::wire::assistants::DEFAULT_TEMPERATURE;
use anyreply_core::wire::{self, AssistantInput, Handoff, KnowledgeMode, LlmProvider};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use super::page::{AfterId, Page};
use super::{object, quota};
use crate::db::{Conn, NonNullArray};
use crate::schema::assistants;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = assistants)]
pub struct AssistantRow {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub system_prompt: String,
    pub initial_message: Option<String>,
    pub variables: Value,
    pub llm_model: String,
    pub llm_temperature: f64,
    pub coalesce_ms: i32,
    #[diesel(deserialize_as = NonNullArray<i64>)]
    pub tool_ids: Vec<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub llm_provider: String,
    pub fallback_llm_provider: Option<String>,
    pub fallback_llm_model: Option<String>,
    pub knowledge_base_id: Option<i64>,
    pub knowledge_mode: String,
    pub handoff_enabled: bool,
    pub handoff_instructions: String,
    pub handoff_message: String,
    pub conversation_inactivity_timeout: Option<i32>,
    pub post_call_schema: Value,
    pub conversation_ended_webhook_url: Option<String>,
    pub conversation_ended_webhook_secret: String,
}

impl AssistantRow {
    /// Its `post_call_schema`; a stored value this build cannot read is none.
    pub fn post_call_schema(&self) -> Vec<wire::PostCallField> {
        serde_json::from_value(self.post_call_schema.clone()).unwrap_or_default()
    }

    pub fn knowledge_mode(&self) -> KnowledgeMode {
        KnowledgeMode::parse(&self.knowledge_mode).unwrap_or_default()
    }

    /// The knowledge base it answers from and how, if any.
    pub fn knowledge(&self) -> Option<(i64, KnowledgeMode)> {
        Some((self.knowledge_base_id?, self.knowledge_mode()))
    }

    /// Its handoff settings, when the model may hand over.
    pub fn handoff(&self) -> Option<Handoff> {
        self.handoff_enabled.then(|| self.handoff_settings())
    }

    fn handoff_settings(&self) -> Handoff {
        Handoff {
            enabled: self.handoff_enabled,
            instructions: self.handoff_instructions.clone(),
            message: self.handoff_message.clone(),
        }
    }

    pub fn provider(&self) -> LlmProvider {
        LlmProvider::parse(&self.llm_provider).unwrap_or(LlmProvider::Openai)
    }

    /// The model that answers when the primary cannot, if any.
    pub fn fallback(&self) -> Option<(LlmProvider, &str)> {
        let model = self.fallback_llm_model.as_deref()?;
        let provider = self
            .fallback_llm_provider
            .as_deref()
            .and_then(LlmProvider::parse)
            .unwrap_or(self.provider());
        Some((provider, model))
    }

    pub fn into_wire(self) -> wire::Assistant {
        let llm_provider = self.provider();
        let fallback_llm_provider = self.fallback().map(|(provider, _)| provider);
        let knowledgebase_mode = self.knowledge_mode();
        let handoff = self.handoff_settings();
        let post_call_schema = self.post_call_schema();
        wire::Assistant {
            id: self.id,
            name: self.name,
            system_prompt: self.system_prompt,
            initial_message: self.initial_message,
            variables: object(self.variables),
            llm_model: self.llm_model,
            llm_temperature: self.llm_temperature,
            coalesce_ms: u32::try_from(self.coalesce_ms).unwrap_or(0),
            llm_provider,
            fallback_llm_provider,
            fallback_llm_model: self.fallback_llm_model,
            tool_ids: self.tool_ids,
            knowledgebase_mode,
            knowledgebase_id: self.knowledge_base_id,
            handoff,
            conversation_inactivity_timeout: self
                .conversation_inactivity_timeout
                .and_then(|minutes| u32::try_from(minutes).ok()),
            post_call_schema,
            conversation_ended_webhook_url: self.conversation_ended_webhook_url,
            conversation_ended_webhook_secret: self.conversation_ended_webhook_secret,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// The assistant `id` if it belongs to `account_id`.
pub async fn find(
    conn: &mut impl Conn,
    account_id: i64,
    id: i64,
) -> QueryResult<Option<AssistantRow>> {
    assistants::table
        .filter(assistants::id.eq(id))
        .filter(assistants::account_id.eq(account_id))
        .select(AssistantRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The names of those of `ids` that belong to `account_id`.
pub async fn names(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    ids: &[i64],
) -> QueryResult<Vec<(i64, String)>> {
    assistants::table
        .filter(assistants::account_id.eq(account_id))
        .filter(assistants::id.eq_any(ids))
        .select((assistants::id, assistants::name))
        .load(conn)
        .await
}

/// One page of the account's assistants in id order, starting after `after` (an index range
/// of `assistants_account`).
pub async fn list(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    per_page: u32,
    after: Option<AfterId>,
) -> QueryResult<Page<AssistantRow>> {
    let mut query = assistants::table
        .filter(assistants::account_id.eq(account_id))
        .order(assistants::id)
        .limit(i64::from(per_page) + 1)
        .select(AssistantRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(assistants::id.gt(after.id));
    }
    let rows = query.load(conn).await?;
    Ok(Page::from_rows(rows, per_page, |row| row.id))
}

/// Present fields of an update; absent ones keep their value.
#[derive(AsChangeset)]
#[diesel(table_name = assistants)]
struct AssistantChanges {
    name: Option<String>,
    system_prompt: Option<String>,
    initial_message: Option<Option<String>>,
    variables: Option<Value>,
    llm_model: Option<String>,
    llm_temperature: Option<f64>,
    coalesce_ms: Option<i32>,
    tool_ids: Option<NonNullArray<i64>>,
    llm_provider: Option<String>,
    fallback_llm_provider: Option<Option<String>>,
    fallback_llm_model: Option<Option<String>>,
    knowledge_base_id: Option<Option<i64>>,
    knowledge_mode: Option<String>,
    handoff_enabled: Option<bool>,
    handoff_instructions: Option<String>,
    handoff_message: Option<String>,
    conversation_inactivity_timeout: Option<Option<i32>>,
    post_call_schema: Option<Value>,
    conversation_ended_webhook_url: Option<Option<String>>,
    updated_at: DateTime<Utc>,
}

impl AssistantChanges {
    fn from_input(input: AssistantInput, default_model: &str) -> Self {
        let handoff = input.handoff.unwrap_or_default();
        Self {
            name: input.name,
            system_prompt: input.system_prompt,
            // An empty greeting means none.
            initial_message: input
                .initial_message
                .map(|m| Some(m).filter(|m| !m.is_empty())),
            variables: input.variables.map(Value::Object),
            llm_model: input.llm_model.map(|m| {
                if m.trim().is_empty() {
                    default_model.to_owned()
                } else {
                    m
                }
            }),
            llm_temperature: input.llm_temperature,
            coalesce_ms: input
                .coalesce_ms
                .map(|ms| i32::try_from(ms).unwrap_or(i32::MAX)),
            tool_ids: input.tool_ids.map(NonNullArray),
            llm_provider: input.llm_provider.map(|p| p.as_str().to_owned()),
            fallback_llm_provider: input
                .fallback_llm_provider
                .map(|p| Some(p.as_str().to_owned())),
            // An empty fallback model means none.
            fallback_llm_model: input
                .fallback_llm_model
                .map(|m| Some(m).filter(|m| !m.trim().is_empty())),
            knowledge_base_id: input.knowledgebase_id,
            knowledge_mode: input.knowledgebase_mode.map(|m| m.as_str().to_owned()),
            handoff_enabled: handoff.enabled,
            handoff_instructions: handoff.instructions,
            handoff_message: handoff.message,
            conversation_inactivity_timeout: input
                .conversation_inactivity_timeout
                .map(|minutes| minutes.and_then(|m| i32::try_from(m).ok())),
            post_call_schema: input
                .post_call_schema
                .map(|fields| serde_json::to_value(fields).unwrap_or(Value::Array(Vec::new()))),
            conversation_ended_webhook_url: input.conversation_ended_webhook_url,
            updated_at: Utc::now(),
        }
    }
}

/// Why a creation was refused.
#[derive(Debug)]
pub enum CreateError {
    /// The account has [`MAX_ASSISTANTS_PER_ACCOUNT`] already.
    LimitReached,
    Database(diesel::result::Error),
}

impl From<diesel::result::Error> for CreateError {
    fn from(error: diesel::result::Error) -> Self {
        CreateError::Database(error)
    }
}

pub async fn count(conn: &mut AsyncPgConnection, account_id: i64) -> QueryResult<i64> {
    assistants::table
        .filter(assistants::account_id.eq(account_id))
        .count()
        .get_result(conn)
        .await
}

/// Creates an assistant unless the account has as many as it may have.
pub async fn create(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    input: AssistantInput,
    default_model: &str,
) -> Result<AssistantRow, CreateError> {
    let changes = AssistantChanges::from_input(input, default_model);
    conn.transaction(async |conn| {
        quota::lock_account(conn, account_id).await?;
        if !quota::has_room(count(conn, account_id).await?, MAX_ASSISTANTS_PER_ACCOUNT) {
            return Err(CreateError::LimitReached);
        }
        Ok(insert(conn, account_id, changes, default_model).await?)
    })
    .await
}

async fn insert(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    changes: AssistantChanges,
    default_model: &str,
) -> QueryResult<AssistantRow> {
    diesel::insert_into(assistants::table)
        .values((
            assistants::account_id.eq(account_id),
            assistants::name.eq(changes.name.unwrap_or_default()),
            assistants::system_prompt.eq(changes.system_prompt.unwrap_or_default()),
            assistants::initial_message.eq(changes.initial_message.flatten()),
            assistants::variables.eq(changes
                .variables
                .unwrap_or_else(|| Value::Object(Default::default()))),
            assistants::llm_model.eq(changes
                .llm_model
                .unwrap_or_else(|| default_model.to_owned())),
            assistants::llm_temperature.eq(changes.llm_temperature.unwrap_or(DEFAULT_TEMPERATURE)),
            assistants::coalesce_ms.eq(changes.coalesce_ms.unwrap_or(0)),
            assistants::tool_ids.eq(changes.tool_ids.unwrap_or_default()),
            assistants::llm_provider.eq(changes
                .llm_provider
                .unwrap_or_else(|| LlmProvider::Openai.as_str().to_owned())),
            assistants::fallback_llm_provider.eq(changes.fallback_llm_provider.flatten()),
            assistants::fallback_llm_model.eq(changes.fallback_llm_model.flatten()),
            assistants::knowledge_base_id.eq(changes.knowledge_base_id.flatten()),
            assistants::knowledge_mode.eq(changes
                .knowledge_mode
                .unwrap_or_else(|| KnowledgeMode::default().as_str().to_owned())),
            assistants::handoff_enabled.eq(changes.handoff_enabled.unwrap_or(false)),
            assistants::handoff_instructions.eq(changes.handoff_instructions.unwrap_or_default()),
            assistants::handoff_message.eq(changes.handoff_message.unwrap_or_default()),
            assistants::conversation_inactivity_timeout
                .eq(changes.conversation_inactivity_timeout.flatten()),
            assistants::post_call_schema.eq(changes
                .post_call_schema
                .unwrap_or_else(|| Value::Array(Vec::new()))),
            assistants::conversation_ended_webhook_url
                .eq(changes.conversation_ended_webhook_url.flatten()),
        ))
        .returning(AssistantRow::as_returning())
        .get_result(conn)
        .await
}

/// Applies `input` to the assistant `id` of `account_id`; `None` when there is none.
pub async fn update(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: i64,
    input: AssistantInput,
    default_model: &str,
) -> QueryResult<Option<AssistantRow>> {
    let changes = AssistantChanges::from_input(input, default_model);
    let new_timeout = changes.conversation_inactivity_timeout;
    conn.transaction(async |conn| {
        let updated = diesel::update(
            assistants::table
                .filter(assistants::id.eq(id))
                .filter(assistants::account_id.eq(account_id)),
        )
        .set(changes)
        .returning(AssistantRow::as_returning())
        .get_result(conn)
        .await
        .optional()?;
        if let (Some(_), Some(minutes)) = (&updated, new_timeout) {
            super::conversation::reschedule_ends(conn, id, minutes).await?;
        }
        Ok(updated)
    })
    .await
}
