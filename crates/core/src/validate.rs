//! Input validation that reports every bad field at once, Laravel-style
//! (`{"errors": {"field": ["message", ...]}}`), as Famulor's own API does.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use serde_json::{Map, Value};

/// Messages per field name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(BTreeMap<String, Vec<String>>);

impl FieldErrors {
    /// Adds `message` to `field`'s.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.entry(field.into()).or_default().push(message.into());
    }

    /// Whether no field failed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many fields failed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The messages by field name.
    pub fn into_map(self) -> BTreeMap<String, Vec<String>> {
        self.0
    }

    /// `Ok(value)` when no field failed.
    pub fn finish<T>(self, value: T) -> Result<T, FieldErrors> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// Adds every error of `other` (a nested object's, say).
    pub fn extend(&mut self, other: FieldErrors) {
        for (field, messages) in other.0 {
            self.0.entry(field).or_default().extend(messages);
        }
    }

    /// One field, one message.
    pub fn single(field: &str, message: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.add(field, message);
        errors
    }
}

/// Reads typed fields out of a JSON object, collecting an error for each bad one.
#[derive(Debug)]
pub struct Fields<'a> {
    object: Option<&'a Map<String, Value>>,
    /// What failed so far.
    pub errors: FieldErrors,
    /// Put before field names in errors: `handoff.` for the fields of a nested object.
    prefix: String,
}

impl<'a> Fields<'a> {
    /// Fails with a `body` error unless `value` is a JSON object.
    pub fn new(value: &'a Value) -> Self {
        let mut errors = FieldErrors::default();
        let object = value.as_object();
        if object.is_none() {
            errors.add("body", "The request body must be a JSON object.");
        }
        Self {
            object,
            errors,
            prefix: String::new(),
        }
    }

    /// The fields of the object at `field`, their errors named `field.name`; `None` when
    /// absent (or null), or not an object (an error). Merge its errors back with
    /// [`FieldErrors::extend`].
    pub fn nested(&mut self, field: &str) -> Option<Fields<'a>> {
        let value = self.get(field)?;
        let name = self.name(field);
        let Some(object) = value.as_object() else {
            self.errors
                .add(&name, format!("The {name} field must be an object."));
            return None;
        };
        Some(Fields {
            object: Some(object),
            errors: FieldErrors::default(),
            prefix: format!("{name}."),
        })
    }

    /// `field` as errors name it.
    fn name(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    /// A boolean. `None` when absent or invalid.
    pub fn optional_bool(&mut self, field: &str) -> Option<bool> {
        let value = self.get(field)?;
        let flag = value.as_bool();
        if flag.is_none() {
            let name = self.name(field);
            self.errors
                .add(&name, format!("The {name} field must be true or false."));
        }
        flag
    }

    fn get(&self, field: &str) -> Option<&'a Value> {
        self.object
            .and_then(|o| o.get(field))
            .filter(|v| !v.is_null())
    }

    fn required_missing(&mut self, field: &str) {
        // A body that is no object was reported once, as `body`.
        if self.object.is_some() {
            let field = self.name(field);
            self.errors
                .add(&field, format!("The {field} field is required."));
        }
    }

    /// A string whose length in characters lies in `chars`. `None` when absent or invalid.
    pub fn optional_string(&mut self, field: &str, chars: RangeInclusive<usize>) -> Option<String> {
        let value = self.get(field)?;
        let field = &self.name(field);
        let Some(text) = value.as_str() else {
            self.errors
                .add(field, format!("The {field} field must be a string."));
            return None;
        };
        if text.contains('\0') {
            self.errors.add(
                field,
                format!("The {field} field must not contain NUL characters."),
            );
            return None;
        }
        let len = text.chars().count();
        if len < *chars.start() {
            if *chars.start() == 1 {
                self.errors
                    .add(field, format!("The {field} field must not be empty."));
            } else {
                self.errors.add(
                    field,
                    format!(
                        "The {field} field must be at least {} characters.",
                        chars.start()
                    ),
                );
            }
            return None;
        }
        if len > *chars.end() {
            self.errors.add(
                field,
                format!(
                    "The {field} field must not be greater than {} characters.",
                    chars.end()
                ),
            );
            return None;
        }
        Some(text.to_owned())
    }

    /// Like [`Self::optional_string`], but absence is an error too.
    pub fn required_string(&mut self, field: &str, chars: RangeInclusive<usize>) -> Option<String> {
        if self.get(field).is_none() {
            self.required_missing(field);
            return None;
        }
        self.optional_string(field, chars)
    }

    /// An integer in `range`. Accepts a JSON integer or a string of digits (form builders
    /// such as n8n often send ids as strings).
    pub fn optional_integer(&mut self, field: &str, range: RangeInclusive<i64>) -> Option<i64> {
        let value = self.get(field)?;
        let field = &self.name(field);
        let number = match value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let Some(number) = number else {
            self.errors
                .add(field, format!("The {field} field must be an integer."));
            return None;
        };
        if !range.contains(&number) {
            self.errors.add(
                field,
                format!(
                    "The {field} field must be between {} and {}.",
                    range.start(),
                    range.end()
                ),
            );
            return None;
        }
        Some(number)
    }

    /// Like [`Self::optional_integer`], but absence is an error too.
    pub fn required_integer(&mut self, field: &str, range: RangeInclusive<i64>) -> Option<i64> {
        if self.get(field).is_none() {
            self.required_missing(field);
            return None;
        }
        self.optional_integer(field, range)
    }

    /// A number in `range`.
    pub fn optional_number(&mut self, field: &str, range: RangeInclusive<f64>) -> Option<f64> {
        let value = self.get(field)?;
        let field = &self.name(field);
        let Some(number) = value.as_f64() else {
            self.errors
                .add(field, format!("The {field} field must be a number."));
            return None;
        };
        if !range.contains(&number) {
            self.errors.add(
                field,
                format!(
                    "The {field} field must be between {} and {}.",
                    range.start(),
                    range.end()
                ),
            );
            return None;
        }
        Some(number)
    }

    /// A flat object of variables: at most `max` keys of 1..=`max_name` characters.
    pub fn optional_variables(
        &mut self,
        field: &str,
        max: usize,
        max_name: usize,
    ) -> Option<Map<String, Value>> {
        let value = self.get(field)?;
        let field = &self.name(field);
        let Some(object) = value.as_object() else {
            self.errors
                .add(field, format!("The {field} field must be an object."));
            return None;
        };
        if object.len() > max {
            self.errors.add(
                field,
                format!("The {field} field must not have more than {max} keys."),
            );
            return None;
        }
        if let Some(bad) = object
            .keys()
            .find(|k| k.is_empty() || k.chars().count() > max_name)
        {
            self.errors.add(
                field,
                format!("The variable name \"{bad}\" must be 1 to {max_name} characters."),
            );
            return None;
        }
        if value.to_string().contains("\\u0000") {
            self.errors.add(
                field,
                format!("The {field} field must not contain NUL characters."),
            );
            return None;
        }
        Some(object.clone())
    }

    /// An array of at most `max` positive integer ids.
    pub fn optional_ids(&mut self, field: &str, max: usize) -> Option<Vec<i64>> {
        let value = self.get(field)?;
        let field = &self.name(field);
        let ids = value.as_array().and_then(|items| {
            items
                .iter()
                .map(|v| v.as_i64().filter(|id| *id > 0))
                .collect::<Option<Vec<_>>>()
        });
        let Some(ids) = ids else {
            self.errors
                .add(field, format!("The {field} field must be an array of ids."));
            return None;
        };
        if ids.len() > max {
            self.errors.add(
                field,
                format!("The {field} field must not have more than {max} items."),
            );
            return None;
        }
        Some(ids)
    }

    /// Whether `field` is present (and not null).
    pub fn has(&self, field: &str) -> bool {
        self.get(field).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn collects_every_bad_field() {
        let body = json!({ "a": 5, "b": "", "c": "x".repeat(11), "n": "12" });
        let mut fields = Fields::new(&body);
        assert_eq!(fields.required_string("a", 1..=10), None);
        assert_eq!(fields.required_string("b", 1..=10), None);
        assert_eq!(fields.required_string("c", 1..=10), None);
        assert_eq!(fields.required_string("missing", 1..=10), None);
        assert_eq!(fields.required_integer("n", 1..=100), Some(12));
        let errors = fields.errors.into_map();
        assert_eq!(errors["a"], ["The a field must be a string."]);
        assert_eq!(errors["b"], ["The b field must not be empty."]);
        assert_eq!(
            errors["c"],
            ["The c field must not be greater than 10 characters."]
        );
        assert_eq!(errors["missing"], ["The missing field is required."]);
        assert_eq!(errors.len(), 4);
    }

    #[test]
    fn counts_characters_not_bytes() {
        let body = json!({ "id": "ü".repeat(255) });
        let mut fields = Fields::new(&body);
        assert!(fields.required_string("id", 1..=255).is_some());
        assert!(fields.errors.is_empty());
    }

    #[test]
    fn nul_characters_are_refused() {
        let body = json!({ "text": "a\u{0}b", "vars": { "k": "x\u{0}" } });
        let mut fields = Fields::new(&body);
        assert_eq!(fields.required_string("text", 1..=10), None);
        assert_eq!(fields.optional_variables("vars", 10, 10), None);
        assert_eq!(fields.errors.into_map().len(), 2);
    }

    #[test]
    fn a_nested_object_names_its_fields_under_its_own() {
        let body = json!({ "h": { "on": "yes", "text": "x".repeat(11) }, "n": 3 });
        let mut fields = Fields::new(&body);
        let mut nested = fields.nested("h").unwrap();
        assert_eq!(nested.optional_bool("on"), None);
        assert_eq!(nested.optional_string("text", 0..=10), None);
        assert_eq!(fields.nested("n").map(|_| ()), None);
        fields.errors.extend(nested.errors);
        let errors = fields.errors.into_map();
        assert_eq!(errors["h.on"], ["The h.on field must be true or false."]);
        assert_eq!(
            errors["h.text"],
            ["The h.text field must not be greater than 10 characters."]
        );
        assert_eq!(errors["n"], ["The n field must be an object."]);
    }

    #[test]
    fn a_body_that_is_no_object_fails() {
        let body = json!([1, 2]);
        let fields = Fields::new(&body);
        assert!(fields.errors.into_map().contains_key("body"));
    }
}
