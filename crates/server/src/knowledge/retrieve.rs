//! What a reply reads of its assistant's knowledge base: the passages for the prompt
//! (`prompt` mode), or the built-in `search_knowledge` tool (`function_call` mode).

use anyreply_core::wire::PassageRef;
use serde_json::{Value, json};

use crate::db::DbPool;
use crate::knowledge::embed::Embeddings;
use crate::llm::FunctionSpec;
use crate::models::knowledge::{self, Hit};

/// The built-in tool of `function_call` mode.
pub const SEARCH_TOOL: &str = "search_knowledge";
/// Passages ranked for the prompt, of which those within the token budget are given.
const PROMPT_CANDIDATES: i64 = 12;
/// Passages the tool answers.
const TOOL_RESULTS: i64 = 5;

/// Why a search found nothing.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Pool(#[from] crate::db::PoolError),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

impl From<SearchError> for crate::error::ApiError {
    fn from(error: SearchError) -> Self {
        match error {
            SearchError::Pool(error) => error.into(),
            SearchError::Database(error) => error.into(),
        }
    }
}

/// The passages of `knowledge_base_id` that best match `query`, best first, at most `limit`:
/// full-text search fused with vector search when embeddings are on, full-text alone when
/// they are off or the query's vector cannot be had (the model failing is logged, not the
/// searcher's problem).
pub async fn search(
    pool: &DbPool,
    embeddings: &Embeddings,
    knowledge_base_id: i64,
    query: &str,
    limit: i64,
) -> Result<Vec<Hit>, SearchError> {
    // Asked before a connection is taken: none is held while a model works.
    let vector = match embeddings.active() {
        Some(embedder) => match embedder.embed_query(query).await {
            Ok(vector) => Some(vector),
            Err(error) => {
                tracing::warn!(%error, "could not embed a knowledge search's query; searching by its words alone");
                None
            }
        },
        None => None,
    };
    let mut conn = pool.get().await?;
    if let Some(vector) = vector {
        match knowledge::search_fused(&mut conn, knowledge_base_id, query, &vector, limit).await {
            Ok(hits) => return Ok(hits),
            Err(error) if crate::db::is_unavailable(&error) => return Err(error.into()),
            Err(error) => {
                tracing::warn!(%error, "the vector search failed; searching by words alone");
            }
        }
    }
    Ok(knowledge::search(&mut conn, knowledge_base_id, query, limit).await?)
}

/// The passages of `knowledge_base_id` that best match `query`, best first, as many as fit
/// in `budget_tokens`.
pub async fn for_prompt(
    pool: &DbPool,
    embeddings: &Embeddings,
    knowledge_base_id: i64,
    query: &str,
    budget_tokens: u32,
) -> anyhow::Result<Vec<Hit>> {
    let hits = search(
        pool,
        embeddings,
        knowledge_base_id,
        query,
        PROMPT_CANDIDATES,
    )
    .await?;
    let mut left = i64::from(budget_tokens);
    Ok(hits
        .into_iter()
        .take_while(|hit| {
            left -= i64::from(hit.tokens) + 8;
            left >= 0
        })
        .collect())
}

/// The system message that gives the model `hits`.
pub fn prompt_section(hits: &[Hit]) -> String {
    let mut text = String::from(
        "Passages from the business's own documents that may answer the customer. Answer from \
         them when they apply; do not invent what they do not say.\n",
    );
    for (i, hit) in hits.iter().enumerate() {
        text.push_str(&format!("\n[{}] {}", i + 1, hit.document_name));
        if let Some(heading) = &hit.heading {
            text.push_str(&format!(" › {heading}"));
        }
        text.push('\n');
        text.push_str(&hit.body);
        text.push('\n');
    }
    text
}

/// The `search_knowledge` function as the model is offered it.
pub fn search_spec() -> FunctionSpec {
    FunctionSpec {
        name: SEARCH_TOOL.to_owned(),
        description: "Search the business's own documents (handbook, FAQ, website) for passages \
                      that answer a question. Use it before answering questions about the \
                      business, its products, policies or prices."
            .to_owned(),
        parameters: json!({
            "type": "object",
            "properties": {"query": {"type": "string", "description": "What to look for, in the customer's words"}},
            "required": ["query"],
            "additionalProperties": false
        }),
    }
}

/// Runs the tool: its result for the model, and the passages it gave.
pub async fn run_search(
    pool: &DbPool,
    embeddings: &Embeddings,
    knowledge_base_id: i64,
    arguments: &Value,
) -> (Value, bool, Vec<PassageRef>) {
    let Some(query) = arguments
        .get("query")
        .and_then(Value::as_str)
        .filter(|q| !q.trim().is_empty())
    else {
        return (json!({"error": "a query is required"}), true, Vec::new());
    };
    let searched = search(pool, embeddings, knowledge_base_id, query, TOOL_RESULTS).await;
    match searched {
        Ok(hits) => {
            let refs = hits.iter().map(Hit::reference).collect();
            let passages: Vec<Value> = hits
                .iter()
                .map(|hit| {
                    json!({"document": hit.document_name, "heading": hit.heading, "text": hit.body, "url": hit.url})
                })
                .collect();
            (json!({ "passages": passages }), false, refs)
        }
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "a knowledge search failed");
            (
                json!({"error": "the search failed; answer without it"}),
                true,
                Vec::new(),
            )
        }
    }
}
