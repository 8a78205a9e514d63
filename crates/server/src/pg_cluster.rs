//! A private PostgreSQL cluster, for when `ANYREPLY_DATABASE_URL` is unset: initialised once
//! with the PostgreSQL binaries installed on the machine, reachable only through a Unix socket
//! in its own directory (no TCP port, so no clash with a system cluster), started by the first
//! process that needs it and stopped by the last one to leave.
//!
//! In the data directory (`ANYREPLY_DATA_DIR`):
//!
//! ```text
//! postgres/          the cluster; its socket, .s.PGSQL.5432, is in it too (mode 0700)
//! postgres.log       PostgreSQL's log
//! postgres.lock      held while a process initialises, starts or stops the cluster
//! postgres.users     held shared by every process using the cluster
//! postgres.started   there while the cluster runs because one of us started it
//! ```
//!
//! As root, every PostgreSQL binary runs as the `postgres` user (initdb and pg_ctl refuse
//! root), and the data directory belongs to it.
//!
//! A server keeps it running: [`ClusterGuard::supervise`] looks at its postmaster every second
//! and starts it again should it die.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::Settings;

/// What a user without PostgreSQL's binaries is told, on one line.
const INSTALL_HINT: &str = "install PostgreSQL's binaries (Debian/Ubuntu: apt-get install \
    postgresql; macOS: brew install postgresql@16), set ANYREPLY_PG_BIN to their directory, or \
    set ANYREPLY_DATABASE_URL to a running PostgreSQL";

/// The database the server uses in its private cluster.
const DATABASE: &str = "anyreply";

/// Names the socket file, `.s.PGSQL.<port>`; no TCP port is opened.
const PORT: u16 = 5432;

/// Longest socket path Unix allows (`sun_path` holds 108 bytes with the final NUL).
const MAX_SOCKET_PATH: usize = 107;

/// What a socket directory's path escapes as the host of a URL.
const HOST_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// The system user PostgreSQL runs as when we are root.
const SYSTEM_USER: &str = "postgres";

/// How often a server looks whether its cluster's postmaster runs: a read of `postmaster.pid`
/// and a `kill(pid, 0)`, no connection, so an idle server stays idle.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Least time between two looks prompted by requests that found the database gone (a burst of
/// them is one look).
const SUSPICION_GAP: Duration = Duration::from_millis(100);

/// Woken by requests that found the database gone, for a look before the next second.
static SUSPECTED_DOWN: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Says that the database seemed gone (a connection refused or cut): the supervisor, if this
/// process runs one, looks at the postmaster at once rather than within the second.
pub fn database_seems_gone() {
    SUSPECTED_DOWN.notify_one();
}

/// The database given by `ANYREPLY_DATABASE_URL`, or else the private cluster's, started if
/// need be, with the guard that keeps it: drop the guard when done with the database.
pub async fn resolve_database(
    settings: &Settings,
) -> anyhow::Result<(String, Option<ClusterGuard>)> {
    if let Some(url) = &settings.database_url {
        return Ok((url.clone(), None));
    }
    let cluster = PrivateCluster::new(settings.data_dir.clone(), settings.pg_bin.as_deref())?;
    let (url, guard) = tokio::task::spawn_blocking(move || cluster.ensure_running()).await??;
    Ok((url, Some(guard)))
}

/// A cluster in a data directory of ours, run with the binaries of one PostgreSQL install.
#[derive(Debug, Clone)]
pub struct PrivateCluster {
    data_dir: PathBuf,
    bin_dir: PathBuf,
    /// Who runs PostgreSQL when that cannot be us (we are root).
    run_as: Option<SystemUser>,
    /// `postgresql.conf` settings written when the cluster is initialised.
    settings: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy)]
struct SystemUser {
    uid: u32,
    gid: u32,
}

/// Keeps the cluster running; dropped by the last process using it, stops it if one of us
/// started it (a cluster started by hand is left alone).
#[derive(Debug)]
#[must_use = "the cluster may stop once its guard is dropped"]
pub struct ClusterGuard {
    cluster: PrivateCluster,
    /// Our shared lock on `postgres.users`.
    users: File,
}

impl PrivateCluster {
    /// A cluster in `data_dir` (default: [`default_data_dir`]) run with the binaries of
    /// `pg_bin` (default: [`find_binaries`]).
    pub fn new(data_dir: Option<PathBuf>, pg_bin: Option<&Path>) -> anyhow::Result<Self> {
        let bin_dir = find_binaries(pg_bin)?;
        let run_as = if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name(SYSTEM_USER)
                .context("looking up the postgres user")?
                .with_context(|| {
                    format!(
                        "running as root, PostgreSQL needs a {SYSTEM_USER} user to run as, and \
                         there is none: install the postgresql package, or run as another user"
                    )
                })?;
            Some(SystemUser {
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            })
        } else {
            None
        };
        let data_dir = match data_dir {
            Some(dir) => dir,
            None => default_data_dir()?,
        };
        Ok(Self {
            data_dir,
            bin_dir,
            run_as,
            settings: Vec::new(),
        })
    }

    /// Adds `postgresql.conf` settings, written when the cluster is initialised.
    pub fn with_settings(mut self, settings: &[(&str, &str)]) -> Self {
        self.settings.extend(
            settings
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
        );
        self
    }

    /// Initialises the cluster if it never was and starts it if it is not running; returns the
    /// URL of its `anyreply` database (which [`crate::db::create_database_if_missing`]
    /// creates) and the guard that keeps it running. Blocks, on other processes too: one
    /// initialises or starts the cluster at a time.
    pub fn ensure_running(mut self) -> anyhow::Result<(String, ClusterGuard)> {
        self.prepare_data_dir()?;
        let _setup = self.lock("postgres.lock")?;
        let users = self.open("postgres.users")?;
        // Never blocks: an exclusive holder holds `postgres.lock` too.
        users.lock_shared().context("locking postgres.users")?;
        if !self.pgdata().join("PG_VERSION").exists() {
            self.initdb()?;
        }
        if !self.is_running()? {
            self.start()?;
        }
        let url = self.url(DATABASE);
        Ok((
            url,
            ClusterGuard {
                cluster: self,
                users,
            },
        ))
    }

    /// The URL of `database` in this cluster, through its socket: tokio-postgres takes a
    /// percent-encoded directory as the host. (Not `?host=`: that would add a host, tried
    /// after `localhost`.)
    pub fn url(&self, database: &str) -> String {
        let socket_dir = self.pgdata().to_string_lossy().into_owned();
        format!(
            "postgres://postgres@{}/{database}",
            utf8_percent_encode(&socket_dir, HOST_ESCAPES)
        )
    }

    /// The cluster's directory, which holds its socket too.
    pub fn pgdata(&self) -> PathBuf {
        self.data_dir.join("postgres")
    }

    /// Creates the data directory, hands it to the user PostgreSQL runs as, and checks that
    /// this user can reach it and that the socket path fits.
    fn prepare_data_dir(&mut self) -> anyhow::Result<()> {
        fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating {}", self.data_dir.display()))?;
        // Absolute, for the socket's directory and the URL.
        self.data_dir = fs::canonicalize(&self.data_dir)
            .with_context(|| format!("resolving {}", self.data_dir.display()))?;
        if let Some(user) = self.run_as {
            std::os::unix::fs::chown(&self.data_dir, Some(user.uid), Some(user.gid))
                .with_context(|| format!("giving {} to {SYSTEM_USER}", self.data_dir.display()))?;
            match self.command("pg_ctl").arg("--version").output() {
                // The child enters the directory after taking the user's identity.
                Err(error) if error.kind() == ErrorKind::PermissionDenied => bail!(
                    "the {SYSTEM_USER} user cannot reach {}: set ANYREPLY_DATA_DIR to a \
                     directory whose every parent it may enter, such as /var/lib/anyreply",
                    self.data_dir.display()
                ),
                Err(error) => return Err(error).context("running pg_ctl"),
                Ok(_) => {}
            }
        }
        let socket = self.pgdata().join(format!(".s.PGSQL.{PORT}"));
        let length = socket.as_os_str().len();
        if length > MAX_SOCKET_PATH {
            bail!(
                "the PostgreSQL socket {} would be {length} bytes long, more than the \
                 {MAX_SOCKET_PATH} Unix allows: set ANYREPLY_DATA_DIR to a shorter path",
                socket.display()
            );
        }
        Ok(())
    }

    /// Runs initdb in a scratch directory, renamed into place once complete, so that an
    /// interrupted initdb is started afresh rather than taken for a cluster.
    fn initdb(&self) -> anyhow::Result<()> {
        let scratch = self.data_dir.join("postgres.initdb");
        if scratch.exists() {
            fs::remove_dir_all(&scratch)
                .with_context(|| format!("removing {}", scratch.display()))?;
        }
        tracing::info!(directory = %self.pgdata().display(), "initialising a private PostgreSQL cluster");
        let mut initdb = self.command("initdb");
        initdb.arg("--pgdata").arg(&scratch).args([
            "--username=postgres",
            "--encoding=UTF8",
            "--locale=C",
            // Anyone who can reach the socket (only its owner: see below) is trusted;
            // nothing is accepted over TCP.
            "--auth-local=trust",
            "--auth-host=reject",
        ]);
        run(&mut initdb)?;
        let mut conf = format!(
            "\n# Written by anyreply-server: reachable only through the socket in this directory, \
             by its owner.\nlisten_addresses = ''\nunix_socket_directories = '{}'\n\
             unix_socket_permissions = 0700\nport = {PORT}\n",
            self.pgdata().to_string_lossy().replace('\'', "''")
        );
        for (name, value) in &self.settings {
            conf.push_str(&format!("{name} = '{}'\n", value.replace('\'', "''")));
        }
        let conf_path = scratch.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf_path)
            .with_context(|| format!("reading {}", conf_path.display()))?;
        text.push_str(&conf);
        fs::write(&conf_path, text).with_context(|| format!("writing {}", conf_path.display()))?;
        fs::rename(&scratch, self.pgdata())
            .with_context(|| format!("moving the new cluster to {}", self.pgdata().display()))
    }

    /// Whether a postmaster runs on the cluster; removes its `postmaster.pid` and its socket's
    /// lock file if the process named there is gone (killed, or the machine stopped). Call with
    /// `postgres.lock` held: a pid file being written by another process's start would look
    /// stale.
    fn is_running(&self) -> anyhow::Result<bool> {
        if postmaster(&self.pid_file())? == Postmaster::Running {
            return Ok(true);
        }
        // PostgreSQL replaces a lock file naming a dead process itself, but takes a zombie
        // for alive (see `process_runs`).
        let socket_lock = self.pgdata().join(format!(".s.PGSQL.{PORT}.lock"));
        for file in [self.pid_file(), socket_lock] {
            if postmaster(&file)? == Postmaster::Dead {
                tracing::warn!(file = %file.display(), "removing a stale PostgreSQL lock file");
                match fs::remove_file(&file) {
                    Err(error) if error.kind() != ErrorKind::NotFound => {
                        return Err(error).with_context(|| format!("removing {}", file.display()));
                    }
                    _ => {}
                }
            }
        }
        Ok(false)
    }

    fn pid_file(&self) -> PathBuf {
        self.pgdata().join("postmaster.pid")
    }

    /// Starts the cluster unless it runs, under `postgres.lock`: of several processes that
    /// found it dead at once, one starts it and the others find it running. Whether this call
    /// started it.
    fn start_if_stopped(&self) -> anyhow::Result<bool> {
        let _setup = self.lock("postgres.lock")?;
        if self.is_running()? {
            return Ok(false);
        }
        self.start()?;
        Ok(true)
    }

    fn start(&self) -> anyhow::Result<()> {
        let log = self.data_dir.join("postgres.log");
        tracing::info!(directory = %self.pgdata().display(), log = %log.display(), "starting the private PostgreSQL cluster");
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("start")
            .arg("--pgdata")
            .arg(self.pgdata())
            .arg("--log")
            .arg(&log)
            .args(["--wait", "--timeout=60", "--silent"]);
        // After a crash PostgreSQL first syncs its whole directory: one `syncfs` per file
        // system rather than an `fsync` per file, 0.6–1.3 s against 2.6–3.2 s measured on a
        // fresh cluster, which the supervisor's restart waits for.
        #[cfg(target_os = "linux")]
        pg_ctl.args(["--options", "-c recovery_init_sync_method=syncfs"]);
        if let Err(error) = run(&mut pg_ctl) {
            let tail = fs::read_to_string(&log).unwrap_or_default();
            let last = tail.lines().last().unwrap_or("");
            bail!("{error:#}; last line of {}: {last}", log.display());
        }
        File::create(self.data_dir.join("postgres.started")).context("writing postgres.started")?;
        Ok(())
    }

    fn stop(&self) -> anyhow::Result<()> {
        tracing::info!(directory = %self.pgdata().display(), "stopping the private PostgreSQL cluster");
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl.arg("stop").arg("--pgdata").arg(self.pgdata()).args([
            "--mode=fast",
            "--wait",
            "--silent",
        ]);
        run(&mut pg_ctl)?;
        fs::remove_file(self.data_dir.join("postgres.started")).context("removing postgres.started")
    }

    /// A PostgreSQL binary, run as the user that owns the cluster, in the data directory
    /// (our own working directory may be closed to that user).
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        command
            .current_dir(&self.data_dir)
            .env_remove("PGDATA")
            .stdin(Stdio::null());
        if let Some(user) = self.run_as {
            command.uid(user.uid).gid(user.gid);
        }
        command
    }

    fn open(&self, name: &str) -> anyhow::Result<File> {
        let path = self.data_dir.join(name);
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))
    }

    /// An exclusive lock on `name`, waited for; released when the file is dropped.
    fn lock(&self, name: &str) -> anyhow::Result<File> {
        let file = self.open(name)?;
        file.lock().with_context(|| format!("locking {name}"))?;
        Ok(file)
    }
}

/// The postmaster, as a lock file of its (`postmaster.pid`, the socket's) tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Postmaster {
    /// The process the file names runs.
    Running,
    /// No file: stopped, or never started.
    Stopped,
    /// The file names a process that is gone (killed, or the machine stopped), or none.
    Dead,
}

/// What the lock file `path` says, checked against the process table: cheap enough to ask
/// every second (no process started, no connection).
fn postmaster(path: &Path) -> anyhow::Result<Postmaster> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Postmaster::Stopped),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    // Its first line is the postmaster's pid (negative for a single-user backend).
    let pid = text
        .lines()
        .next()
        .and_then(|line| line.trim().parse::<i32>().ok())
        .map(i32::unsigned_abs)
        .and_then(|pid| i32::try_from(pid).ok())
        .filter(|pid| *pid > 0);
    Ok(match pid {
        Some(pid) if process_runs(pid) => Postmaster::Running,
        _ => Postmaster::Dead,
    })
}

/// Whether process `pid` runs. A zombie does not: a postmaster killed after `pg_ctl` left is
/// reaped by init, which in a container may take a while or never happen, and meanwhile
/// `kill(pid, 0)` (and so `pg_ctl status`, and a new postmaster's own check of the pid file)
/// still takes it for alive. As another user, a process of someone else's answers `EPERM`:
/// not our postmaster, which is what PostgreSQL concludes too.
fn process_runs(pid: i32) -> bool {
    let pid = nix::unistd::Pid::from_raw(pid);
    if nix::sys::signal::kill(pid, None).is_err() {
        return false;
    }
    // Linux says in `/proc/<pid>/stat`, after the parenthesised name; elsewhere we cannot
    // tell, and take it for running.
    let exited = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, after_name) = stat.rsplit_once(')')?;
            after_name.trim_start().chars().next()
        })
        .is_some_and(|state| matches!(state, 'Z' | 'X'));
    !exited
}

impl ClusterGuard {
    /// Watches the cluster and starts it again whenever its postmaster is found dead (killed,
    /// crashed out of memory) or stopped, for as long as the future is polled: a server runs
    /// it beside serving. Looks every [`WATCH_EVERY`], and at once when a request found the
    /// database gone ([`database_seems_gone`]). End it before dropping the guard, whose stop
    /// it would otherwise undo.
    /// `restarted` is called each time the cluster runs again after its death.
    pub fn supervise(
        &self,
        restarted: impl Fn() + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let cluster = self.cluster.clone();
        async move {
            let mut every = tokio::time::interval(WATCH_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let suspected = tokio::select! {
                    _ = every.tick() => false,
                    () = SUSPECTED_DOWN.notified() => true,
                };
                // A file read and a signal check: not worth a blocking thread.
                match postmaster(&cluster.pid_file()) {
                    Ok(Postmaster::Running) => {}
                    Ok(state) => {
                        if cluster.clone().start_again(state).await.is_err() {
                            // Tried again a second later, however many requests fail meanwhile.
                            tokio::time::sleep(WATCH_EVERY).await;
                            continue;
                        }
                        restarted();
                    }
                    Err(error) => tracing::warn!(
                        error = format!("{error:#}"),
                        "cannot tell whether the private PostgreSQL cluster runs"
                    ),
                }
                if suspected {
                    tokio::time::sleep(SUSPICION_GAP).await;
                }
            }
        }
    }
}

impl PrivateCluster {
    /// Starts the cluster found `state`, unless another process did first. It may fail for a
    /// moment: the dead postmaster's backends hold its shared memory until they notice.
    async fn start_again(self, state: Postmaster) -> Result<(), ()> {
        tracing::error!(
            directory = %self.pgdata().display(),
            postmaster = ?state,
            "the private PostgreSQL cluster is down; starting it again"
        );
        match tokio::task::spawn_blocking(move || self.start_if_stopped()).await {
            Ok(Ok(true)) => {
                tracing::info!("the private PostgreSQL cluster runs again");
                Ok(())
            }
            // Another process started it.
            Ok(Ok(false)) => Ok(()),
            Ok(Err(error)) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "could not start the private PostgreSQL cluster; trying again in a second"
                );
                Err(())
            }
            Err(error) => {
                tracing::error!(%error, "starting the private PostgreSQL cluster failed");
                Err(())
            }
        }
    }
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        let cluster = &self.cluster;
        let stopped = (|| -> anyhow::Result<()> {
            let _setup = cluster.lock("postgres.lock")?;
            // Exclusive only when no other process uses the cluster (this drops our shared
            // lock either way).
            let last = self.users.try_lock().is_ok();
            if last && cluster.data_dir.join("postgres.started").exists() {
                cluster.stop()?;
            }
            Ok(())
        })();
        if let Err(error) = stopped {
            tracing::warn!(
                error = format!("{error:#}"),
                "could not stop the private PostgreSQL cluster"
            );
        }
    }
}

/// The data directory used when `ANYREPLY_DATA_DIR` is unset: the platform's data directory
/// for `anyreply`, or `/var/lib/anyreply` for root (whose home the postgres user cannot enter).
pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    if nix::unistd::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/anyreply"));
    }
    dirs::data_dir()
        .map(|dir| dir.join("anyreply"))
        .context("no home directory for the private PostgreSQL cluster: set ANYREPLY_DATA_DIR")
}

/// The directory of PostgreSQL's binaries: `explicit` (`ANYREPLY_PG_BIN`), else `pg_config
/// --bindir`, else the newest `/usr/lib/postgresql/*/bin` (Debian's layout).
pub fn find_binaries(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let complete = |dir: &Path| ["initdb", "pg_ctl"].iter().all(|b| dir.join(b).is_file());
    if let Some(dir) = explicit {
        if complete(dir) {
            return Ok(dir.to_owned());
        }
        bail!(
            "no PostgreSQL binaries in {} (ANYREPLY_PG_BIN): {INSTALL_HINT}",
            dir.display()
        );
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|dir| complete(dir)) {
        return Ok(dir);
    }
    let newest_debian = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| complete(dir))
        .max_by_key(|(version, _)| *version);
    match newest_debian {
        Some((_, dir)) => Ok(dir),
        None => bail!("no PostgreSQL binaries found: {INSTALL_HINT}"),
    }
}

/// Runs `command` to its end; an error says what it wrote.
fn run(command: &mut Command) -> anyhow::Result<()> {
    let program = Path::new(command.get_program())
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let output = command
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!("{program} failed: {}", one_line(&output));
    }
    Ok(())
}

/// A failed command's stderr (else stdout) on one line.
fn one_line(output: &Output) -> String {
    let text = if output.stderr.is_empty() {
        &output.stdout
    } else {
        &output.stderr
    };
    let text = String::from_utf8_lossy(text);
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.is_empty() {
        format!("exit status {}", output.status)
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_url_names_the_directory_as_its_host() {
        let cluster = PrivateCluster {
            data_dir: PathBuf::from("/var/lib/any reply"),
            bin_dir: PathBuf::new(),
            run_as: None,
            settings: Vec::new(),
        };
        let url = cluster.url("anyreply");
        assert_eq!(
            url,
            "postgres://postgres@%2Fvar%2Flib%2Fany%20reply%2Fpostgres/anyreply"
        );
        // What `db::create_database_if_missing` and the test proxy read.
        let parsed = url::Url::parse(&url).unwrap();
        assert_eq!(parsed.path(), "/anyreply");
        assert_eq!(
            parsed.host_str(),
            Some("%2Fvar%2Flib%2Fany%20reply%2Fpostgres")
        );
    }

    /// A cluster in a fresh directory of the temp dir, with `postgres/` made.
    fn scratch_cluster() -> PrivateCluster {
        let data_dir =
            std::env::temp_dir().join(format!("anyreply-unit-{}", uuid::Uuid::new_v4().simple()));
        fs::create_dir_all(data_dir.join("postgres")).unwrap();
        PrivateCluster {
            data_dir,
            bin_dir: PathBuf::new(),
            run_as: None,
            settings: Vec::new(),
        }
    }

    fn lock_files(cluster: &PrivateCluster, pid: u32) -> [PathBuf; 2] {
        let files = [
            cluster.pid_file(),
            cluster.pgdata().join(".s.PGSQL.5432.lock"),
        ];
        for file in &files {
            fs::write(file, format!("{pid}\n{}\n", cluster.pgdata().display())).unwrap();
        }
        files
    }

    #[test]
    fn a_live_postmaster_runs_and_its_lock_files_stay() {
        let cluster = scratch_cluster();
        let files = lock_files(&cluster, std::process::id());
        assert!(cluster.is_running().unwrap());
        assert!(files.iter().all(|file| file.exists()));
        fs::remove_dir_all(&cluster.data_dir).unwrap();
    }

    /// Killed, and not yet reaped by its parent (here, us): `kill(pid, 0)` still answers.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_zombie_postmaster_is_dead_and_its_lock_files_are_removed() {
        let mut child = Command::new("sleep").arg("100").spawn().unwrap();
        let pid = child.id();
        let raw = i32::try_from(pid).unwrap();
        assert!(process_runs(raw));
        child.kill().unwrap();
        let zombie = || {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap()
                .contains(") Z")
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !zombie() {
            assert!(std::time::Instant::now() < deadline, "never a zombie");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None).is_ok(),
            "the kernel no longer answers for a zombie: the test proves nothing"
        );
        assert!(!process_runs(raw));

        let cluster = scratch_cluster();
        let files = lock_files(&cluster, pid);
        assert_eq!(postmaster(&cluster.pid_file()).unwrap(), Postmaster::Dead);
        assert!(!cluster.is_running().unwrap());
        assert!(files.iter().all(|file| !file.exists()));
        assert_eq!(
            postmaster(&cluster.pid_file()).unwrap(),
            Postmaster::Stopped
        );
        child.wait().unwrap();
        fs::remove_dir_all(&cluster.data_dir).unwrap();
    }
}
