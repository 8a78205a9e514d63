//! The `anyreply-server` binary with `ANYREPLY_DATABASE_URL` unset: its own PostgreSQL cluster
//! in `ANYREPLY_DATA_DIR`, from the binaries installed on this machine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use anyreply_server::pg_cluster::PrivateCluster;
use anyreply_server::testing::chat_completion;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A data directory of its own, removed afterwards (its cluster stopped first, should a
/// failed test have left it running).
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> Self {
        // Under the temp dir: short enough for the socket's path, and open to the postgres
        // user when we are root.
        let dir =
            std::env::temp_dir().join(format!("anyreply-pg-{}", uuid::Uuid::new_v4().simple()));
        Self(dir)
    }

    fn pid_file(&self) -> PathBuf {
        self.0.join("postgres").join("postmaster.pid")
    }

    /// The server binary, told nothing but this data directory (none of our `ANYREPLY_*`).
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_anyreply-server"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ANYREPLY_") {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .env("ANYREPLY_DATA_DIR", &self.0)
            .env("ANYREPLY_LOG", "info");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    async fn connect(&self) -> AsyncPgConnection {
        let url = PrivateCluster::new(Some(self.0.clone()), None)
            .unwrap()
            .url("anyreply");
        AsyncPgConnection::establish(&url).await.unwrap()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if let Some(pid) = postmaster_pid(&self.pid_file()) {
            let _ = Command::new("kill")
                .args(["-QUIT", &pid.to_string()])
                .status();
            wait_for("the postmaster to stop", || !is_alive(pid));
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn postmaster_pid(pid_file: &Path) -> Option<u32> {
    std::fs::read_to_string(pid_file)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn is_alive(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Polls `done` for at most a minute.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(base: &str, server: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = reqwest::get(format!("{base}/ready")).await {
            assert_eq!(response.status(), 200);
            return;
        }
        assert!(
            server.try_wait().unwrap().is_none(),
            "the server exited before it was ready"
        );
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = diesel::sql_types::Text)]
    listen_addresses: String,
}

#[tokio::test]
async fn serve_starts_a_private_cluster_the_cli_shares_and_stops_it_on_sigterm() {
    let data = DataDir::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = data
        .command(&[])
        .env("ANYREPLY_LISTEN", format!("127.0.0.1:{port}"))
        .env("ANYREPLY_LOG", "warn")
        .spawn()
        .unwrap();
    wait_ready(&base, &mut server).await;

    // Only the socket: no TCP address, written once and in force.
    let conf = std::fs::read_to_string(data.0.join("postgres/postgresql.conf")).unwrap();
    assert!(conf.contains("listen_addresses = ''"), "{conf}");
    let mut conn = data.connect().await;
    let shown: Setting = diesel::sql_query("SHOW listen_addresses")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(shown.listen_addresses, "");
    drop(conn);

    // The CLI reaches the same cluster while the server runs, and leaves it running.
    let created = data.run(&["account", "create", "--name", "Acme", "--balance", "1"]);
    assert!(created.status.success(), "{}", stderr(&created));
    let created: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let me = reqwest::Client::new()
        .get(format!("{base}/api/user/me"))
        .bearer_auth(created["api_key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);

    let postmaster = postmaster_pid(&data.pid_file()).unwrap();
    let terminated = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    wait_for("the server to exit", || {
        server.try_wait().unwrap().is_some()
    });
    assert!(!data.pid_file().exists(), "the cluster still runs");
    // pg_ctl stop returns once the pid file is gone, a moment before the process is.
    wait_for("the postmaster to exit", || !is_alive(postmaster));

    // A second start finds the cluster initialised.
    let again = data.run(&["migrate"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        !stderr(&again).contains("initialising"),
        "{}",
        stderr(&again)
    );
    assert!(
        !data.pid_file().exists(),
        "migrate left the cluster running"
    );
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// How many connections listen for turns (the server's [`Wakeups`] listener), or `None` while
/// the cluster does not answer.
///
/// [`Wakeups`]: anyreply_server::engine_state::Wakeups
async fn turn_listeners(data: &DataDir) -> Option<i64> {
    let url = PrivateCluster::new(Some(data.0.clone()), None)
        .unwrap()
        .url("anyreply");
    let mut conn = AsyncPgConnection::establish(&url).await.ok()?;
    let count: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE query = 'LISTEN anyreply_turns'",
    )
    .get_result(&mut conn)
    .await
    .ok()?;
    Some(count.n)
}

/// The accounts' balances with the refunds their dues still owe, in hundred-millionths: read
/// in one statement, so in one snapshot. (Read apart, the server's own payment of a due can
/// fall between the two reads, and the refund be counted in neither.)
async fn balances_and_refunds_owed(data: &DataDir) -> i64 {
    let url = PrivateCluster::new(Some(data.0.clone()), None)
        .unwrap()
        .url("anyreply");
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let owed: Count = diesel::sql_query(
        "SELECT ((SELECT coalesce(sum(balance), 0) FROM accounts)
               + (SELECT coalesce(sum(refund), 0) FROM settlements_due))::int8 AS n",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    owed.n
}

/// An amount of the API's JSON in hundred-millionths.
fn money(amount: &Value) -> i64 {
    // Balances here are near 10: printed in full, not in exponent notation.
    let amount: anyreply_core::Money = amount.to_string().parse().unwrap();
    amount.subunits()
}

/// Waits, for at most `within` of `since`, until the server listens for turns again.
async fn wait_for_turn_listener(data: &DataDir, since: Instant, within: Duration) {
    while turn_listeners(data).await != Some(1) {
        assert!(
            since.elapsed() < within,
            "no connection listens for turns after {:?}",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A server on the private cluster, whose model repeats what it was told last.
struct Served {
    // Dropped first: the server stops the cluster before the data directory is removed.
    server: Process,
    data: DataDir,
    base: String,
    http: reqwest::Client,
    key: String,
    model: MockServer,
    receiver: MockServer,
}

/// A server process, stopped with SIGTERM when dropped.
struct Process {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Process {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Served {
    async fn start() -> Self {
        let data = DataDir::new();
        let model = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/chat/completions"))
            .respond_with(|request: &wiremock::Request| {
                let body: Value = serde_json::from_slice(&request.body).unwrap();
                let last = body["messages"].as_array().unwrap().last().unwrap()["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                ResponseTemplate::new(200).set_body_json(chat_completion(&format!("heard: {last}")))
            })
            .mount(&model)
            .await;
        let receiver = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&receiver)
            .await;
        std::fs::create_dir_all(&data.0).unwrap();
        let server = spawn_server(&data, &model, "server.log").await;
        let created = data.run(&["account", "create", "--name", "Acme", "--balance", "10"]);
        assert!(created.status.success(), "{}", stderr(&created));
        let created: Value = serde_json::from_slice(&created.stdout).unwrap();
        Self {
            key: created["api_key"].as_str().unwrap().to_owned(),
            base: server.base.clone(),
            server,
            data,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            model,
            receiver,
        }
    }

    /// Another server process on the same cluster and model.
    async fn another(&self) -> Process {
        spawn_server(&self.data, &self.model, "another.log").await
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        Answer::of(response).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    fn log(&self) -> String {
        self.server.log()
    }
}

/// A server on `data`'s cluster, answered by `model`, logging to `log_name` in `data`; ready.
async fn spawn_server(data: &DataDir, model: &MockServer, log_name: &str) -> Process {
    let port = free_port();
    let log = data.0.join(log_name);
    let child = data
        .command(&[])
        .env("ANYREPLY_LISTEN", format!("127.0.0.1:{port}"))
        .env("ANYREPLY_LLM_BASE_URL", format!("{}/v1", model.uri()))
        .env("ANYREPLY_LLM_API_KEY", "sk-test")
        .env("ANYREPLY_OUTBOUND_ALLOWED_HOSTS", "127.0.0.1")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut process = Process {
        child,
        base: format!("http://127.0.0.1:{port}"),
        log,
    };
    wait_ready(&process.base, &mut process.child).await;
    process
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    body: String,
}

impl Answer {
    async fn of(response: reqwest::Response) -> Self {
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap();
        Self {
            status,
            retry_after,
            body,
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {self:?}"))
    }
}

/// The postmaster killed with SIGKILL (as the OOM killer does) while the server runs: the server
/// starts the cluster again, answering 503 with `Retry-After` meanwhile and never 500, serves
/// again within 15 seconds, and has lost nothing. Its background loops are back too: the
/// connection listening for turns, and the webhook worker.
#[tokio::test]
async fn a_killed_postmaster_is_started_again_and_nothing_is_lost() {
    let mut s = Served::start().await;
    let assistant = s
        .post("/api/user/assistant", &json!({ "name": "Support" }))
        .await
        .json()["data"]["id"]
        .as_i64()
        .unwrap();
    let webhook = s
        .post(
            "/api/user/webhooks",
            &json!({ "url": format!("{}/hook", s.receiver.uri()), "events": ["reply.created"] }),
        )
        .await;
    assert_eq!(webhook.status, 201, "{webhook:?}");
    let message = |text: &str, customer: &str| json!({ "assistant_id": assistant, "customer_identifier": customer, "message": text });
    let first = s
        .post(
            "/api/ai/generate-reply",
            &message("my order is late", "+4915"),
        )
        .await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.json()["reply"], "heard: my order is late");
    let conversation = first.json()["conversation_id"].as_str().unwrap().to_owned();
    let history_before = s.get(&format!("/api/conversations/{conversation}")).await;
    assert_eq!(history_before.status, 200);
    let balance_before = s.get("/api/user/me").await.json()["total_balance"].clone();
    assert!(balance_before.as_f64().unwrap() < 10.0, "{balance_before}");
    wait_for_turn_listener(&s.data, Instant::now(), Duration::from_secs(15)).await;

    let postmaster = postmaster_pid(&s.data.pid_file()).unwrap();
    let killed = Command::new("kill")
        .args(["-KILL", &postmaster.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let killed_at = Instant::now();

    // Each kind of route, with what it answers once the database is back: readiness, an API
    // read, a reply (to an assistant that does not exist, so that nothing is charged), a
    // console page (its session is looked up: a made-up one is sent to sign in).
    let mut unavailable = 0;
    loop {
        let answers = [
            (200, s.get("/ready").await),
            (200, s.get("/api/user/me").await),
            (
                404,
                s.post("/api/ai/generate-reply", &json!({
                    "assistant_id": assistant + 1_000, "customer_identifier": "+4916", "message": "anyone?"
                }))
                .await,
            ),
            (
                303,
                Answer::of(
                    s.http
                        .get(format!("{}/console/conversations", s.base))
                        .header("cookie", "anyreply_console=made-up")
                        .send()
                        .await
                        .unwrap(),
                )
                .await,
            ),
        ];
        let mut all_answered = true;
        for (up, answer) in &answers {
            match answer.status.as_u16() {
                status if status == *up => {}
                503 => {
                    unavailable += 1;
                    all_answered = false;
                    assert_eq!(answer.retry_after.as_deref(), Some("1"), "{answer:?}");
                    if !answer.body.starts_with('<') {
                        assert_eq!(answer.json()["error_code"], "SERVICE_UNAVAILABLE");
                    }
                }
                _ => panic!("answered {answer:?} while PostgreSQL was away\n{}", s.log()),
            }
        }
        // Backends that have not yet noticed their postmaster's death may still answer.
        let restarted = postmaster_pid(&s.data.pid_file())
            .is_some_and(|pid| pid != postmaster && is_alive(pid));
        if all_answered && restarted {
            break;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "not answering 15 s after the kill\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(unavailable > 0, "never saw the database away");
    eprintln!(
        "answering again {:?} after the kill; {unavailable} answers were 503",
        killed_at.elapsed()
    );
    let restarted = postmaster_pid(&s.data.pid_file()).unwrap();
    assert_ne!(restarted, postmaster);
    assert!(
        s.log().contains("starting it again"),
        "restarted by someone else?\n{}",
        s.log()
    );
    assert!(
        s.server.child.try_wait().unwrap().is_none(),
        "the server exited"
    );

    // Nothing lost: the conversation, its messages and the balance are as they were.
    let history_after = s.get(&format!("/api/conversations/{conversation}")).await;
    assert_eq!(history_after.status, 200, "{history_after:?}");
    assert_eq!(
        history_after.json()["history"],
        history_before.json()["history"]
    );
    // The refund of the last reply is paid in a commit that does not wait for the disk, which
    // the crash may have taken: its due, stored durably, still owes it (the sweep pays it).
    let owed_and_balance = balances_and_refunds_owed(&s.data).await;
    assert_eq!(
        owed_and_balance,
        money(&balance_before),
        "the balance with the dues' refunds ({owed_and_balance} hundred-millionths) is not the balance before, {balance_before}"
    );

    // The loops holding connections are back: the listener for turns (otherwise a queued
    // message would wait for the fallback check alone)...
    wait_for_turn_listener(&s.data, killed_at, Duration::from_secs(15)).await;
    // ...and a second reply in the conversation sees the first...
    let calls_before = s.model.received_requests().await.unwrap().len();
    let second = s
        .post(
            "/api/ai/generate-reply",
            &message("what did I say?", "+4915"),
        )
        .await;
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(second.json()["conversation_id"], conversation.as_str());
    let requests = s.model.received_requests().await.unwrap();
    assert_eq!(requests.len(), calls_before + 1);
    let sent: Value = serde_json::from_slice(&requests.last().unwrap().body).unwrap();
    let contents: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert!(
        contents.ends_with(&[
            "my order is late",
            "heard: my order is late",
            "what did I say?"
        ]),
        "{contents:?}"
    );
    let history = s
        .get(&format!("/api/conversations/{conversation}"))
        .await
        .json();
    assert_eq!(history["history"].as_array().unwrap().len(), 4, "{history}");
    assert!(s.get("/api/user/me").await.json()["total_balance"].as_f64() < balance_before.as_f64());

    // ...and the webhook worker delivers the replies of before and after.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let delivered: Vec<Value> = s
            .receiver
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|request| serde_json::from_slice(&request.body).unwrap())
            .collect();
        let replies: Vec<&str> = delivered
            .iter()
            .filter(|event| event["data"]["conversation_id"] == conversation.as_str())
            .filter_map(|event| event["data"]["message"]["content"].as_str())
            .collect();
        if replies.contains(&"heard: what did I say?") {
            assert!(replies.contains(&"heard: my order is late"), "{replies:?}");
            break;
        }
        assert!(Instant::now() < deadline, "delivered: {delivered:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two servers on one cluster both find its postmaster dead: one starts it again, under
/// `postgres.lock`, and the other finds it running; both serve again.
#[tokio::test]
async fn of_two_servers_one_starts_the_killed_cluster_again() {
    let s = Served::start().await;
    let mut other = s.another().await;
    let postmaster = postmaster_pid(&s.data.pid_file()).unwrap();
    let killed = Command::new("kill")
        .args(["-KILL", &postmaster.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let killed_at = Instant::now();
    let logs = || s.log() + &other.log();
    let within = |what: &str| {
        assert!(
            killed_at.elapsed() < Duration::from_secs(15),
            "{what} 15 s after the kill\n{}",
            logs()
        );
    };
    while !logs().contains("runs again") {
        within("not started again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for base in [&s.base, &other.base] {
        loop {
            let ready = s.http.get(format!("{base}/ready")).send().await.unwrap();
            match ready.status().as_u16() {
                200 => break,
                503 => within("not ready"),
                status => panic!("/ready answered {status}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let restarted = postmaster_pid(&s.data.pid_file()).unwrap();
    assert_ne!(restarted, postmaster);
    // Each supervisor has looked again since.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let logs = logs();
    assert_eq!(logs.matches("runs again").count(), 1, "{logs}");
    assert_eq!(postmaster_pid(&s.data.pid_file()), Some(restarted));
    assert!(is_alive(restarted));
    assert!(other.child.try_wait().unwrap().is_none(), "{logs}");
    assert_eq!(s.get("/api/user/me").await.status, 200);
}

#[tokio::test]
async fn a_stale_pid_file_is_removed() {
    let data = DataDir::new();
    let first = data.run(&["migrate"]);
    assert!(first.status.success(), "{}", stderr(&first));

    // As a postmaster killed with everything else (kill -9, a power cut) leaves it.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(
        data.pid_file(),
        format!(
            "{dead_pid}\n{}\n1764633600\n5432\n",
            data.0.join("postgres").display()
        ),
    )
    .unwrap();

    let after = data.run(&["account", "create", "--name", "Acme"]);
    assert!(after.status.success(), "{}", stderr(&after));
    assert!(stderr(&after).contains("stale"), "{}", stderr(&after));
}

#[test]
fn two_processes_starting_at_once_initialise_and_start_it_once() {
    let data = DataDir::new();
    let spawn = || {
        data.command(&["migrate"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let (first, second) = (
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    );
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(second.status.success(), "{}", stderr(&second));
    let said = stderr(&first) + &stderr(&second);
    assert_eq!(said.matches("initialising").count(), 1, "{said}");
    assert!(!data.pid_file().exists(), "the cluster was left running");
}

#[test]
fn without_binaries_one_line_says_how_to_install_them() {
    let data = DataDir::new();
    let output = data
        .command(&["migrate"])
        .env("ANYREPLY_PG_BIN", "/nonexistent")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = stderr(&output);
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    assert!(said.contains("apt-get install postgresql"), "{said}");
    assert!(!said.contains("panicked"), "{said}");
}

#[test]
fn a_socket_path_past_the_unix_limit_is_refused() {
    let data = DataDir(std::env::temp_dir().join("x".repeat(100)));
    let output = data.run(&["migrate"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("107"), "{}", stderr(&output));
}

#[test]
fn a_data_dir_the_postgres_user_cannot_reach_is_refused() {
    if !is_root() {
        return; // only root hands the cluster to another user
    }
    // Root's home is closed to other users.
    let data =
        DataDir(PathBuf::from("/root").join(format!("anyreply-{}", uuid::Uuid::new_v4().simple())));
    let output = data.run(&["migrate"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("cannot reach"),
        "{}",
        stderr(&output)
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}
