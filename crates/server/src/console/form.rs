//! A posted form as its name-value pairs, in order (checkboxes repeat a name).

use serde_json::{Map, Value};

#[derive(Debug, Default, serde::Deserialize)]
#[serde(transparent)]
pub(super) struct Pairs(Vec<(String, String)>);

impl Pairs {
    /// The first value of `name`, trimmed; `""` when absent.
    pub(super) fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value.trim())
    }

    /// Every value of `name`.
    pub(super) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Builds the JSON body the API takes from form fields: texts as they are (left out when
/// empty), numbers and JSON parsed when they parse (and sent as text otherwise, so that the
/// API's validation names the field).
#[derive(Debug, Default)]
pub(super) struct Body(Map<String, Value>);

impl Body {
    pub(super) fn text(mut self, name: &str, value: &str) -> Self {
        if !value.is_empty() {
            self.0
                .insert(name.to_owned(), Value::String(value.to_owned()));
        }
        self
    }

    pub(super) fn number(mut self, name: &str, value: &str) -> Self {
        if !value.is_empty() {
            let parsed = serde_json::from_str::<serde_json::Number>(value)
                .map_or_else(|_| Value::String(value.to_owned()), Value::Number);
            self.0.insert(name.to_owned(), parsed);
        }
        self
    }

    pub(super) fn json(mut self, name: &str, value: &str) -> Self {
        if !value.is_empty() {
            let parsed =
                serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
            self.0.insert(name.to_owned(), parsed);
        }
        self
    }

    pub(super) fn value(mut self, name: &str, value: Value) -> Self {
        self.0.insert(name.to_owned(), value);
        self
    }

    pub(super) fn build(self) -> Value {
        Value::Object(self.0)
    }
}
