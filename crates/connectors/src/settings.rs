//! Reading `ANYREPLY_*` environment variables.

use std::str::FromStr;

use anyhow::Context;

/// The variable's value, if set and not blank.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The variable's value, or an error naming it.
pub fn required(name: &str) -> anyhow::Result<String> {
    var(name).with_context(|| format!("{name} must be set"))
}

/// The variable parsed, or `default` when unset.
pub fn parsed<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match var(name) {
        Some(text) => text
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={text:?}: {e}")),
        None => Ok(default),
    }
}
