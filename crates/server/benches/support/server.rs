//! The server as its own process, for the benches: started with their settings, stopped by
//! SIGTERM, and killed if a bench ends early. Each bench uses a part of it.

#![allow(dead_code)]

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// Longest wait for a started server's `/ready`.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a server to stop after SIGTERM (and for its connections to close).
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs a command line tool with a deadline (killed past it); its stdout, trimmed.
pub(crate) async fn run_tool(
    mut command: std::process::Command,
    what: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("{what}: could not be started (is it installed and on PATH?)"))?;
    let pid = child.id();
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
    let output = match tokio::time::timeout(timeout, waiting).await {
        Ok(joined) => joined?.with_context(|| format!("{what}: waiting for it"))?,
        Err(_) => {
            // Not reaped yet (its waiter is blocked on it), so the pid is still its own.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            bail!("{what}: not done within {timeout:?}, killed");
        }
    };
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

pub(crate) struct Launcher {
    pub(crate) exe: PathBuf,
    pub(crate) database_url: String,
    pub(crate) llm_base_url: String,
    pub(crate) log: PathBuf,
}

impl Launcher {
    /// The server binary with the bench's settings and none of the caller's `ANYREPLY_*`.
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(&self.exe);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ANYREPLY_") {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .env("ANYREPLY_DATABASE_URL", &self.database_url)
            .env("ANYREPLY_LLM_BASE_URL", &self.llm_base_url)
            .env("ANYREPLY_RATE_LIMIT_PER_MINUTE", "1000000000")
            .env("ANYREPLY_LOG", "info")
            .stdin(Stdio::null());
        command
    }

    /// `anyreply-server account create`: the account's id and API key.
    pub(crate) async fn create_account(
        &self,
        name: &str,
        balance: &str,
    ) -> anyhow::Result<(i64, String)> {
        let command = self.command(&["account", "create", "--name", name, "--balance", balance]);
        let printed = run_tool(
            command,
            "anyreply-server account create",
            Duration::from_secs(60),
        )
        .await?;
        let created: Value = serde_json::from_str(&printed).with_context(|| {
            format!("`account create` printed {printed:?}, not {{account_id, api_key}}")
        })?;
        let account_id = created["account_id"]
            .as_i64()
            .context("`account create` printed no account_id")?;
        let api_key = created["api_key"]
            .as_str()
            .context("`account create` printed no api_key")?;
        Ok((account_id, api_key.to_owned()))
    }

    /// Starts `anyreply-server serve` on a free port and waits for `/ready`.
    pub(crate) async fn start(&self, http: &reqwest::Client) -> anyhow::Result<ServerProcess> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = File::options().append(true).open(&self.log)?;
        let child = self
            .command(&["serve"])
            .env("ANYREPLY_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        let mut server = ServerProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: self.log.clone(),
        };
        server.wait_ready(http).await?;
        Ok(server)
    }
}

/// A running server; killed when dropped (on an error or a panic too).
pub(crate) struct ServerProcess {
    pub(crate) child: Child,
    pub(crate) base: String,
    log: PathBuf,
}

impl ServerProcess {
    async fn wait_ready(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the server exited ({status}) before it was ready; see {}",
                    self.log.display()
                );
            }
            let ready = http
                .get(format!("{}/ready", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the server was not ready within {READY_TIMEOUT:?}; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The most memory the process has held so far (`VmHWM`), in MB.
    pub(crate) fn peak_rss_mb(&self) -> anyhow::Result<f64> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let kb: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no VmHWM in {path}"))?;
        Ok(kb / 1024.0)
    }

    /// SIGTERM, then waits for the exit (SIGKILL after a while).
    pub(crate) async fn stop(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            bail!("the server had already exited; see {}", self.log.display());
        }
        let mut term = std::process::Command::new("kill");
        term.args(["-TERM", &self.child.id().to_string()]);
        if let Err(error) = run_tool(term, "kill -TERM", Duration::from_secs(5)).await {
            eprintln!("{error:#}; killing the server instead");
            self.child.kill()?;
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                eprintln!("the server did not stop within {STOP_TIMEOUT:?} of SIGTERM; killing it");
                self.child.kill()?;
                self.child.wait()?;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
