//! Calling an assistant's tools: the model's arguments are checked against the tool's schema,
//! then sent to the account's endpoint with its configured method, headers and timeout.
//! Whatever happens, the model gets a result: a failing tool never fails the reply.

pub mod guard;

use std::sync::Arc;
use std::time::Duration;

use anyreply_core::wire::{HttpMethod, ToolParameter};
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use url::Url;

use crate::llm::FunctionSpec;
use crate::models::tool::ToolRow;
use guard::{AddressPolicy, Lookup, guarded_client, literal_address, refused_in};

/// Most bytes of an endpoint's response that are read; the rest is never downloaded.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Most characters of a result handed to the model (and kept in `function_calls`).
pub const MAX_RESULT_CHARS: usize = 8_000;

/// The function definition the model sees for `tool`.
pub fn function_spec(tool: &ToolRow) -> FunctionSpec {
    let schema = tool.schema();
    let properties: Map<String, Value> = schema
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                json!({ "type": p.kind.as_str(), "description": p.description }),
            )
        })
        .collect();
    let required: Vec<&str> = schema
        .iter()
        .filter(|p| p.required)
        .map(|p| p.name.as_str())
        .collect();
    FunctionSpec {
        name: tool.name.clone(),
        description: tool.description.clone(),
        parameters: json!({ "type": "object", "properties": properties, "required": required, "additionalProperties": false }),
    }
}

/// The arguments as an object, if they fit the schema; otherwise every problem, in words.
pub fn check_arguments(
    schema: &[ToolParameter],
    arguments: &Value,
) -> Result<Map<String, Value>, String> {
    let object = match arguments {
        Value::Object(object) => object.clone(),
        Value::Null => Map::new(),
        _ => return Err("the arguments must be a JSON object".to_owned()),
    };
    let mut problems = Vec::new();
    for parameter in schema {
        match object.get(&parameter.name) {
            None | Some(Value::Null) if parameter.required => {
                problems.push(format!("{} is required", parameter.name))
            }
            Some(value) if !value.is_null() && !parameter.kind.admits(value) => {
                problems.push(format!(
                    "{} must be a {}",
                    parameter.name,
                    parameter.kind.as_str()
                ));
            }
            _ => {}
        }
    }
    for name in object.keys() {
        if !schema.iter().any(|p| &p.name == name) {
            problems.push(format!("{name} is not a parameter"));
        }
    }
    if problems.is_empty() {
        Ok(object)
    } else {
        Err(problems.join("; "))
    }
}

/// A result for the model, and whether it reports a failure.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    pub result: Value,
    pub is_error: bool,
}

impl ToolOutcome {
    pub fn error(kind: &str, message: impl Into<String>) -> Self {
        Self {
            result: json!({ "error": kind, "message": message.into() }),
            is_error: true,
        }
    }

    fn ok(result: Value) -> Self {
        Self {
            result,
            is_error: false,
        }
    }
}

/// Calls tools over HTTP, within the address policy.
#[derive(Debug, Clone)]
pub struct ToolRunner {
    http: reqwest::Client,
    policy: Arc<AddressPolicy>,
}

impl ToolRunner {
    pub fn new(policy: AddressPolicy, lookup: Lookup) -> anyhow::Result<Self> {
        let policy = Arc::new(policy);
        let http = guarded_client(policy.clone(), lookup, None)?;
        Ok(Self { http, policy })
    }

    /// Calls `tool` with the model's `arguments`.
    pub async fn call(&self, tool: &ToolRow, arguments: &Value) -> ToolOutcome {
        let arguments = match check_arguments(&tool.schema(), arguments) {
            Ok(arguments) => arguments,
            Err(problems) => return ToolOutcome::error("invalid_arguments", problems),
        };
        let Ok(mut url) = Url::parse(&tool.endpoint) else {
            return ToolOutcome::error(
                "invalid_endpoint",
                "the tool's endpoint is not a valid URL",
            );
        };
        // The resolver checks names; an address written in the URL is checked here.
        if let Some(Err(refused)) = literal_address(&url).map(|ip| self.policy.check_ip(ip)) {
            return ToolOutcome::error("refused_address", refused.to_string());
        }
        let method = tool.method();
        if method == HttpMethod::Get {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in &arguments {
                match value {
                    Value::String(text) => pairs.append_pair(name, text),
                    other => pairs.append_pair(name, &other.to_string()),
                };
            }
        }
        let mut request = self
            .http
            .request(
                reqwest::Method::from_bytes(method.as_str().as_bytes())
                    .unwrap_or(reqwest::Method::POST),
                url,
            )
            .timeout(Duration::from_secs(
                u64::try_from(tool.timeout_secs).unwrap_or(10),
            ));
        if method != HttpMethod::Get {
            request = request.json(&Value::Object(arguments));
        }
        for header in tool.headers() {
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(header.name),
                HeaderValue::try_from(header.value),
            ) {
                request = request.header(name, value);
            }
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return send_error(&error),
        };
        let status = response.status();
        let body = match read_limited(response).await {
            Ok(body) => body,
            Err(error) => return send_error(&error),
        };
        if !status.is_success() {
            let mut outcome = ToolOutcome::error(
                "http_status",
                format!("the endpoint answered HTTP {}", status.as_u16()),
            );
            outcome.result["status"] = json!(status.as_u16());
            outcome.result["body"] = body;
            return outcome;
        }
        ToolOutcome::ok(body)
    }
}

fn send_error(error: &reqwest::Error) -> ToolOutcome {
    if let Some(refused) = refused_in(error) {
        return ToolOutcome::error("refused_address", refused.to_string());
    }
    if error.is_timeout() {
        ToolOutcome::error("timeout", "the endpoint did not answer in time")
    } else {
        ToolOutcome::error("connection_failed", "the endpoint could not be reached")
    }
}

/// The body as JSON if it is JSON, else as text; read up to [`MAX_RESPONSE_BYTES`] and cut to
/// [`MAX_RESULT_CHARS`] characters.
async fn read_limited(mut response: reqwest::Response) -> Result<Value, reqwest::Error> {
    let mut bytes = Vec::new();
    let mut complete = true;
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_RESPONSE_BYTES - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            complete = false;
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    let parsed = complete
        .then(|| serde_json::from_slice::<Value>(&bytes).ok())
        .flatten();
    Ok(match parsed {
        Some(json) if json.to_string().chars().count() <= MAX_RESULT_CHARS => json,
        Some(json) => Value::String(cut(&json.to_string())),
        None => Value::String(cut(&String::from_utf8_lossy(&bytes))),
    })
}

fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_RESULT_CHARS {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_RESULT_CHARS).collect();
    cut.push_str(" …[truncated]");
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyreply_core::wire::ParameterType;

    fn schema() -> Vec<ToolParameter> {
        vec![
            ToolParameter {
                name: "date".into(),
                kind: ParameterType::String,
                description: String::new(),
                required: true,
            },
            ToolParameter {
                name: "people".into(),
                kind: ParameterType::Number,
                description: String::new(),
                required: false,
            },
            ToolParameter {
                name: "vip".into(),
                kind: ParameterType::Boolean,
                description: String::new(),
                required: false,
            },
        ]
    }

    #[test]
    fn arguments_are_checked_against_the_schema() {
        assert!(check_arguments(&schema(), &json!({ "date": "2026-12-01", "people": 2 })).is_ok());
        assert_eq!(
            check_arguments(
                &schema(),
                &json!({ "people": "two", "vip": 1, "url": "http://x" })
            )
            .unwrap_err(),
            "date is required; people must be a number; vip must be a boolean; url is not a parameter"
        );
        assert!(check_arguments(&schema(), &json!("date=1")).is_err());
        assert!(check_arguments(&[], &Value::Null).is_ok());
    }

    #[test]
    fn long_results_are_cut() {
        let long = "x".repeat(MAX_RESULT_CHARS + 10);
        assert!(cut(&long).ends_with("…[truncated]"));
        assert_eq!(cut("short"), "short");
    }
}
