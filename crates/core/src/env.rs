//! Reading `ANYREPLY_*` settings from the environment, shared by the server and the bridges.
//!
//! A reader collects every problem instead of stopping at the first, so one run names every
//! bad or missing setting, each with an example of a good value; and it remembers which
//! names it was asked for, so the variables nobody reads (a typo, a setting of another
//! program) can be warned about.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// The prefix of every setting.
pub const PREFIX: &str = "ANYREPLY_";

/// Settings read from a snapshot of the environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
    read: BTreeSet<String>,
    problems: Vec<String>,
}

/// Every problem found, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError(pub Vec<String>);

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for EnvError {}

impl Env {
    /// The process's `ANYREPLY_*` variables (others are never looked at).
    pub fn from_process() -> Self {
        Self::from_vars(std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        }))
    }

    /// The given variables, as if they were the environment.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            vars: vars
                .into_iter()
                .filter(|(name, _)| name.starts_with(PREFIX))
                .collect(),
            ..Self::default()
        }
    }

    /// The value, if set and not blank.
    pub fn text(&mut self, name: &str) -> Option<String> {
        self.read.insert(name.to_owned());
        self.vars
            .get(name)
            .filter(|value| !value.trim().is_empty())
            .cloned()
    }

    /// The value; unset, a problem saying what to set, like `ANYREPLY_API_KEY=ark_…`.
    pub fn required(&mut self, name: &str, example: &str) -> Option<String> {
        let value = self.text(name);
        if value.is_none() {
            self.problem(format!("{name} is not set (for example {name}={example})"));
        }
        value
    }

    /// The value parsed, `default` when unset; a bad value is a problem (and gives `default`).
    pub fn parsed<T>(&mut self, name: &str, default: T, example: &str) -> T
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.optional(name, example).unwrap_or(default)
    }

    /// The value parsed, if set; a bad value is a problem.
    pub fn optional<T>(&mut self, name: &str, example: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let text = self.text(name)?;
        match text.trim().parse() {
            Ok(value) => Some(value),
            Err(error) => {
                self.invalid(name, &text, &error.to_string(), example);
                None
            }
        }
    }

    /// The value parsed; unset or bad, a problem.
    pub fn required_parsed<T>(&mut self, name: &str, example: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let value = self.optional(name, example);
        if value.is_none() && self.text(name).is_none() {
            self.problem(format!("{name} is not set (for example {name}={example})"));
        }
        value
    }

    /// One of `choices` (any case), `default` when unset.
    pub fn choice<T: Copy>(&mut self, name: &str, default: T, choices: &[(&str, T)]) -> T {
        let Some(text) = self.text(name) else {
            return default;
        };
        match choices
            .iter()
            .find(|(word, _)| word.eq_ignore_ascii_case(text.trim()))
        {
            Some(&(_, value)) => value,
            None => {
                let words: Vec<&str> = choices.iter().map(|(word, _)| *word).collect();
                let expected = format!("expected {}", words.join(" or "));
                self.invalid(name, &text, &expected, words[0]);
                default
            }
        }
    }

    /// A problem with `name`'s value `text`.
    pub fn invalid(&mut self, name: &str, text: &str, why: &str, example: &str) {
        self.problem(format!(
            "{name}={text:?} is not valid: {why} (for example {name}={example})"
        ));
    }

    /// Any other problem, in a sentence that names the setting.
    pub fn problem(&mut self, message: impl Into<String>) {
        self.problems.push(message.into());
    }

    /// Every problem at once, or the `ANYREPLY_*` variables that are set but were never read
    /// (besides `also_known`, read elsewhere), to warn about.
    pub fn finish(self, also_known: &[&str]) -> Result<Vec<String>, EnvError> {
        if !self.problems.is_empty() {
            return Err(EnvError(self.problems));
        }
        Ok(self
            .vars
            .into_keys()
            .filter(|name| !self.read.contains(name) && !also_known.contains(&name.as_str()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::from_vars(
            vars.iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
        )
    }

    #[test]
    fn every_problem_is_reported_at_once_with_an_example() {
        let mut env = env(&[("ANYREPLY_LISTEN", "8080"), ("ANYREPLY_MODE", "fast")]);
        let listen: std::net::SocketAddr = env.parsed(
            "ANYREPLY_LISTEN",
            ([127, 0, 0, 1], 8080).into(),
            "127.0.0.1:8080",
        );
        assert_eq!(listen.port(), 8080);
        env.required("ANYREPLY_API_KEY", "ark_...");
        let _: Option<i64> = env.required_parsed("ANYREPLY_ASSISTANT_ID", "42");
        env.choice("ANYREPLY_MODE", 0, &[("rest", 0), ("inline", 1)]);
        let error = env.finish(&[]).unwrap_err();
        assert_eq!(
            error.0,
            [
                "ANYREPLY_LISTEN=\"8080\" is not valid: invalid socket address syntax (for example ANYREPLY_LISTEN=127.0.0.1:8080)",
                "ANYREPLY_API_KEY is not set (for example ANYREPLY_API_KEY=ark_...)",
                "ANYREPLY_ASSISTANT_ID is not set (for example ANYREPLY_ASSISTANT_ID=42)",
                "ANYREPLY_MODE=\"fast\" is not valid: expected rest or inline (for example ANYREPLY_MODE=rest)",
            ]
        );
    }

    #[test]
    fn unread_variables_are_named_and_blank_ones_are_unset() {
        let mut env = env(&[
            ("ANYREPLY_LISTN", "x"),
            ("ANYREPLY_LOG", "debug"),
            ("ANYREPLY_URL", " "),
            ("PATH", "/bin"),
        ]);
        assert_eq!(env.text("ANYREPLY_URL"), None);
        assert_eq!(env.finish(&["ANYREPLY_LOG"]).unwrap(), ["ANYREPLY_LISTN"]);
    }
}
