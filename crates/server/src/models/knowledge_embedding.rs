//! `knowledge_embeddings`: a passage's vector from the embedding model, for the vector half
//! of a knowledge search. The table exists only where PostgreSQL has pgvector: [`set_up`]
//! creates it at start-up, not a migration, so that a server without the extension runs
//! (full-text search alone) and one where it is installed later gains it at its next start.
//!
//! Models differ in their dimensions, so the column is an untyped `vector` beside `dims`, and
//! each dimension has its own HNSW index on `embedding::vector(dims)`, partial on
//! `dims = N`, made when the first vector of that size is stored ([`ensure_index`]). A
//! search names the same expression, so it is read through that index.

use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Int4, Int8, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use crate::db::Conn;

/// Held while one process sets up the table or an index: two at once would collide.
const SETUP_LOCK: i64 = 74_003;
/// HNSW indexes `vector` up to this many dimensions; larger vectors are searched exactly,
/// within their knowledge base.
pub const MAX_INDEXED_DIMS: usize = 2_000;

/// Makes the extension, the table and its plain index, if PostgreSQL has pgvector; whether
/// it has. Fails if it has but this role may not create the extension.
pub async fn set_up(conn: &mut AsyncPgConnection) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Available {
        #[diesel(sql_type = Bool)]
        available: bool,
    }
    let found: Available = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') AS available",
    )
    .get_result(conn)
    .await?;
    if !found.available {
        return Ok(false);
    }
    conn.transaction(async |conn| {
        conn.batch_execute(&format!(
            "SELECT pg_advisory_xact_lock({SETUP_LOCK});
             CREATE EXTENSION IF NOT EXISTS vector;
             CREATE TABLE IF NOT EXISTS knowledge_embeddings (
                 passage_id        BIGINT  PRIMARY KEY
                                           REFERENCES knowledge_passages (id) ON DELETE CASCADE,
                 knowledge_base_id BIGINT  NOT NULL,
                 -- The model that made it: vectors of another model are not compared.
                 model             TEXT    NOT NULL,
                 dims              INTEGER NOT NULL,
                 embedding         vector  NOT NULL CHECK (vector_dims(embedding) = dims)
             );
             CREATE INDEX IF NOT EXISTS knowledge_embeddings_base
                 ON knowledge_embeddings (knowledge_base_id, model);"
        ))
        .await
    })
    .await?;
    Ok(true)
}

/// Makes the HNSW index for vectors of `dims` unless it exists (or they are too large for
/// one). Before the vectors are stored, outside their transaction: its lock on the table
/// would otherwise be taken while holding the inserts' and could deadlock with another's.
pub async fn ensure_index(conn: &mut AsyncPgConnection, dims: usize) -> QueryResult<()> {
    if dims > MAX_INDEXED_DIMS {
        return Ok(());
    }
    conn.transaction(async |conn| {
        conn.batch_execute(&format!(
            "SELECT pg_advisory_xact_lock({SETUP_LOCK});
             CREATE INDEX IF NOT EXISTS knowledge_embeddings_hnsw_{dims} ON knowledge_embeddings
                 USING hnsw ((embedding::vector({dims})) vector_cosine_ops) WHERE dims = {dims};"
        ))
        .await
    })
    .await
}

/// Vectors of `model`, one per passage, all of one size.
#[derive(Debug, Clone)]
pub struct Vectors {
    pub model: String,
    pub vectors: Vec<Vec<f32>>,
}

impl Vectors {
    pub fn dims(&self) -> usize {
        <[Vec<f32>]>::first(&self.vectors).map_or(0, Vec::len)
    }
}

/// pgvector's text form, `[1,0.5]`.
pub fn literal(vector: &[f32]) -> String {
    let mut text = String::with_capacity(vector.len() * 10 + 2);
    text.push('[');
    for (i, x) in vector.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&x.to_string());
    }
    text.push(']');
    text
}

/// Stores `vectors` of `model` as those of the document's passages from position `first`
/// on (inside `store_passages`'s transaction).
pub async fn store_for_document(
    conn: &mut impl Conn,
    document_id: i64,
    first: i32,
    model: &str,
    vectors: &[Vec<f32>],
) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO knowledge_embeddings (passage_id, knowledge_base_id, model, dims, embedding)
         SELECT p.id, p.knowledge_base_id, $2, $3, t.embedding::vector
         FROM unnest($5::text[]) WITH ORDINALITY AS t(embedding, n)
         JOIN knowledge_passages p ON p.document_id = $1 AND p.position = $4 + t.n - 1",
    )
    .bind::<Int8, _>(document_id)
    .bind::<Text, _>(model)
    .bind::<Int4, _>(<[Vec<f32>]>::first(vectors).map_or(0, Vec::len) as i32)
    .bind::<Int4, _>(first)
    .bind::<Array<Text>, _>(vectors.iter().map(|v| literal(v)).collect::<Vec<_>>())
    .execute(conn)
    .await
    .map(drop)
}

/// Stores (or replaces, when another model made them) the vectors of the passages `ids`;
/// a passage deleted meanwhile is skipped.
pub async fn store(conn: &mut impl Conn, ids: &[i64], vectors: &Vectors) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO knowledge_embeddings (passage_id, knowledge_base_id, model, dims, embedding)
         SELECT p.id, p.knowledge_base_id, $1, $2, t.embedding::vector
         FROM unnest($3::int8[], $4::text[]) AS t(id, embedding)
         JOIN knowledge_passages p ON p.id = t.id
         ON CONFLICT (passage_id) DO UPDATE
         SET model = excluded.model, dims = excluded.dims, embedding = excluded.embedding",
    )
    .bind::<Text, _>(&vectors.model)
    .bind::<Int4, _>(vectors.dims() as i32)
    .bind::<Array<Int8>, _>(ids)
    .bind::<Array<Text>, _>(
        vectors
            .vectors
            .iter()
            .map(|v| literal(v))
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await
    .map(drop)
}

/// A passage without a vector of the current model.
#[derive(Debug, QueryableByName)]
pub struct Missing {
    #[diesel(sql_type = Int8)]
    pub id: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    pub heading: Option<String>,
    #[diesel(sql_type = Text)]
    pub body: String,
}

/// Up to `limit` passages that have no vector of `model` (its embedding failed when the
/// document was read, or the model changed, or pgvector came later), oldest first.
pub async fn missing(conn: &mut impl Conn, model: &str, limit: i64) -> QueryResult<Vec<Missing>> {
    diesel::sql_query(
        "SELECT p.id, p.heading, p.body FROM knowledge_passages p
         WHERE NOT EXISTS (SELECT 1 FROM knowledge_embeddings e
                           WHERE e.passage_id = p.id AND e.model = $1)
         ORDER BY p.id
         LIMIT $2",
    )
    .bind::<Text, _>(model)
    .bind::<Int8, _>(limit)
    .load(conn)
    .await
}
