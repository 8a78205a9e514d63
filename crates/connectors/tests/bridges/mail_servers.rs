//! A real IMAP server (Debian's dovecot) and a real SMTP sink (aiosmtpd, `smtp_sink.py`) on
//! 127.0.0.1 for the email bridge's tests: mock servers would only agree with the bridge's
//! idea of the protocols, these hold it to what mail servers actually say. Each
//! [`MailServers`] has its own directory, ports, certificates and processes, so tests that
//! start them run in parallel; `.ci/run` installs both programs.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::Value;

const DOVECOT: &str = "/usr/sbin/dovecot";
const DOVECOT_LDA: &str = "/usr/lib/dovecot/dovecot-lda";
const INSTALL: &str = "the email tests need Debian's dovecot-imapd and PyPI's aiosmtpd \
    (`apt-get install dovecot-imapd`, `python3 -m pip install aiosmtpd`; .ci/run installs both)";

/// Dovecot 2.3's own capabilities less IDLE and NOTIFY: with no way to be told of new mail, a
/// client has to poll. (Dovecot still answers an IDLE that a client sends regardless; only a
/// client that reads CAPABILITY falls back.)
const CAPABILITIES_WITHOUT_IDLE: &str = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE SORT \
    SORT=DISPLAY THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL \
    CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC \
    ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY \
    PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+";

/// How long a server may take to start, or the sink to take an expected message.
const PATIENCE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// No TLS at all, plaintext logins allowed.
    Plain,
    /// A plain connection that must be upgraded with STARTTLS before logging in.
    StartTls,
    /// TLS from the first byte (IMAPS, SMTPS).
    Tls,
}

impl Security {
    /// The bridge's name for it (`ANYREPLY_EMAIL_*_SECURITY`), and the sink's.
    fn name(self) -> &'static str {
        match self {
            Security::Plain => "plain",
            Security::StartTls => "starttls",
            Security::Tls => "tls",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct MailOptions {
    pub imap: Security,
    pub smtp: Security,
    /// false: dovecot does not advertise IDLE, so a client must poll.
    pub idle: bool,
}

/// One message the SMTP sink accepted.
#[derive(Debug, Clone)]
pub struct Sent {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The raw RFC 822 message as the sink received it.
    pub data: Vec<u8>,
}

/// Dovecot and the SMTP sink, both stopped (and their directory removed) on drop.
pub struct MailServers {
    dir: PathBuf,
    ca_file: PathBuf,
    options: MailOptions,
    dovecot: Child,
    sink: Child,
    imap_port: u16,
    smtp_port: u16,
}

impl MailServers {
    /// The bridge's mailbox: its IMAP login and SMTP AUTH user.
    pub const ADDRESS: &'static str = "help@shop.example";
    pub const PASSWORD: &'static str = "a mailbox password";

    /// Starts both servers and returns once each accepts connections.
    pub async fn start(options: MailOptions) -> MailServers {
        require_installed();
        let dir = unique_dir();
        write_certificates(&dir);
        let account = account(&dir);
        let (dovecot, imap_port) = start_dovecot(&dir, options, &account).await;
        let (sink, smtp_port) = start_sink(&dir, options.smtp).await;
        MailServers {
            ca_file: dir.join("ca.pem"),
            dir,
            options,
            dovecot,
            sink,
            imap_port,
            smtp_port,
        }
    }

    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
    }

    /// PEM file of the test CA that signed both servers' certificate (SANs: IP 127.0.0.1 and
    /// DNS localhost).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The bridge's settings for these servers.
    pub fn env(&self) -> Vec<(String, String)> {
        let (imap, smtp) = (self.imap_port.to_string(), self.smtp_port.to_string());
        let (imap_security, smtp_security) = (self.options.imap.name(), self.options.smtp.name());
        [
            ("IMAP_HOST", "127.0.0.1"),
            ("IMAP_PORT", &imap),
            ("IMAP_SECURITY", imap_security),
            ("IMAP_USER", Self::ADDRESS),
            ("IMAP_PASSWORD", Self::PASSWORD),
            ("SMTP_HOST", "127.0.0.1"),
            ("SMTP_PORT", &smtp),
            ("SMTP_SECURITY", smtp_security),
            ("SMTP_USER", Self::ADDRESS),
            ("SMTP_PASSWORD", Self::PASSWORD),
            ("CA_FILE", &self.ca_file.display().to_string()),
            ("ADDRESS", Self::ADDRESS),
        ]
        .into_iter()
        .map(|(name, value)| (format!("ANYREPLY_EMAIL_{name}"), value.to_owned()))
        .collect()
    }

    /// Delivers `raw` (an RFC 822 message) into the mailbox's INBOX as a mail server would,
    /// with the envelope sender `envelope_from` ("" = the null sender of a bounce).
    ///
    /// Dovecot's LDA files the message but, like any delivery agent, leaves the `Return-Path`
    /// header to the MTA that calls it, so it is prepended here as Postfix's would (`raw`
    /// should have none of its own: Postfix would drop it, this does not).
    pub async fn deliver(&self, raw: &[u8], envelope_from: &str) {
        let crlf = raw.windows(2).any(|pair| pair == b"\r\n");
        let newline = if crlf { "\r\n" } else { "\n" };
        let mut message = format!("Return-Path: <{envelope_from}>{newline}").into_bytes();
        message.extend_from_slice(raw);
        let mut lda = Command::new(DOVECOT_LDA);
        lda.arg("-c").arg(self.dir.join("dovecot.conf"));
        lda.args(["-d", Self::ADDRESS, "-f", envelope_from]);
        let output = tokio::task::spawn_blocking(move || run_with_input(lda, &message))
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "dovecot-lda failed ({}): {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.dovecot_log()
        );
    }

    /// Every message the SMTP sink accepted so far, in order.
    pub fn sent(&self) -> Vec<Sent> {
        let mut files: Vec<PathBuf> = fs::read_dir(self.dir.join("sent"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files.iter().map(|file| read_sent(file)).collect()
    }

    /// Waits until the sink has accepted `count` messages (panics with what it has after
    /// `within`).
    pub async fn wait_sent(&self, count: usize, within: Duration) -> Vec<Sent> {
        let deadline = Instant::now() + within;
        loop {
            let sent = self.sent();
            if sent.len() >= count {
                return sent;
            }
            if Instant::now() > deadline {
                let texts: Vec<_> = sent.iter().map(Sent::describe).collect();
                panic!(
                    "the SMTP sink accepted {} message(s), not {count}, within {within:?}:\n{}\n\
                     its log: {}",
                    sent.len(),
                    texts.join("\n"),
                    read_lossy(&self.dir.join("smtp_sink.log"))
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn dovecot_log(&self) -> String {
        read_lossy(&self.dir.join("dovecot.log"))
    }
}

impl Drop for MailServers {
    /// Stops both servers and removes their directory, which is kept, and named, when a test
    /// failed.
    fn drop(&mut self) {
        stop_dovecot(&mut self.dovecot);
        let _ = self.sink.kill();
        let _ = self.sink.wait();
        if std::thread::panicking() {
            eprintln!("the mail servers' files are kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Stops dovecot as its service would be, with SIGTERM: its master then ends its children
/// before it exits (after SIGKILL they linger a moment, writing into the directory being
/// removed).
fn stop_dovecot(dovecot: &mut Child) {
    let pid = Pid::from_raw(i32::try_from(dovecot.id()).unwrap());
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while matches!(dovecot.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = dovecot.kill();
    let _ = dovecot.wait();
}

impl Sent {
    /// For a failure message.
    fn describe(&self) -> String {
        format!(
            "from <{}> to {:?}: {}",
            self.mail_from,
            self.rcpt_to,
            String::from_utf8_lossy(&self.data)
        )
    }
}

/// One of the sink's files: `{"mail_from", "rcpt_to", "data" (base64)}`.
fn read_sent(file: &Path) -> Sent {
    let json: Value = serde_json::from_slice(&fs::read(file).unwrap()).unwrap();
    let data = json["data"].as_str().unwrap();
    Sent {
        mail_from: json["mail_from"].as_str().unwrap().to_owned(),
        rcpt_to: json["rcpt_to"]
            .as_array()
            .unwrap()
            .iter()
            .map(|to| to.as_str().unwrap().to_owned())
            .collect(),
        data: base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
    }
}

fn read_lossy(file: &Path) -> String {
    String::from_utf8_lossy(&fs::read(file).unwrap_or_default()).into_owned()
}

/// Runs `command` with `input` on its standard input.
fn run_with_input(mut command: Command, input: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Panics, saying what to install, unless dovecot and aiosmtpd are there.
fn require_installed() {
    let aiosmtpd = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !Path::new(DOVECOT).exists() || !Path::new(DOVECOT_LDA).exists() || !aiosmtpd {
        panic!("{INSTALL}");
    }
}

/// A new directory under the system's temporary one, which the mailbox's owner (`nobody` when
/// the tests run as root) can pass through.
fn unique_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "anyreply-mail-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("sent")).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A test CA (`ca.pem`) and the servers' certificate signed by it (`cert.pem`, `key.pem`)
/// for 127.0.0.1 and localhost, new for each run.
fn write_certificates(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "AnyReply test mail CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = leaf.signed_by(&key, &issuer).unwrap();

    fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

/// Whose the mailbox's files are, and the dovecot settings for running as the test's user.
struct Account {
    uid: u32,
    gid: u32,
    settings: String,
}

/// Dovecot refuses mail access as root, so when the tests run as root (as here and in CI) the
/// mailbox belongs to `nobody`; otherwise dovecot runs wholly as the test's own user.
fn account(dir: &Path) -> Account {
    let me = fs::metadata(dir).unwrap(); // made by this process, so owned by its user
    if me.uid() == 0 {
        let (_, uid, gid) = passwd_entry(|name, _| name == "nobody");
        return Account {
            uid,
            gid,
            settings: String::new(),
        };
    }
    let (user, uid, gid) = passwd_entry(|_, uid| uid == me.uid());
    let group = fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() > 2 && fields[2] == gid.to_string())
        .map(|fields| fields[0].to_owned())
        .unwrap_or_else(|| panic!("no group {gid} in /etc/group"));
    Account {
        uid,
        gid,
        settings: format!(
            "default_login_user = {user}\ndefault_internal_user = {user}\n\
             default_internal_group = {group}\n"
        ),
    }
}

/// The first `/etc/passwd` entry `matches(name, uid)` accepts: its name, uid and gid.
fn passwd_entry(matches: impl Fn(&str, u32) -> bool) -> (String, u32, u32) {
    fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .filter(|fields| fields.len() > 3)
        .find_map(|fields| {
            let (uid, gid) = (fields[2].parse().ok()?, fields[3].parse().ok()?);
            matches(fields[0], uid).then(|| (fields[0].to_owned(), uid, gid))
        })
        .expect("the user in /etc/passwd")
}

/// Dovecot's configuration: only IMAP, only on 127.0.0.1:`port`, everything it keeps (runtime
/// sockets, state, log, the maildir) inside `dir`, and the one user from a passwd-file.
fn dovecot_config(dir: &Path, port: u16, options: MailOptions, account: &Account) -> String {
    let d = dir.display();
    let (ssl, no_plaintext) = match options.imap {
        Security::Plain => ("no", "no"),
        Security::StartTls | Security::Tls => ("required", "yes"),
    };
    let (imap_port, imaps_port) = match options.imap {
        Security::Tls => (0, port),
        Security::Plain | Security::StartTls => (port, 0),
    };
    let capability = if options.idle {
        String::new()
    } else {
        format!("imap_capability = {CAPABILITIES_WITHOUT_IDLE}\n")
    };
    let (uid, gid, settings) = (account.uid, account.gid, &account.settings);
    let name = dir.file_name().unwrap().to_string_lossy();
    format!(
        "base_dir = {d}/run
state_dir = {d}/state
instance_name = {name}
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
{settings}first_valid_uid = 1
ssl = {ssl}
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
disable_plaintext_auth = {no_plaintext}
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = {d}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/mail/%u
}}
mail_location = maildir:~/Maildir
{capability}service imap-login {{
  chroot =
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"
    )
}

/// Starts dovecot on a free port: one found free may be taken before dovecot binds it (the
/// tests run in parallel), so a refused port means another try.
async fn start_dovecot(dir: &Path, options: MailOptions, account: &Account) -> (Child, u16) {
    let mail = dir.join("mail");
    fs::create_dir_all(&mail).unwrap();
    std::os::unix::fs::chown(&mail, Some(account.uid), Some(account.gid)).unwrap();
    let passwd = format!(
        "{}:{{PLAIN}}{}\n",
        MailServers::ADDRESS,
        MailServers::PASSWORD
    );
    fs::write(dir.join("passwd"), passwd).unwrap();
    let config = dir.join("dovecot.conf");
    let log = dir.join("dovecot.log");
    for _ in 0..5 {
        let port = free_port();
        fs::write(&config, dovecot_config(dir, port, options, account)).unwrap();
        let _ = fs::remove_file(&log);
        let mut command = Command::new(DOVECOT);
        command.arg("-F").arg("-c").arg(&config);
        let dovecot = spawn_logging(command, &dir.join("dovecot.out"));
        // Dovecot logs that it is starting up only once it has bound its listeners.
        match until_ready(dovecot, || read_lossy(&log).contains("starting up")).await {
            Ok(dovecot) => {
                wait_accepting(port).await;
                return (dovecot, port);
            }
            Err(_) if read_lossy(&log).contains("Address already in use") => continue,
            Err(output) => panic!("dovecot did not start: {output}\n{}", read_lossy(&log)),
        }
    }
    panic!("dovecot found no free port in 5 tries")
}

/// Starts the SMTP sink, which binds a port of the kernel's choosing and writes it to
/// `smtp.port` once it listens.
async fn start_sink(dir: &Path, security: Security) -> (Child, u16) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bridges/smtp_sink.py");
    let mut command = Command::new("python3");
    command
        .arg(script)
        .arg(dir.join("sent"))
        .arg(security.name());
    command.arg(dir.join("cert.pem")).arg(dir.join("key.pem"));
    command.args([MailServers::ADDRESS, MailServers::PASSWORD]);
    let log = dir.join("smtp_sink.log");
    let sink = spawn_logging(command, &log);
    let port_file = dir.join("smtp.port");
    match until_ready(sink, || port_file.exists()).await {
        Ok(sink) => {
            let port = fs::read_to_string(&port_file).unwrap().parse().unwrap();
            wait_accepting(port).await;
            (sink, port)
        }
        Err(output) => panic!(
            "the SMTP sink did not start: {output}\n{}",
            read_lossy(&log)
        ),
    }
}

/// Spawns `command` with its output going to `log`.
fn spawn_logging(mut command: Command, log: &Path) -> Child {
    let out = fs::File::create(log).unwrap();
    command
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"))
}

/// Waits until `ready()` holds while `child` runs; if it exits first (or `PATIENCE` runs out,
/// then killed), how it ended.
async fn until_ready(mut child: Child, ready: impl Fn() -> bool) -> Result<Child, String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("it exited ({status})"));
        }
        if ready() {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("not ready after {PATIENCE:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until 127.0.0.1:`port` accepts a connection.
async fn wait_accepting(port: u16) {
    let deadline = Instant::now() + PATIENCE;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "nothing accepts on port {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port nothing listens on just now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The harness itself, through curl: a client that knows nothing of it.
mod self_test {
    use super::*;

    const OUTGOING: &str =
        "From: help@shop.example\r\nSubject: Re: your order\r\n\r\nIt ships.\r\n";

    /// curl's arguments for `scheme` (imap, smtp) on `port` with `security`, trusting the
    /// test CA, logged in with `password`.
    fn curl_args(
        servers: &MailServers,
        scheme: &str,
        security: Security,
        port: u16,
        password: &str,
    ) -> Vec<String> {
        let tls = if security == Security::Tls { "s" } else { "" };
        let mut args = vec![format!("{scheme}{tls}://127.0.0.1:{port}/")];
        args.extend(["--silent", "--show-error", "--max-time", "20", "--cacert"].map(String::from));
        args.push(servers.ca_file().display().to_string());
        args.extend([
            "--user".into(),
            format!("{}:{password}", MailServers::ADDRESS),
        ]);
        if security == Security::StartTls {
            args.push("--ssl-reqd".into());
        }
        args
    }

    /// Runs curl: what it printed, or its error.
    async fn curl(args: Vec<String>) -> Result<String, String> {
        let run = move || Command::new("curl").args(args).output().expect("curl");
        let output = tokio::task::spawn_blocking(run).await.unwrap();
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// The IMAP server's answer for the URL path `path` (`INBOX;UID=1` fetches a message
    /// whole) and curl's `more` arguments (`-X CAPABILITY`).
    async fn imap(servers: &MailServers, path: &str, more: &[&str]) -> String {
        let imap = servers.options.imap;
        let mut args = curl_args(
            servers,
            "imap",
            imap,
            servers.imap_port(),
            MailServers::PASSWORD,
        );
        args[0].push_str(path);
        args.extend(more.iter().map(|arg| arg.to_string()));
        curl(args).await.unwrap()
    }

    /// Sends [`OUTGOING`] to two recipients over `security` with SMTP AUTH `mechanism`.
    async fn smtp(
        servers: &MailServers,
        security: Security,
        mechanism: &str,
        password: &str,
    ) -> Result<String, String> {
        let file = servers.dir.join("outgoing.eml");
        fs::write(&file, OUTGOING).unwrap();
        let mut args = curl_args(servers, "smtp", security, servers.smtp_port(), password);
        args.extend(["--login-options".into(), format!("AUTH={mechanism}")]);
        args.extend(
            [
                "--mail-from",
                "help@shop.example",
                "--mail-rcpt",
                "a@example.com",
            ]
            .map(String::from),
        );
        args.extend(["--mail-rcpt", "b@example.com", "--upload-file"].map(String::from));
        args.push(file.display().to_string());
        curl(args).await
    }

    /// A delivery from `envelope_from` lands in INBOX with its Return-Path, IDLE is offered
    /// as asked, and messages sent with AUTH PLAIN and LOGIN reach the sink whole.
    async fn round_trip(options: MailOptions, envelope_from: &str) -> MailServers {
        let servers = MailServers::start(options).await;
        let bounce = "From: MAILER-DAEMON@mx.example\r\nTo: help@shop.example\r\n\
                      Subject: Undelivered Mail Returned to Sender\r\n\r\nIt bounced.\r\n";
        servers.deliver(bounce.as_bytes(), envelope_from).await;
        let fetched = imap(&servers, "INBOX;UID=1", &[]).await;
        assert_eq!(
            fetched,
            format!("Return-Path: <{envelope_from}>\r\n{bounce}")
        );

        let capabilities = imap(&servers, "", &["-X", "CAPABILITY"]).await;
        assert!(
            capabilities.starts_with("* CAPABILITY IMAP4rev1 "),
            "{capabilities}"
        );
        let idle = capabilities.split_whitespace().any(|word| word == "IDLE");
        assert_eq!(idle, options.idle, "{capabilities}");

        for mechanism in ["PLAIN", "LOGIN"] {
            smtp(&servers, options.smtp, mechanism, MailServers::PASSWORD)
                .await
                .unwrap();
        }
        let sent = servers.wait_sent(2, PATIENCE).await;
        assert_eq!(sent.len(), 2);
        for sent in sent {
            assert_eq!(sent.mail_from, "help@shop.example");
            assert_eq!(sent.rcpt_to, ["a@example.com", "b@example.com"]);
            assert_eq!(sent.data, OUTGOING.as_bytes());
        }
        servers
    }

    #[tokio::test]
    async fn mail_servers_over_starttls_file_a_bounce_and_refuse_auth_before_tls() {
        let options = MailOptions {
            imap: Security::StartTls,
            smtp: Security::StartTls,
            idle: false,
        };
        let servers = round_trip(options, "").await;

        let password = MailServers::PASSWORD;
        let wrong = smtp(&servers, Security::StartTls, "PLAIN", "a wrong password").await;
        let wrong = wrong.unwrap_err();
        assert!(wrong.contains("Login denied"), "{wrong}");
        let before_tls = smtp(&servers, Security::Plain, "PLAIN", password).await;
        // AUTH is not even offered, so curl goes on without it, and the sink refuses.
        let before_tls = before_tls.unwrap_err();
        assert!(before_tls.contains("MAIL failed: 530"), "{before_tls}");
        assert_eq!(servers.sent().len(), 2);

        let env = servers.env();
        let setting = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let port = servers.imap_port().to_string();
        assert_eq!(setting("ANYREPLY_EMAIL_IMAP_PORT"), Some(port.as_str()));
        assert_eq!(setting("ANYREPLY_EMAIL_SMTP_SECURITY"), Some("starttls"));
        assert_eq!(
            setting("ANYREPLY_EMAIL_CA_FILE"),
            servers.ca_file().to_str()
        );
        assert_eq!(env.len(), 12);
    }

    #[tokio::test]
    async fn mail_servers_over_implicit_tls_and_plain_text() {
        let options = MailOptions {
            imap: Security::Tls,
            smtp: Security::Plain,
            idle: true,
        };
        round_trip(options, "customer@example.com").await;
        let options = MailOptions {
            imap: Security::Plain,
            smtp: Security::Tls,
            idle: false,
        };
        round_trip(options, "").await;
    }
}
