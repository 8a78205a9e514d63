//! The `anyreply-server` binary with `ANYREPLY_DATABASE_URL` unset: its own PostgreSQL cluster
//! in `ANYREPLY_DATA_DIR`, from the binaries installed on this machine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use anyreply_server::pg_cluster::PrivateCluster;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

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
