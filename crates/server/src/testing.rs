//! Test support (feature `test-support`): a fresh PostgreSQL database per test, cloned from
//! a migrated template and dropped afterwards.
//!
//! The server to use is read from `ANYREPLY_TEST_DATABASE_URL` (the role needs `CREATEDB`).
//! Unset, it is a private cluster (see [`crate::pg_cluster`]) in
//! `<temp dir>/anyreply-test-pg-<uid>`, shared by every test process: the first to need it
//! initialises and starts it, and it is left running after the tests, for the next run.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::sync::OnceCell;
use url::Url;

/// A database that exists for as long as this value does.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    url: String,
    admin_url: String,
}

fn admin_url() -> String {
    match std::env::var("ANYREPLY_TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => shared_cluster_url().to_owned(),
    }
}

/// The `postgres` database of the tests' private cluster, started if need be.
fn shared_cluster_url() -> &'static str {
    /// The guard is never dropped: the cluster outlives this process.
    static CLUSTER: std::sync::OnceLock<(String, crate::pg_cluster::ClusterGuard)> =
        std::sync::OnceLock::new();
    let (url, _guard) = CLUSTER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!(
            "anyreply-test-pg-{}",
            nix::unistd::geteuid().as_raw()
        ));
        let cluster = crate::pg_cluster::PrivateCluster::new(Some(dir), None)
            .and_then(|cluster| {
                // Speed over durability: nothing here needs to survive a crash.
                cluster
                    .with_settings(&[
                        ("fsync", "off"),
                        ("synchronous_commit", "off"),
                        ("full_page_writes", "off"),
                    ])
                    .ensure_running()
            })
            .unwrap_or_else(|error| {
                panic!("the tests' PostgreSQL (or set ANYREPLY_TEST_DATABASE_URL): {error:#}")
            });
        (database_url(&cluster.0, "postgres"), cluster.1)
    });
    url
}

fn database_url(admin_url: &str, name: &str) -> String {
    let mut url = Url::parse(admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    url.into()
}

/// The template's name changes with the migrations, so an edited schema gets a new one.
fn template_name() -> String {
    let mut hasher = DefaultHasher::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<_> = walk(&dir);
    files.sort();
    for file in files {
        file.file_name().hash(&mut hasher);
        std::fs::read(&file).unwrap().hash(&mut hasher);
    }
    format!("anyreply_template_{:016x}", hasher.finish())
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path))
        } else {
            out.push(path)
        }
    }
    out
}

async fn admin_connection() -> AsyncPgConnection {
    AsyncPgConnection::establish(&admin_url())
        .await
        .expect("connecting to the tests' PostgreSQL (see ANYREPLY_TEST_DATABASE_URL)")
}

/// Creates the migrated template once, whichever of many test processes gets there first.
async fn template() -> &'static str {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let name = template_name();
            let mut conn = admin_connection().await;
            // One process builds; the others wait on the lock, then find it built.
            diesel::sql_query("SELECT pg_advisory_lock(74001)")
                .execute(&mut conn)
                .await
                .unwrap();
            if !database_exists(&mut conn, &name).await {
                let building = format!("{name}_building");
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {building}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                diesel::sql_query(format!("CREATE DATABASE {building}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                crate::db::run_migrations(&database_url(&admin_url(), &building))
                    .await
                    .unwrap();
                // The rename makes a half-built template impossible to see.
                diesel::sql_query(format!("ALTER DATABASE {building} RENAME TO {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            diesel::sql_query("SELECT pg_advisory_unlock(74001)")
                .execute(&mut conn)
                .await
                .unwrap();
            name
        })
        .await
}

diesel::table! {
    pg_database (datname) {
        datname -> Text,
    }
}

async fn database_exists(conn: &mut AsyncPgConnection, name: &str) -> bool {
    diesel::select(diesel::dsl::exists(
        pg_database::table.filter(pg_database::datname.eq(name)),
    ))
    .get_result(conn)
    .await
    .unwrap()
}

impl TestDb {
    /// A new migrated database with a unique name.
    pub async fn new() -> Self {
        let template = template().await;
        let name = format!("anyreply_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin_connection().await;
        diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let admin_url = admin_url();
        Self {
            url: database_url(&admin_url, &name),
            name,
            admin_url,
        }
    }

    /// Cuts every connection to this database and refuses new ones until [`Self::reconnect`]:
    /// the server "loses its database".
    pub async fn disconnect_everyone(&self) {
        let mut conn = admin_connection().await;
        diesel::sql_query(format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            self.name
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        diesel::sql_query(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
            self.name
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }

    pub async fn reconnect(&self) {
        let mut conn = admin_connection().await;
        diesel::sql_query(format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            self.name
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }

    /// The URL of this test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (name, admin_url) = (self.name.clone(), self.admin_url.clone());
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut conn = AsyncPgConnection::establish(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(_))) {
            eprintln!("could not drop a test database: {dropped:?}");
        }
    }
}

/// A TCP proxy in front of PostgreSQL that the test can cut (every connection through it
/// dies, and new ones are refused) and restore: the server loses its database mid-query.
#[derive(Debug, Clone)]
pub struct DbProxy {
    /// The proxied database's URL, to give the server.
    pub url: String,
    state: std::sync::Arc<ProxyState>,
}

#[derive(Debug)]
struct ProxyState {
    cut: std::sync::atomic::AtomicBool,
    /// Bumped on every cut; a relay from an older generation stops.
    generation: tokio::sync::watch::Sender<u64>,
}

impl DbProxy {
    /// Proxies `database_url`'s server, at a TCP address or a Unix socket, on a free loopback
    /// port.
    pub async fn start(database_url: &str) -> Self {
        let target = Url::parse(database_url).unwrap();
        let upstream = Upstream::of(&target);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut url = target.clone();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(listener.local_addr().unwrap().port()))
            .unwrap();
        let state = std::sync::Arc::new(ProxyState {
            cut: std::sync::atomic::AtomicBool::new(false),
            generation: tokio::sync::watch::channel(0).0,
        });
        let accepting = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if std::sync::atomic::AtomicBool::load(
                    &accepting.cut,
                    std::sync::atomic::Ordering::SeqCst,
                ) {
                    continue; // dropped: the connection is refused
                }
                let generation = accepting.generation.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    match upstream {
                        Upstream::Tcp(address) => {
                            if let Ok(server) = tokio::net::TcpStream::connect(&address).await {
                                relay(client, server, generation).await;
                            }
                        }
                        Upstream::Unix(socket) => {
                            if let Ok(server) = tokio::net::UnixStream::connect(&socket).await {
                                relay(client, server, generation).await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            url: url.into(),
            state,
        }
    }

    /// Kills every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.state
            .cut
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.state.generation.send_modify(|g| *g += 1);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.state
            .cut
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Where a [`DbProxy`] sends what it receives.
#[derive(Debug, Clone)]
enum Upstream {
    Tcp(String),
    /// A private cluster's socket: its URL's host is the socket's directory, percent-encoded.
    Unix(std::path::PathBuf),
}

impl Upstream {
    fn of(url: &Url) -> Self {
        let host = url.host_str().unwrap();
        let port = url.port().unwrap_or(5432);
        let decoded = percent_encoding::percent_decode_str(host).decode_utf8_lossy();
        if decoded.starts_with('/') {
            Self::Unix(Path::new(decoded.as_ref()).join(format!(".s.PGSQL.{port}")))
        } else {
            Self::Tcp(format!("{host}:{port}"))
        }
    }
}

/// Copies both ways between `client` and `server` until either closes or the proxy is cut.
async fn relay(
    mut client: tokio::net::TcpStream,
    mut server: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    mut generation: tokio::sync::watch::Receiver<u64>,
) {
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = generation.changed() => {} // cut: both sockets close
    }
}

impl TestDb {
    /// Ends every server connection to this database, as an operator's `pg_terminate_backend`
    /// would; new connections are still accepted. Returns how many were ended.
    pub async fn terminate_backends(&self) -> usize {
        #[derive(QueryableByName)]
        struct Terminated {
            #[diesel(sql_type = diesel::sql_types::Int8)]
            n: i64,
        }
        let mut conn = admin_connection().await;
        let terminated: Terminated = diesel::sql_query(format!(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            self.name
        ))
        .get_result(&mut conn)
        .await
        .unwrap();
        usize::try_from(terminated.n).unwrap_or(0)
    }
}

/// The settings every test's server starts from: the test's database `database_url`, the stub
/// model at `llm_base_url` (`…/v1`), and a rate limit no test reaches by accident. The server
/// tests (`TestApp`) and the end-to-end stack (`Stack`) both build on it, each changing what
/// its tests are about.
pub fn test_settings(database_url: &str, llm_base_url: &str) -> crate::Settings {
    crate::Settings {
        database_url: Some(database_url.to_owned()),
        llm_base_url: llm_base_url.parse().expect("a stub model's URL"),
        rate_limit_per_minute: 10_000,
        ..crate::Settings::default()
    }
}

pub use anyreply_core::testing::{EVENTUALLY_DEADLINE, eventually};

/// Starts the real server on a free loopback port; returns its base URL and its task.
pub async fn spawn_server(settings: crate::Settings) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = crate::App::new(settings).unwrap();
    let server = tokio::spawn(async move {
        crate::serve(app, listener, std::future::pending())
            .await
            .unwrap();
    });
    (base, server)
}

/// Prompt tokens every [`chat_completion`] reports.
pub const PROMPT_TOKENS: u32 = 1_000;
/// Completion tokens every [`chat_completion`] reports.
pub const COMPLETION_TOKENS: u32 = 500;

/// A `wiremock` model that replies `echo: <last user message>` after `delay`.
#[derive(Debug)]
pub struct EchoModel {
    pub delay: std::time::Duration,
}

impl wiremock::Respond for EchoModel {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        let last_user = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = format!("echo: {last_user}");
        let answer = wiremock::ResponseTemplate::new(200).set_delay(self.delay);
        if body["stream"] == true {
            answer.set_body_raw(chat_completion_stream(&text), "text/event-stream")
        } else {
            answer.set_body_json(chat_completion(&text))
        }
    }
}

/// [`chat_completion`] as OpenAI streams it: a chunk per word, the usage, `[DONE]`.
pub fn chat_completion_stream(content: &str) -> String {
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        serde_json::json!({
            "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1_764_000_000,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }]
        })
    };
    let mut chunks: Vec<serde_json::Value> = content
        .split_inclusive(' ')
        .map(|word| chunk(serde_json::json!({ "content": word }), None))
        .collect();
    chunks.push(chunk(serde_json::json!({}), Some("stop")));
    let mut usage = chat_completion(content);
    usage["object"] = "chat.completion.chunk".into();
    usage["choices"] = serde_json::json!([]);
    chunks.push(usage);
    let mut body: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    body.push_str("data: [DONE]\n\n");
    body
}

/// A Chat Completions response as OpenAI sends it, with fixed usage.
pub fn chat_completion(content: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_764_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content, "refusal": null },
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS
        }
    })
}
