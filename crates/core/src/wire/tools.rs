//! `POST/GET /api/user/tools`, `GET/PUT/DELETE /api/user/tools/{id}`: functions the model may
//! call, which are HTTP endpoints of the account's own.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::validate::{FieldErrors, Fields};

/// Longest tool name, in characters.
pub const MAX_TOOL_NAME_CHARS: usize = 64;
/// Longest tool description, in characters (Famulor's limit).
pub const MAX_TOOL_DESCRIPTION_CHARS: usize = 255;
/// Longest endpoint URL, in characters.
pub const MAX_ENDPOINT_CHARS: usize = 2048;
/// Timeout bounds and default, in seconds.
pub const TOOL_TIMEOUT_SECS: std::ops::RangeInclusive<i64> = 1..=30;
/// Timeout of a tool created without one, in seconds.
pub const DEFAULT_TOOL_TIMEOUT_SECS: u32 = 10;
/// Most headers and parameters of one tool.
pub const MAX_TOOL_HEADERS: usize = 20;
/// Most parameters of one tool.
pub const MAX_TOOL_PARAMETERS: usize = 32;

/// HTTP method of a tool's endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum HttpMethod {
    /// `GET`: arguments as query parameters.
    Get,
    /// `POST`: arguments as a JSON body.
    Post,
    /// `PUT`: arguments as a JSON body.
    Put,
    /// `PATCH`: arguments as a JSON body.
    Patch,
    /// `DELETE`: arguments as a JSON body.
    Delete,
}

impl HttpMethod {
    /// The name as sent on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }

    /// Case-insensitive.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Get, Self::Post, Self::Put, Self::Patch, Self::Delete]
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(text))
    }
}

/// JSON type of a tool parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ParameterType {
    /// A JSON string.
    String,
    /// A JSON number.
    Number,
    /// A JSON boolean.
    Boolean,
}

impl ParameterType {
    /// The name as sent on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            ParameterType::String => "string",
            ParameterType::Number => "number",
            ParameterType::Boolean => "boolean",
        }
    }

    /// Whether `value` is of this type.
    pub fn admits(self, value: &Value) -> bool {
        match self {
            ParameterType::String => value.is_string(),
            ParameterType::Number => value.is_number(),
            ParameterType::Boolean => value.is_boolean(),
        }
    }
}

/// A header sent with every call of the tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolHeader {
    /// The name (see docs/api.md for the rules).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$")
    )]
    pub name: String,
    /// In answers, masked: only the last four characters of a long value are shown.
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 4096, pattern = r"^[^\x00-\x08\x0A-\x1F\x7F-\x9F]*$")
    )]
    pub value: String,
}

/// A parameter the model fills in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolParameter {
    /// The name (see docs/api.md for the rules).
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z_][A-Za-z0-9_]{0,63}$"))]
    pub name: String,
    /// Its JSON type.
    #[serde(rename = "type")]
    pub kind: ParameterType,
    /// What it is for, for the model.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 255))]
    pub description: String,
    /// Default `true`.
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// A tool as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tool {
    /// The tool's id, used in `tool_ids`.
    pub id: i64,
    /// The name (see docs/api.md for the rules).
    pub name: String,
    /// What it is for, for the model.
    pub description: String,
    /// The URL called.
    pub endpoint: String,
    /// The HTTP method.
    pub method: HttpMethod,
    /// Seconds.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 30))]
    pub timeout: u32,
    /// Headers sent with each call (values masked in answers).
    pub headers: Vec<ToolHeader>,
    /// The parameters the model fills in.
    pub schema: Vec<ToolParameter>,
    /// When the tool was created.
    pub created_at: DateTime<Utc>,
    /// When the tool was last changed.
    pub updated_at: DateTime<Utc>,
}

/// `GET /api/user/tools`: one page, in id order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolList {
    /// The tools of this page.
    pub data: Vec<Tool>,
    /// Pass as `cursor` for the next page; `None` on the last page (and from servers that do
    /// not page this list, such as Famulor's).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required))]
    pub next_cursor: Option<String>,
}

/// Answer of create, get and update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolResponse {
    /// Always `true`.
    pub status: bool,
    /// The tool(s).
    pub data: Tool,
}

/// Answer of delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeletedResponse {
    /// Always `true`.
    pub status: bool,
    /// What happened.
    pub message: String,
}

/// Body of create (`name`, `description`, `endpoint` and `method` required) and of update
/// (every field optional; absent fields keep their value).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolInput {
    /// The name (see docs/api.md for the rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 64, pattern = "^[a-z][a-z_]*$")
    )]
    pub name: Option<String>,
    /// What it is for, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 255))]
    pub description: Option<String>,
    /// The URL called: `http` or `https`, with a host. The pattern is what is surely taken
    /// (a host name whose last label starts with a letter, a port, a path of visible ASCII);
    /// an IP address is taken too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 2048,
            pattern = r"^https?://([A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*(:[0-9]{1,4})?(/[!-~]*)?$"
        )
    )]
    pub endpoint: Option<String>,
    /// The HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
    /// Seconds, 1..=30; default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 30))]
    pub timeout: Option<u32>,
    /// A header sent back masked keeps its stored value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_items = 20))]
    pub headers: Option<Vec<ToolHeader>>,
    /// The parameters the model fills in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_items = 32))]
    pub schema: Option<Vec<ToolParameter>>,
}

impl ToolInput {
    /// Reads and validates a create (`creating`) or update body.
    pub fn from_json(body: &Value, creating: bool) -> Result<Self, FieldErrors> {
        let mut fields = Fields::new(body);
        let (name, description, endpoint, method) = if creating {
            (
                fields.required_string("name", 1..=MAX_TOOL_NAME_CHARS),
                fields.required_string("description", 1..=MAX_TOOL_DESCRIPTION_CHARS),
                fields.required_string("endpoint", 1..=MAX_ENDPOINT_CHARS),
                fields.required_string("method", 1..=10),
            )
        } else {
            (
                fields.optional_string("name", 1..=MAX_TOOL_NAME_CHARS),
                fields.optional_string("description", 1..=MAX_TOOL_DESCRIPTION_CHARS),
                fields.optional_string("endpoint", 1..=MAX_ENDPOINT_CHARS),
                fields.optional_string("method", 1..=10),
            )
        };
        let timeout = fields
            .optional_integer("timeout", TOOL_TIMEOUT_SECS)
            .map(|t| t as u32);
        let mut errors = fields.errors;
        if let Some(name) = &name {
            let mut chars = name.chars();
            let well_formed = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_lowercase() || c == '_');
            if !well_formed {
                errors.add("name", "The name may hold only lowercase letters and underscores, and must start with a letter.");
            }
        }
        if let Some(Err(problem)) = endpoint.as_deref().map(check_endpoint) {
            errors.add("endpoint", problem);
        }
        let method = method.and_then(|text| {
            let parsed = HttpMethod::parse(&text);
            if parsed.is_none() {
                errors.add(
                    "method",
                    "The method must be one of GET, POST, PUT, PATCH, DELETE.",
                );
            }
            parsed
        });
        let headers = body
            .get("headers")
            .filter(|v| !v.is_null())
            .and_then(|v| read_headers(v, &mut errors));
        let schema = body
            .get("schema")
            .filter(|v| !v.is_null())
            .and_then(|v| read_schema(v, &mut errors));
        errors.finish(Self {
            name,
            description,
            endpoint,
            method,
            timeout,
            headers,
            schema,
        })
    }
}

/// An absolute `http` or `https` URL with a host. The server parses it fully as well.
fn check_endpoint(endpoint: &str) -> Result<(), &'static str> {
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
        .ok_or("The endpoint must be an http or https URL.")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty()
        || endpoint
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("The endpoint must be an http or https URL.");
    }
    Ok(())
}

fn read_headers(value: &Value, errors: &mut FieldErrors) -> Option<Vec<ToolHeader>> {
    let Some(items) = value.as_array() else {
        errors.add(
            "headers",
            "The headers field must be an array of {name, value}.",
        );
        return None;
    };
    if items.len() > MAX_TOOL_HEADERS {
        errors.add("headers", format!("At most {MAX_TOOL_HEADERS} headers."));
        return None;
    }
    let mut headers = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = item.get("name").and_then(Value::as_str).unwrap_or_default();
        let value = item.get("value").and_then(Value::as_str);
        // RFC 9110 token characters.
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || name.len() > 128 || !name.chars().all(token) {
            errors.add(
                format!("headers.{i}.name"),
                "The header name must be an HTTP token.",
            );
        }
        match value {
            Some(v) if v.len() <= 4096 && !v.chars().any(|c| c.is_control() && c != '\t') => {
                headers.push(ToolHeader {
                    name: name.to_owned(),
                    value: v.to_owned(),
                });
            }
            _ => errors.add(
                format!("headers.{i}.value"),
                "The header value must be a single-line string.",
            ),
        }
    }
    Some(headers)
}

fn read_schema(value: &Value, errors: &mut FieldErrors) -> Option<Vec<ToolParameter>> {
    let Some(items) = value.as_array() else {
        errors.add(
            "schema",
            "The schema field must be an array of {name, type, description}.",
        );
        return None;
    };
    if items.len() > MAX_TOOL_PARAMETERS {
        errors.add(
            "schema",
            format!("At most {MAX_TOOL_PARAMETERS} parameters."),
        );
        return None;
    }
    let mut seen = HashSet::new();
    let parameters = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| read_parameter(i, item, &mut seen, errors))
        .collect();
    Some(parameters)
}

/// The schema's `i`th parameter, its name not among those `seen` before; `None` (with the
/// reasons in `errors`) if any field is wrong.
fn read_parameter<'a>(
    i: usize,
    item: &'a Value,
    seen: &mut HashSet<&'a str>,
    errors: &mut FieldErrors,
) -> Option<ToolParameter> {
    let name = item.get("name").and_then(Value::as_str).unwrap_or_default();
    let mut chars = name.chars();
    let identifier = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64;
    if !identifier {
        errors.add(
            format!("schema.{i}.name"),
            "The parameter name must be an identifier of letters, digits and underscores.",
        );
    } else if !seen.insert(name) {
        errors.add(
            format!("schema.{i}.name"),
            "The parameter name is used twice.",
        );
    }
    let kind = match item.get("type").and_then(Value::as_str) {
        Some("string") => Some(ParameterType::String),
        Some("number") => Some(ParameterType::Number),
        Some("boolean") => Some(ParameterType::Boolean),
        _ => {
            errors.add(
                format!("schema.{i}.type"),
                "The type must be string, number or boolean.",
            );
            None
        }
    };
    let description = match item.get("description") {
        None | Some(Value::Null) => Some(String::new()),
        Some(Value::String(d)) if d.chars().count() <= MAX_TOOL_DESCRIPTION_CHARS => {
            Some(d.clone())
        }
        Some(_) => {
            errors.add(
                format!("schema.{i}.description"),
                "The description must be a string of at most 255 characters.",
            );
            None
        }
    };
    let required = match item.get("required") {
        None | Some(Value::Null) => Some(true),
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            errors.add(
                format!("schema.{i}.required"),
                "The required field must be true or false.",
            );
            None
        }
    };
    Some(ToolParameter {
        name: name.to_owned(),
        kind: kind?,
        description: description?,
        required: required?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "name": "check_calendar", "description": "Free slots on a day",
            "endpoint": "https://crm.example.com/slots?x=1", "method": "get", "timeout": 5,
            "headers": [{ "name": "Authorization", "value": "Bearer s3cret-token" }],
            "schema": [
                { "name": "date", "type": "string", "description": "YYYY-MM-DD" },
                { "name": "people", "type": "number", "required": false }
            ]
        })
    }

    #[test]
    fn a_valid_tool_reads() {
        let input = ToolInput::from_json(&valid(), true).unwrap();
        assert_eq!(input.method, Some(HttpMethod::Get));
        assert_eq!(input.timeout, Some(5));
        let schema = input.schema.unwrap();
        assert!(schema[0].required);
        assert!(!schema[1].required);
    }

    #[test]
    fn every_rule_is_checked() {
        let body = json!({
            "name": "Check-Calendar", "description": "x".repeat(256), "endpoint": "ftp://x",
            "method": "TRACE", "timeout": 31,
            "headers": [{ "name": "Bad Header", "value": "a\nb" }],
            "schema": [{ "name": "1x", "type": "date" }, { "name": "a", "type": "string" }, { "name": "a", "type": "string" }]
        });
        let errors = ToolInput::from_json(&body, true).unwrap_err().into_map();
        let fields: Vec<_> = errors.keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            [
                "description",
                "endpoint",
                "headers.0.name",
                "headers.0.value",
                "method",
                "name",
                "schema.0.name",
                "schema.0.type",
                "schema.2.name",
                "timeout"
            ]
        );
        let missing = ToolInput::from_json(&json!({}), true)
            .unwrap_err()
            .into_map();
        assert_eq!(missing.len(), 4);
        assert_eq!(
            ToolInput::from_json(&json!({}), false).unwrap(),
            ToolInput::default()
        );
    }

    #[test]
    fn endpoints_must_be_http_urls_with_a_host() {
        assert!(check_endpoint("http://127.0.0.1:8080/x").is_ok());
        for bad in [
            "https://",
            "http:///path",
            "mailto:a@b",
            "https://a b.com",
            "javascript:alert(1)",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }
}
