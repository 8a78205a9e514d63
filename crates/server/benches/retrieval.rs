//! Retrieval benchmark: the PostgreSQL documentation (Debian's `postgresql-doc-15`, about 1,170
//! HTML pages) uploaded page by page into one knowledge base of the real `anyreply-server`
//! release binary, then searched with the questions of `retrieval_questions.json`.
//!
//! Run: `cargo bench -p anyreply-server --bench retrieval`.
//!
//! Needs the package (`apt-get install -y postgresql-doc-15`), PostgreSQL with `psql` on `PATH`
//! at `ANYREPLY_BENCH_POSTGRES` (default `postgres://postgres@127.0.0.1:5432`, a role that may
//! create databases). It drops and recreates the database `anyreply_retrieval` (left behind for
//! inspection).
//!
//! 1. ingest: every page uploaded as `txt` (8 at a time), then waited for until none is
//!    `processing` → time, pages/s, passages, failures by reason;
//! 2. relevance: each question searched (limit 10); a hit is relevant if its document is one of
//!    the question's pages → recall@5, MRR@10, and the misses;
//! 3. search latency over the whole corpus, timed on the client and, for the SQL alone, in the
//!    database → p50, p99;
//! 4. prompt-mode replies: an assistant given the knowledge base against one without, the stub
//!    model answering at once, alternating → the p50 each and the difference.
//!
//! Exits 2 if the setup fails (the package missing among others); missed targets are reported,
//! not failed.

#![allow(clippy::print_stdout)]

#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use anyreply_server::models::knowledge::SEARCH_SQL;
use anyreply_server::testing::chat_completion;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use postgres::Postgres;
use server::{Launcher, run_tool};

const DOCS_DIR: &str = "/usr/share/doc/postgresql-doc-15/html";
const DOCS_PACKAGE: &str = "postgresql-doc-15";
const BENCH_DB: &str = "anyreply_retrieval";
const QUESTIONS: &str = include_str!("retrieval_questions.json");

const UPLOADS_AT_ONCE: usize = 8;
const SEARCH_LIMIT: usize = 10;
const RECALL_AT: usize = 5;
/// Each question is searched this many times for the latency figures.
const LATENCY_ROUNDS: usize = 5;
/// Generate-reply calls, alternating between the two assistants.
const REPLIES: usize = 200;
const REPLY_WARM_UP: usize = 10;

const RECALL_TARGET: f64 = 0.80;
const SEARCH_P99_TARGET: Duration = Duration::from_millis(20);
const PROMPT_MODE_EXTRA_TARGET: Duration = Duration::from_millis(5);

const INGEST_TIMEOUT: Duration = Duration::from_secs(1_800);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const SQL_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::main]
async fn main() -> ExitCode {
    let started = Instant::now();
    // Stopping `run` drops the server process's guard, which kills it.
    let outcome = tokio::select! {
        outcome = run() => outcome,
        () = interrupted() => Err(anyhow::anyhow!("interrupted")),
    };
    match outcome {
        Ok(()) => {
            println!("run took {:.0?}", started.elapsed());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("retrieval bench failed: {error:#}");
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

#[derive(Debug, Deserialize)]
struct Question {
    question: String,
    pages: Vec<String>,
}

async fn run() -> anyhow::Result<()> {
    let pages = doc_pages()?;
    let questions = questions(&pages)?;
    let pg = Postgres::from_env(SQL_TIMEOUT);
    let postgres_version = pg
        .sql("postgres", "SHOW server_version")
        .await
        .with_context(|| {
            format!(
                "PostgreSQL does not answer at {} (set ANYREPLY_BENCH_POSTGRES; psql must be on PATH)",
                pg.root
            )
        })?;
    let stub = StubModel::start().await?;
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("retrieval-server.log");
    File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let launcher = Launcher {
        exe: PathBuf::from(env!("CARGO_BIN_EXE_anyreply-server")),
        database_url: pg.url(BENCH_DB),
        llm_base_url: format!("http://{}/v1", stub.addr),
        log: log.clone(),
    };
    println!(
        "retrieval bench: {} pages of {DOCS_DIR}, {} questions; server log in {}",
        pages.len(),
        questions.len(),
        log.display()
    );

    pg.sql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)"),
    )
    .await?;
    pg.sql("postgres", &format!("CREATE DATABASE {BENCH_DB}"))
        .await?;
    let (_, key) = launcher
        .create_account("retrieval bench", "1000000")
        .await?;
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let server = launcher.start(&http).await?;
    let api = Api {
        http,
        base: server.base.clone(),
        key,
    };

    let base = api
        .post(
            "/api/user/knowledgebases",
            &json!({"name": "PostgreSQL 15 documentation", "language": "english"}),
        )
        .await?["data"]["id"]
        .as_i64()
        .context("no data.id in the knowledge base's creation answer")?;

    // 1. Ingest.
    println!(
        "ingest: uploading {} pages, {UPLOADS_AT_ONCE} at a time",
        pages.len()
    );
    let ingest = ingest(&api, base, &pages).await?;
    println!(
        "  uploaded in {:.1?}, processed in {:.1?}: {:.1} pages/s; {} passages; {} documents failed",
        ingest.uploaded,
        ingest.elapsed,
        ingest.pages_per_second(),
        ingest.passages,
        ingest.failed
    );
    for (reason, names) in &ingest.failures {
        println!(
            "  failed ({}): {reason}: {}",
            names.len(),
            names.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        );
    }

    // 2. Relevance.
    println!(
        "relevance: {} questions, search limit {SEARCH_LIMIT}",
        questions.len()
    );
    let relevance = relevance(&api, base, &questions).await?;
    for miss in &relevance.misses {
        println!("  miss: {miss}");
    }
    println!(
        "  recall@{RECALL_AT} {:.2}, MRR@{SEARCH_LIMIT} {:.3}",
        relevance.recall, relevance.mrr
    );

    // 3. Search latency.
    println!(
        "search latency: each question {LATENCY_ROUNDS} times, sequentially (client), then the SQL alone in the database"
    );
    let client_latency = search_latency(&api, base, &questions).await?;
    let sql_latency = sql_latency(&pg, base, &questions).await?;
    println!(
        "  client p50 {:.2?} p99 {:.2?}; SQL alone p50 {:.2?} p99 {:.2?}",
        client_latency.p50, client_latency.p99, sql_latency.p50, sql_latency.p99
    );

    // 4. Prompt-mode replies against replies without a knowledge base.
    println!(
        "replies: {REPLIES} sequential generate-reply calls alternating between an assistant with the knowledge base (prompt mode) and one without (after {REPLY_WARM_UP} unrecorded)"
    );
    let replies = reply_latency(&api, base, &questions).await?;
    println!(
        "  p50 {:.2?} with, {:.2?} without: {:+.2} ms",
        replies.with,
        replies.without,
        replies.extra_ms()
    );

    let figures = Figures {
        pages: pages.len(),
        ingest,
        questions: questions.len(),
        relevance,
        client_latency,
        sql_latency,
        replies,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        postgres: postgres_version,
    };
    figures.print();
    let mut server = server;
    server.stop().await?;
    Ok(())
}

/// The documentation's HTML pages, by file name; exits the bench with the install command if
/// the package is missing.
fn doc_pages() -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let missing = || {
        format!(
            "the PostgreSQL documentation is not installed: no HTML pages in {DOCS_DIR}. Install it with:\n\n    apt-get install -y {DOCS_PACKAGE}\n"
        )
    };
    let Ok(entries) = std::fs::read_dir(DOCS_DIR) else {
        bail!(missing());
    };
    let mut pages = BTreeMap::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "html")
            && let Some(name) = path.file_name().and_then(|n| n.to_str())
        {
            pages.insert(name.to_owned(), path.clone());
        }
    }
    ensure!(!pages.is_empty(), missing());
    Ok(pages)
}

/// The question set, each expected page checked to exist.
fn questions(pages: &BTreeMap<String, PathBuf>) -> anyhow::Result<Vec<Question>> {
    let questions: Vec<Question> =
        serde_json::from_str(QUESTIONS).context("benches/retrieval_questions.json")?;
    for question in &questions {
        ensure!(
            !question.pages.is_empty(),
            "no pages for {:?}",
            question.question
        );
        for page in &question.pages {
            ensure!(
                pages.contains_key(page),
                "{page} (expected for {:?}) is not in {DOCS_DIR}",
                question.question
            );
        }
    }
    Ok(questions)
}

// ---------------------------------------------------------------------------------------------
// The API.

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.key)
            .send()
            .await
            .with_context(|| what.to_owned())?;
        let status = response.status();
        let body = response.bytes().await.with_context(|| what.to_owned())?;
        let answer: Value = serde_json::from_slice(&body).unwrap_or_else(
            |_| json!({ "body": String::from_utf8_lossy(&body).chars().take(300).collect::<String>() }),
        );
        ensure!(status.is_success(), "{what}: HTTP {status} {answer}");
        Ok(answer)
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let request = self.http.post(format!("{}{path}", self.base)).json(body);
        self.send(request, &format!("POST {path}")).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request, &format!("GET {path}")).await
    }

    /// Uploads a file as a `txt` document named `name`; its id.
    async fn upload(&self, base: i64, name: &str, bytes: Vec<u8>) -> anyhow::Result<i64> {
        // reqwest is built without multipart: the form is written out here.
        let boundary = "anyreply-retrieval-bench-5c1e";
        let mut body = Vec::with_capacity(bytes.len() + 512);
        for (field, value) in [("name", name), ("type", "txt")] {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n").as_bytes(),
            );
        }
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: text/html\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let path = format!("/api/user/knowledgebases/{base}/documents");
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(
                CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        let answer = self.send(request, &format!("uploading {name}")).await?;
        answer["data"]["id"]
            .as_i64()
            .with_context(|| format!("no data.id in the upload's answer {answer}"))
    }

    /// The document names of a search's hits, best first.
    async fn search(&self, base: i64, query: &str, limit: usize) -> anyhow::Result<Vec<String>> {
        let answer = self
            .post(
                &format!("/api/user/knowledgebases/{base}/search"),
                &json!({"query": query, "limit": limit}),
            )
            .await?;
        Ok(answer["data"]
            .as_array()
            .context("no data in the search's answer")?
            .iter()
            .map(|hit| hit["document_name"].as_str().unwrap_or("").to_owned())
            .collect())
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Ingest.

struct Ingest {
    uploaded: Duration,
    /// From the first upload until none is `processing`.
    elapsed: Duration,
    pages: usize,
    passages: i64,
    failed: usize,
    /// Failed documents by reason.
    failures: BTreeMap<String, Vec<String>>,
}

impl Ingest {
    fn pages_per_second(&self) -> f64 {
        self.pages as f64 / self.elapsed.as_secs_f64()
    }
}

async fn ingest(api: &Api, base: i64, pages: &BTreeMap<String, PathBuf>) -> anyhow::Result<Ingest> {
    let started = Instant::now();
    let uploads = futures::stream::iter(pages.iter().map(|(name, path)| async move {
        let bytes = tokio::fs::read(path)
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        api.upload(base, name, bytes).await
    }))
    .buffer_unordered(UPLOADS_AT_ONCE)
    .collect::<Vec<_>>()
    .await;
    for upload in uploads {
        upload?;
    }
    let uploaded = started.elapsed();
    let path = format!("/api/user/knowledgebases/{base}/documents");
    let mut last_report = Instant::now();
    let documents = loop {
        let documents = api.get(&path).await?["data"]
            .as_array()
            .context("no data in the documents' list")?
            .clone();
        let processing = documents
            .iter()
            .filter(|d| d["status"] == "processing")
            .count();
        if processing == 0 {
            break documents;
        }
        ensure!(
            started.elapsed() < INGEST_TIMEOUT,
            "{processing} documents still processing after {INGEST_TIMEOUT:?}"
        );
        if last_report.elapsed() >= Duration::from_secs(15) {
            println!(
                "  {processing} of {} still processing after {:.0?}",
                documents.len(),
                started.elapsed()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let elapsed = started.elapsed();
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for document in documents.iter().filter(|d| d["status"] == "failed") {
        failures
            .entry(
                document["reason"]
                    .as_str()
                    .unwrap_or("(no reason)")
                    .to_owned(),
            )
            .or_default()
            .push(document["name"].as_str().unwrap_or("").to_owned());
    }
    Ok(Ingest {
        uploaded,
        elapsed,
        pages: documents.len(),
        passages: documents
            .iter()
            .map(|d| d["passages_count"].as_i64().unwrap_or(0))
            .sum(),
        failed: failures.values().map(Vec::len).sum(),
        failures,
    })
}

// ---------------------------------------------------------------------------------------------
// 2. Relevance.

struct Relevance {
    recall: f64,
    mrr: f64,
    misses: Vec<String>,
}

async fn relevance(api: &Api, base: i64, questions: &[Question]) -> anyhow::Result<Relevance> {
    let mut found = 0usize;
    let mut reciprocal_ranks = 0.0;
    let mut misses = Vec::new();
    for question in questions {
        let got = api.search(base, &question.question, SEARCH_LIMIT).await?;
        let rank = got
            .iter()
            .position(|name| question.pages.contains(name))
            .map(|i| i + 1);
        if let Some(rank) = rank {
            reciprocal_ranks += 1.0 / rank as f64;
        }
        if rank.is_some_and(|rank| rank <= RECALL_AT) {
            found += 1;
        } else {
            let at = rank.map_or_else(|| "not in the top 10".to_owned(), |r| format!("rank {r}"));
            misses.push(format!(
                "{:?} expected {} ({at}); got {}",
                question.question,
                question.pages.join(" | "),
                got.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let n = questions.len() as f64;
    Ok(Relevance {
        recall: found as f64 / n,
        mrr: reciprocal_ranks / n,
        misses,
    })
}

// ---------------------------------------------------------------------------------------------
// 3. Search latency.

struct Latency {
    p50: Duration,
    p99: Duration,
}

/// The p50 and p99 of `samples` (nearest rank).
fn percentiles(mut samples: Vec<Duration>) -> Latency {
    samples.sort();
    let at = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1]
    };
    Latency {
        p50: at(0.50),
        p99: at(0.99),
    }
}

async fn search_latency(api: &Api, base: i64, questions: &[Question]) -> anyhow::Result<Latency> {
    let mut samples = Vec::with_capacity(questions.len() * LATENCY_ROUNDS);
    for _ in 0..LATENCY_ROUNDS {
        for question in questions {
            let started = Instant::now();
            api.search(base, &question.question, SEARCH_LIMIT).await?;
            samples.push(started.elapsed());
        }
    }
    Ok(percentiles(samples))
}

/// [`SEARCH_SQL`] alone, timed in a PL/pgSQL loop in the bench's database. The statement is
/// a PL/pgSQL function's, which keeps its plan as the server's prepared statement does.
async fn sql_latency(pg: &Postgres, base: i64, questions: &[Question]) -> anyhow::Result<Latency> {
    let quoted: Vec<String> = questions
        .iter()
        .map(|q| format!("'{}'", q.question.replace('\'', "''")))
        .collect();
    let script = format!(
        "CREATE FUNCTION pg_temp.bench_search(int8, text, int8) RETURNS int8 LANGUAGE plpgsql
         AS $function$ BEGIN RETURN (SELECT count(*) FROM ({SEARCH_SQL}) hits); END $function$;
         DO $bench$
         DECLARE q text; started timestamptz; round int;
         BEGIN
           CREATE TEMP TABLE bench_timings (ms float8);
           FOR round IN 1..{LATENCY_ROUNDS} LOOP
             FOREACH q IN ARRAY ARRAY[{questions}]::text[] LOOP
               started := clock_timestamp();
               PERFORM pg_temp.bench_search({base}::int8, q, {SEARCH_LIMIT}::int8);
               INSERT INTO bench_timings
                 VALUES (extract(epoch FROM clock_timestamp() - started) * 1000);
             END LOOP;
           END LOOP;
         END $bench$;
         SELECT ms FROM bench_timings;",
        questions = quoted.join(", ")
    );
    let mut psql = std::process::Command::new("psql");
    psql.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(pg.url(BENCH_DB))
        .arg("-c")
        .arg(&script);
    // One `-c`: one session, so the SELECT sees the DO block's temporary table.
    let printed = run_tool(psql, "psql (timing the search SQL)", SQL_TIMEOUT).await?;
    let samples = printed
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.trim()
                .parse::<f64>()
                .map(|ms| Duration::from_secs_f64(ms / 1000.0))
                .with_context(|| format!("unexpected timing {line:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    ensure!(!samples.is_empty(), "the SQL timing printed nothing");
    Ok(percentiles(samples))
}

// ---------------------------------------------------------------------------------------------
// 4. Prompt-mode replies.

struct Replies {
    with: Duration,
    without: Duration,
}

impl Replies {
    fn extra(&self) -> Duration {
        self.with.saturating_sub(self.without)
    }

    fn extra_ms(&self) -> f64 {
        (self.with.as_secs_f64() - self.without.as_secs_f64()) * 1000.0
    }
}

async fn reply_latency(api: &Api, base: i64, questions: &[Question]) -> anyhow::Result<Replies> {
    let assistant = async |body: Value| -> anyhow::Result<i64> {
        api.post("/api/user/assistant", &body).await?["data"]["id"]
            .as_i64()
            .context("no data.id in the assistant's creation answer")
    };
    let with = assistant(
        json!({"name": "Docs", "knowledgebase_id": base, "knowledgebase_mode": "prompt"}),
    )
    .await?;
    let without = assistant(json!({"name": "Plain"})).await?;
    let mut timings = [Vec::new(), Vec::new()];
    for n in 0..REPLY_WARM_UP + REPLIES {
        let side = n % 2;
        let assistant = [with, without][side];
        // The questions as the customer's messages, so that prompt mode searches for real.
        let message = &questions[(n / 2) % questions.len()].question;
        let started = Instant::now();
        let answer = api
            .post(
                "/api/ai/generate-reply",
                &json!({
                    "assistant_id": assistant,
                    "customer_identifier": format!("retrieval-bench-{side}"),
                    "message": message,
                }),
            )
            .await?;
        let elapsed = started.elapsed();
        ensure!(answer["success"] == true, "a reply failed: {answer}");
        if n >= REPLY_WARM_UP {
            timings[side].push(elapsed);
        }
    }
    let [with, without] = timings;
    Ok(Replies {
        with: percentiles(with).p50,
        without: percentiles(without).p50,
    })
}

// ---------------------------------------------------------------------------------------------
// The summary.

struct Figures {
    pages: usize,
    ingest: Ingest,
    questions: usize,
    relevance: Relevance,
    client_latency: Latency,
    sql_latency: Latency,
    replies: Replies,
    cpus: usize,
    postgres: String,
}

impl Figures {
    fn print(&self) {
        let verdict = |met: bool| if met { "met" } else { "MISSED" };
        let line = |what: &str, figure: String, target: &str, met: Option<bool>| {
            let verdict = met.map_or("", verdict);
            let line = format!("{what:<32} {figure:<44} {target:<18} {verdict}");
            println!("{}", line.trim_end());
        };
        println!();
        println!("== retrieval bench summary ==");
        line(
            "ingest",
            format!(
                "{} pages in {:.1?}: {:.1} pages/s",
                self.pages,
                self.ingest.elapsed,
                self.ingest.pages_per_second()
            ),
            "",
            None,
        );
        line(
            "  passages stored",
            format!("{}", self.ingest.passages),
            "",
            None,
        );
        line(
            "  documents failed",
            format!("{}", self.ingest.failed),
            "",
            None,
        );
        line(
            &format!("recall@{RECALL_AT} ({} questions)", self.questions),
            format!("{:.2}", self.relevance.recall),
            &format!("target >= {RECALL_TARGET:.2}"),
            Some(self.relevance.recall >= RECALL_TARGET),
        );
        line(
            &format!("MRR@{SEARCH_LIMIT}"),
            format!("{:.3}", self.relevance.mrr),
            "",
            None,
        );
        line(
            "search latency (client)",
            format!(
                "p50 {:.2?}, p99 {:.2?}",
                self.client_latency.p50, self.client_latency.p99
            ),
            "target p99 <= 20 ms",
            Some(self.client_latency.p99 <= SEARCH_P99_TARGET),
        );
        line(
            "  SQL alone (in the database)",
            format!(
                "p50 {:.2?}, p99 {:.2?}",
                self.sql_latency.p50, self.sql_latency.p99
            ),
            "",
            None,
        );
        line(
            "reply p50, prompt mode vs none",
            format!(
                "{:.2?} vs {:.2?}: {:+.2} ms",
                self.replies.with,
                self.replies.without,
                self.replies.extra_ms()
            ),
            "target <= +5 ms",
            Some(self.replies.extra() <= PROMPT_MODE_EXTRA_TARGET),
        );
        line(
            "machine",
            format!("{} CPUs, PostgreSQL {}", self.cpus, self.postgres),
            "",
            None,
        );
        println!(
            "(search: limit {SEARCH_LIMIT}, {LATENCY_ROUNDS} rounds of the questions, sequential; replies: stub model answering at once; server, bench and PostgreSQL share the machine)"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL through psql, the stub model and the server process (as in `load.rs`).

/// OpenAI Chat Completions on loopback: one fixed answer, at once.
struct StubModel {
    addr: std::net::SocketAddr,
}

impl StubModel {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let body = Bytes::from(serde_json::to_vec(&chat_completion(
            "CREATE INDEX CONCURRENTLY builds the index without locking out writes.",
        ))?);
        let router = Router::new()
            .route("/v1/chat/completions", post(stub_completion))
            .with_state(body);
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                eprintln!("the stub model stopped: {error}");
            }
        });
        Ok(Self { addr })
    }
}

/// Reads the request (so the connection can be reused) and answers.
async fn stub_completion(State(body): State<Bytes>, _request: Bytes) -> Response {
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}
