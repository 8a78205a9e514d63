//! `TestApp`: the real server on a free port, over a fresh database, with a `wiremock`
//! model provider that answers in the Chat Completions format.

use std::time::Duration;

use anyreply_core::Money;
use anyreply_server::config::Settings;
use anyreply_server::models::{account, api_key};
use anyreply_server::pricing::{ModelPrice, Pricing};
pub use anyreply_server::testing::chat_completion;
use anyreply_server::testing::{EchoModel, TestDb, spawn_server, test_settings};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Test prices: 1 per million input tokens, 2 per million output tokens, no flat fee.
/// A reply with the fixed usage above costs 0.002; its reservation is 0.01.
pub fn test_pricing() -> Pricing {
    Pricing {
        per_reply: Money::ZERO,
        default_price: ModelPrice {
            input_per_mtok: money("1"),
            output_per_mtok: money("2"),
        },
        per_model: Default::default(),
    }
}

pub fn money(text: &str) -> Money {
    text.parse().unwrap()
}

pub struct TestApp {
    pub db: TestDb,
    pub llm: MockServer,
    pub settings: Settings,
    pub base: String,
    pub http: reqwest::Client,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

/// An account with a key.
pub struct TestAccount {
    pub id: i64,
    pub key: String,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Like [`Self::spawn`], with settings changed by `configure`, and an echo model that
    /// answers after `configure`'s model delay (see [`Self::spawn_with_model_delay`]).
    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> Self {
        Self::spawn_with_model_delay(Duration::ZERO, configure).await
    }

    pub async fn spawn_with_model_delay(
        delay: Duration,
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("ANYREPLY_LOG")
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let db = TestDb::new().await;
        let llm = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(EchoModel { delay })
            .with_priority(10)
            .mount(&llm)
            .await;
        let mut settings = Settings {
            llm_timeout: Duration::from_secs(10),
            pricing: test_pricing(),
            llm_max_output_tokens: 1_000,
            llm_retry_backoff: Duration::from_millis(10),
            context_token_budget: 8_000,
            ..test_settings(db.url(), &format!("{}/v1", llm.uri()))
        };
        configure(&mut settings);
        let mut app = Self {
            db,
            llm,
            settings: settings.clone(),
            base: String::new(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            servers: Vec::new(),
        };
        app.base = app.start_server(settings).await;
        app
    }

    /// Starts another server process's worth of state (own pool, own tasks) on the same
    /// database and model; returns its base URL.
    pub async fn start_server(&mut self, settings: Settings) -> String {
        let (base, server) = spawn_server(settings).await;
        self.servers.push(server);
        base
    }

    /// Stops every server process started so far, with its background tasks, as a restart would.
    pub async fn stop_servers(&mut self) {
        for server in self.servers.drain(..) {
            server.abort();
            let _ = server.await;
        }
    }

    /// An account with `balance` and an API key. Like every fixture named `db_*`, it writes
    /// its rows straight into the database, past the API and its checks.
    pub async fn db_account(&self, balance: &str) -> TestAccount {
        let mut conn = self.db.connect().await;
        let id = account::create(&mut conn, "Acme", Some("ops@acme.test"), money(balance))
            .await
            .unwrap();
        let key = api_key::create(&mut conn, id).await.unwrap().key;
        TestAccount { id, key }
    }

    pub async fn balance(&self, account: &TestAccount) -> Money {
        let mut conn = self.db.connect().await;
        account::find(&mut conn, account.id)
            .await
            .unwrap()
            .unwrap()
            .into_me()
            .total_balance
    }

    /// Creates an assistant from `body` and returns its id.
    /// An assistant of `account` with one tool, `book` (a `slot`), that POSTs to
    /// `<crm>/book`; its id.
    pub async fn booking_assistant(&self, account: &TestAccount, crm: &MockServer) -> i64 {
        let (status, tool, _) = self
            .post(&account.key, "/api/user/tools", &json!({
                "name": "book", "description": "Books a slot", "endpoint": format!("{}/book", crm.uri()),
                "method": "POST", "schema": [{ "name": "slot", "type": "string", "description": "when" }]
            }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{tool}");
        self.assistant(
            account,
            &json!({ "name": "A", "tool_ids": [tool["data"]["id"]] }),
        )
        .await
    }

    pub async fn assistant(&self, account: &TestAccount, body: &Value) -> i64 {
        let (status, body, _) = self.post(&account.key, "/api/user/assistant", body).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["data"]["id"].as_i64().unwrap()
    }

    pub async fn request(
        &self,
        base: &str,
        method: reqwest::Method,
        key: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value, HeaderMap) {
        let mut request = self
            .http
            .request(method, format!("{base}{path}"))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text:?}"));
        (status, body, headers)
    }

    pub async fn post(
        &self,
        key: &str,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value, HeaderMap) {
        self.request(&self.base, reqwest::Method::POST, key, path, Some(body))
            .await
    }

    pub async fn put(&self, key: &str, path: &str, body: &Value) -> (StatusCode, Value, HeaderMap) {
        self.request(&self.base, reqwest::Method::PUT, key, path, Some(body))
            .await
    }

    pub async fn get(&self, key: &str, path: &str) -> (StatusCode, Value, HeaderMap) {
        self.request(&self.base, reqwest::Method::GET, key, path, None)
            .await
    }

    /// Sends a customer message and returns status and body.
    pub async fn reply(
        &self,
        key: &str,
        assistant_id: i64,
        customer: &str,
        message: &str,
    ) -> (StatusCode, Value) {
        let body = json!({ "assistant_id": assistant_id, "customer_identifier": customer, "message": message });
        let (status, body, _) = self.post(key, "/api/ai/generate-reply", &body).await;
        (status, body)
    }

    /// The bodies of the replies' requests the model provider received, in arrival order (the
    /// conversations' summaries asked for past the prompt budget left out: see
    /// [`Self::summary_requests`]).
    pub async fn llm_requests(&self) -> Vec<Value> {
        let mut requests = self.all_llm_requests().await;
        requests.retain(|body| !is_summary_request(body));
        requests
    }

    /// The bodies of the summary requests the model provider received, in arrival order.
    pub async fn summary_requests(&self) -> Vec<Value> {
        let mut requests = self.all_llm_requests().await;
        requests.retain(is_summary_request);
        requests
    }

    async fn all_llm_requests(&self) -> Vec<Value> {
        self.llm
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }

    /// Answers the summary requests with `script`, and the replies' as before.
    pub async fn script_summaries(
        &self,
        script: impl Fn(&wiremock::Request) -> ResponseTemplate + Send + Sync + 'static,
    ) {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .and(SummaryRequest)
            .respond_with(script)
            .with_priority(1)
            .mount(&self.llm)
            .await;
    }

    /// Answers every model request with `script`, instead of the echo model.
    pub async fn script_model(
        &self,
        script: impl Fn(&wiremock::Request) -> ResponseTemplate + Send + Sync + 'static,
    ) {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(script)
            .with_priority(1)
            .mount(&self.llm)
            .await;
    }

    /// Mounts a model answer that takes precedence over the echo model.
    pub async fn model_answers(&self, response: ResponseTemplate) {
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(response)
            .with_priority(1)
            .mount(&self.llm)
            .await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

/// Asserts the error envelope: status, code, and both Famulor spellings.
pub fn assert_error(status: StatusCode, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status.as_u16(), expected_status, "{body}");
    assert_eq!(body["error_code"], code, "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(body["status"], false);
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body["message"], body["error"]);
}

/// A Chat Completions answer asking for function calls: `(id, name, arguments)`.
pub fn openai_tool_calls(calls: &[(&str, &str, Value)]) -> Value {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(id, name, arguments)| {
            json!({ "id": id, "type": "function", "function": { "name": name, "arguments": arguments.to_string() } })
        })
        .collect();
    json!({
        "id": "chatcmpl-tools",
        "object": "chat.completion",
        "created": 1_764_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": null, "tool_calls": calls },
            "finish_reason": "tool_calls"
        }],
        "usage": { "prompt_tokens": 1_000, "completion_tokens": 500, "total_tokens": 1_500 }
    })
}

/// An Anthropic Messages answer made of `content` blocks.
pub fn anthropic_message(content: Value, stop_reason: &str) -> Value {
    json!({
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": { "input_tokens": 2_000, "output_tokens": 100 }
    })
}

/// The body of a request a mock server received.
pub fn body_of(request: &wiremock::Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

impl TestApp {
    /// POSTs `body` with an `Idempotency-Key`.
    pub async fn post_keyed(
        &self,
        key: &str,
        idempotency_key: &str,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value, HeaderMap) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .header("idempotency-key", idempotency_key)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        (status, response.json().await.unwrap(), headers)
    }

    /// The texts of a conversation's history, oldest first.
    pub async fn history_contents(
        &self,
        key: &str,
        conversation: impl std::fmt::Display,
    ) -> Vec<String> {
        let (status, history, _) = self
            .get(key, &format!("/api/conversations/{conversation}"))
            .await;
        assert_eq!(status, 200, "{history}");
        history["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Runs one SQL statement on this test's database (to set up many rows at once).
    async fn execute_sql(&self, statement: &str) {
        use diesel_async::RunQueryDsl;
        let mut conn = self.db.connect().await;
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .unwrap();
    }

    /// Inserts `n` tools of the account straight into the database (names `tool_b`, `tool_c`, …:
    /// the digits of 1, 2, … spelled as letters, so the names pass the API's rules).
    pub async fn db_seed_tools(&self, account: &TestAccount, n: u32) {
        self.execute_sql(&format!(
            "INSERT INTO tools (account_id, name, description, endpoint, method, timeout_secs)
             SELECT {}, 'tool_' || translate(i::text, '0123456789', 'abcdefghij'), 'Seeded',
                    'https://crm.example.com/seeded', 'GET', 5
             FROM generate_series(1, {n}) AS i",
            account.id
        ))
        .await;
    }

    /// Inserts `n` assistants of the account straight into the database.
    pub async fn db_seed_assistants(&self, account: &TestAccount, n: u32) {
        self.execute_sql(&format!(
            "INSERT INTO assistants (account_id, name, llm_model)
             SELECT {}, 'Seeded ' || i, 'gpt-4o-mini' FROM generate_series(1, {n}) AS i",
            account.id
        ))
        .await;
    }

    /// The ids of the account's rows in `table`, in id order: the truth a list is checked by.
    pub async fn ids_of(&self, table: &str, account: &TestAccount) -> Vec<i64> {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Id {
            #[diesel(sql_type = diesel::sql_types::Int8)]
            id: i64,
        }
        let mut conn = self.db.connect().await;
        diesel::sql_query(format!(
            "SELECT id FROM {table} WHERE account_id = {} ORDER BY id",
            account.id
        ))
        .load::<Id>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.id)
        .collect()
    }

    /// Follows `next_cursor` through a list from its first page (`query` added to every
    /// request); returns the ids in the order served and each page's size.
    pub async fn walk_pages(&self, key: &str, path: &str, query: &str) -> (Vec<i64>, Vec<usize>) {
        let (mut ids, mut sizes) = (Vec::new(), Vec::new());
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{path}?{query}");
            if let Some(cursor) = &cursor {
                url.push_str(&format!("&cursor={cursor}"));
            }
            let (status, page, _) = self.get(key, &url).await;
            assert_eq!(status, 200, "{page}");
            let data = page["data"].as_array().unwrap();
            sizes.push(data.len());
            ids.extend(data.iter().map(|row| row["id"].as_i64().unwrap()));
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => {
                    assert!(page["next_cursor"].is_null(), "{page}");
                    return (ids, sizes);
                }
            }
            assert!(sizes.len() <= 1_000, "the pages never end");
        }
    }

    /// Rows of `table` in this test's database.
    pub async fn count(&self, table: &str) -> i64 {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::Int8)]
            n: i64,
        }
        let mut conn = self.db.connect().await;
        diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
            .get_result::<Count>(&mut conn)
            .await
            .unwrap()
            .n
    }

    /// Appends `count` messages ("history line 1" …, customer and assistant in turn) to a
    /// conversation's history, as if that many had been exchanged.
    pub async fn db_seed_history(&self, conversation: uuid::Uuid, count: i64) {
        use diesel_async::RunQueryDsl;
        let mut conn = self.db.connect().await;
        diesel::sql_query(
            "WITH start AS (SELECT next_seq FROM conversations WHERE id = $1),
             seeded AS (
                 INSERT INTO messages (id, conversation_id, turn_id, seq, role, content)
                 SELECT id, $1,
                        CASE WHEN n % 2 = 1 THEN id ELSE id - 1 END,
                        start.next_seq + n - 1,
                        CASE WHEN n % 2 = 1 THEN 'user' ELSE 'assistant' END,
                        'history line ' || n
                 FROM start, (SELECT n, nextval('messages_id_seq') AS id FROM generate_series(1, $2) AS n) AS rows)
             UPDATE conversations SET next_seq = next_seq + $2, message_count = message_count + $2
             WHERE id = $1",
        )
        .bind::<diesel::sql_types::Uuid, _>(conversation)
        .bind::<diesel::sql_types::Int8, _>(count)
        .execute(&mut conn)
        .await
        .unwrap();
    }

    /// Returns once the model has received `count` requests.
    pub async fn until_model_requests(&self, count: usize) {
        anyreply_server::testing::eventually(&format!("{count} model requests"), || async {
            self.llm_requests().await.len() >= count
        })
        .await;
    }

    /// Makes every reply lease and idempotency claim run out now, as if their process had
    /// died a lease ago.
    pub async fn db_expire_leases(&self) {
        use diesel_async::RunQueryDsl;
        let mut conn = self.db.connect().await;
        for statement in [
            "UPDATE pending_replies SET lease_until = now() - interval '1 second'",
            "UPDATE idempotency_keys SET locked_until = now() - interval '1 second' WHERE response_status IS NULL",
        ] {
            diesel::sql_query(statement)
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }

    /// POSTs every body at once, alternating between the server processes at `bases`; asserts
    /// that exactly one was created and every other refused with `LIMIT_EXCEEDED` and
    /// `message`. Returns the created one's answer.
    pub async fn race_past_a_limit(
        &self,
        key: &str,
        bases: &[String],
        path: &str,
        bodies: Vec<Value>,
        message: &str,
    ) -> Value {
        let answers = futures::future::join_all(bodies.iter().enumerate().map(|(n, body)| {
            self.request(
                &bases[n % bases.len()],
                reqwest::Method::POST,
                key,
                path,
                Some(body),
            )
        }))
        .await;
        let created: Vec<&Value> = answers
            .iter()
            .filter(|(status, _, _)| *status == 201)
            .map(|(_, body, _)| body)
            .collect();
        assert_eq!(created.len(), 1, "{answers:?}");
        for (status, body, _) in answers.iter().filter(|(status, _, _)| *status != 201) {
            assert_error(*status, body, 422, "LIMIT_EXCEEDED");
            assert_eq!(body["message"], message);
        }
        created[0].clone()
    }
}

/// Whether a model request (OpenAI's or Anthropic's body) asks for a conversation's summary.
pub fn is_summary_request(body: &Value) -> bool {
    let system = body["system"]
        .as_str()
        .or_else(|| body["messages"][0]["content"].as_str())
        .unwrap_or_default();
    system.starts_with(anyreply_server::reply::memory::INSTRUCTIONS)
}

/// Matches the summary requests (see [`is_summary_request`]).
pub struct SummaryRequest;

impl wiremock::Match for SummaryRequest {
    fn matches(&self, request: &wiremock::Request) -> bool {
        serde_json::from_slice(&request.body).is_ok_and(|body: Value| is_summary_request(&body))
    }
}
