//! Load benchmark: the real `anyreply-server` release binary, as its own process, against a
//! fresh database and a stub model served by this bench on loopback.
//!
//! Run: `cargo bench -p anyreply-server --bench load` (about a minute and a half after the
//! build).
//!
//! Needs PostgreSQL with `psql` and `pgbench` on `PATH`; the server is
//! `ANYREPLY_BENCH_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`, a role that may
//! create databases and `CHECKPOINT`). It drops and recreates the databases `anyreply_bench`
//! (left behind for inspection) and `anyreply_pgbench` (dropped when pgbench is done).
//!
//! First pgbench tpcb-like on the same PostgreSQL, to put the saturation rate in proportion.
//! Then the server's phases, each against a freshly started server process (so that one
//! phase's figures, peak memory and commit counts, are its own) and after a `CHECKPOINT`:
//!
//! 0. idle: no traffic for 10 s (after 3 s to settle), after the warm-up left conversations and
//!    events behind → PostgreSQL transactions/s of the server's database, and the CPU the
//!    server and PostgreSQL take, as shares of one core;
//! 1. saturation: a closed loop of 32 connections for 10 s (after a 2 s warm-up) → replies/s;
//!    `xact_commit` of the server's database before and after → commits per reply;
//! 2. an open loop at half the saturation rate for 10 s, latency measured from each request's
//!    scheduled send time (so stalls are not hidden) → p50, p99, max;
//! 3. 2,000 calls kept in flight (each caller calls again as soon as answered) against a model
//!    that takes 2 s, default pool size → replies/s after the ramp-up (the ideal is 1,000/s, or
//!    the saturation rate if lower), the server's peak RSS;
//! 4. a reply in a 10,000-message conversation against one in a 10-message conversation;
//! 5. event streams: what idle streams cost PostgreSQL with 10 and with 2,000 open, the
//!    saturation rate with 2,000 open as a share of phase 1's, and the delay from an event's
//!    transaction to a stream (p50, p99, max).
//!
//! Then the books are checked in SQL. The bench exits non-zero only if the books do not
//! balance (1) or the setup fails (2); missed targets are reported, not failed.

#![allow(clippy::print_stdout)]

#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use anyreply_server::testing::{COMPLETION_TOKENS, PROMPT_TOKENS, chat_completion};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use postgres::Postgres;
use server::{Launcher, STOP_TIMEOUT, ServerProcess, run_tool};

const BENCH_DB: &str = "anyreply_bench";
const PGBENCH_DB: &str = "anyreply_pgbench";
/// `--balance` of the bench's account, in currency units; the books are checked against it.
const START_BALANCE_UNITS: i128 = 1_000_000;
/// Money columns count hundred-millionths of a unit.
const SUBUNITS_PER_UNIT: i128 = 100_000_000;

const SATURATION_CONNECTIONS: usize = 32;
const WARM_UP: Duration = Duration::from_secs(2);
const SATURATION_RUN: Duration = Duration::from_secs(10);
/// Customers each closed-loop connection cycles through: no two connections share one. Few, so
/// that the warm-up opens the conversations and the saturation run mostly adds to them.
const CUSTOMERS_PER_CONNECTION: usize = 8;
/// The customers of the closed and open loops (see [`customer`]).
const CUSTOMERS: usize = SATURATION_CONNECTIONS * CUSTOMERS_PER_CONNECTION;
const OPEN_LOOP_WARM_UP: Duration = Duration::from_secs(1);
const OPEN_LOOP_RUN: Duration = Duration::from_secs(10);
const IDLE_SETTLE: Duration = Duration::from_secs(3);
const IDLE_RUN: Duration = Duration::from_secs(10);
const IN_FLIGHT: usize = 2_000;
const IN_FLIGHT_MODEL_DELAY: Duration = Duration::from_secs(2);
/// The in-flight target is this rate (or the saturation rate, if lower): 2,000 calls of 2 s.
const IN_FLIGHT_IDEAL_RATE: f64 = 1_000.0;
const LONG_CONVERSATION: i64 = 10_000;
const SHORT_CONVERSATION: i64 = 10;
const LATENCY_SAMPLES: usize = 50;
const PGBENCH_SCALE: u32 = 16;
const PGBENCH_ARGS: [&str; 7] = ["-c", "16", "-j", "2", "-T", "10", "-b"];

const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const SQL_TIMEOUT: Duration = Duration::from_secs(120);
const PGBENCH_INIT_TIMEOUT: Duration = Duration::from_secs(600);

#[tokio::main]
async fn main() -> ExitCode {
    let started = Instant::now();
    // Stopping `run` drops the server process's guard, which kills it.
    let outcome = tokio::select! {
        outcome = run() => outcome,
        () = interrupted() => Err(anyhow::anyhow!("interrupted")),
    };
    match outcome {
        Ok(books_balance) => {
            println!("run took {:.0?}", started.elapsed());
            if books_balance {
                ExitCode::SUCCESS
            } else {
                eprintln!("the books do not balance (see the FAIL lines above)");
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("load bench failed: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn interrupted() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = terminate => {} }
}

/// Runs every phase; `Ok(false)` if the books do not balance.
async fn run() -> anyhow::Result<bool> {
    let pg = Postgres::from_env(SQL_TIMEOUT);
    let machine = preflight(&pg).await?;
    let stub = StubModel::start().await?;
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("load-server.log");
    let launcher = Launcher {
        exe: PathBuf::from(env!("CARGO_BIN_EXE_anyreply-server")),
        database_url: pg.url(BENCH_DB),
        llm_base_url: format!("http://{}/v1", stub.addr),
        log: log.clone(),
    };
    File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    println!("load bench: server log in {}", log.display());

    // pgbench first, so that its load (and the checkpoints its data makes) is over before the
    // server's phases; the server is not running yet.
    println!(
        "pgbench: -i -s {PGBENCH_SCALE}, then {} tpcb-like (simple query protocol)",
        PGBENCH_ARGS[..6].join(" ")
    );
    let pgbench_tps = pg.pgbench().await?;
    println!("  {pgbench_tps:.0} tps");

    pg.sql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)"),
    )
    .await?;
    pg.sql("postgres", &format!("CREATE DATABASE {BENCH_DB}"))
        .await?;
    let (account_id, api_key) = launcher
        .create_account("bench", &START_BALANCE_UNITS.to_string())
        .await?;

    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(120))
        .build()?;

    // Phase 1: saturation, with commits counted around it.
    stub.set_delay(Duration::ZERO);
    let mut server = launcher.start(&http).await?;
    let assistant = create_assistant(&http, &server.base, &api_key).await?;
    let mut api = Api {
        http: http.clone(),
        base: server.base.clone(),
        key: api_key,
        assistant,
        replies: Arc::new(AtomicU64::new(0)),
        customers: "customer",
    };
    println!(
        "warm-up: {} connections for {WARM_UP:?}",
        SATURATION_CONNECTIONS
    );
    let warm = closed_loop(&api, SATURATION_CONNECTIONS, WARM_UP).await?;
    warm.print_failures("warm-up");
    server.stop().await?;
    // Phase 0: no traffic at all.
    pg.wait_idle(BENCH_DB).await?;
    server = launcher.start(&http).await?;
    println!("idle: no traffic for {IDLE_RUN:?} (after {IDLE_SETTLE:?})");
    let idle = idle(&pg, &server).await?;
    println!(
        "  {:.1} transactions/s; server {:.1}% of a core, PostgreSQL {:.1}%",
        idle.transactions_per_second, idle.server_cpu_percent, idle.postgres_cpu_percent
    );
    server.stop().await?;
    pg.wait_idle(BENCH_DB).await?;
    let commits_before = pg.commits(BENCH_DB).await?;

    // Each timed phase starts from a checkpoint, so that the writes of the one before do not
    // land in it; checkpoints that happen during it anyway are counted and reported.
    let mut checkpoints = Checkpoints::default();
    let mark = pg.settle().await;
    server = launcher.start(&http).await?;
    api.base = server.base.clone();
    println!(
        "saturation: closed loop, {SATURATION_CONNECTIONS} connections for {SATURATION_RUN:?}"
    );
    let saturation = closed_loop(&api, SATURATION_CONNECTIONS, SATURATION_RUN).await?;
    saturation.print_failures("saturation");
    checkpoints.since("saturation", mark, &pg).await;
    // PostgreSQL 15 flushes a backend's statistics lazily; on exit for certain.
    server.stop().await?;
    pg.wait_idle(BENCH_DB).await?;
    let commits_after = pg.commits(BENCH_DB).await?;
    ensure!(
        saturation.ok > 0,
        "no reply succeeded in the saturation run (server log: {})",
        log.display()
    );
    let saturation_rate = saturation.ok as f64 / saturation.elapsed.as_secs_f64();
    let commits_per_reply = (commits_after - commits_before) as f64 / saturation.ok as f64;
    println!(
        "  {} replies ({} failed) in {:.2?}: {saturation_rate:.0} replies/s; {} commits, {commits_per_reply:.2} per reply",
        saturation.ok,
        saturation.failed,
        saturation.elapsed,
        commits_after - commits_before
    );

    // Phase 2: open loop at half the saturation rate.
    let mark = pg.settle().await;
    server = launcher.start(&http).await?;
    api.base = server.base.clone();
    let open_rate = (saturation_rate / 2.0).max(1.0);
    println!(
        "open loop: {open_rate:.0} requests/s for {OPEN_LOOP_RUN:?} (after {OPEN_LOOP_WARM_UP:?} unrecorded)"
    );
    open_loop(&api, open_rate, OPEN_LOOP_WARM_UP).await?;
    let open = open_loop(&api, open_rate, OPEN_LOOP_RUN).await?;
    open.tally.print_failures("open loop");
    let (p50, p99, max) = (
        micros(open.latency.value_at_quantile(0.50)),
        micros(open.latency.value_at_quantile(0.99)),
        micros(open.latency.max()),
    );
    println!(
        "  {} replies ({} failed); latency from scheduled send: p50 {p50:.2?}  p99 {p99:.2?}  max {max:.2?}; dispatcher was at most {:.2?} behind schedule",
        open.tally.ok, open.tally.failed, open.dispatch_lag
    );
    checkpoints.since("open loop", mark, &pg).await;
    server.stop().await?;

    // Phase 3: 2,000 calls in flight against a slow model, default pool size.
    stub.set_delay(IN_FLIGHT_MODEL_DELAY);
    let mark = pg.settle().await;
    server = launcher.start(&http).await?;
    api.base = server.base.clone();
    println!("in flight: {IN_FLIGHT} calls at once, model takes {IN_FLIGHT_MODEL_DELAY:?}");
    let flight = in_flight(&api, IN_FLIGHT).await?;
    let peak_rss_mb = server.peak_rss_mb()?;
    checkpoints.since("in flight", mark, &pg).await;
    flight.tally.print_failures("in flight");
    let flight_rate = flight.in_window as f64 / flight.window.as_secs_f64();
    let flight_target = IN_FLIGHT_IDEAL_RATE.min(saturation_rate);
    println!(
        "  {} replies in a {:.0?} window after {:.0?} of ramp-up: {flight_rate:.0} replies/s; {} calls in all, {} failed; {} connections opened beforehand; server peak RSS {peak_rss_mb:.0} MB",
        flight.in_window,
        flight.window,
        IN_FLIGHT_WARMUP,
        flight.tally.ok + flight.tally.failed,
        flight.tally.failed,
        flight.connected
    );
    server.stop().await?;

    // Phase 4: a long conversation against a short one.
    stub.set_delay(Duration::ZERO);
    let mark = pg.settle().await;
    server = launcher.start(&http).await?;
    api.base = server.base.clone();
    println!(
        "history: {LATENCY_SAMPLES} sequential replies each in conversations of {SHORT_CONVERSATION} and {LONG_CONVERSATION} messages"
    );
    let history = history_latency(&api, &pg).await?;
    println!(
        "  median {:.2?} (10 messages) vs {:.2?} (10,000 messages): {:.2}x",
        history.short,
        history.long,
        history.ratio()
    );
    summaries_note(&pg).await?;
    checkpoints.since("history", mark, &pg).await;
    server.stop().await?;

    // Phase 5: event streams (see `event_streams_phase`).
    event_streams_phase(&launcher, &pg, &api, saturation_rate).await?;
    pg.wait_idle(BENCH_DB).await?;

    // The books.
    let replies = api.replies.load(Ordering::Relaxed);
    let books = check_books(&pg, account_id, replies, history.seeded_replies).await?;

    let figures = Figures {
        idle,
        saturation_rate,
        pgbench_tps,
        open_rate,
        p50,
        p99,
        max,
        commits_per_reply,
        flight_rate,
        flight_target,
        flight_ok: flight.tally.ok,
        flight_failed: flight.tally.failed,
        peak_rss_mb,
        history,
        machine,
        checkpoints,
        books,
    };
    figures.print();
    Ok(books)
}

// ---------------------------------------------------------------------------------------------
// Phase 0: what a server with no traffic costs.

struct Idle {
    /// Of the server's database.
    transactions_per_second: f64,
    server_cpu_percent: f64,
    /// Every process of the PostgreSQL server: the postmaster and its children.
    postgres_cpu_percent: f64,
}

/// Watches `server` doing nothing for [`IDLE_RUN`], once [`IDLE_SETTLE`] has passed.
async fn idle(pg: &Postgres, server: &ServerProcess) -> anyhow::Result<Idle> {
    tokio::time::sleep(IDLE_SETTLE).await;
    let postmaster = pg.postmaster_pid().await?;
    let clock_ticks: f64 = run_tool(
        {
            let mut command = std::process::Command::new("getconf");
            command.arg("CLK_TCK");
            command
        },
        "getconf CLK_TCK",
        Duration::from_secs(10),
    )
    .await?
    .parse()
    .context("getconf CLK_TCK")?;
    let server_pid = server.child.id();
    // An idle backend flushes its statistics within a second, so live counts serve here.
    let commits_before = pg.commits(BENCH_DB).await?;
    let server_before = cpu_ticks(server_pid)?;
    let postgres_before = cpu_ticks_of_tree(postmaster)?;
    let started = Instant::now();
    tokio::time::sleep(IDLE_RUN).await;
    let commits_after = pg.commits(BENCH_DB).await?;
    let server_after = cpu_ticks(server_pid)?;
    let postgres_after = cpu_ticks_of_tree(postmaster)?;
    let seconds = started.elapsed().as_secs_f64();
    let percent = |ticks: u64| ticks as f64 / clock_ticks / seconds * 100.0;
    Ok(Idle {
        // The readings are made from another database, so they are not counted.
        transactions_per_second: (commits_after - commits_before) as f64 / seconds,
        server_cpu_percent: percent(server_after.saturating_sub(server_before)),
        postgres_cpu_percent: percent(postgres_after.saturating_sub(postgres_before)),
    })
}

/// User and system CPU time of process `pid` so far, in clock ticks (`/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    Ok(proc_stat(pid)?.cpu_ticks)
}

/// The CPU time of `root` and its children (a PostgreSQL server's processes).
fn cpu_ticks_of_tree(root: u32) -> anyhow::Result<u64> {
    let mut ticks = cpu_ticks(root)?;
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A process may end between the listing and the reading.
        if let Ok(stat) = proc_stat(pid)
            && stat.parent == root
        {
            ticks += stat.cpu_ticks;
        }
    }
    Ok(ticks)
}

struct ProcStat {
    parent: u32,
    cpu_ticks: u64,
}

fn proc_stat(pid: u32) -> anyhow::Result<ProcStat> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // After the command's name, in parentheses (which may hold anything): state, ppid, ...
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| -> anyhow::Result<u64> {
        fields
            .get(n)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("{path}: field {}", n + 3))
    };
    Ok(ProcStat {
        parent: u32::try_from(field(1)?)?,
        cpu_ticks: field(11)? + field(12)?,
    })
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL, through psql and pgbench.

impl Postgres {
    async fn scalar<T>(&self, database: &str, sql: &str) -> anyhow::Result<T>
    where
        T: std::str::FromStr,
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        let text = self.sql(database, sql).await?;
        text.parse()
            .with_context(|| format!("unexpected answer {text:?} to {sql}"))
    }

    /// Committed transactions of `database` so far, from the statistics.
    async fn commits(&self, database: &str) -> anyhow::Result<i64> {
        // Read from another database, so that the reading is not counted itself.
        self.scalar(
            "postgres",
            &format!("SELECT xact_commit FROM pg_stat_database WHERE datname = '{database}'"),
        )
        .await
    }

    /// The postmaster's process id, from `postmaster.pid` in the data directory (which the
    /// bench must be able to read: it runs on the same machine).
    async fn postmaster_pid(&self) -> anyhow::Result<u32> {
        let data_directory = self.sql("postgres", "SHOW data_directory").await?;
        let path = PathBuf::from(data_directory.trim()).join("postmaster.pid");
        let pid = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        pid.lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .with_context(|| format!("{}: no process id", path.display()))
    }

    /// Waits until no backend is connected to `database`: a backend that leaves has flushed
    /// its statistics first.
    async fn wait_idle(&self, database: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            let sql = format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' AND pid <> pg_backend_pid()"
            );
            if self.scalar::<i64>("postgres", &sql).await? == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "connections to {database} still open {STOP_TIMEOUT:?} after the server stopped"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Checkpoints so far (`None` where the statistics cannot say).
    async fn checkpoints(&self) -> Option<i64> {
        for sql in [
            "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter",
            "SELECT num_timed + num_requested FROM pg_stat_checkpointer", // PostgreSQL 17
        ] {
            if let Ok(count) = self.scalar("postgres", sql).await {
                return Some(count);
            }
        }
        None
    }

    /// Writes out every dirty buffer now (`CHECKPOINT`); the checkpoint count after it.
    async fn settle(&self) -> Option<i64> {
        if let Err(error) = self.sql("postgres", "CHECKPOINT").await {
            eprintln!("could not CHECKPOINT before a phase (needs pg_checkpoint): {error:#}");
        }
        self.checkpoints().await
    }

    /// `pgbench -i -s 16` into its own database, then a 10 s tpcb-like run: its TPS.
    async fn pgbench(&self) -> anyhow::Result<f64> {
        self.sql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {PGBENCH_DB} WITH (FORCE)"),
        )
        .await?;
        self.sql("postgres", &format!("CREATE DATABASE {PGBENCH_DB}"))
            .await?;
        let mut init = std::process::Command::new("pgbench");
        init.args(["-i", "-q", "-s", &PGBENCH_SCALE.to_string()])
            .arg(self.url(PGBENCH_DB));
        run_tool(init, "pgbench -i", PGBENCH_INIT_TIMEOUT).await?;
        let mut bench = std::process::Command::new("pgbench");
        bench
            .args(PGBENCH_ARGS)
            .arg("tpcb-like")
            .arg(self.url(PGBENCH_DB));
        let out = run_tool(bench, "pgbench tpcb-like", Duration::from_secs(120)).await?;
        self.sql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {PGBENCH_DB} WITH (FORCE)"),
        )
        .await?;
        // pgbench 15: "tps = 1234.567890 (without initial connection time)"
        out.lines()
            .find(|line| line.starts_with("tps = ") && line.contains("without initial connection"))
            .and_then(|line| line["tps = ".len()..].split_whitespace().next())
            .and_then(|tps| tps.parse().ok())
            .with_context(|| format!("no \"tps = … (without initial connection time)\" line in pgbench's output:\n{out}"))
    }
}

/// Checkpoints that happened during the timed phases: a sign of a disturbed run.
#[derive(Default)]
struct Checkpoints {
    /// Per phase; `None` where the statistics could not say.
    phases: Vec<(&'static str, Option<i64>)>,
}

impl Checkpoints {
    /// Notes those since `mark` (a count from [`Postgres::settle`]) as `phase`'s.
    async fn since(&mut self, phase: &'static str, mark: Option<i64>, pg: &Postgres) {
        let now = pg.checkpoints().await;
        self.phases
            .push((phase, mark.zip(now).map(|(mark, now)| now - mark)));
    }

    fn describe(&self) -> String {
        let mut total = 0;
        let mut parts = Vec::new();
        for (phase, count) in &self.phases {
            match count {
                Some(0) => {}
                Some(n) => {
                    total += n;
                    parts.push(format!("{phase} {n}"));
                }
                None => parts.push(format!("{phase} ?")),
            }
        }
        if parts.is_empty() {
            "no checkpoint during the timed phases".to_owned()
        } else {
            format!(
                "checkpoints during the timed phases: {total} ({})",
                parts.join(", ")
            )
        }
    }
}

struct Machine {
    cpus: usize,
    cpu_model: String,
    postgres: String,
    /// `/proc/loadavg`'s 1, 5 and 15 minute averages when the bench began.
    load_at_start: String,
}

/// Checks the tools, PostgreSQL and the open-file limit, so that a missing piece is named
/// before anything starts.
async fn preflight(pg: &Postgres) -> anyhow::Result<Machine> {
    for tool in ["psql", "pgbench"] {
        let mut version = std::process::Command::new(tool);
        version.arg("--version");
        run_tool(version, tool, Duration::from_secs(10))
            .await
            .with_context(|| {
                format!("{tool} is needed (Debian: apt-get install postgresql-client)")
            })?;
    }
    let postgres = pg
        .sql("postgres", "SHOW server_version")
        .await
        .with_context(|| {
            format!(
                "PostgreSQL does not answer at {} (set ANYREPLY_BENCH_POSTGRES)",
                pg.root
            )
        })?;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let open_files: Option<u64> = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok());
    // Each call in flight holds a socket here and one to the stub model, and as many in the
    // server (which inherits this limit).
    let needed = 2 * IN_FLIGHT as u64 + 1_024;
    if let Some(limit) = open_files.filter(|&limit| limit < needed) {
        bail!(
            "the open-file limit is {limit}; {IN_FLIGHT} calls in flight need about {needed}: run `ulimit -n 8192` first"
        );
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map_or_else(
            || "unknown CPU".to_owned(),
            |(_, model)| model.trim().to_owned(),
        );
    let load_at_start = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model,
        postgres,
        load_at_start,
    })
}

// ---------------------------------------------------------------------------------------------
// The stub model: OpenAI Chat Completions on loopback, one fixed answer, an adjustable delay.

#[derive(Clone)]
struct StubState {
    delay_ms: Arc<AtomicU64>,
    body: Bytes,
}

struct StubModel {
    addr: std::net::SocketAddr,
    delay_ms: Arc<AtomicU64>,
}

impl StubModel {
    async fn start() -> anyhow::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(([127, 0, 0, 1], 0).into())?;
        // A deep backlog: 2,000 model calls may connect at once.
        let listener = socket.listen(4_096)?;
        let addr = listener.local_addr()?;
        let state = StubState {
            delay_ms: Arc::new(AtomicU64::new(0)),
            body: Bytes::from(serde_json::to_vec(&chat_completion(
                "Thank you! Your order is on its way and should arrive tomorrow.",
            ))?),
        };
        let delay_ms = state.delay_ms.clone();
        let router = Router::new()
            .route("/v1/chat/completions", post(stub_completion))
            .with_state(state);
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                eprintln!("the stub model stopped: {error}");
            }
        });
        Ok(Self { addr, delay_ms })
    }

    fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}

/// Reads the request (so the connection can be reused), waits, answers.
async fn stub_completion(State(state): State<StubState>, _request: Bytes) -> Response {
    let delay = state.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    ([(CONTENT_TYPE, "application/json")], state.body).into_response()
}

// ---------------------------------------------------------------------------------------------
// The server process.

// ---------------------------------------------------------------------------------------------
// The load.

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
    assistant: i64,
    /// Successful generate-reply calls of the whole run, checked against the database.
    replies: Arc<AtomicU64>,
    /// Names the closed and open loops' customers (see [`customer`]).
    customers: &'static str,
}

impl Api {
    /// One generate-reply call: its answer, or why it failed.
    async fn reply(&self, customer: &str, message: &str) -> Result<Value, String> {
        let body = json!({
            "assistant_id": self.assistant,
            "customer_identifier": customer,
            "message": message,
        });
        let response = self
            .http
            .post(format!("{}/api/ai/generate-reply", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| transport_error(&e))?;
        if status != 200 {
            let answer: Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let code = answer["error"]["code"]
                .as_str()
                .or_else(|| answer["code"].as_str())
                .unwrap_or("");
            return Err(format!("HTTP {status} {code}"));
        }
        let answer: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("undecodable answer: {e}"))?;
        if answer["success"] != true {
            return Err(format!("success is not true: {answer}"));
        }
        self.replies.fetch_add(1, Ordering::Relaxed);
        Ok(answer)
    }
}

fn transport_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        format!("transport: {error}")
    }
}

async fn create_assistant(http: &reqwest::Client, base: &str, key: &str) -> anyhow::Result<i64> {
    let response = http
        .post(format!("{base}/api/user/assistant"))
        .bearer_auth(key)
        .json(&json!({ "name": "Bench" }))
        .send()
        .await?;
    let status = response.status();
    let answer: Value = response.json().await?;
    ensure!(
        status.is_success(),
        "creating the assistant: HTTP {status} {answer}"
    );
    answer["data"]["id"]
        .as_i64()
        .with_context(|| format!("no data.id in the assistant's creation answer {answer}"))
}

/// Successes, failures (by kind) and the time they took.
#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    failures: BTreeMap<String, u64>,
    elapsed: Duration,
}

impl Tally {
    fn count(&mut self, outcome: &Result<Value, String>) {
        match outcome {
            Ok(_) => self.ok += 1,
            Err(why) => {
                self.failed += 1;
                *self.failures.entry(why.clone()).or_default() += 1;
            }
        }
    }

    fn merge(&mut self, other: Self) {
        self.ok += other.ok;
        self.failed += other.failed;
        for (why, n) in other.failures {
            *self.failures.entry(why).or_default() += n;
        }
    }

    fn print_failures(&self, phase: &str) {
        for (why, n) in &self.failures {
            println!("  {phase}: {n} calls failed: {why}");
        }
    }
}

/// The closed and open loops' customer number `slot` (below [`CUSTOMERS`]) among `customers`.
fn customer(customers: &str, slot: usize) -> String {
    format!("{customers}-{slot}")
}

fn message(n: usize) -> String {
    format!("Hello, this is message {n}: where is my order?")
}

/// `connections` clients, each sending its next call as soon as the last is answered, for
/// `run`. Each connection has customers of its own.
async fn closed_loop(api: &Api, connections: usize, run: Duration) -> anyhow::Result<Tally> {
    let start = Instant::now();
    let deadline = start + run;
    let mut workers = JoinSet::new();
    for worker in 0..connections {
        let api = api.clone();
        workers.spawn(async move {
            let mut tally = Tally::default();
            let mut n = 0;
            while Instant::now() < deadline {
                let customer = customer(
                    api.customers,
                    worker * CUSTOMERS_PER_CONNECTION + n % CUSTOMERS_PER_CONNECTION,
                );
                tally.count(&api.reply(&customer, &message(n)).await);
                n += 1;
            }
            tally
        });
    }
    let mut total = Tally::default();
    let joined = tokio::time::timeout(run + REQUEST_TIMEOUT + Duration::from_secs(10), async {
        while let Some(tally) = workers.join_next().await {
            total.merge(tally?);
        }
        Ok::<_, anyhow::Error>(())
    })
    .await;
    joined.context("the closed loop did not finish")??;
    total.elapsed = start.elapsed();
    Ok(total)
}

struct OpenLoop {
    tally: Tally,
    /// Microseconds from each call's scheduled send time to its answer.
    latency: Histogram<u64>,
    /// How far behind schedule the dispatcher fell at worst (a loaded client shows here).
    dispatch_lag: Duration,
}

/// Calls at a constant `rate` for `run`, whatever the answers do: call `i` is due at
/// `t0 + i / rate` and its latency counts from then, not from when it was actually sent.
async fn open_loop(api: &Api, rate: f64, run: Duration) -> anyhow::Result<OpenLoop> {
    let calls = (rate * run.as_secs_f64()).round().max(1.0) as usize;
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1,
        3_600_000_000,
        3,
    )?));
    let t0 = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = JoinSet::new();
    let mut dispatch_lag = Duration::ZERO;
    let start = Instant::now();
    for i in 0..calls {
        let due = t0 + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        dispatch_lag = dispatch_lag.max(tokio::time::Instant::now().saturating_duration_since(due));
        let (api, latency) = (api.clone(), latency.clone());
        // The closed loops' conversations, in turn: each comes round again only after
        // `CUSTOMERS` calls, long after its last reply.
        let customer = customer(api.customers, i % CUSTOMERS);
        tasks.spawn(async move {
            let outcome = api.reply(&customer, &message(i)).await;
            let waited = tokio::time::Instant::now().saturating_duration_since(due);
            let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
            if let Ok(mut histogram) = latency.lock() {
                histogram.saturating_record(micros.max(1));
            }
            outcome
        });
    }
    let mut tally = Tally::default();
    tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(10), async {
        while let Some(outcome) = tasks.join_next().await {
            tally.count(&outcome?);
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
    .context("the open loop's calls did not finish")??;
    tally.elapsed = start.elapsed();
    let latency = latency
        .lock()
        .map_err(|_| anyhow::anyhow!("latency histogram poisoned"))?
        .clone();
    Ok(OpenLoop {
        tally,
        latency,
        dispatch_lag,
    })
}

struct InFlight {
    /// Every call of the phase (for the books).
    tally: Tally,
    /// Replies that arrived inside the measured window, and the window.
    in_window: u64,
    window: Duration,
    /// Keep-alive connections opened (with `GET /health`) before the calls.
    connected: usize,
}

/// Ramp-up before the in-flight rate is measured: every worker's first call is admitted.
const IN_FLIGHT_WARMUP: Duration = Duration::from_secs(4);
/// How long the in-flight rate is measured.
const IN_FLIGHT_WINDOW: Duration = Duration::from_secs(10);

/// `calls` workers, each a customer of its own, each calling again as soon as its reply
/// arrives, so that `calls` calls are in flight all the time; on connections opened
/// beforehand (so TCP handshakes are not what is measured). The rate counts the replies that
/// arrive in a window after the ramp-up.
async fn in_flight(api: &Api, calls: usize) -> anyhow::Result<InFlight> {
    let opened = tokio::time::timeout(
        REQUEST_TIMEOUT,
        futures::future::join_all((0..calls).map(|_| {
            api.http
                .get(format!("{}/health", api.base))
                .timeout(Duration::from_secs(30))
                .send()
        })),
    )
    .await
    .context("opening connections for the in-flight run")?;
    let connected = opened.iter().filter(|r| r.is_ok()).count();
    drop(opened);

    let start = Instant::now();
    let (window_start, deadline) = (
        start + IN_FLIGHT_WARMUP,
        start + IN_FLIGHT_WARMUP + IN_FLIGHT_WINDOW,
    );
    let mut tasks = JoinSet::new();
    for i in 0..calls {
        let api = api.clone();
        tasks.spawn(async move {
            let (mut tally, mut in_window, mut n) = (Tally::default(), 0_u64, 0);
            while Instant::now() < deadline {
                let outcome = api.reply(&format!("flight-{i}"), &message(n)).await;
                let now = Instant::now();
                if outcome.is_ok() && now >= window_start && now < deadline {
                    in_window += 1;
                }
                tally.count(&outcome);
                n += 1;
            }
            (tally, in_window)
        });
    }
    let (mut tally, mut in_window) = (Tally::default(), 0);
    tokio::time::timeout(
        IN_FLIGHT_WARMUP + IN_FLIGHT_WINDOW + REQUEST_TIMEOUT + Duration::from_secs(10),
        async {
            while let Some(outcome) = tasks.join_next().await {
                let (worker, counted) = outcome?;
                tally.merge(worker);
                in_window += counted;
            }
            Ok::<_, anyhow::Error>(())
        },
    )
    .await
    .context("the in-flight calls did not finish")??;
    tally.elapsed = start.elapsed();
    Ok(InFlight {
        tally,
        in_window,
        window: IN_FLIGHT_WINDOW,
        connected,
    })
}

struct History {
    short: Duration,
    long: Duration,
    /// Assistant messages the seeding wrote (not replies the bench received).
    seeded_replies: u64,
}

impl History {
    fn ratio(&self) -> f64 {
        self.long.as_secs_f64() / self.short.as_secs_f64()
    }
}

/// Opens two conversations with a real call each, grows them by SQL to 10 and 10,000
/// messages, then times sequential replies in each, alternating.
async fn history_latency(api: &Api, pg: &Postgres) -> anyhow::Result<History> {
    let mut seeded_replies = 0;
    for (customer, size) in [
        ("history-short", SHORT_CONVERSATION),
        ("history-long", LONG_CONVERSATION),
    ] {
        let answer = api
            .reply(customer, &message(0))
            .await
            .map_err(|why| anyhow::anyhow!("opening the {size}-message conversation: {why}"))?;
        let conversation = answer["conversation_id"]
            .as_str()
            .context("no conversation_id in generate-reply's answer")?
            .to_owned();
        uuid::Uuid::parse_str(&conversation)
            .with_context(|| format!("conversation_id {conversation:?} is not a UUID"))?;
        seeded_replies += seed(pg, &conversation, size).await?;
    }
    // What autovacuum (off on some machines) would have done after the seeding.
    pg.sql(BENCH_DB, "ANALYZE").await?;

    let time = async |customer: &str, n: usize| -> anyhow::Result<Duration> {
        let started = Instant::now();
        api.reply(customer, &message(n))
            .await
            .map_err(|why| anyhow::anyhow!("a reply to {customer}: {why}"))?;
        Ok(started.elapsed())
    };
    for n in 0..5 {
        time("history-short", n).await?;
        time("history-long", n).await?;
    }
    let (mut short, mut long) = (Vec::new(), Vec::new());
    for n in 0..LATENCY_SAMPLES {
        short.push(time("history-short", n).await?);
        long.push(time("history-long", n).await?);
    }
    Ok(History {
        short: median(&mut short),
        long: median(&mut long),
        seeded_replies,
    })
}

/// Prints how far the long conversation's summary got meanwhile: it is made after each reply
/// (the turns the prompt left out), on the side, so the replies timed above never waited for it.
async fn summaries_note(pg: &Postgres) -> anyhow::Result<()> {
    if !summaries_exist(pg).await? {
        return Ok(());
    }
    let folds = pg
        .sql(
            BENCH_DB,
            "SELECT count(*), coalesce(max(through_seq), 0), coalesce(sum(cost), 0) FROM summary_folds",
        )
        .await?;
    let fields: Vec<&str> = folds.trim().split('|').collect();
    if let &[count, through, cost] = fields.as_slice() {
        println!(
            "  summaries: {count} model calls folded the long conversation's first {through} places ({cost} hundred-millionths charged)"
        );
    }
    Ok(())
}

/// Whether the schema has conversation summaries (`summary_folds`).
async fn summaries_exist(pg: &Postgres) -> anyhow::Result<bool> {
    Ok(pg
        .sql(BENCH_DB, "SELECT to_regclass('summary_folds') IS NOT NULL")
        .await?
        .trim()
        == "t")
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Grows a conversation that holds one exchange (seq 1 and 2) to `size` messages: user and
/// assistant pairs, each reply's `turn_id` its question's id. Writes `seq` and `next_seq`
/// where the schema has them. Returns the assistant messages written.
async fn seed(pg: &Postgres, conversation: &str, size: i64) -> anyhow::Result<u64> {
    let column_exists = async |table: &str, column: &str| -> anyhow::Result<bool> {
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = '{table}' AND column_name = '{column}')"
        );
        Ok(pg.sql(BENCH_DB, &sql).await? == "t")
    };
    let has_seq = column_exists("messages", "seq").await?;
    let has_next_seq = column_exists("conversations", "next_seq").await?;

    let existing: i64 = pg
        .scalar(
            BENCH_DB,
            &format!("SELECT count(*) FROM messages WHERE conversation_id = '{conversation}'"),
        )
        .await?;
    ensure!(
        existing == 2,
        "conversation {conversation} should hold one exchange before seeding, holds {existing} messages"
    );
    if has_next_seq {
        let next: i64 = pg
            .scalar(
                BENCH_DB,
                &format!("SELECT next_seq FROM conversations WHERE id = '{conversation}'"),
            )
            .await?;
        ensure!(
            next == 3,
            "conversations.next_seq is {next} after one exchange; the seeding expects 3"
        );
    }

    let pairs = (size - 2) / 2;
    // Question n (1..=pairs) takes seq 1 + 2n, its answer 2 + 2n: 3..=size.
    let (seq_column, user_seq, returning, reply_seq) = if has_seq {
        (", seq", ", 1 + 2 * n", ", seq", ", seq + 1")
    } else {
        ("", "", "", "")
    };
    let next_seq = if has_next_seq {
        format!(", next_seq = {}", size + 1)
    } else {
        String::new()
    };
    let sql = format!(
        "WITH questions AS (
             INSERT INTO messages (id, conversation_id, turn_id, role, content{seq_column})
             SELECT id, '{conversation}', id, 'user',
                    'An earlier question, number ' || n || ': when does my parcel come?'{user_seq}
             FROM (SELECT n, nextval('messages_id_seq') AS id FROM generate_series(1, {pairs}) AS n) AS rows
             RETURNING id{returning}
         )
         INSERT INTO messages (conversation_id, turn_id, role, content{seq_column})
         SELECT '{conversation}', id, 'assistant', 'An earlier answer: it is on its way.'{reply_seq}
         FROM questions;
         UPDATE conversations SET message_count = {size}{next_seq} WHERE id = '{conversation}';"
    );
    pg.sql(BENCH_DB, &sql).await?;
    let now: i64 = pg
        .scalar(
            BENCH_DB,
            &format!("SELECT count(*) FROM messages WHERE conversation_id = '{conversation}'"),
        )
        .await?;
    ensure!(now == size, "seeding made {now} messages, not {size}");
    Ok(pairs as u64)
}

// ---------------------------------------------------------------------------------------------
// The books.

/// Prints a PASS or FAIL line per check; `true` if all pass.
async fn check_books(
    pg: &Postgres,
    account_id: i64,
    replies: u64,
    seeded_replies: u64,
) -> anyhow::Result<bool> {
    println!("books:");
    let mut all_pass = true;
    let mut check = |pass: bool, what: String| {
        println!("  {} {what}", if pass { "PASS" } else { "FAIL" });
        all_pass &= pass;
    };

    let start = START_BALANCE_UNITS * SUBUNITS_PER_UNIT;
    // Summaries of conversations past the prompt budget are charged too.
    let folds = if summaries_exist(pg).await? {
        " + COALESCE((SELECT sum(f.cost) FROM summary_folds f WHERE f.account_id = a.id), 0)"
    } else {
        ""
    };
    let rows = pg
        .sql(
            BENCH_DB,
            &format!(
                "SELECT a.id, a.balance, COALESCE((SELECT sum(m.cost) FROM messages m
                     JOIN conversations c ON c.id = m.conversation_id WHERE c.account_id = a.id), 0){folds}
                 FROM accounts a ORDER BY a.id"
            ),
        )
        .await?;
    let mut accounts = 0;
    for row in rows.lines() {
        let fields: Vec<&str> = row.split('|').collect();
        let &[id, balance, spent] = fields.as_slice() else {
            bail!("unexpected row {row:?}");
        };
        let (id, balance, spent): (i64, i128, i128) =
            (id.parse()?, balance.parse()?, spent.parse()?);
        accounts += 1;
        if id == account_id {
            check(
                balance == start - spent,
                format!(
                    "account {id}: balance {balance} = starting {start} - {spent} charged (hundred-millionths)"
                ),
            );
        } else {
            check(false, format!("account {id}: not the bench's"));
        }
    }
    check(
        accounts == 1,
        format!("{accounts} account(s), the bench's only"),
    );

    let twice: i64 = pg
        .scalar(
            BENCH_DB,
            "SELECT count(*) FROM (SELECT q.id FROM messages q
                 JOIN messages a ON a.conversation_id = q.conversation_id AND a.turn_id = q.id AND a.role = 'assistant'
             WHERE q.role = 'user' GROUP BY q.id HAVING count(*) > 1) AS answered_twice",
        )
        .await?;
    check(
        twice == 0,
        format!("answered user messages with more than one assistant message: {twice}"),
    );
    let orphans: i64 = pg
        .scalar(
            BENCH_DB,
            "SELECT count(*) FROM messages a WHERE a.role = 'assistant' AND NOT EXISTS
                 (SELECT 1 FROM messages q WHERE q.id = a.turn_id AND q.role = 'user'
                  AND q.conversation_id = a.conversation_id)",
        )
        .await?;
    check(
        orphans == 0,
        format!("assistant messages without their user message (turn_id): {orphans}"),
    );
    let unanswered: i64 = pg
        .scalar(
            BENCH_DB,
            "SELECT count(*) FROM messages q WHERE q.role = 'user' AND NOT EXISTS
                 (SELECT 1 FROM messages a WHERE a.turn_id = q.id AND a.role = 'assistant'
                  AND a.conversation_id = q.conversation_id)",
        )
        .await?;
    check(
        unanswered == 0,
        format!("user messages left without a reply (no takeover in this run): {unanswered}"),
    );
    let pending: i64 = pg
        .scalar(BENCH_DB, "SELECT count(*) FROM pending_replies")
        .await?;
    check(pending == 0, format!("pending_replies rows: {pending}"));
    let due: i64 = pg
        .scalar(BENCH_DB, "SELECT count(*) FROM settlements_due")
        .await?;
    check(
        due == 0,
        format!("settlements_due rows (dues unpaid): {due}"),
    );
    let created: i64 = pg
        .scalar(
            BENCH_DB,
            "SELECT count(*) FROM events WHERE kind = 'reply.created'",
        )
        .await?;
    let stored: i64 = pg
        .scalar(
            BENCH_DB,
            "SELECT count(*) FROM messages WHERE role = 'assistant'",
        )
        .await?;
    let stored_replies = stored - seeded_replies as i64;
    check(
        stored_replies == replies as i64,
        format!(
            "replies stored {stored_replies} (+{seeded_replies} seeded) = successful calls counted {replies}"
        ),
    );
    check(
        created == stored_replies,
        format!("reply.created events {created} = replies stored {stored_replies}"),
    );
    Ok(all_pass)
}

// ---------------------------------------------------------------------------------------------
// The summary.

struct Figures {
    idle: Idle,
    saturation_rate: f64,
    pgbench_tps: f64,
    open_rate: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    commits_per_reply: f64,
    flight_rate: f64,
    flight_target: f64,
    flight_ok: u64,
    flight_failed: u64,
    peak_rss_mb: f64,
    history: History,
    machine: Machine,
    checkpoints: Checkpoints,
    books: bool,
}

impl Figures {
    fn print(&self) {
        let verdict = |met: bool| if met { "met" } else { "MISSED" };
        let line = |what: &str, figure: String, target: &str, met: Option<bool>| {
            let verdict = met.map_or("", verdict);
            let line = format!("{what:<32} {figure:<38} {target:<16} {verdict}");
            println!("{}", line.trim_end());
        };
        let ratio = self.saturation_rate / self.pgbench_tps;
        let flight_fraction = self.flight_rate / self.flight_target;
        println!();
        println!("== load bench summary ==");
        line(
            "idle: transactions/s",
            format!("{:.1}", self.idle.transactions_per_second),
            "target <= 2",
            Some(self.idle.transactions_per_second <= 2.0),
        );
        line(
            "idle: CPU, % of a core",
            format!(
                "server {:.1}%, PostgreSQL {:.1}%",
                self.idle.server_cpu_percent, self.idle.postgres_cpu_percent
            ),
            "",
            None,
        );
        line(
            "saturation (32 connections)",
            format!("{:.0} replies/s", self.saturation_rate),
            "",
            None,
        );
        line(
            "pgbench tpcb-like (-c 16 -j 2)",
            format!("{:.0} tps", self.pgbench_tps),
            "",
            None,
        );
        line(
            "saturation / pgbench",
            format!("{:.1}%", ratio * 100.0),
            "target >= 40%",
            Some(ratio >= 0.40),
        );
        line(
            "open loop at half saturation",
            format!("{:.0} req/s", self.open_rate),
            "",
            None,
        );
        line("  p50", format!("{:.2?}", self.p50), "", None);
        line(
            "  p99",
            format!("{:.2?}", self.p99),
            "target <= 25 ms",
            Some(self.p99 <= Duration::from_millis(25)),
        );
        line("  max", format!("{:.2?}", self.max), "", None);
        line(
            "commits per reply",
            format!("{:.2}", self.commits_per_reply),
            "target <= 4",
            Some(self.commits_per_reply <= 4.0),
        );
        line(
            "2,000 in flight (model 2 s)",
            format!(
                "{:.0} replies/s = {:.0}% of {:.0}/s",
                self.flight_rate,
                flight_fraction * 100.0,
                self.flight_target
            ),
            "target >= 90%",
            Some(flight_fraction >= 0.90),
        );
        line(
            "  calls answered",
            format!("{} ({} failed)", self.flight_ok, self.flight_failed),
            "",
            None,
        );
        line(
            "  server peak RSS (VmHWM)",
            format!("{:.0} MB", self.peak_rss_mb),
            "target < 300 MB",
            Some(self.peak_rss_mb < 300.0),
        );
        line(
            "10,000 vs 10 messages (median)",
            format!(
                "{:.2}x ({:.2?} vs {:.2?})",
                self.history.ratio(),
                self.history.long,
                self.history.short
            ),
            "target <= 1.2x",
            Some(self.history.ratio() <= 1.2),
        );
        line(
            "books",
            if self.books { "PASS" } else { "FAIL" }.to_owned(),
            "",
            None,
        );
        line(
            "machine",
            format!(
                "{} CPUs, {}, PostgreSQL {}",
                self.machine.cpus, self.machine.cpu_model, self.machine.postgres
            ),
            "",
            None,
        );
        line(
            "disturbance",
            format!(
                "load average {} at start; {}",
                self.machine.load_at_start,
                self.checkpoints.describe()
            ),
            "",
            None,
        );
        println!(
            "(stub model: {PROMPT_TOKENS} prompt + {COMPLETION_TOKENS} completion tokens per reply; server, bench and PostgreSQL share the machine)"
        );
    }
}

fn micros(us: u64) -> Duration {
    Duration::from_micros(us)
}

// ---------------------------------------------------------------------------------------------
// Event streams: 2,000 open, idle and during a saturation run.

/// Streams open in the event streams phase: [`STREAMS_PER_KEY`] of the bench's account (whose
/// events the saturation run makes, and whose delay from commit to stream is measured), the
/// rest as many to each of accounts of their own, which have no traffic.
const STREAMS: usize = 2_000;
/// The few streams whose idle cost is compared with that of [`STREAMS`].
const FEW_STREAMS: usize = 10;
/// The server's default `ANYREPLY_EVENT_STREAMS_PER_KEY`.
const STREAMS_PER_KEY: usize = 20;
/// How long idle streams' cost is measured.
const IDLE_WINDOW: Duration = Duration::from_secs(10);
/// Targets: stream statements a second while idle, the saturation rate with the streams open
/// as a share of without, and the p99 from an event's transaction to a stream.
const STREAMS_IDLE_TARGET: f64 = 10.0;
const STREAMS_SATURATION_TARGET: f64 = 0.90;
const STREAMS_P99_TARGET: Duration = Duration::from_millis(500);

/// Microseconds from each event's `created_at` to its arrival at a measured stream, while
/// `recording`.
#[derive(Clone)]
struct Delays {
    histogram: Arc<Mutex<Histogram<u64>>>,
    recording: Arc<std::sync::atomic::AtomicBool>,
}

/// The open streams' readers: what the bench account's streams received, and how late.
struct StreamReaders {
    tasks: JoinSet<u64>,
    delays: Delays,
}

impl StreamReaders {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            tasks: JoinSet::new(),
            delays: Delays {
                histogram: Arc::new(Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?)),
                recording: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            },
        })
    }

    /// Opens `n` streams of `key`; measured ones record each event's delay while recording.
    async fn open(
        &mut self,
        http: &reqwest::Client,
        base: &str,
        key: &str,
        n: usize,
        measured: bool,
    ) -> anyhow::Result<()> {
        let mut opening = JoinSet::new();
        for _ in 0..n {
            let request = http
                .get(format!("{base}/api/events"))
                .bearer_auth(key)
                .send();
            opening.spawn(request);
        }
        while let Some(opened) = opening.join_next().await {
            let response = opened?.context("opening an event stream")?;
            ensure!(
                response.status() == 200,
                "opening an event stream: HTTP {}",
                response.status()
            );
            self.tasks
                .spawn(read_stream(response, measured.then(|| self.delays.clone())));
        }
        Ok(())
    }

    /// Events each measured stream received, once the server ended the streams.
    async fn received(mut self) -> Vec<u64> {
        let mut counts = Vec::new();
        while let Some(count) = self.tasks.join_next().await {
            if let Ok(count) = count
                && count > 0
            {
                counts.push(count);
            }
        }
        counts
    }
}

/// Reads a stream to its end; counts its events (0 for an unmeasured stream, which only drains).
async fn read_stream(mut response: reqwest::Response, measured: Option<Delays>) -> u64 {
    // What has arrived of the frame not yet complete (a chunk may end anywhere).
    let mut partial: Vec<u8> = Vec::new();
    let mut events = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        let Some(delays) = &measured else {
            continue;
        };
        let arrived = chrono::Utc::now();
        partial.extend_from_slice(&chunk);
        let mut rest = partial.as_slice();
        while let Some(end) = rest.windows(2).position(|w| w == b"\n\n") {
            let frame = String::from_utf8_lossy(&rest[..end]);
            rest = &rest[end + 2..];
            let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data:")) else {
                continue;
            };
            events += 1;
            if !delays.recording.load(Ordering::Relaxed) {
                continue;
            }
            // The event's own `created_at` comes before its message's; found, not parsed, to
            // keep the bench's reading cheap beside the server.
            let created = data
                .split_once("\"created_at\":\"")
                .and_then(|(_, rest)| rest.split('"').next())
                .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok());
            if let Some(created) = created {
                let delay = (arrived - created.with_timezone(&chrono::Utc))
                    .num_microseconds()
                    .unwrap_or(0)
                    .max(1) as u64;
                let mut histogram = delays
                    .histogram
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let _ = histogram.record(delay);
            }
        }
        let consumed = partial.len() - rest.len();
        partial.drain(..consumed);
    }
    events
}

/// The event streams' statements so far, from the server's `/metrics`.
async fn stream_statements(http: &reqwest::Client, base: &str) -> anyhow::Result<f64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with("anyreply_event_stream_statements_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Stream statements a second over [`IDLE_WINDOW`] with no traffic, as the server counts
/// them. (Not the database's commits: PostgreSQL 15 reports a backend's commits seconds late,
/// so the window would count those of the runs and the streams' opening before it.)
async fn idle_cost(http: &reqwest::Client, base: &str) -> anyhow::Result<f64> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let statements = stream_statements(http, base).await?;
    let started = Instant::now();
    tokio::time::sleep(IDLE_WINDOW).await;
    let statements_after = stream_statements(http, base).await?;
    Ok((statements_after - statements) / started.elapsed().as_secs_f64())
}

/// Accounts of their own, with a key each, for the streams that see no traffic.
async fn stream_keys(launcher: &Launcher, n: usize) -> anyhow::Result<Vec<String>> {
    use diesel_async::AsyncConnection;
    let mut conn = diesel_async::AsyncPgConnection::establish(&launcher.database_url).await?;
    let mut keys = Vec::new();
    for i in 0..n {
        let name = format!("streams-{i}");
        let id = anyreply_server::models::account::create(
            &mut conn,
            &name,
            None,
            anyreply_core::Money::ZERO,
        )
        .await?;
        keys.push(
            anyreply_server::models::api_key::create(&mut conn, id)
                .await?
                .key,
        );
    }
    Ok(keys)
}

/// The event streams phase: idle cost with [`FEW_STREAMS`] and with [`STREAMS`] streams open,
/// then a saturation run with them all open, measuring each event's delay from its
/// transaction (`created_at`) to a stream of the bench's account; the server is stopped with
/// them open.
async fn event_streams_phase(
    launcher: &Launcher,
    pg: &Postgres,
    api: &Api,
    saturation_rate: f64,
) -> anyhow::Result<()> {
    let keys = stream_keys(launcher, (STREAMS - STREAMS_PER_KEY) / STREAMS_PER_KEY).await?;
    // No request timeout: a stream lasts the phase.
    let streams_http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let mut readers = StreamReaders::new()?;
    let mark = pg.settle().await;
    let mut server = launcher.start(&api.http).await?;
    let api = Api {
        base: server.base.clone(),
        ..api.clone()
    };
    println!(
        "event streams: saturation without streams, idle with {FEW_STREAMS} streams, then {STREAMS}; then saturation with them open"
    );
    // The rate without streams again, on this server just before: a fair comparison on a
    // machine whose load drifts. Each run talks to customers of its own, new to it: were they
    // the same, the second run's conversations would be longer and its replies slower (with
    // no stream open, the second run measured 85% of the first).
    closed_loop(&api, SATURATION_CONNECTIONS, WARM_UP).await?;
    let without = Api {
        customers: "without-streams",
        ..api.clone()
    };
    let without = closed_loop(&without, SATURATION_CONNECTIONS, SATURATION_RUN).await?;
    without.print_failures("saturation before the streams");
    let without_rate = without.ok as f64 / without.elapsed.as_secs_f64();
    readers
        .open(&streams_http, &api.base, &api.key, FEW_STREAMS, true)
        .await?;
    let few_statements = idle_cost(&api.http, &api.base).await?;
    readers
        .open(
            &streams_http,
            &api.base,
            &api.key,
            STREAMS_PER_KEY - FEW_STREAMS,
            true,
        )
        .await?;
    for key in &keys {
        readers
            .open(&streams_http, &api.base, key, STREAMS_PER_KEY, false)
            .await?;
    }
    let many_statements = idle_cost(&api.http, &api.base).await?;
    println!(
        "  idle: {FEW_STREAMS} streams {few_statements:.1} stream statements/s; {STREAMS} streams {many_statements:.1}"
    );

    readers.delays.recording.store(true, Ordering::Relaxed);
    let with = Api {
        customers: "with-streams",
        ..api.clone()
    };
    let saturation = closed_loop(&with, SATURATION_CONNECTIONS, SATURATION_RUN).await?;
    // Events of the run's last replies are on their way.
    tokio::time::sleep(Duration::from_secs(1)).await;
    readers.delays.recording.store(false, Ordering::Relaxed);
    saturation.print_failures("saturation with streams");
    checkpoints_note(pg, mark).await;
    let rate = saturation.ok as f64 / saturation.elapsed.as_secs_f64();
    let share = rate / without_rate;
    let (p50, p99, max, events) = {
        let delays = readers
            .delays
            .histogram
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (
            micros(delays.value_at_quantile(0.50)),
            micros(delays.value_at_quantile(0.99)),
            micros(delays.max()),
            delays.len(),
        )
    };
    println!(
        "  saturation with {STREAMS} streams open: {rate:.0} replies/s ({} failed), {:.0}% of {without_rate:.0} without just before ({saturation_rate:.0} in phase 1)",
        saturation.failed,
        share * 100.0
    );
    println!(
        "  event from its transaction to a stream: p50 {p50:.2?}  p99 {p99:.2?}  max {max:.2?} ({events} arrivals at {STREAMS_PER_KEY} streams)"
    );
    let stopping = Instant::now();
    server.stop().await?;
    let stopped = stopping.elapsed();
    let received = readers.received().await;
    let same = received.windows(2).all(|w| w[0] == w[1]);
    println!(
        "  stopped with {STREAMS} streams open in {stopped:.2?}; the bench account's streams each received {} events ({})",
        received.first().copied().unwrap_or(0),
        if same { "all alike" } else { "NOT alike" }
    );
    for (what, met) in [
        (
            format!("idle stream statements/s <= {STREAMS_IDLE_TARGET} with {STREAMS} streams"),
            many_statements <= STREAMS_IDLE_TARGET,
        ),
        (
            format!(
                "saturation with streams >= {:.0}%",
                STREAMS_SATURATION_TARGET * 100.0
            ),
            share >= STREAMS_SATURATION_TARGET,
        ),
        (
            format!("p99 commit to stream <= {STREAMS_P99_TARGET:?}"),
            p99 <= STREAMS_P99_TARGET,
        ),
        (
            "every stream of the account got every event".to_owned(),
            same,
        ),
    ] {
        println!("  {}: {what}", if met { "met" } else { "MISSED" });
    }
    // The books are the bench account's alone.
    pg.sql(BENCH_DB, "DELETE FROM accounts WHERE name LIKE 'streams-%'")
        .await?;
    Ok(())
}

/// Says whether a checkpoint fell in the event streams phase.
async fn checkpoints_note(pg: &Postgres, mark: Option<i64>) {
    if let (Some(before), Some(after)) = (mark, pg.checkpoints().await)
        && after > before
    {
        println!(
            "  ({} checkpoints during the event streams phase)",
            after - before
        );
    }
}
