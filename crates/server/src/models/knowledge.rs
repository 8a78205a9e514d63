//! `knowledge_bases`, `knowledge_documents` and `knowledge_passages`: an account's documents,
//! cut into passages indexed for full-text search in their knowledge base's language.

use std::time::Duration;

use anyreply_core::limits::{MAX_DOCUMENTS_PER_KNOWLEDGE_BASE, MAX_KNOWLEDGE_BASES_PER_ACCOUNT};
use anyreply_core::wire::{
    self, DocumentStatus, DocumentType, KnowledgeBaseInput, KnowledgeBaseStatus,
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Double, Int4, Int8, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use super::knowledge_embedding::{self, Vectors};
use super::quota;
use crate::db::{Conn, KeepPrepared, NonNullArray};
use crate::schema::{knowledge_bases, knowledge_documents};

/// A knowledge base with the counts its answer shows.
#[derive(Debug, Clone, QueryableByName)]
pub struct BaseRow {
    #[diesel(sql_type = Int8)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub description: Option<String>,
    #[diesel(sql_type = Text)]
    pub language: String,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub updated_at: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    pub documents_count: i64,
    #[diesel(sql_type = BigInt)]
    pub processing_count: i64,
    #[diesel(sql_type = BigInt)]
    pub failed_count: i64,
    #[diesel(sql_type = BigInt)]
    pub assistants_count: i64,
}

impl BaseRow {
    pub fn into_wire(self) -> wire::KnowledgeBase {
        let status = KnowledgeBaseStatus::derive(
            self.processing_count,
            self.failed_count,
            self.documents_count,
        );
        wire::KnowledgeBase {
            id: self.id,
            name: self.name,
            description: self.description,
            status,
            status_label: status.label().to_owned(),
            documents_count: self.documents_count,
            assistants_count: self.assistants_count,
            language: self.language,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// The account's knowledge bases (all, or only `id`), with their counts, in id order.
const BASES_SQL: &str = "SELECT b.id, b.name, b.description, b.language, b.created_at, b.updated_at,
        (SELECT count(*) FROM knowledge_documents d WHERE d.knowledge_base_id = b.id) AS documents_count,
        (SELECT count(*) FROM knowledge_documents d
         WHERE d.knowledge_base_id = b.id AND d.status = 'processing') AS processing_count,
        (SELECT count(*) FROM knowledge_documents d
         WHERE d.knowledge_base_id = b.id AND d.status = 'failed') AS failed_count,
        (SELECT count(*) FROM assistants a WHERE a.knowledge_base_id = b.id) AS assistants_count
     FROM knowledge_bases b
     WHERE b.account_id = $1 AND ($2::int8 IS NULL OR b.id = $2)
     ORDER BY b.id";

pub async fn list_bases(conn: &mut impl Conn, account_id: i64) -> QueryResult<Vec<BaseRow>> {
    diesel::sql_query(BASES_SQL)
        .bind::<Int8, _>(account_id)
        .bind::<Nullable<Int8>, _>(None::<i64>)
        .load(conn)
        .await
}

pub async fn find_base(
    conn: &mut impl Conn,
    account_id: i64,
    id: i64,
) -> QueryResult<Option<BaseRow>> {
    diesel::sql_query(BASES_SQL)
        .bind::<Int8, _>(account_id)
        .bind::<Nullable<Int8>, _>(Some(id))
        .get_result(conn)
        .await
        .optional()
}

/// Whether PostgreSQL has the text-search configuration `name`.
pub async fn language_exists(conn: &mut impl Conn, name: &str) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Exists {
        #[diesel(sql_type = Bool)]
        exists: bool,
    }
    let found: Exists = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = $1) AS exists",
    )
    .bind::<Text, _>(name)
    .get_result(conn)
    .await?;
    Ok(found.exists)
}

/// The names of PostgreSQL's text-search configurations, `simple` first, then by name: what a
/// knowledge base's language may be.
pub async fn languages(conn: &mut impl Conn) -> QueryResult<Vec<String>> {
    #[derive(QueryableByName)]
    struct Language {
        #[diesel(sql_type = Text)]
        cfgname: String,
    }
    let rows: Vec<Language> = diesel::sql_query(
        "SELECT cfgname FROM (SELECT DISTINCT cfgname::text AS cfgname FROM pg_ts_config) c
         ORDER BY cfgname <> 'simple', cfgname",
    )
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|row| row.cfgname).collect())
}

/// Why a knowledge base or document could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("the most there may be are there already")]
    LimitReached,
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

/// Creates a knowledge base unless the account has [`MAX_KNOWLEDGE_BASES_PER_ACCOUNT`].
pub async fn create_base(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    input: &KnowledgeBaseInput,
) -> Result<BaseRow, CreateError> {
    let id = conn
        .transaction(async |conn| {
            quota::lock_account(conn, account_id).await?;
            let count: i64 = knowledge_bases::table
                .filter(knowledge_bases::account_id.eq(account_id))
                .count()
                .get_result(conn)
                .await?;
            if !quota::has_room(count, MAX_KNOWLEDGE_BASES_PER_ACCOUNT) {
                return Err(CreateError::LimitReached);
            }
            Ok(diesel::insert_into(knowledge_bases::table)
                .values((
                    knowledge_bases::account_id.eq(account_id),
                    knowledge_bases::name.eq(input.name.as_deref().unwrap_or_default()),
                    knowledge_bases::description.eq(input.description.as_deref()),
                    knowledge_bases::language.eq(input.language.as_deref().unwrap_or("simple")),
                ))
                .returning(knowledge_bases::id)
                .get_result::<i64>(conn)
                .await?)
        })
        .await?;
    Ok(find_base(conn, account_id, id)
        .await?
        .ok_or(diesel::result::Error::NotFound)?)
}

/// Renames the knowledge base, or changes its language (then every document is processed
/// again, its passages searched as they were until then). `None` if there is none.
pub async fn update_base(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: i64,
    input: &KnowledgeBaseInput,
) -> QueryResult<Option<BaseRow>> {
    let updated = conn
        .transaction(async |conn| {
            let before: Option<String> = knowledge_bases::table
                .filter(knowledge_bases::id.eq(id))
                .filter(knowledge_bases::account_id.eq(account_id))
                .select(knowledge_bases::language)
                .for_update()
                .get_result(conn)
                .await
                .optional()?;
            let Some(before) = before else {
                return Ok(false);
            };
            diesel::update(knowledge_bases::table.find(id))
                .set((
                    input.name.as_ref().map(|n| knowledge_bases::name.eq(n)),
                    input
                        .description
                        .as_ref()
                        .map(|d| knowledge_bases::description.eq(d)),
                    input
                        .language
                        .as_ref()
                        .map(|l| knowledge_bases::language.eq(l)),
                    knowledge_bases::updated_at.eq(Utc::now()),
                ))
                .execute(conn)
                .await?;
            if input.language.as_ref().is_some_and(|l| *l != before) {
                diesel::update(
                    knowledge_documents::table
                        .filter(knowledge_documents::knowledge_base_id.eq(id))
                        .filter(
                            knowledge_documents::status.ne(DocumentStatus::Processing.as_str()),
                        ),
                )
                .set((
                    knowledge_documents::status.eq(DocumentStatus::Processing.as_str()),
                    knowledge_documents::reason.eq(None::<String>),
                    knowledge_documents::lease_until.eq(None::<DateTime<Utc>>),
                    knowledge_documents::attempts.eq(0),
                ))
                .execute(conn)
                .await?;
            }
            QueryResult::Ok(true)
        })
        .await?;
    if !updated {
        return Ok(None);
    }
    find_base(conn, account_id, id).await
}

/// Deletes the knowledge base, its documents and passages; its assistants answer without
/// one from their next reply. Returns it as it was.
pub async fn delete_base(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: i64,
) -> QueryResult<Option<BaseRow>> {
    let Some(base) = find_base(conn, account_id, id).await? else {
        return Ok(None);
    };
    let deleted = diesel::delete(
        knowledge_bases::table
            .filter(knowledge_bases::id.eq(id))
            .filter(knowledge_bases::account_id.eq(account_id)),
    )
    .execute(conn)
    .await?;
    Ok((deleted == 1).then_some(base))
}

/// Whether `id` is one of the account's knowledge bases.
pub async fn base_exists(conn: &mut impl Conn, account_id: i64, id: i64) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        knowledge_bases::table
            .filter(knowledge_bases::id.eq(id))
            .filter(knowledge_bases::account_id.eq(account_id)),
    ))
    .get_result(conn)
    .await
}

/// A stored document (without its bytes).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = knowledge_documents)]
pub struct DocumentRow {
    pub id: i64,
    pub knowledge_base_id: i64,
    pub name: String,
    pub description: Option<String>,
    pub kind: String,
    pub url: Option<String>,
    pub status: String,
    pub reason: Option<String>,
    pub passages_count: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl DocumentRow {
    pub fn into_wire(self) -> wire::Document {
        let kind = DocumentType::parse(&self.kind).unwrap_or(DocumentType::Txt);
        let status = DocumentStatus::parse(&self.status).unwrap_or(DocumentStatus::Processing);
        wire::Document {
            id: self.id,
            knowledgebase_id: self.knowledge_base_id,
            name: self.name,
            description: self.description,
            kind,
            type_label: kind.label().to_owned(),
            status,
            status_label: status.label().to_owned(),
            reason: self.reason,
            passages_count: i64::from(self.passages_count),
            url: self.url,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A document to add.
#[derive(Debug)]
pub struct NewDocument {
    pub name: String,
    pub description: Option<String>,
    pub kind: DocumentType,
    /// An upload's bytes.
    pub content: Option<Vec<u8>>,
    pub url: Option<String>,
    pub links: Vec<String>,
    pub relative_links_limit: Option<i32>,
}

/// Adds a document, `processing`, unless the knowledge base has
/// [`MAX_DOCUMENTS_PER_KNOWLEDGE_BASE`]; `Ok(None)` if the account has no such knowledge base.
pub async fn create_document(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    knowledge_base_id: i64,
    document: &NewDocument,
) -> Result<Option<DocumentRow>, CreateError> {
    conn.transaction(async |conn| {
        // The knowledge base's row lock orders its documents' creations, so that two cannot
        // both see room for one more.
        let found: Option<i64> = knowledge_bases::table
            .filter(knowledge_bases::id.eq(knowledge_base_id))
            .filter(knowledge_bases::account_id.eq(account_id))
            .select(knowledge_bases::id)
            .for_no_key_update()
            .get_result(conn)
            .await
            .optional()?;
        if found.is_none() {
            return Ok(None);
        }
        let count: i64 = knowledge_documents::table
            .filter(knowledge_documents::knowledge_base_id.eq(knowledge_base_id))
            .count()
            .get_result(conn)
            .await?;
        if !quota::has_room(count, MAX_DOCUMENTS_PER_KNOWLEDGE_BASE) {
            return Err(CreateError::LimitReached);
        }
        Ok(Some(
            diesel::insert_into(knowledge_documents::table)
                .values((
                    knowledge_documents::knowledge_base_id.eq(knowledge_base_id),
                    knowledge_documents::account_id.eq(account_id),
                    knowledge_documents::name.eq(&document.name),
                    knowledge_documents::description.eq(document.description.as_deref()),
                    knowledge_documents::kind.eq(document.kind.as_str()),
                    knowledge_documents::content.eq(document.content.as_deref()),
                    knowledge_documents::url.eq(document.url.as_deref()),
                    knowledge_documents::links.eq(NonNullArray(document.links.iter().collect())),
                    knowledge_documents::relative_links_limit.eq(document.relative_links_limit),
                ))
                .returning(DocumentRow::as_returning())
                .get_result(conn)
                .await?,
        ))
    })
    .await
}

/// The knowledge base's documents in id order; `None` if the account has no such base.
pub async fn list_documents(
    conn: &mut impl Conn,
    account_id: i64,
    knowledge_base_id: i64,
) -> QueryResult<Option<Vec<DocumentRow>>> {
    if !base_exists(conn, account_id, knowledge_base_id).await? {
        return Ok(None);
    }
    knowledge_documents::table
        .filter(knowledge_documents::knowledge_base_id.eq(knowledge_base_id))
        .filter(knowledge_documents::account_id.eq(account_id))
        .order(knowledge_documents::id)
        .select(DocumentRow::as_select())
        .load(conn)
        .await
        .map(Some)
}

pub async fn find_document(
    conn: &mut impl Conn,
    account_id: i64,
    knowledge_base_id: i64,
    id: i64,
) -> QueryResult<Option<DocumentRow>> {
    knowledge_documents::table
        .filter(knowledge_documents::id.eq(id))
        .filter(knowledge_documents::knowledge_base_id.eq(knowledge_base_id))
        .filter(knowledge_documents::account_id.eq(account_id))
        .select(DocumentRow::as_select())
        .get_result(conn)
        .await
        .optional()
}

/// Deletes the document and its passages (the next search no longer finds them); returns
/// it as it was.
pub async fn delete_document(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    knowledge_base_id: i64,
    id: i64,
) -> QueryResult<Option<DocumentRow>> {
    conn.transaction(async |conn| {
        let Some(row) = find_document(conn, account_id, knowledge_base_id, id).await? else {
            return Ok(None);
        };
        drop_passages(conn, knowledge_base_id, id).await?;
        diesel::delete(knowledge_documents::table.find(id))
            .execute(conn)
            .await?;
        Ok(Some(row))
    })
    .await
}

/// A document taken up for processing, with what it is made from.
#[derive(Debug, QueryableByName)]
pub struct Claimed {
    #[diesel(sql_type = Int8)]
    pub id: i64,
    #[diesel(sql_type = Int8)]
    pub knowledge_base_id: i64,
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Nullable<diesel::sql_types::Bytea>)]
    pub content: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Text>)]
    pub url: Option<String>,
    #[diesel(sql_type = Array<Text>)]
    pub links: Vec<String>,
    #[diesel(sql_type = Nullable<Int4>)]
    pub relative_links_limit: Option<i32>,
    /// This claim's number: only the claim holding it may store the outcome.
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
    #[diesel(sql_type = Text)]
    pub language: String,
}

/// Takes the oldest `processing` document that no process is working on (none ever, or its
/// lease ran out: that process died), leased for `lease`.
pub async fn claim_next(conn: &mut impl Conn, lease: Duration) -> QueryResult<Option<Claimed>> {
    diesel::sql_query(
        "UPDATE knowledge_documents d
         SET lease_until = now() + make_interval(secs => $1), attempts = d.attempts + 1
         FROM knowledge_bases b
         WHERE d.id = (SELECT id FROM knowledge_documents
                       WHERE status = 'processing' AND (lease_until IS NULL OR lease_until < now())
                       ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
           AND b.id = d.knowledge_base_id
         RETURNING d.id, d.knowledge_base_id, d.name, d.kind, d.content, d.url, d.links,
                   d.relative_links_limit, d.attempts, b.language",
    )
    .bind::<Double, _>(lease.as_secs_f64())
    .get_result(conn)
    .await
    .optional()
}

/// Extends the claim's lease; `false` if the claim is no longer this one's.
pub async fn renew(conn: &mut impl Conn, claimed: &Claimed, lease: Duration) -> QueryResult<bool> {
    diesel::sql_query(
        "UPDATE knowledge_documents SET lease_until = now() + make_interval(secs => $3)
         WHERE id = $1 AND attempts = $2 AND status = 'processing'",
    )
    .bind::<Int8, _>(claimed.id)
    .bind::<Int4, _>(claimed.attempts)
    .bind::<Double, _>(lease.as_secs_f64())
    .execute(conn)
    .await
    .map(|rows| rows == 1)
}

/// How long until a `processing` document is due: zero if one waits unclaimed, the nearest
/// lease's end if all are claimed, `None` if there are none.
pub async fn next_due_in(conn: &mut impl Conn) -> QueryResult<Option<Duration>> {
    #[derive(QueryableByName)]
    struct Due {
        #[diesel(sql_type = Nullable<Double>)]
        secs: Option<f64>,
    }
    // `min` over no rows is NULL, which stays NULL here: nothing is due.
    let due: Due = diesel::sql_query(
        "SELECT extract(epoch FROM min(coalesce(lease_until, now())) - now())::float8 AS secs
         FROM knowledge_documents WHERE status = 'processing'",
    )
    .get_result(conn)
    .await?;
    Ok(due.secs.map(|secs| Duration::from_secs_f64(secs.max(0.0))))
}

/// A passage to store.
#[derive(Debug, Clone)]
pub struct NewPassage {
    pub heading: Option<String>,
    pub body: String,
    pub url: Option<String>,
    pub tokens: i32,
}

/// Rows per insert of passages.
const PASSAGES_PER_INSERT: usize = 500;

/// Replaces the document's passages with `passages` (and their `vectors`, one each, if
/// given) and makes it `active`, in one transaction (a search sees the old passages or the
/// new, never neither); `false`, with nothing written, if `claimed` is no longer the
/// document's claim (deleted, or taken over).
pub async fn store_passages(
    conn: &mut AsyncPgConnection,
    claimed: &Claimed,
    passages: &[NewPassage],
    vectors: Option<&Vectors>,
) -> QueryResult<bool> {
    conn.transaction(async |conn| {
        if !still_claimed(conn, claimed).await? {
            return Ok(false);
        }
        drop_passages(conn, claimed.knowledge_base_id, claimed.id).await?;
        insert_passages(conn, claimed, passages).await?;
        if let Some(vectors) = vectors {
            for (batch_index, batch) in vectors.vectors.chunks(PASSAGES_PER_INSERT).enumerate() {
                let first = (batch_index * PASSAGES_PER_INSERT) as i32;
                knowledge_embedding::store_for_document(
                    conn,
                    claimed.id,
                    first,
                    &vectors.model,
                    batch,
                )
                .await?;
            }
        }
        diesel::update(knowledge_documents::table.find(claimed.id))
            .set((
                knowledge_documents::status.eq(DocumentStatus::Active.as_str()),
                knowledge_documents::reason.eq(None::<String>),
                knowledge_documents::passages_count.eq(passages.len() as i32),
                knowledge_documents::lease_until.eq(None::<DateTime<Utc>>),
                knowledge_documents::updated_at.eq(Utc::now()),
            ))
            .execute(conn)
            .await?;
        Ok(true)
    })
    .await
}

/// Inserts the claimed document's passages, indexed in its base's language, and counts them
/// and their words into the base's `passages_count` and `knowledge_terms` (whose row lock
/// [`drop_passages`] took).
async fn insert_passages(
    conn: &mut AsyncPgConnection,
    claimed: &Claimed,
    passages: &[NewPassage],
) -> QueryResult<()> {
    for (batch_index, batch) in passages.chunks(PASSAGES_PER_INSERT).enumerate() {
        let first = (batch_index * PASSAGES_PER_INSERT) as i32;
        diesel::sql_query(
            "INSERT INTO knowledge_passages
                 (document_id, knowledge_base_id, position, heading, body, url, tokens, search)
             SELECT $1, $2, $3 + t.n - 1, t.heading, t.body, t.url, t.tokens,
                    setweight(to_tsvector($4::regconfig, coalesce(t.heading, '')), 'A')
                    || setweight(to_tsvector($4::regconfig, t.body), 'D')
             FROM unnest($5::text[], $6::text[], $7::text[], $8::int4[])
                  WITH ORDINALITY AS t(heading, body, url, tokens, n)",
        )
        .bind::<Int8, _>(claimed.id)
        .bind::<Int8, _>(claimed.knowledge_base_id)
        .bind::<Int4, _>(first)
        .bind::<Text, _>(&claimed.language)
        .bind::<Array<Nullable<Text>>, _>(
            batch.iter().map(|p| p.heading.clone()).collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(batch.iter().map(|p| p.body.clone()).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(batch.iter().map(|p| p.url.clone()).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(batch.iter().map(|p| p.tokens).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    }
    diesel::update(knowledge_bases::table.find(claimed.knowledge_base_id))
        .set(
            knowledge_bases::passages_count
                .eq(knowledge_bases::passages_count + passages.len() as i64),
        )
        .execute(conn)
        .await?;
    diesel::sql_query(
        "INSERT INTO knowledge_terms (knowledge_base_id, lexeme, passages)
         SELECT $2, u.lexeme, count(*)
         FROM knowledge_passages p, unnest(p.search) u
         WHERE p.document_id = $1
         GROUP BY u.lexeme ORDER BY u.lexeme
         ON CONFLICT (knowledge_base_id, lexeme)
         DO UPDATE SET passages = knowledge_terms.passages + excluded.passages",
    )
    .bind::<Int8, _>(claimed.id)
    .bind::<Int8, _>(claimed.knowledge_base_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the document `failed` with `reason` (and drops its passages), if `claimed` is still
/// its claim.
pub async fn fail(
    conn: &mut AsyncPgConnection,
    claimed: &Claimed,
    reason: &str,
) -> QueryResult<bool> {
    conn.transaction(async |conn| {
        if !still_claimed(conn, claimed).await? {
            return Ok(false);
        }
        drop_passages(conn, claimed.knowledge_base_id, claimed.id).await?;
        diesel::update(knowledge_documents::table.find(claimed.id))
            .set((
                knowledge_documents::status.eq(DocumentStatus::Failed.as_str()),
                knowledge_documents::reason.eq(reason),
                knowledge_documents::passages_count.eq(0),
                knowledge_documents::lease_until.eq(None::<DateTime<Utc>>),
                knowledge_documents::updated_at.eq(Utc::now()),
            ))
            .execute(conn)
            .await?;
        Ok(true)
    })
    .await
}

/// Deletes the document's passages, their words no longer counted in `knowledge_terms` nor
/// they in the base's `passages_count`. Takes the knowledge base's row lock first, so that the
/// counts of one base change one transaction at a time (and never deadlock).
async fn drop_passages(
    conn: &mut AsyncPgConnection,
    knowledge_base_id: i64,
    document_id: i64,
) -> QueryResult<()> {
    knowledge_bases::table
        .find(knowledge_base_id)
        .select(knowledge_bases::id)
        .for_no_key_update()
        .get_result::<i64>(conn)
        .await
        .optional()?;
    diesel::sql_query(
        "WITH gone AS (
             SELECT u.lexeme, count(*) AS passages
             FROM knowledge_passages p, unnest(p.search) u
             WHERE p.document_id = $1 GROUP BY u.lexeme)
         UPDATE knowledge_terms t SET passages = t.passages - gone.passages
         FROM gone WHERE t.knowledge_base_id = $2 AND t.lexeme = gone.lexeme",
    )
    .bind::<Int8, _>(document_id)
    .bind::<Int8, _>(knowledge_base_id)
    .execute(conn)
    .await?;
    let dropped = diesel::sql_query("DELETE FROM knowledge_passages WHERE document_id = $1")
        .bind::<Int8, _>(document_id)
        .execute(conn)
        .await?;
    if dropped > 0 {
        diesel::update(knowledge_bases::table.find(knowledge_base_id))
            .set(
                knowledge_bases::passages_count
                    .eq(knowledge_bases::passages_count - dropped as i64),
            )
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Locks the document if `claimed` is still its claim.
async fn still_claimed(conn: &mut AsyncPgConnection, claimed: &Claimed) -> QueryResult<bool> {
    let found: Option<i64> = knowledge_documents::table
        .filter(knowledge_documents::id.eq(claimed.id))
        .filter(knowledge_documents::attempts.eq(claimed.attempts))
        .filter(knowledge_documents::status.eq(DocumentStatus::Processing.as_str()))
        .select(knowledge_documents::id)
        .for_update()
        .get_result(conn)
        .await
        .optional()?;
    Ok(found.is_some())
}

/// A passage found by [`search`].
#[derive(Debug, Clone, QueryableByName)]
pub struct Hit {
    #[diesel(sql_type = Int8)]
    pub passage_id: i64,
    #[diesel(sql_type = Int8)]
    pub document_id: i64,
    #[diesel(sql_type = Text)]
    pub document_name: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub heading: Option<String>,
    #[diesel(sql_type = Text)]
    pub body: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub url: Option<String>,
    #[diesel(sql_type = Int4)]
    pub tokens: i32,
    #[diesel(sql_type = Double)]
    pub score: f64,
}

impl Hit {
    pub fn into_wire(self) -> wire::SearchHit {
        wire::SearchHit {
            passage_id: self.passage_id,
            document_id: self.document_id,
            document_name: self.document_name,
            heading: self.heading,
            text: self.body,
            url: self.url,
            score: self.score,
        }
    }

    pub fn reference(&self) -> wire::PassageRef {
        wire::PassageRef {
            document_id: self.document_id,
            document_name: self.document_name.clone(),
            passage_id: self.passage_id,
        }
    }
}

/// The knowledge base's passages that best match `query`, best first, at most `limit`.
///
/// The passages holding any of the query's rarer words (see `text_query!`; in the base's
/// language: stemmed, stop words dropped), ranked as `text_ranked!` says: by how densely all
/// its words cover them, a heading's words counting most, a passage holding the query as a
/// phrase higher, and at most two of one document before the others. Read through the
/// `(knowledge_base_id, search)` index, so only this base's matches are ranked.
pub async fn search(
    conn: &mut impl Conn,
    knowledge_base_id: i64,
    query: &str,
    limit: i64,
) -> QueryResult<Vec<Hit>> {
    // Prepared once per connection: planning the statement took a millisecond, a quarter of
    // the search.
    diesel::sql_query(SEARCH_SQL)
        .bind::<Int8, _>(knowledge_base_id)
        .bind::<Text, _>(query)
        .bind::<Int8, _>(limit)
        .keep_prepared()
        .load(conn)
        .await
}

/// The query's words, in the knowledge base `$1`'s language, from the text `$2`: `q.every_word`
/// (any of them, which ranks), `q.any_word` (any of its rarer ones, which finds) and
/// `q.phrase` (all, in order).
///
/// Ranking costs per passage found, and in a large base a question's common words ("table",
/// "use") are in most passages: so passages are found by the words in at most a fiftieth of
/// the base's passages (or 20), or by the two rarest when all are common, as an index of
/// inverse document frequency would; every word still counts in the rank. Each word's count
/// of passages is read from `knowledge_terms`.
macro_rules! text_query {
    () => {
        "WITH base AS (
             SELECT language::regconfig AS cfg, passages_count AS passages
             FROM knowledge_bases WHERE id = $1),
         words AS MATERIALIZED (
             SELECT DISTINCT w.lexeme, coalesce(t.passages, 0) AS passages
             FROM base, unnest(to_tsvector(base.cfg, $2)) w
             LEFT JOIN knowledge_terms t ON t.knowledge_base_id = $1 AND t.lexeme = w.lexeme),
         q AS MATERIALIZED (
             SELECT nullif(array_to_string(ARRAY(
                        SELECT quote_literal(lexeme) FROM words WHERE passages > 0), ' | '),
                        '')::tsquery AS every_word,
                    nullif(array_to_string(ARRAY(
                        SELECT quote_literal(w.lexeme) FROM words w, base
                        WHERE w.passages > 0
                          AND (w.passages <= greatest(base.passages / 50, 20)
                               OR w.lexeme IN (SELECT lexeme FROM words WHERE passages > 0
                                               ORDER BY passages, lexeme LIMIT 2))),
                        ' | '), '')::tsquery AS any_word,
                    phraseto_tsquery(base.cfg, $2) AS phrase
             FROM base)"
    };
}

/// Every passage of the base `$1` holding one of `q.any_word`, with its full-text score for
/// `q` and whether its document already has two better passages (`crowded`).
///
/// The score: how densely the query's words cover the passage (`ts_rank_cd`, a heading's
/// words counting five times a body's), doubled where it holds the query as a phrase. Of one
/// document, only the two best passages rank among the others; the rest come after them. A
/// document's neighbouring passages overlap and score alike, and without the limit one long
/// page would push every other source out of the first places (it took the json/jsonb
/// question's page from 2nd to 6th).
macro_rules! text_ranked {
    () => {
        "scored AS (
             SELECT p.id, p.document_id,
                    (ts_rank_cd('{0.2, 0.2, 0.4, 1.0}', p.search, q.every_word, 1)
                     + CASE WHEN numnode(q.phrase) > 1 AND p.search @@ q.phrase
                            THEN 2 * ts_rank_cd('{0.2, 0.2, 0.4, 1.0}', p.search, q.phrase, 1)
                            ELSE 0 END)::float8 AS score
             FROM q, knowledge_passages p
             WHERE p.knowledge_base_id = $1 AND p.search @@ q.any_word),
         by_text AS (
             SELECT id, score,
                    row_number() OVER (PARTITION BY document_id ORDER BY score DESC, id) > 2
                        AS crowded
             FROM scored)"
    };
}

/// See [`search`]. Kept as text so a test can `EXPLAIN` exactly this.
pub const SEARCH_SQL: &str = concat!(
    text_query!(),
    ",
     ",
    text_ranked!(),
    ",
     best AS (
         SELECT id, score, crowded FROM by_text ORDER BY crowded, score DESC, id LIMIT $3)
     SELECT p.id AS passage_id, p.document_id, d.name AS document_name, p.heading, p.body, p.url,
            p.tokens, best.score
     FROM best
          JOIN knowledge_passages p ON p.id = best.id
          JOIN knowledge_documents d ON d.id = p.document_id
     ORDER BY best.crowded, best.score DESC, p.id"
);

/// Candidates each ranking gives the fusion.
pub const FUSED_CANDIDATES: i64 = 50;
/// Reciprocal rank fusion's constant: a passage's score is the sum over the rankings that
/// hold it of 1 / (`RRF_K` + its rank there), so agreement beats one ranking's top place.
pub const RRF_K: i64 = 60;

/// The query's vector, from the model whose vectors it is compared with.
#[derive(Debug, Clone)]
pub struct QueryVector {
    pub model: String,
    pub vector: Vec<f32>,
}

/// Like [`search`], fusing the full-text ranking with the passages nearest to `vector` by
/// cosine distance (the top [`FUSED_CANDIDATES`] of each) by reciprocal rank fusion; `score`
/// is the fused score, at most 2 / (`RRF_K` + 1).
pub async fn search_fused(
    conn: &mut AsyncPgConnection,
    knowledge_base_id: i64,
    query: &str,
    vector: &QueryVector,
    limit: i64,
) -> QueryResult<Vec<Hit>> {
    let sql = fused_search_sql(vector.vector.len());
    let literal = super::knowledge_embedding::literal(&vector.vector);
    conn.transaction(async |conn| {
        // A filtered HNSW scan keeps scanning until it has found enough of this knowledge
        // base's vectors (pgvector 0.8), instead of stopping after `ef_search` of anyone's.
        conn.batch_execute(
            "SET LOCAL hnsw.iterative_scan = strict_order; SET LOCAL hnsw.ef_search = 100",
        )
        .await?;
        diesel::sql_query(sql)
            .bind::<Int8, _>(knowledge_base_id)
            .bind::<Text, _>(query)
            .bind::<Int8, _>(limit)
            .bind::<Text, _>(literal)
            .bind::<Text, _>(&vector.model)
            // One text per vector size.
            .keep_prepared()
            .load(conn)
            .await
    })
    .await
}

/// See [`search_fused`]: the vector part names `embedding::vector(dims)` and `dims = dims`,
/// as the index of that size does ([`super::knowledge_embedding::ensure_index`]).
pub fn fused_search_sql(dims: usize) -> String {
    format!(
        "{text_query},
     {text_ranked},
     text_best AS (
         SELECT id, crowded, score FROM by_text
         ORDER BY crowded, score DESC, id
         LIMIT {FUSED_CANDIDATES}),
     by_vector AS MATERIALIZED (
         SELECT e.passage_id AS id, e.embedding::vector({dims}) <=> $4::vector({dims}) AS distance
         FROM knowledge_embeddings e
         WHERE e.knowledge_base_id = $1 AND e.dims = {dims} AND e.model = $5
         ORDER BY distance
         LIMIT {FUSED_CANDIDATES}),
     ranked AS (
         SELECT id, row_number() OVER (ORDER BY crowded, score DESC, id) AS rank FROM text_best
         UNION ALL
         SELECT id, row_number() OVER (ORDER BY distance, id) AS rank FROM by_vector),
     fused AS (
         SELECT id, sum(1.0 / ({RRF_K} + rank))::float8 AS score FROM ranked GROUP BY id)
     SELECT p.id AS passage_id, p.document_id, d.name AS document_name, p.heading, p.body, p.url,
            p.tokens, f.score
     FROM fused f
          JOIN knowledge_passages p ON p.id = f.id
          JOIN knowledge_documents d ON d.id = p.document_id
     ORDER BY f.score DESC, p.id
     LIMIT $3",
        text_query = text_query!(),
        text_ranked = text_ranked!(),
    )
}
