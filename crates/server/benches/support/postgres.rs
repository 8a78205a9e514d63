//! The benches' PostgreSQL (`ANYREPLY_BENCH_POSTGRES`, default the system's on
//! `127.0.0.1:5432`), reached through `psql`. Each bench adds what it asks of it.

#![allow(dead_code)]

use std::time::Duration;

use super::server::run_tool;

pub(crate) struct Postgres {
    /// `postgres://user@host:port`, without a database.
    pub(crate) root: String,
    /// Longest a `psql` call may take.
    sql_timeout: Duration,
}

impl Postgres {
    pub(crate) fn from_env(sql_timeout: Duration) -> Self {
        let root = std::env::var("ANYREPLY_BENCH_POSTGRES")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432".to_owned());
        Self {
            root: root.trim_end_matches('/').to_owned(),
            sql_timeout,
        }
    }

    pub(crate) fn url(&self, database: &str) -> String {
        format!("{}/{database}", self.root)
    }

    /// Runs `sql` (one or more statements, one transaction) in `database`; psql's unaligned
    /// output, trimmed.
    pub(crate) async fn sql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        let mut psql = std::process::Command::new("psql");
        psql.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url(database))
            .arg("-c")
            .arg(sql);
        let what = format!("psql ({})", first_words(sql));
        run_tool(psql, &what, self.sql_timeout).await
    }
}

/// The start of a statement, to name it in an error.
pub(crate) fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(4).collect::<Vec<_>>().join(" ")
}
