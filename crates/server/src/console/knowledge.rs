//! The account's knowledge bases: a list with a form that creates one, and each one's page
//! with its documents, an upload form, a website form, and a search that shows the passages an
//! assistant would read. Every action goes through the functions the API's handlers call, so
//! it is validated and refused as the API does, with the same messages.

use anyreply_core::ErrorCode;
use anyreply_core::wire::{Document, DocumentStatus, KnowledgeBase, SearchHit, SearchInput};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::form::{Body, Pairs};
use super::session::{Operator, Submitted, SubmittedUpload};
use super::{ConsoleError, FormErrors, Layout, form_errors};
use crate::app::App;
use crate::controllers::knowledge as api;
use crate::error::ApiError;
use crate::models::knowledge;

/// A new knowledge base's language unless another is chosen (the API's default).
const DEFAULT_LANGUAGE: &str = "simple";

/// A website's `relative_links_limit` as the form first shows it (the API's default).
const DEFAULT_RELATIVE_LINKS: &str = "10";

fn page_of(id: i64) -> String {
    format!("/console/knowledge/{id}")
}

/// A new knowledge base's fields as the form shows them.
#[derive(Debug)]
pub(super) struct BaseFields {
    name: String,
    description: String,
    language: String,
}

impl BaseFields {
    fn posted(form: &Pairs) -> Self {
        Self {
            name: form.get("name").to_owned(),
            description: form.get("description").to_owned(),
            language: form.get("language").to_owned(),
        }
    }

    fn body(&self) -> Value {
        Body::default()
            .text("name", &self.name)
            .text("description", &self.description)
            .text("language", &self.language)
            .build()
    }
}

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "console/knowledge.html")]
pub(super) struct ListPage {
    layout: Layout,
    bases: Vec<KnowledgeBase>,
    /// PostgreSQL's text-search configurations, for the language select.
    languages: Vec<String>,
    fields: BaseFields,
    errors: FormErrors,
}

async fn list_page(
    app: &App,
    operator: &Operator,
    fields: BaseFields,
    errors: FormErrors,
) -> Result<ListPage, ConsoleError> {
    let mut conn = app.db().await?;
    let bases = knowledge::list_bases(&mut conn, operator.account_id).await?;
    let mut languages = knowledge::languages(&mut conn).await?;
    // A language posted that PostgreSQL lacks stays chosen, next to its error.
    if !fields.language.is_empty() && !languages.contains(&fields.language) {
        languages.push(fields.language.clone());
    }
    Ok(ListPage {
        layout: Layout::signed_in(operator, "knowledge"),
        bases: bases
            .into_iter()
            .map(knowledge::BaseRow::into_wire)
            .collect(),
        languages,
        fields,
        errors,
    })
}

pub(super) async fn list(
    State(app): State<App>,
    operator: Operator,
) -> Result<Response, ConsoleError> {
    let fields = BaseFields {
        name: String::new(),
        description: String::new(),
        language: DEFAULT_LANGUAGE.to_owned(),
    };
    let page = list_page(&app, &operator, fields, FormErrors::default()).await?;
    Ok(page.into_response())
}

pub(super) async fn create(
    State(app): State<App>,
    Submitted { operator, form }: Submitted<Pairs>,
) -> Result<Response, ConsoleError> {
    let fields = BaseFields::posted(&form);
    match create_base(&app, &operator, &fields.body()).await {
        Ok(base) => Ok(Redirect::to(&page_of(base.id)).into_response()),
        Err(refusal) => {
            let status = refusal.status();
            let errors = form_errors(refusal, ErrorCode::KnowledgeBaseNotFound)?;
            let page = list_page(&app, &operator, fields, errors).await?;
            Ok((status, page).into_response())
        }
    }
}

/// Validates and stores the knowledge base as `POST /api/user/knowledgebases` does.
async fn create_base(
    app: &App,
    operator: &Operator,
    body: &Value,
) -> Result<KnowledgeBase, ApiError> {
    let input = api::read_base_input(app, body, true).await?;
    let mut conn = app.db().await?;
    api::create_base(&mut conn, operator.account_id, &input, &operator.actor()).await
}

pub(super) async fn delete(
    State(app): State<App>,
    Path(id): Path<String>,
    Submitted { operator, .. }: Submitted<Pairs>,
) -> Result<Response, ConsoleError> {
    let id = api::base_id(&id)?;
    let mut conn = app.db().await?;
    api::delete_base(&mut conn, operator.account_id, id, &operator.actor()).await?;
    Ok(Redirect::to("/console/knowledge").into_response())
}

/// The upload form's fields as it shows them again after a refusal.
#[derive(Debug)]
pub(super) struct UploadFields {
    name: String,
    kind: String,
}

impl Default for UploadFields {
    fn default() -> Self {
        Self {
            name: String::new(),
            kind: "txt".to_owned(),
        }
    }
}

/// The website form's fields.
#[derive(Debug)]
pub(super) struct WebsiteFields {
    name: String,
    url: String,
    relative_links_limit: String,
}

impl Default for WebsiteFields {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            relative_links_limit: DEFAULT_RELATIVE_LINKS.to_owned(),
        }
    }
}

impl WebsiteFields {
    fn posted(form: &Pairs) -> Self {
        Self {
            name: form.get("name").to_owned(),
            url: form.get("url").to_owned(),
            relative_links_limit: form.get("relative_links_limit").to_owned(),
        }
    }

    /// The API's body: a website named by its address unless named otherwise.
    fn body(&self) -> Value {
        let name = if self.name.is_empty() {
            &self.url
        } else {
            &self.name
        };
        Body::default()
            .text("name", name)
            .text("type", "website")
            .text("url", &self.url)
            .number("relative_links_limit", &self.relative_links_limit)
            .build()
    }
}

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "console/knowledge_base.html")]
pub(super) struct BasePage {
    layout: Layout,
    base: KnowledgeBase,
    documents: Vec<Document>,
    upload: UploadFields,
    upload_errors: FormErrors,
    website: WebsiteFields,
    website_errors: FormErrors,
    /// What was searched for; `None` before any search.
    query: Option<String>,
    hits: Vec<SearchHit>,
    search_errors: FormErrors,
}

impl BasePage {
    fn action(&self, path: &str) -> String {
        format!("{}{path}", page_of(self.base.id))
    }

    /// While a document is processing, the page reloads itself to show how it ended.
    fn processing(&self) -> bool {
        self.documents
            .iter()
            .any(|document| document.status == DocumentStatus::Processing)
    }

    fn failed(&self, document: &Document) -> bool {
        document.status == DocumentStatus::Failed
    }

    fn date(&self, at: &DateTime<Utc>) -> String {
        at.format("%Y-%m-%d %H:%M UTC").to_string()
    }
}

/// The knowledge base's page, its forms empty; 404 unless it is the account's.
async fn base_page(app: &App, operator: &Operator, id: i64) -> Result<BasePage, ConsoleError> {
    let account_id = operator.account_id;
    let mut conn = app.db().await?;
    let base = knowledge::find_base(&mut conn, account_id, id)
        .await?
        .ok_or(ApiError::new(ErrorCode::KnowledgeBaseNotFound))?
        .into_wire();
    let documents = knowledge::list_documents(&mut conn, account_id, id)
        .await?
        .ok_or(ApiError::new(ErrorCode::KnowledgeBaseNotFound))?;
    Ok(BasePage {
        layout: Layout::signed_in(operator, "knowledge"),
        base,
        documents: documents
            .into_iter()
            .map(knowledge::DocumentRow::into_wire)
            .collect(),
        upload: UploadFields::default(),
        upload_errors: FormErrors::default(),
        website: WebsiteFields::default(),
        website_errors: FormErrors::default(),
        query: None,
        hits: Vec::new(),
        search_errors: FormErrors::default(),
    })
}

/// `GET /console/knowledge/{id}`, with `?q=` a search as `POST …/search` makes it.
pub(super) async fn show(
    State(app): State<App>,
    operator: Operator,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ConsoleError> {
    let id = api::base_id(&id)?;
    let mut page = base_page(&app, &operator, id).await?;
    let params: Pairs = serde_urlencoded::from_str(query.as_deref().unwrap_or_default())
        .map_err(|_| ConsoleError::BadForm)?;
    let Some(searched) = params.all("q").next().map(str::to_owned) else {
        return Ok(page.into_response());
    };
    let body = Body::default().text("query", searched.trim()).build();
    match search(&app, &operator, id, &body).await {
        Ok(hits) => page.hits = hits,
        Err(refusal) => {
            page.search_errors = form_errors(refusal, ErrorCode::KnowledgeBaseNotFound)?
        }
    }
    page.query = Some(searched);
    Ok(page.into_response())
}

/// Validates and runs the search as `POST /api/user/knowledgebases/{id}/search` does.
async fn search(
    app: &App,
    operator: &Operator,
    id: i64,
    body: &Value,
) -> Result<Vec<SearchHit>, ApiError> {
    crate::extract::refuse_nul(body)?;
    let input = SearchInput::from_json(body).map_err(ApiError::validation)?;
    api::search_passages(app, operator.account_id, id, &input).await
}

/// `POST /console/knowledge/{id}/documents`: an uploaded file, as `multipart/form-data`.
pub(super) async fn upload(
    State(app): State<App>,
    Path(id): Path<String>,
    SubmittedUpload {
        operator,
        form,
        file_names,
    }: SubmittedUpload,
) -> Result<Response, ConsoleError> {
    let id = api::base_id(&id)?;
    let mut shown = UploadFields::default();
    let created = add_upload(&app, &operator, id, form, &file_names, &mut shown).await;
    match created {
        Ok(_) => Ok(Redirect::to(&page_of(id)).into_response()),
        Err(refusal) => {
            let status = refusal.status();
            let errors = form_errors(refusal, ErrorCode::KnowledgeBaseNotFound)?;
            let mut page = base_page(&app, &operator, id).await?;
            page.upload = shown;
            page.upload_errors = errors;
            Ok((status, page).into_response())
        }
    }
}

/// Reads and validates the upload as `POST /api/user/knowledgebases/{id}/documents` does (a
/// blank name becomes the file's), and adds it; `shown` gets the fields to show again.
async fn add_upload(
    app: &App,
    operator: &Operator,
    id: i64,
    form: axum::extract::Multipart,
    file_names: &[(String, String)],
    shown: &mut UploadFields,
) -> Result<Document, ApiError> {
    let (mut fields, file) = api::read_form(form).await?;
    if let Value::Object(object) = &mut fields {
        object.remove("csrf");
        let blank = object
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(|name| name.trim().is_empty());
        let file_name = file_names
            .iter()
            .find(|(field, name)| field == "file" && !name.is_empty());
        if blank && let Some((_, file_name)) = file_name {
            object.insert("name".into(), Value::String(file_name.clone()));
        }
        let text = |name: &str| object.get(name).and_then(Value::as_str).map(str::to_owned);
        shown.name = text("name").unwrap_or_default();
        shown.kind = text("type").unwrap_or_default();
    }
    let document = api::read_document(app, &fields, file).await?;
    api::add_document(app, operator.account_id, id, &document, &operator.actor()).await
}

/// `POST /console/knowledge/{id}/websites`: a website, read from its address.
pub(super) async fn add_website(
    State(app): State<App>,
    Path(id): Path<String>,
    Submitted { operator, form }: Submitted<Pairs>,
) -> Result<Response, ConsoleError> {
    let id = api::base_id(&id)?;
    let fields = WebsiteFields::posted(&form);
    let created = async {
        let document = api::read_document(&app, &fields.body(), None).await?;
        api::add_document(&app, operator.account_id, id, &document, &operator.actor()).await
    }
    .await;
    match created {
        Ok(_) => Ok(Redirect::to(&page_of(id)).into_response()),
        Err(refusal) => {
            let status = refusal.status();
            let errors = form_errors(refusal, ErrorCode::KnowledgeBaseNotFound)?;
            let mut page = base_page(&app, &operator, id).await?;
            page.website = fields;
            page.website_errors = errors;
            Ok((status, page).into_response())
        }
    }
}

/// `POST /console/knowledge/{id}/documents/{document_id}/delete`.
pub(super) async fn delete_document(
    State(app): State<App>,
    Path((id, document)): Path<(String, String)>,
    Submitted { operator, .. }: Submitted<Pairs>,
) -> Result<Response, ConsoleError> {
    let id = api::base_id(&id)?;
    let document = api::document_id(&document)?;
    let mut conn = app.db().await?;
    let actor = operator.actor();
    api::remove_document(&mut conn, operator.account_id, id, document, &actor).await?;
    Ok(Redirect::to(&page_of(id)).into_response())
}
