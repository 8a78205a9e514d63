//! Embeddings through an OpenAI-compatible `/embeddings` endpoint (OpenAI, Ollama, llama.cpp,
//! vLLM), on when `ANYREPLY_EMBEDDING_MODEL` is set and PostgreSQL has pgvector ([`start`]
//! finds out once per process). Passages are embedded as their document is stored (or later,
//! by the worker's backfill, if that failed); a search embeds its query.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use url::Url;

use crate::config::Settings;
use crate::db::{DbConn, DbPool};
use crate::llm::LlmError;
use crate::models::knowledge::QueryVector;
use crate::models::knowledge_embedding::{self, Vectors};

/// Inputs per request: every provider takes this many, and a request stays small.
pub const BATCH: usize = 64;
/// Longest wait for a query's vector: past it the search is full-text alone, as a reply's
/// latency matters more than the vector half of its passages.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// pgvector's largest `vector`.
const MAX_DIMS: usize = 16_000;

/// This process's embeddings: cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Embeddings {
    client: Option<Arc<Embedder>>,
    /// Set by [`start`] when pgvector's table is there.
    on: Arc<AtomicBool>,
}

/// A client of one embeddings endpoint and model.
#[derive(Debug)]
pub struct Embedder {
    http: reqwest::Client,
    endpoint: Url,
    api_key: Option<SecretString>,
    model: String,
    /// Sizes whose HNSW index this process has made sure of.
    indexed: Mutex<HashSet<usize>>,
}

#[derive(Deserialize)]
struct EmbeddingResponse {
    data: Vec<EmbeddingData>,
}

#[derive(Deserialize)]
struct EmbeddingData {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

impl Embeddings {
    /// Off unless `ANYREPLY_EMBEDDING_MODEL` is set; on only after [`start`] found pgvector.
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let Some(model) = settings.embedding_model.clone() else {
            return Ok(Self::default());
        };
        let base = settings
            .embedding_base_url
            .as_ref()
            .unwrap_or(&settings.llm_base_url);
        Ok(Self {
            client: Some(Arc::new(Embedder {
                http: crate::llm::anthropic::http_client(settings.llm_timeout)?,
                endpoint: crate::llm::openai::join(base, &["embeddings"])?,
                api_key: settings
                    .embedding_api_key
                    .clone()
                    .or_else(|| settings.llm_api_key.clone()),
                model,
                indexed: Mutex::default(),
            })),
            on: Arc::default(),
        })
    }

    /// The embedder, when embeddings are on.
    pub fn active(&self) -> Option<&Embedder> {
        self.client
            .as_deref()
            .filter(|_| self.on.load(Ordering::Relaxed))
    }
}

/// Sets up pgvector's table if there is a model to fill it, and says once which retrieval
/// knowledge searches use.
pub async fn start(pool: &DbPool, embeddings: &Embeddings) {
    let Some(client) = &embeddings.client else {
        tracing::info!(
            "knowledge search: full-text alone (set ANYREPLY_EMBEDDING_MODEL to add vector search)"
        );
        return;
    };
    let set_up = async {
        let mut conn = pool.get().await?;
        anyhow::Ok(knowledge_embedding::set_up(&mut conn).await?)
    };
    match set_up.await {
        Ok(true) => {
            embeddings.on.store(true, Ordering::Relaxed);
            tracing::info!(
                model = %client.model,
                endpoint = %client.endpoint,
                "knowledge search: full-text and pgvector's vectors, fused"
            );
        }
        Ok(false) => tracing::warn!(
            model = %client.model,
            "ANYREPLY_EMBEDDING_MODEL is set but this PostgreSQL has no pgvector extension: knowledge search uses full-text search alone (install pgvector and restart to add vectors)"
        ),
        Err(error) => tracing::warn!(
            error = %format!("{error:#}"),
            "pgvector could not be set up: knowledge search uses full-text search alone"
        ),
    }
}

impl Embedder {
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The vectors of `inputs`, in order, asked for [`BATCH`] at a time.
    pub async fn embed(&self, inputs: &[String]) -> Result<Vectors, LlmError> {
        let mut vectors = Vec::with_capacity(inputs.len());
        for batch in inputs.chunks(BATCH) {
            vectors.extend(self.request(batch).await?);
        }
        if let Some(first) = <[Vec<f32>]>::first(&vectors)
            && vectors.iter().any(|v| v.len() != first.len())
        {
            return Err(LlmError::Failed(
                "the embedding model answered vectors of different sizes".into(),
            ));
        }
        Ok(Vectors {
            model: self.model.clone(),
            vectors,
        })
    }

    /// A search query's vector, or why there is none (within [`QUERY_TIMEOUT`]).
    pub async fn embed_query(&self, query: &str) -> Result<QueryVector, LlmError> {
        let input = [query.to_owned()];
        let request = self.request(&input);
        let mut vectors = tokio::time::timeout(QUERY_TIMEOUT, request)
            .await
            .map_err(|_| LlmError::Unavailable("timed out".into()))??;
        Ok(QueryVector {
            model: self.model.clone(),
            vector: vectors.pop().unwrap_or_default(),
        })
    }

    /// Makes sure the HNSW index for `dims` exists (once per size per process).
    pub async fn ensure_index(&self, conn: &mut DbConn, dims: usize) -> diesel::QueryResult<()> {
        if self.indexed().contains(&dims) {
            return Ok(());
        }
        knowledge_embedding::ensure_index(conn, dims).await?;
        self.indexed().insert(dims);
        Ok(())
    }

    fn indexed(&self) -> std::sync::MutexGuard<'_, HashSet<usize>> {
        self.indexed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One request: a vector per input, checked to be usable.
    async fn request(&self, inputs: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        let body = json!({ "model": self.model, "input": inputs });
        let mut request = self.http.post(self.endpoint.clone()).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let answer: EmbeddingResponse = crate::llm::send(request).await?;
        if answer.data.len() != inputs.len() {
            return Err(LlmError::Failed(format!(
                "the embedding model answered {} vectors for {} inputs",
                answer.data.len(),
                inputs.len()
            )));
        }
        let mut data = answer.data;
        // OpenAI's answer is in order, with `index`; sorted by it in case a server is not.
        data.sort_by_key(|d| d.index);
        let vectors: Vec<Vec<f32>> = data.into_iter().map(|d| d.embedding).collect();
        let usable =
            |v: &Vec<f32>| !v.is_empty() && v.len() <= MAX_DIMS && v.iter().all(|x| x.is_finite());
        if !vectors.iter().all(usable) {
            return Err(LlmError::Failed(
                "the embedding model answered an empty, oversized or non-finite vector".into(),
            ));
        }
        Ok(vectors)
    }
}

/// The text a passage is embedded as: its heading path gives the body its context.
pub fn passage_text(heading: Option<&str>, body: &str) -> String {
    match heading {
        Some(heading) if !heading.is_empty() => format!("{heading}\n\n{body}"),
        _ => body.to_owned(),
    }
}
