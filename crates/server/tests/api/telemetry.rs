//! Request ids, the per-request log line and `/metrics`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::util::TestApp;

async fn get_raw(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_errors_repeat_it() {
    let app = TestApp::spawn().await;

    let fresh = get_raw(&format!("{}/health", app.base), &[]).await;
    assert!(uuid::Uuid::parse_str(&request_id(&fresh)).is_ok());

    let kept = get_raw(
        &format!("{}/health", app.base),
        &[("x-request-id", "trace-42:a.b_c")],
    )
    .await;
    assert_eq!(request_id(&kept), "trace-42:a.b_c");

    // Ids that could forge or bloat log lines are replaced.
    for insane in ["has space", "quote\"d", &"x".repeat(129)] {
        let replaced = get_raw(&format!("{}/health", app.base), &[("x-request-id", insane)]).await;
        let id = request_id(&replaced);
        assert_ne!(id, insane);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }

    // Errors, from a handler, the router's fallback and the key check, name it in the body.
    for (path, status) in [
        ("/api/user/me", StatusCode::UNAUTHORIZED),
        ("/no/such/route", StatusCode::NOT_FOUND),
    ] {
        let response = get_raw(&format!("{}{path}", app.base), &[("x-request-id", "err-1")]).await;
        assert_eq!(response.status(), status);
        assert_eq!(request_id(&response), "err-1");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["request_id"], "err-1", "{body}");
    }
    let account = app.db_account("10").await;
    let (status, body, headers) = app
        .post(&account.key, "/api/ai/generate-reply", &json!({}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["request_id"],
        headers["x-request-id"].to_str().unwrap()
    );
}

#[tokio::test]
async fn metrics_count_requests_replies_tokens_and_the_pool() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let (status, _) = app.reply(&account.key, assistant, "+1555", "hi").await;
    assert_eq!(status, StatusCode::OK);

    let response = get_raw(&format!("{}/metrics", app.base), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let has = |needle: &str| {
        assert!(
            text.lines().any(|line| line.contains(needle)),
            "no line with {needle:?} in:\n{text}"
        )
    };
    // Labels are the route's pattern, and latencies are histograms (buckets), not summaries.
    has(
        r#"anyreply_http_request_duration_seconds_bucket{method="POST",route="/api/ai/generate-reply",status="200",le="0.005"}"#,
    );
    has(
        r#"anyreply_http_request_duration_seconds_count{method="POST",route="/api/user/assistant",status="201"}"#,
    );
    has(r#"anyreply_replies_total{outcome="replied"}"#);
    has(r#"anyreply_reply_phase_duration_seconds_bucket{phase="model""#);
    has(r#"anyreply_reply_phase_duration_seconds_bucket{phase="database""#);
    has(r#"anyreply_model_tokens_total{provider="openai",model="gpt-4o-mini",kind="prompt"}"#);
    has(r#"anyreply_model_cost_subunits_total{provider="openai",model="gpt-4o-mini"}"#);
    has(r#"anyreply_db_pool_connections{state="idle"}"#);
    has("anyreply_db_pool_max_connections 10");
    has("anyreply_db_pool_waiting");
    has("anyreply_replies_in_flight");
    has("# TYPE anyreply_http_request_duration_seconds histogram");
    assert!(!text.contains("quantile="), "a summary slipped in");
}

#[tokio::test]
async fn the_metrics_token_guards_the_endpoint() {
    let app = TestApp::spawn_with(|s| s.metrics_token = Some("scrape-me".into())).await;
    let url = format!("{}/metrics", app.base);
    for refused in [
        vec![],
        vec![("authorization", "Bearer wrong")],
        vec![("authorization", "scrape-me")],
    ] {
        let response = get_raw(&url, &refused).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error_code"], "UNAUTHORIZED");
    }
    let response = get_raw(&url, &[("authorization", "Bearer scrape-me")]).await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// The real binary on `app`'s database, logging JSON lines at `info` into a channel, with `env`
/// set; its base URL.
struct LoggingServer {
    base: String,
    process: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl LoggingServer {
    async fn start(app: &TestApp, env: &[(&str, String)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut process = Command::new(env!("CARGO_BIN_EXE_anyreply-server"))
            .env("ANYREPLY_DATABASE_URL", app.db.url())
            .env("ANYREPLY_LISTEN", format!("127.0.0.1:{port}"))
            .env("ANYREPLY_LLM_BASE_URL", format!("{}/v1", app.llm.uri()))
            .env("ANYREPLY_LOG_FORMAT", "json")
            .env("ANYREPLY_LOG", "info")
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (sender, lines) = std::sync::mpsc::channel::<String>();
        let stderr = process.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let ready = async {
            while http.get(format!("{base}/health")).send().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .expect("the server starts");
        Self {
            base,
            process,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first log line from now on that `wanted` accepts, parsed.
    fn until(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no such log line in:\n{}", self.seen.join("\n")));
            self.seen.push(line.clone());
            let entry: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if wanted(&entry) {
                return entry;
            }
        }
    }
}

impl Drop for LoggingServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The real binary, logging JSON: one `info` line per request with what an operator needs to
/// find it, and never the key or the customer's words.
#[tokio::test]
async fn one_log_line_per_request_without_secrets() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let mut server = LoggingServer::start(&app, &[]).await;
    let base = server.base.clone();
    let http = reqwest::Client::new();

    let secret_words = "my card number is 4111";
    let response = http
        .post(format!("{base}/api/ai/generate-reply"))
        .bearer_auth(&account.key)
        .header("x-request-id", "log-test-1")
        .json(&json!({ "assistant_id": assistant, "customer_identifier": "+1555", "message": secret_words }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let answered = server.until(|entry| {
        entry["fields"]["message"] == "answered" && entry["span"]["request_id"] == "log-test-1"
    });
    assert_eq!(answered["level"], "INFO");
    assert_eq!(answered["fields"]["status"], 200);
    assert!(answered["fields"]["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(answered["span"]["method"], "POST");
    assert_eq!(answered["span"]["route"], "/api/ai/generate-reply");
    assert_eq!(answered["span"]["account_id"], account.id);
    let all = server.seen.join("\n");
    assert!(
        !all.contains(&account.key[..12]),
        "a key in the log:\n{all}"
    );
    assert!(
        !all.contains(secret_words),
        "message text in the log:\n{all}"
    );
}

/// The start-up line names the provider's URL and the default model; a model that cannot be
/// reached is logged with its URL and why.
#[tokio::test]
async fn the_model_in_use_and_why_it_failed_are_logged() {
    let app = TestApp::spawn().await;
    let account = app.db_account("10").await;
    let assistant = app.assistant(&account, &json!({ "name": "A" })).await;
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let model_url = format!("http://127.0.0.1:{closed_port}/v1");
    let mut server = LoggingServer::start(
        &app,
        &[
            ("ANYREPLY_LLM_BASE_URL", model_url.clone()),
            ("ANYREPLY_LLM_DEFAULT_MODEL", "llama3.2".to_owned()),
            ("ANYREPLY_LLM_RETRIES", "0".to_owned()),
        ],
    )
    .await;
    let serving = server.until(|entry| entry["fields"]["message"] == "serving");
    assert_eq!(serving["fields"]["llm_base_url"], format!("{model_url}"));
    assert_eq!(serving["fields"]["llm_default_model"], "llama3.2");

    let response = reqwest::Client::new()
        .post(format!("{}/api/ai/generate-reply", server.base))
        .bearer_auth(&account.key)
        .json(
            &json!({ "assistant_id": assistant, "customer_identifier": "+1555", "message": "Hi" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let failed = server
        .until(|entry| entry["fields"]["message"] == "the model provider could not be reached");
    assert_eq!(failed["level"], "WARN");
    assert_eq!(
        failed["fields"]["url"],
        format!("{model_url}/chat/completions")
    );
    assert_eq!(failed["fields"]["cause"], "connection refused");
}

/// Log lines, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    /// A subscriber of everything at `info` and above, written here.
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish()
    }

    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// A 500, from the API or the console, logs its cause at error level in a line that names the
/// request, and the request's own line is at error level too.
#[tokio::test]
async fn a_fault_is_logged_at_error_level_with_its_cause_and_request_id() {
    // The server's tasks run on this test's thread (a current-thread runtime), so a
    // subscriber of this thread sees their lines.
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(captured.subscriber());
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;

    // A console session, before the fault.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client
        .get(format!("{}/console/sign-in", app.base))
        .send()
        .await
        .unwrap();
    let sign_in_cookie = page.headers()["set-cookie"].to_str().unwrap();
    let sign_in_cookie = sign_in_cookie.split(';').next().unwrap().to_owned();
    let csrf = sign_in_cookie.split_once('=').unwrap().1.to_owned();
    let signed_in = client
        .post(format!("{}/console/sign-in", app.base))
        .header("cookie", &sign_in_cookie)
        .form(&[("api_key", account.key.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let session = signed_in.headers()["set-cookie"].to_str().unwrap();
    let session = session.split(';').next().unwrap().to_owned();

    // The fault: the tools' table is gone from under the server.
    {
        use diesel_async::RunQueryDsl;
        let mut conn = app.db.connect().await;
        diesel::sql_query("ALTER TABLE tools RENAME TO tools_gone")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let api = get_raw(
        &format!("{}/api/user/tools", app.base),
        &[
            ("authorization", &format!("Bearer {}", account.key)),
            ("x-request-id", "fault-api-1"),
        ],
    )
    .await;
    assert_eq!(api.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = api.json().await.unwrap();
    assert_eq!(body["request_id"], "fault-api-1");
    let console = client
        .get(format!("{}/console/tools", app.base))
        .header("cookie", &session)
        .header("x-request-id", "fault-console-1")
        .send()
        .await
        .unwrap();
    assert_eq!(console.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        console
            .text()
            .await
            .unwrap()
            .contains("Something went wrong")
    );

    let lines = captured.lines();
    for id in ["fault-api-1", "fault-console-1"] {
        let of_request: Vec<&String> = lines
            .iter()
            .filter(|line| {
                line.contains(&format!("request_id=\"{id}\""))
                    || line.contains(&format!("request_id={id}"))
            })
            .collect();
        assert!(
            of_request.iter().any(|line| line.contains("ERROR")
                && line.contains("database error")
                && line.contains("relation \"tools\" does not exist")),
            "no error line with the cause for {id}:\n{}",
            lines.join("\n")
        );
        assert!(
            of_request.iter().any(|line| line.contains("ERROR")
                && line.contains("answered")
                && line.contains("status=500")),
            "the request's line is not an error for {id}:\n{}",
            lines.join("\n")
        );
    }
}

/// A handler's panic answers `INTERNAL_ERROR` with the request's id, and logs the panic's
/// message at error level in the request's span.
#[tokio::test]
async fn a_panic_is_logged_at_error_level_with_its_message_and_request_id() {
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(captured.subscriber());
    let router = axum::Router::new()
        .route(
            "/boom",
            axum::routing::get(|| async {
                let empty: Vec<u8> = Vec::new();
                // A bug's panic, with a message of its own.
                #[allow(clippy::indexing_slicing)]
                empty[usize::from(empty.is_empty())].to_string()
            }),
        )
        .layer(anyreply_server::router::catch_panics())
        .layer(axum::middleware::from_fn(
            anyreply_server::telemetry::request::observe,
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let response = get_raw(&format!("{base}/boom"), &[("x-request-id", "panic-1")]).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_code"], "INTERNAL_ERROR", "{body}");
    assert_eq!(body["request_id"], "panic-1", "{body}");
    server.abort();

    let lines = captured.lines();
    assert!(
        lines.iter().any(|line| line.contains("ERROR")
            && line.contains("request_id=\"panic-1\"")
            && line.contains("a handler panicked")
            && line.contains("index out of bounds")),
        "no error line with the panic's message:\n{}",
        lines.join("\n")
    );
}
