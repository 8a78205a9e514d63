//! `POST/GET /api/user/operators`, `PUT/DELETE /api/user/operators/{id}`: the people of an
//! account who sign in to the console, each with a role.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::limits::{MAX_EMAIL_CHARS, MAX_OPERATOR_NAME_CHARS};
use crate::validate::{FieldErrors, Fields};

/// What an operator may do. Each role may do all that the roles before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum OperatorRole {
    /// Reads conversations, takes over, answers, hands back, assigns and writes notes.
    Agent,
    /// Also manages assistants, tools, knowledge bases, widgets and webhooks, and reads usage,
    /// the figures and the audit log.
    Admin,
    /// Also manages API keys and operators.
    Owner,
}

impl OperatorRole {
    /// Every role, least first.
    pub const ALL: [OperatorRole; 3] = [Self::Agent, Self::Admin, Self::Owner];

    /// The role as sent on the wire and stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    /// The role of `text`, if it names one.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == text)
    }

    /// The role's name for people ("an agent").
    pub const fn with_article(self) -> &'static str {
        match self {
            Self::Agent => "an agent",
            Self::Admin => "an admin",
            Self::Owner => "an owner",
        }
    }
}

/// Body of create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperatorInput {
    /// The address they sign in with, at most 254 characters; one operator per address across
    /// all accounts. Compared and stored lower-cased.
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 254, example = "anna@acme.example")
    )]
    pub email: String,
    /// Their name, at most 100 characters: shown to other operators, and with their messages
    /// and notes.
    #[cfg_attr(feature = "openapi", schema(max_length = 100, example = "Anna"))]
    pub name: String,
    /// What they may do.
    pub role: OperatorRole,
}

impl OperatorInput {
    /// Validates a create body, every bad field at once.
    pub fn from_json(body: &Value) -> Result<Self, FieldErrors> {
        let mut fields = Fields::new(body);
        let email = fields.required_string("email", 1..=MAX_EMAIL_CHARS);
        let name = fields.required_string("name", 1..=MAX_OPERATOR_NAME_CHARS);
        let role = read_role(&mut fields, body, true);
        let mut errors = fields.errors;
        let email = email.and_then(|email| match normalize_email(&email) {
            Some(email) => Some(email),
            None => {
                errors.add("email", "The email must be an email address.");
                None
            }
        });
        let name = name.map(|name| name.trim().to_owned());
        if name.as_deref() == Some("") {
            errors.add("name", "The name field must not be blank.");
        }
        match (email, name, role) {
            (Some(email), Some(name), Some(role)) => errors.finish(Self { email, name, role }),
            _ => Err(errors),
        }
    }
}

/// Body of update: the fields to change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperatorUpdate {
    /// A new name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, max_length = 100))]
    pub name: Option<String>,
    /// A new role: it applies from the operator's next request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub role: Option<OperatorRole>,
}

impl OperatorUpdate {
    /// Validates an update body, every bad field at once.
    pub fn from_json(body: &Value) -> Result<Self, FieldErrors> {
        let mut fields = Fields::new(body);
        let name = fields.optional_string("name", 1..=MAX_OPERATOR_NAME_CHARS);
        let role = read_role(&mut fields, body, false);
        let mut errors = fields.errors;
        let name = name.map(|name| name.trim().to_owned());
        if name.as_deref() == Some("") {
            errors.add("name", "The name field must not be blank.");
        }
        errors.finish(Self { name, role })
    }
}

fn read_role(fields: &mut Fields<'_>, body: &Value, required: bool) -> Option<OperatorRole> {
    const PROBLEM: &str = "The role must be one of owner, admin, agent.";
    match body.get("role").filter(|value| !value.is_null()) {
        Some(value) => {
            let role = value.as_str().and_then(OperatorRole::parse);
            if role.is_none() {
                fields.errors.add("role", PROBLEM);
            }
            role
        }
        None => {
            if required && body.is_object() {
                fields.errors.add("role", "The role field is required.");
            }
            None
        }
    }
}

/// `address` trimmed and lower-cased if it looks like an email address (one `@`, something
/// on each side, a dot in the domain, no spaces or control characters); the mail server is
/// the only real judge, and no mail is sent.
pub fn normalize_email(address: &str) -> Option<String> {
    let address = address.trim().to_lowercase();
    let (local, domain) = address.split_once('@')?;
    let sound = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !address.chars().any(|c| c.is_whitespace() || c.is_control());
    sound.then_some(address)
}

/// An operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Operator {
    /// The operator's id.
    pub id: i64,
    /// The address they sign in with (lower-cased).
    pub email: String,
    /// Their name.
    pub name: String,
    /// What they may do.
    pub role: OperatorRole,
    /// Whether they have set a password (until then they cannot sign in).
    pub password_set: bool,
    /// When they were added.
    pub created_at: DateTime<Utc>,
}

/// Answer of create (`201`) and update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperatorResponse {
    /// Always `true`.
    pub status: bool,
    /// The operator.
    pub data: Operator,
    /// Create only: the one-time link where the operator sets their password, valid for 24
    /// hours (no mail is sent: pass it on). A replay of the create under its
    /// `Idempotency-Key` does not show it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub password_link: Option<String>,
    /// When `password_link` stops working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub password_link_expires_at: Option<DateTime<Utc>>,
}

/// Answer of list: every operator of the account, in id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperatorList {
    /// The operators.
    pub data: Vec<Operator>,
}

/// Who wrote an operator message or a note: an operator (with their id), or the account's
/// API key (no id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Author {
    /// The operator's id; absent when written through an API key or the owner's key session.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub operator_id: Option<i64>,
    /// Their name as it was when they wrote ("API key" for the account's key).
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_are_ordered_by_what_they_may_do() {
        assert!(OperatorRole::Agent < OperatorRole::Admin);
        assert!(OperatorRole::Admin < OperatorRole::Owner);
        for role in OperatorRole::ALL {
            assert_eq!(OperatorRole::parse(role.as_str()), Some(role));
        }
    }

    #[test]
    fn a_valid_body_reads_with_the_email_lower_cased() {
        let input = OperatorInput::from_json(
            &json!({ "email": " Anna@Acme.Example ", "name": " Anna ", "role": "agent" }),
        )
        .unwrap();
        assert_eq!(input.email, "anna@acme.example");
        assert_eq!(input.name, "Anna");
        assert_eq!(input.role, OperatorRole::Agent);
    }

    #[test]
    fn every_rule_is_checked() {
        let fields = |body: Value| -> Vec<String> {
            OperatorInput::from_json(&body)
                .unwrap_err()
                .into_map()
                .into_keys()
                .collect()
        };
        assert_eq!(fields(json!({})), ["email", "name", "role"]);
        assert_eq!(
            fields(json!({ "email": "no-at-sign", "name": "  ", "role": "boss" })),
            ["email", "name", "role"]
        );
        assert_eq!(
            fields(json!({ "email": "a@b.c\u{0}", "name": "A", "role": "admin" })),
            ["email"]
        );
        assert_eq!(
            fields(json!({ "email": "a b@c.d", "name": "A", "role": "admin" })),
            ["email"]
        );
        assert!(
            OperatorUpdate::from_json(&json!({ "role": "root" }))
                .unwrap_err()
                .into_map()
                .contains_key("role")
        );
        assert_eq!(
            OperatorUpdate::from_json(&json!({ "role": "admin" }))
                .unwrap()
                .role,
            Some(OperatorRole::Admin)
        );
    }
}
