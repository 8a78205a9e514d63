//! `/api/user/knowledgebases`: the business's documents and websites that assistants answer
//! from, in Famulor's paths and shapes (plus `language`, `reason`, `passages_count` and search).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::limits::{MAX_SEARCH_LIMIT, MAX_SEARCH_QUERY_CHARS};
use crate::validate::{FieldErrors, Fields};

/// Longest knowledge-base or document `name` and `description`, in characters (Famulor's).
pub const MAX_NAME_CHARS: usize = 255;
/// Passages a search answers unless told otherwise.
pub const DEFAULT_SEARCH_LIMIT: i64 = 5;

/// A knowledge base's status, derived from its documents' as Famulor documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum KnowledgeBaseStatus {
    /// No documents.
    Empty,
    /// One or more documents being processed.
    Processing,
    /// Every document processed.
    Active,
    /// One or more documents failed (and none is processing).
    Failed,
}

impl KnowledgeBaseStatus {
    /// From the counts of its documents by status.
    pub fn derive(processing: i64, failed: i64, total: i64) -> Self {
        match () {
            () if total == 0 => Self::Empty,
            () if processing > 0 => Self::Processing,
            () if failed > 0 => Self::Failed,
            () => Self::Active,
        }
    }

    /// The capitalised word Famulor sends as `status_label`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Processing => "Processing",
            Self::Active => "Active",
            Self::Failed => "Failed",
        }
    }
}

/// A document's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DocumentStatus {
    /// Waiting for, or in, processing.
    Processing,
    /// Its passages are searched.
    Active,
    /// Processing failed; `reason` says why.
    Failed,
}

impl DocumentStatus {
    /// As sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Active => "active",
            Self::Failed => "failed",
        }
    }

    /// The value written `text`, if any.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Processing, Self::Active, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// The capitalised word Famulor sends as the label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Processing => "Processing",
            Self::Active => "Active",
            Self::Failed => "Failed",
        }
    }
}

/// What a document is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DocumentType {
    /// Pages of a website, read from `url` and/or `links`.
    Website,
    /// An uploaded PDF (with a text layer).
    Pdf,
    /// An uploaded text file; Markdown is read as such.
    Txt,
    /// An uploaded Word document.
    Docx,
}

impl DocumentType {
    /// Every type.
    pub const ALL: [Self; 4] = [Self::Website, Self::Pdf, Self::Txt, Self::Docx];

    /// As sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Website => "website",
            Self::Pdf => "pdf",
            Self::Txt => "txt",
            Self::Docx => "docx",
        }
    }

    /// The value written `text`, if any.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// What Famulor sends as `type_label`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Website => "Website",
            Self::Pdf => "PDF",
            Self::Txt => "TXT",
            Self::Docx => "DOCX",
        }
    }
}

/// A knowledge base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KnowledgeBase {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// What it holds, in a sentence.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub description: Option<String>,
    /// Derived from its documents' statuses.
    pub status: KnowledgeBaseStatus,
    /// `status`, capitalised.
    pub status_label: String,
    /// How many documents it has.
    pub documents_count: i64,
    /// Assistants that answer from it.
    pub assistants_count: i64,
    /// The PostgreSQL text-search configuration its passages are indexed in (`simple`,
    /// `english`, `german`, …).
    pub language: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

/// Body of create and update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KnowledgeBaseInput {
    /// 1–255 characters; required on create.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 255))]
    pub name: Option<String>,
    /// At most 255 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 255))]
    pub description: Option<String>,
    /// A PostgreSQL text-search configuration (`SELECT cfgname FROM pg_ts_config`); default
    /// `simple`. Changing it re-indexes every document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 63, example = "english")
    )]
    pub language: Option<String>,
}

impl KnowledgeBaseInput {
    /// Validates a create (`name` required) or update body, every bad field at once.
    pub fn from_json(body: &Value, creating: bool) -> Result<Self, FieldErrors> {
        let mut fields = Fields::new(body);
        let name = if creating {
            fields.required_string("name", 1..=MAX_NAME_CHARS)
        } else {
            fields.optional_string("name", 1..=MAX_NAME_CHARS)
        };
        let description = fields.optional_string("description", 0..=MAX_NAME_CHARS);
        let language = fields.optional_string("language", 1..=63);
        let mut errors = fields.errors;
        if let Some(language) = &language
            && !language
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            errors.add(
                "language",
                "The language must name a text-search configuration, such as english.",
            );
        }
        errors.finish(Self {
            name,
            description,
            language,
        })
    }
}

/// Answer of create, update and delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KnowledgeBaseResponse {
    /// What was done, in words.
    pub message: String,
    /// The knowledge base.
    pub data: KnowledgeBase,
}

/// Answer of list: every knowledge base of the account, in id order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KnowledgeBaseList {
    /// The knowledge bases.
    pub data: Vec<KnowledgeBase>,
}

/// A document of a knowledge base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Document {
    /// Its id.
    pub id: i64,
    /// Its knowledge base.
    pub knowledgebase_id: i64,
    /// Its name.
    pub name: String,
    /// What it holds, in a sentence.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub description: Option<String>,
    /// What it is made from.
    #[serde(rename = "type")]
    pub kind: DocumentType,
    /// `type`'s label: `Website`, `PDF`, `TXT`, `DOCX`.
    pub type_label: String,
    /// Where its processing is.
    pub status: DocumentStatus,
    /// `status`, capitalised.
    pub status_label: String,
    /// Why it failed, in words a person can act on; `null` unless `failed`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub reason: Option<String>,
    /// The passages it was cut into (0 until processed).
    pub passages_count: i64,
    /// A website's start page, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

/// Answer of add and delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DocumentResponse {
    /// What was done, in words.
    pub message: String,
    /// The document.
    pub data: Document,
}

/// Answer of list: the knowledge base's documents, in id order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DocumentList {
    /// The documents.
    pub data: Vec<Document>,
}

/// Answer of the one-document read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DocumentData {
    /// The document.
    pub data: Document,
}

/// Body of search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchInput {
    /// What to look for, as a customer would ask it: 1–1,000 characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 1000))]
    pub query: String,
    /// 1–50, default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 50))]
    pub limit: Option<i64>,
}

impl SearchInput {
    /// Validates a search body.
    pub fn from_json(body: &Value) -> Result<Self, FieldErrors> {
        let mut fields = Fields::new(body);
        let query = fields.required_string("query", 1..=MAX_SEARCH_QUERY_CHARS);
        let limit = fields.optional_integer("limit", 1..=MAX_SEARCH_LIMIT);
        let errors = fields.errors;
        match query {
            Some(query) => errors.finish(Self { query, limit }),
            None => Err(errors),
        }
    }
}

/// A passage found, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchHit {
    /// The passage's id.
    pub passage_id: i64,
    /// Its document's id.
    pub document_id: i64,
    /// Its document's name.
    pub document_name: String,
    /// The passage's place in its document: its headings, joined by ` › `.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub heading: Option<String>,
    /// The passage's text.
    pub text: String,
    /// The page it was read from, for a website's passages.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub url: Option<String>,
    /// Its rank: higher is better; comparable within one search only. With vector search on,
    /// the reciprocal rank fusion score: the sum of 1 / (60 + rank) over the full-text and the
    /// vector ranking.
    pub score: f64,
}

/// Answer of search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchResults {
    /// The passages found, best first.
    pub data: Vec<SearchHit>,
}

/// A passage a reply was given, recorded in its message (`knowledge`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PassageRef {
    /// Its document's id.
    pub document_id: i64,
    /// Its document's name.
    pub document_name: String,
    /// The passage's id.
    pub passage_id: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_is_derived_as_famulor_documents_it() {
        assert_eq!(
            KnowledgeBaseStatus::derive(0, 0, 0),
            KnowledgeBaseStatus::Empty
        );
        assert_eq!(
            KnowledgeBaseStatus::derive(1, 1, 3),
            KnowledgeBaseStatus::Processing
        );
        assert_eq!(
            KnowledgeBaseStatus::derive(0, 1, 3),
            KnowledgeBaseStatus::Failed
        );
        assert_eq!(
            KnowledgeBaseStatus::derive(0, 0, 3),
            KnowledgeBaseStatus::Active
        );
    }

    #[test]
    fn a_create_needs_a_name_and_a_plain_language() {
        let errors = KnowledgeBaseInput::from_json(&json!({"language": "eng lish;"}), true)
            .unwrap_err()
            .into_map();
        assert!(errors.contains_key("name"));
        assert!(errors.contains_key("language"));
        let input = KnowledgeBaseInput::from_json(&json!({"name": "FAQ 🙂"}), true).unwrap();
        assert_eq!(input.name.as_deref(), Some("FAQ 🙂"));
    }

    #[test]
    fn a_search_needs_a_query_and_a_limit_in_bounds() {
        let errors = SearchInput::from_json(&json!({"query": "", "limit": 51}))
            .unwrap_err()
            .into_map();
        assert!(errors.contains_key("query") && errors.contains_key("limit"));
    }
}
