//! `/api/user/knowledgebases`: knowledge bases, their documents, and search (Famulor's paths
//! and shapes).

use anyreply_core::limits::{
    MAX_DOCUMENT_BYTES, MAX_DOCUMENTS_PER_KNOWLEDGE_BASE, MAX_KNOWLEDGE_BASES_PER_ACCOUNT,
    MAX_WEBHOOK_URL_CHARS, MAX_WEBSITE_LINKS, RELATIVE_LINKS_LIMIT,
};
use anyreply_core::wire::knowledge::{DEFAULT_SEARCH_LIMIT, MAX_NAME_CHARS};
use anyreply_core::wire::{
    AuditAction, Document, DocumentData, DocumentList, DocumentResponse, DocumentType,
    KnowledgeBase, KnowledgeBaseInput, KnowledgeBaseList, KnowledgeBaseResponse, SearchHit,
    SearchInput, SearchResults,
};
use anyreply_core::{ErrorBody, ErrorCode, FieldErrors, validate::Fields};
use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::controllers::idempotency;
use crate::controllers::idempotency::IdempotencyKey;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Caller, JsonBody, PathParam};
use crate::models::audit_log::{self, Actor, Target};
use crate::models::knowledge::{self, CreateError, NewDocument};

/// Default `relative_links_limit` of a website document.
const DEFAULT_RELATIVE_LINKS: i64 = 10;

/// The knowledge base id of a path: one that is no number names none.
pub fn base_id(text: &str) -> ApiResult<i64> {
    text.parse()
        .map_err(|_| ApiError::new(ErrorCode::KnowledgeBaseNotFound))
}

/// The account's knowledge bases, in id order.
#[utoipa::path(
    get,
    path = "/api/user/knowledgebases",
    tag = "knowledge",
    security(("api_key" = [])),
    responses((status = 200, description = "Every knowledge base of the account", body = KnowledgeBaseList))
)]
pub async fn list_knowledge_bases(
    State(app): State<App>,
    caller: Caller,
) -> ApiResult<Json<KnowledgeBaseList>> {
    let mut conn = app.db().await?;
    let rows = knowledge::list_bases(&mut conn, caller.account_id).await?;
    Ok(Json(KnowledgeBaseList {
        data: rows
            .into_iter()
            .map(knowledge::BaseRow::into_wire)
            .collect(),
    }))
}

/// Creates a knowledge base (`name` required; `language` a text-search configuration,
/// default `simple`).
#[utoipa::path(
    post,
    path = "/api/user/knowledgebases",
    tag = "knowledge",
    security(("api_key" = [])),
    params(IdempotencyKey),
    request_body(content = KnowledgeBaseInput, example = json!({"name": "Shop FAQ", "description": "Returns, shipping, opening hours", "language": "english"})),
    responses(
        (status = 201, description = "Created", body = KnowledgeBaseResponse),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR` (an unknown `language` too), `LIMIT_EXCEEDED` (50 per account)", body = ErrorBody),
    )
)]
pub async fn create_knowledge_base(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<Response> {
    let input = read_base_input(&app, &body.0, true).await?;
    let fingerprint = idempotency::fingerprint("POST", "/api/user/knowledgebases", Some(&body.0));
    let account_id = caller.account_id;
    let actor = caller.actor();
    Ok(
        idempotency::execute(&app, account_id, &headers, fingerprint, move |conn| {
            Box::pin(async move {
                let data = create_base(conn, account_id, &input, &actor).await?;
                Ok((
                    StatusCode::CREATED,
                    KnowledgeBaseResponse {
                        message: "Knowledgebase created successfully.".to_owned(),
                        data,
                    },
                ))
            })
        })
        .await,
    )
}

/// Validates a create (`creating`) or update body, its language included.
pub async fn read_base_input(
    app: &App,
    body: &Value,
    creating: bool,
) -> ApiResult<KnowledgeBaseInput> {
    crate::extract::refuse_nul(body)?;
    let input = KnowledgeBaseInput::from_json(body, creating).map_err(ApiError::validation)?;
    check_language(app, &input).await?;
    Ok(input)
}

/// Creates one of the account's knowledge bases from a validated input, unless it has as many
/// as it may, logged as `actor`'s in the same transaction.
pub async fn create_base(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    input: &KnowledgeBaseInput,
    actor: &Actor,
) -> ApiResult<KnowledgeBase> {
    conn.transaction::<_, ApiError, _>(async |conn| {
        let row = knowledge::create_base(conn, account_id, input)
            .await
            .map_err(|error| limit_or(error, || format!(
                "An account may have at most {MAX_KNOWLEDGE_BASES_PER_ACCOUNT} knowledge bases; delete one to make room."
            )))?;
        let details = json!({ "name": row.name });
        let (action, target) = (AuditAction::KnowledgeBaseCreated, Target::KnowledgeBase(row.id));
        audit_log::record(conn, account_id, actor, action, target, details).await?;
        Ok(row.into_wire())
    })
    .await
}

fn limit_or(error: CreateError, message: impl FnOnce() -> String) -> ApiError {
    match error {
        CreateError::LimitReached => {
            ApiError::new(ErrorCode::LimitExceeded).with_message(message())
        }
        CreateError::Database(error) => error.into(),
    }
}

async fn check_language(app: &App, input: &KnowledgeBaseInput) -> ApiResult<()> {
    let Some(language) = &input.language else {
        return Ok(());
    };
    let mut conn = app.db().await?;
    if knowledge::language_exists(&mut conn, language).await? {
        return Ok(());
    }
    Err(ApiError::validation(FieldErrors::single(
        "language",
        format!(
            "PostgreSQL has no text-search configuration {language:?}; try simple, english or german."
        ),
    )))
}

/// Renames a knowledge base, or changes its language (every document is then processed
/// again); its documents are untouched otherwise.
#[utoipa::path(
    put,
    path = "/api/user/knowledgebases/{id}",
    tag = "knowledge",
    security(("api_key" = [])),
    params(("id" = i64, Path, description = "The knowledge base's id")),
    request_body(content = KnowledgeBaseInput),
    responses(
        (status = 200, description = "Updated", body = KnowledgeBaseResponse),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 404, description = "`KNOWLEDGE_BASE_NOT_FOUND`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`", body = ErrorBody),
    )
)]
pub async fn update_knowledge_base(
    State(app): State<App>,
    caller: Caller,
    PathParam(id): PathParam,
    body: JsonBody,
) -> ApiResult<Json<KnowledgeBaseResponse>> {
    let id = base_id(&id)?;
    let input = read_base_input(&app, &body.0, false).await?;
    let mut conn = app.db().await?;
    let account_id = caller.account_id;
    let row = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let row = knowledge::update_base(conn, account_id, id, &input)
                .await?
                .ok_or(ErrorCode::KnowledgeBaseNotFound)?;
            let details = json!({ "name": row.name, "fields": audit_log::fields_sent(&input) });
            let (action, target) = (AuditAction::KnowledgeBaseUpdated, Target::KnowledgeBase(id));
            audit_log::record(conn, account_id, &caller.actor(), action, target, details).await?;
            Ok(row)
        })
        .await?;
    if input.language.is_some() {
        app.knowledge.wake();
    }
    Ok(Json(KnowledgeBaseResponse {
        message: "Knowledgebase updated successfully.".to_owned(),
        data: row.into_wire(),
    }))
}

/// Deletes a knowledge base with its documents; its assistants answer without one from
/// their next reply.
#[utoipa::path(
    delete,
    path = "/api/user/knowledgebases/{id}",
    tag = "knowledge",
    security(("api_key" = [])),
    params(("id" = i64, Path, description = "The knowledge base's id")),
    responses(
        (status = 200, description = "Deleted; `data` is the knowledge base as it was", body = KnowledgeBaseResponse),
        (status = 404, description = "`KNOWLEDGE_BASE_NOT_FOUND`", body = ErrorBody),
    )
)]
pub async fn delete_knowledge_base(
    State(app): State<App>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Json<KnowledgeBaseResponse>> {
    let id = base_id(&id)?;
    let mut conn = app.db().await?;
    Ok(Json(KnowledgeBaseResponse {
        message: "Knowledgebase deleted successfully.".to_owned(),
        data: delete_base(&mut conn, caller.account_id, id, &caller.actor()).await?,
    }))
}

/// Deletes one of the account's knowledge bases with its documents, logged as `actor`'s in
/// the same transaction; returns it as it was.
pub async fn delete_base(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    id: i64,
    actor: &Actor,
) -> ApiResult<KnowledgeBase> {
    conn.transaction::<_, ApiError, _>(async |conn| {
        let row = knowledge::delete_base(conn, account_id, id)
            .await?
            .ok_or(ErrorCode::KnowledgeBaseNotFound)?;
        let details = json!({ "name": row.name });
        let (action, target) = (AuditAction::KnowledgeBaseDeleted, Target::KnowledgeBase(id));
        audit_log::record(conn, account_id, actor, action, target, details).await?;
        Ok(row.into_wire())
    })
    .await
}

/// The knowledge base's documents, in id order, each with its status (and why it failed).
#[utoipa::path(
    get,
    path = "/api/user/knowledgebases/{id}/documents",
    tag = "knowledge",
    security(("api_key" = [])),
    params(("id" = i64, Path, description = "The knowledge base's id")),
    responses(
        (status = 200, description = "Its documents", body = DocumentList),
        (status = 404, description = "`KNOWLEDGE_BASE_NOT_FOUND`", body = ErrorBody),
    )
)]
pub async fn list_documents(
    State(app): State<App>,
    caller: Caller,
    PathParam(id): PathParam,
) -> ApiResult<Json<DocumentList>> {
    let id = base_id(&id)?;
    let mut conn = app.db().await?;
    let rows = knowledge::list_documents(&mut conn, caller.account_id, id)
        .await?
        .ok_or(ErrorCode::KnowledgeBaseNotFound)?;
    Ok(Json(DocumentList {
        data: rows
            .into_iter()
            .map(knowledge::DocumentRow::into_wire)
            .collect(),
    }))
}

fn document_ids(Path((base, document)): Path<(String, String)>) -> ApiResult<(i64, i64)> {
    Ok((base_id(&base)?, document_id(&document)?))
}

/// The document id of a path: one that is no number names none.
pub fn document_id(text: &str) -> ApiResult<i64> {
    text.parse()
        .map_err(|_| ApiError::new(ErrorCode::DocumentNotFound))
}

/// One document.
#[utoipa::path(
    get,
    path = "/api/user/knowledgebases/{id}/documents/{document_id}",
    tag = "knowledge",
    security(("api_key" = [])),
    params(
        ("id" = i64, Path, description = "The knowledge base's id"),
        ("document_id" = i64, Path, description = "The document's id"),
    ),
    responses(
        (status = 200, description = "The document", body = DocumentData),
        (status = 404, description = "`DOCUMENT_NOT_FOUND`, `KNOWLEDGE_BASE_NOT_FOUND`", body = ErrorBody),
    )
)]
pub async fn get_document(
    State(app): State<App>,
    caller: Caller,
    path: Path<(String, String)>,
) -> ApiResult<Json<DocumentData>> {
    let (base, document) = document_ids(path)?;
    let mut conn = app.db().await?;
    let row = knowledge::find_document(&mut conn, caller.account_id, base, document)
        .await?
        .ok_or(ErrorCode::DocumentNotFound)?;
    Ok(Json(DocumentData {
        data: row.into_wire(),
    }))
}

/// Deletes a document and its passages: the next reply no longer reads them.
#[utoipa::path(
    delete,
    path = "/api/user/knowledgebases/{id}/documents/{document_id}",
    tag = "knowledge",
    security(("api_key" = [])),
    params(
        ("id" = i64, Path, description = "The knowledge base's id"),
        ("document_id" = i64, Path, description = "The document's id"),
    ),
    responses(
        (status = 200, description = "Deleted; `data` is the document as it was", body = DocumentResponse),
        (status = 404, description = "`DOCUMENT_NOT_FOUND`, `KNOWLEDGE_BASE_NOT_FOUND`", body = ErrorBody),
    )
)]
pub async fn delete_document(
    State(app): State<App>,
    caller: Caller,
    path: Path<(String, String)>,
) -> ApiResult<Json<DocumentResponse>> {
    let (base, document) = document_ids(path)?;
    let mut conn = app.db().await?;
    Ok(Json(DocumentResponse {
        message: "Document deleted successfully.".to_owned(),
        data: remove_document(
            &mut conn,
            caller.account_id,
            base,
            document,
            &caller.actor(),
        )
        .await?,
    }))
}

/// Deletes a document of the account's knowledge base with its passages, logged as `actor`'s
/// in the same transaction; returns it as it was.
pub async fn remove_document(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    base_id: i64,
    id: i64,
    actor: &Actor,
) -> ApiResult<Document> {
    conn.transaction::<_, ApiError, _>(async |conn| {
        let row = knowledge::delete_document(conn, account_id, base_id, id)
            .await?
            .ok_or(ErrorCode::DocumentNotFound)?;
        let details = json!({ "knowledge_base_id": base_id, "name": row.name });
        let (action, target) = (AuditAction::DocumentDeleted, Target::Document(id));
        audit_log::record(conn, account_id, actor, action, target, details).await?;
        Ok(row.into_wire())
    })
    .await
}

/// Adds a document, processed in the background (`status: processing` until it is `active`
/// or `failed`). Files (`pdf`, `txt` or Markdown, `docx`; at most 20 MB) come as
/// `multipart/form-data` with the file in `file`; a `website` as JSON (or form fields) with
/// `url` and/or `links: [{"link"}]` and `relative_links_limit` (1–50, default 10).
#[utoipa::path(
    post,
    path = "/api/user/knowledgebases/{id}/documents",
    tag = "knowledge",
    security(("api_key" = [])),
    params(("id" = i64, Path, description = "The knowledge base's id"), IdempotencyKey),
    request_body(
        description = "`multipart/form-data` (`name`, `description`, `type`, `file`) for files; JSON for a website",
        content_type = "application/json",
        content = Object,
        example = json!({"name": "Our website", "type": "website", "url": "https://shop.example.com/faq", "relative_links_limit": 10})
    ),
    responses(
        (status = 201, description = "Added; processing will begin shortly", body = DocumentResponse),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 404, description = "`KNOWLEDGE_BASE_NOT_FOUND`", body = ErrorBody),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: a file over 20 MB", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`, `LIMIT_EXCEEDED` (2,000 documents per knowledge base)", body = ErrorBody),
    )
)]
pub async fn create_document(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    PathParam(id): PathParam,
    request: Request,
) -> ApiResult<Response> {
    let id = base_id(&id)?;
    let multipart = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (fields, file) = if multipart {
        read_form(
            Multipart::from_request(request, &())
                .await
                .map_err(|rejection| {
                    ApiError::new(ErrorCode::InvalidJson).with_message(rejection.body_text())
                })?,
        )
        .await?
    } else {
        let JsonBody(body) = JsonBody::from_request(request, &()).await?;
        (body, None)
    };
    let document = read_document(&app, &fields, file).await?;
    // A file is fingerprinted by its digest, not its bytes.
    let mut print = fields.clone();
    if let (Some(object), Some(content)) = (print.as_object_mut(), &document.content) {
        let digest: String = Sha256::digest(content)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        object.insert("file_sha256".into(), digest.into());
    }
    let path = format!("/api/user/knowledgebases/{id}/documents");
    let fingerprint = idempotency::fingerprint("POST", &path, Some(&print));
    let account_id = caller.account_id;
    let actor = caller.actor();
    let response = idempotency::execute(&app, account_id, &headers, fingerprint, move |conn| {
        Box::pin(async move {
            let data = insert_document(conn, account_id, id, &document, &actor).await?;
            Ok((
                StatusCode::CREATED,
                DocumentResponse {
                    message: "Document created successfully. Processing will begin shortly."
                        .to_owned(),
                    data,
                },
            ))
        })
    })
    .await;
    // Only now is the document committed, and so visible to the worker woken.
    if response.status().is_success() {
        app.knowledge.wake();
    }
    Ok(response)
}

/// Adds a validated document to the account's knowledge base, `processing`, and wakes the
/// worker that reads it.
pub async fn add_document(
    app: &App,
    account_id: i64,
    base_id: i64,
    document: &NewDocument,
    actor: &Actor,
) -> ApiResult<Document> {
    let mut conn = app.db().await?;
    let created = conn
        .transaction::<_, ApiError, _>(async |conn| {
            insert_document(conn, account_id, base_id, document, actor).await
        })
        .await?;
    app.knowledge.wake();
    Ok(created)
}

/// Stores a validated document, unless its knowledge base has as many as it may, logged as
/// `actor`'s; the caller holds the transaction and wakes the worker once it is committed.
async fn insert_document(
    conn: &mut AsyncPgConnection,
    account_id: i64,
    base_id: i64,
    document: &NewDocument,
    actor: &Actor,
) -> ApiResult<Document> {
    let row = knowledge::create_document(conn, account_id, base_id, document)
        .await
        .map_err(|error| limit_or(error, || format!(
            "A knowledge base may have at most {MAX_DOCUMENTS_PER_KNOWLEDGE_BASE} documents; delete one to make room."
        )))?
        .ok_or(ErrorCode::KnowledgeBaseNotFound)?;
    let details = json!({ "knowledge_base_id": base_id, "name": row.name, "type": row.kind });
    let (action, target) = (AuditAction::DocumentAdded, Target::Document(row.id));
    audit_log::record(conn, account_id, actor, action, target, details).await?;
    Ok(row.into_wire())
}

/// A form's text fields as a JSON object (`links[0][link]` and `links[]` gathered into
/// `links`), and its file; a NUL in a field is refused.
pub async fn read_form(mut form: Multipart) -> ApiResult<(Value, Option<Vec<u8>>)> {
    let mut fields = serde_json::Map::new();
    let mut links = Vec::new();
    let mut file = None;
    let too_large = || {
        ApiError::new(ErrorCode::PayloadTooLarge).with_message(format!(
            "A document may be at most {} MB.",
            MAX_DOCUMENT_BYTES / (1024 * 1024)
        ))
    };
    while let Some(field) = form.next_field().await.map_err(|error| {
        if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::new(ErrorCode::InvalidJson).with_message(error.body_text())
        }
    })? {
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.map_err(|error| {
            if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::new(ErrorCode::InvalidJson).with_message(error.body_text())
            }
        })?;
        if name == "file" {
            if bytes.len() > MAX_DOCUMENT_BYTES {
                return Err(too_large());
            }
            file = Some(bytes.to_vec());
            continue;
        }
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
            ApiError::validation(FieldErrors::single(&name, "The field must be UTF-8 text."))
        })?;
        if name.starts_with("links[") {
            links.push(json!({ "link": text }));
        } else {
            fields.insert(name, Value::String(text));
        }
    }
    if !links.is_empty() {
        fields.insert("links".into(), Value::Array(links));
    }
    let fields = Value::Object(fields);
    crate::extract::refuse_nul(&fields)?;
    Ok((fields, file))
}

/// Validates a document's fields, every bad one at once.
pub async fn read_document(
    app: &App,
    body: &Value,
    file: Option<Vec<u8>>,
) -> ApiResult<NewDocument> {
    // Refused on the way in already, unless the body was built by other means.
    crate::extract::refuse_nul(body)?;
    let mut fields = Fields::new(body);
    let name = fields.required_string("name", 1..=MAX_NAME_CHARS);
    let description = fields.optional_string("description", 0..=MAX_NAME_CHARS);
    let kind = fields.required_string("type", 1..=16);
    let url = fields.optional_string("url", 1..=MAX_WEBHOOK_URL_CHARS);
    let limit = fields.optional_integer("relative_links_limit", RELATIVE_LINKS_LIMIT);
    let mut errors = fields.errors;
    let kind = kind.and_then(|text| {
        let parsed = DocumentType::parse(&text);
        if parsed.is_none() {
            errors.add("type", "The type must be website, pdf, txt or docx.");
        }
        parsed
    });
    let links = read_links(body.get("links"), &mut errors);
    let mut document = NewDocument {
        name: name.unwrap_or_default(),
        description,
        kind: kind.unwrap_or(DocumentType::Txt),
        content: None,
        url: url.clone(),
        links: links.clone(),
        relative_links_limit: None,
    };
    match kind {
        Some(DocumentType::Website) => {
            if url.is_none() && links.is_empty() {
                errors.add("url", "A website needs a url or links.");
            }
            for (field, address) in url
                .iter()
                .map(|u| ("url".to_owned(), u))
                .chain(links.iter().enumerate().map(|(i, l)| (format!("links.{i}.link"), l)))
            {
                match url::Url::parse(address) {
                    Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                        if let Err(refused) = app.webhooks.check_url(&parsed).await {
                            errors.add(field, format!("The site may not be read: {refused}."));
                        }
                    }
                    _ => errors.add(field, "It must be an http or https URL."),
                }
            }
            document.relative_links_limit =
                Some(limit.unwrap_or(DEFAULT_RELATIVE_LINKS) as i32);
        }
        Some(_) => match file {
            Some(bytes) if bytes.is_empty() => errors.add("file", "The file is empty."),
            Some(bytes) => document.content = Some(bytes),
            None => errors.add(
                "file",
                "A pdf, txt or docx document is uploaded as multipart/form-data with the file in `file`.",
            ),
        },
        None => {}
    }
    errors.finish(document).map_err(ApiError::validation)
}

fn read_links(value: Option<&Value>, errors: &mut FieldErrors) -> Vec<String> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Vec::new();
    };
    let Some(items) = value.as_array() else {
        errors.add(
            "links",
            "The links must be an array of {\"link\": \"https://…\"}.",
        );
        return Vec::new();
    };
    if items.len() > MAX_WEBSITE_LINKS {
        errors.add("links", format!("At most {MAX_WEBSITE_LINKS} links."));
        return Vec::new();
    }
    let mut links = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let link = item
            .get("link")
            .or(Some(item))
            .and_then(Value::as_str)
            .filter(|l| !l.is_empty() && l.chars().count() <= MAX_WEBHOOK_URL_CHARS);
        match link {
            Some(link) => links.push(link.to_owned()),
            None => errors.add(
                format!("links.{i}"),
                "Each link is {\"link\": \"https://…\"}.",
            ),
        }
    }
    links
}

/// The passages that best match `query`, as an assistant of this knowledge base would read
/// them, with their scores.
#[utoipa::path(
    post,
    path = "/api/user/knowledgebases/{id}/search",
    tag = "knowledge",
    security(("api_key" = [])),
    params(("id" = i64, Path, description = "The knowledge base's id")),
    request_body(content = SearchInput, example = json!({"query": "Do you ship to Austria?", "limit": 5})),
    responses(
        (status = 200, description = "The passages found, best first", body = SearchResults),
        (status = 400, description = "`INVALID_JSON`", body = ErrorBody),
        (status = 404, description = "`KNOWLEDGE_BASE_NOT_FOUND`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`", body = ErrorBody),
    )
)]
pub async fn search(
    State(app): State<App>,
    caller: Caller,
    PathParam(id): PathParam,
    body: JsonBody,
) -> ApiResult<Json<SearchResults>> {
    let id = base_id(&id)?;
    let input = body.parse(SearchInput::from_json)?;
    Ok(Json(SearchResults {
        data: search_passages(&app, caller.account_id, id, &input).await?,
    }))
}

/// The passages of the account's knowledge base that best match a validated search, best
/// first (fused with the vector ranking when embeddings are on).
pub async fn search_passages(
    app: &App,
    account_id: i64,
    base_id: i64,
    input: &SearchInput,
) -> ApiResult<Vec<SearchHit>> {
    {
        let mut conn = app.db().await?;
        if !knowledge::base_exists(&mut conn, account_id, base_id).await? {
            return Err(ErrorCode::KnowledgeBaseNotFound.into());
        }
    }
    let limit = input.limit.unwrap_or(DEFAULT_SEARCH_LIMIT);
    let hits = crate::knowledge::retrieve::search(
        &app.pool,
        &app.embeddings,
        base_id,
        &input.query,
        limit,
    )
    .await?;
    Ok(hits.into_iter().map(knowledge::Hit::into_wire).collect())
}
