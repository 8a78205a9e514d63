//! The team inbox: `POST /api/conversations/{uuid}/assign` and
//! `POST/GET /api/conversations/{uuid}/notes`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Author;
use crate::limits::MAX_NOTE_CHARS;
use crate::validate::{FieldErrors, Fields};

/// Body of assign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssignInput {
    /// The operator to assign the conversation to, or `null` for none. Required (send `null`
    /// to unassign).
    #[cfg_attr(feature = "openapi", schema(required, example = 3))]
    pub operator_id: Option<i64>,
}

impl AssignInput {
    /// Validates an assign body.
    pub fn from_json(body: &Value) -> Result<Self, FieldErrors> {
        let mut fields = Fields::new(body);
        let present = body
            .as_object()
            .is_some_and(|object| object.contains_key("operator_id"));
        let operator_id = fields.optional_integer("operator_id", 1..=i64::MAX);
        let mut errors = fields.errors;
        if body.is_object() && !present {
            errors.add(
                "operator_id",
                "The operator_id field is required (null to unassign).",
            );
        }
        errors.finish(Self { operator_id })
    }
}

/// Answer of assign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AssignResponse {
    /// Always `true`.
    pub status: bool,
    /// Who has the conversation now; `null`: no one.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub assignee: Option<Author>,
}

/// Body of a new note, and of an operator message: who wrote it, when an integration writes
/// for one of the account's operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NoteInput {
    /// 1 to 10,000 characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 10000))]
    pub content: String,
    /// The operator who wrote it (their name is shown with it); absent: the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub operator_id: Option<i64>,
}

impl NoteInput {
    /// Validates a note's body, every bad field at once.
    pub fn from_json(body: &Value) -> Result<Self, FieldErrors> {
        let mut fields = Fields::new(body);
        let content = fields.required_string("content", 1..=MAX_NOTE_CHARS);
        let operator_id = fields.optional_integer("operator_id", 1..=i64::MAX);
        let mut errors = fields.errors;
        if content
            .as_deref()
            .is_some_and(|text| text.trim().is_empty())
        {
            errors.add("content", "The content field must not be blank.");
        }
        match content {
            Some(content) => errors.finish(Self {
                content,
                operator_id,
            }),
            None => Err(errors),
        }
    }
}

/// An internal note: operators see it in the conversation's timeline; the customer and the
/// model never do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Note {
    /// The note's id.
    pub id: i64,
    /// The text.
    pub content: String,
    /// Who wrote it.
    pub author: Author,
    /// When it was written.
    pub created_at: DateTime<Utc>,
}

/// Answer of a new note (`201`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NoteResponse {
    /// Always `true`.
    pub status: bool,
    /// The new note.
    pub data: Note,
}

/// A conversation's notes, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NoteList {
    /// The notes.
    pub data: Vec<Note>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn assign_needs_the_field_and_takes_null() {
        assert_eq!(
            AssignInput::from_json(&json!({ "operator_id": null })).unwrap(),
            AssignInput { operator_id: None }
        );
        assert_eq!(
            AssignInput::from_json(&json!({ "operator_id": "7" }))
                .unwrap()
                .operator_id,
            Some(7)
        );
        assert!(AssignInput::from_json(&json!({})).is_err());
        assert!(AssignInput::from_json(&json!({ "operator_id": 0 })).is_err());
    }

    #[test]
    fn a_note_needs_content() {
        assert!(NoteInput::from_json(&json!({ "content": "  " })).is_err());
        assert!(NoteInput::from_json(&json!({})).is_err());
        let note = NoteInput::from_json(&json!({ "content": "VIP 🦀", "operator_id": 2 })).unwrap();
        assert_eq!(note.operator_id, Some(2));
    }
}
