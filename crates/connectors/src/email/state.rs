//! What the email bridge remembers across restarts, in `ANYREPLY_BRIDGE_STATE_DIR`:
//! - which mails it has handled ([`Handled`], by `Message-ID`), so a mail fetched or posted
//!   again is not answered again;
//! - each customer's thread ([`Threads`]), so replies and operator messages go as mail in it;
//! - how far it has read the IMAP mailbox ([`UidCursor`]), so it fetches only what is new.
//!
//! Each file is `email-assistant-<id>.<what>`; every write goes to a temporary file that is
//! renamed over the old one (or is one appended line), so a crash leaves the old record or
//! the new one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use crate::state_file::{create_dir, read_if_any, replace};

/// How many handled mails are remembered: far more than arrive between two fetches of the
/// same mail (a redelivery, a mailbox read again after its `UIDVALIDITY` changed).
const HANDLED_KEPT: usize = 10_000;

/// The references a thread keeps: RFC 5322 asks for the first and the latest, and mail
/// programs thread by either.
const REFERENCES_KEPT: usize = 20;

fn file(state_dir: &Path, assistant_id: i64, what: &str) -> PathBuf {
    state_dir.join(format!("email-assistant-{assistant_id}.{what}"))
}

/// The mails handled, by key (see [`super::key`]): one line each in `handled.log`, the
/// oldest forgotten once there are twice [`HANDLED_KEPT`].
#[derive(Debug)]
pub struct Handled {
    path: PathBuf,
    /// [`HANDLED_KEPT`], but for tests.
    kept: usize,
    keys: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl Handled {
    pub async fn load(state_dir: &Path, assistant_id: i64) -> anyhow::Result<Self> {
        Self::keeping(state_dir, assistant_id, HANDLED_KEPT).await
    }

    async fn keeping(state_dir: &Path, assistant_id: i64, kept: usize) -> anyhow::Result<Self> {
        create_dir(state_dir).await?;
        let path = file(state_dir, assistant_id, "handled.log");
        let text = read_if_any(&path).await?.unwrap_or_default();
        let order: VecDeque<String> = String::from_utf8_lossy(&text)
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect();
        let set = order.iter().cloned().collect();
        Ok(Self {
            path,
            kept,
            keys: Mutex::new((set, order)),
        })
    }

    pub async fn contains(&self, key: &str) -> bool {
        self.keys.lock().await.0.contains(key)
    }

    /// Remembers `key`: appended to the log, which is rewritten with the newest
    /// [`HANDLED_KEPT`] when it has grown to twice that.
    pub async fn add(&self, key: &str) -> anyhow::Result<()> {
        let mut keys = self.keys.lock().await;
        let (set, order) = &mut *keys;
        if !set.insert(key.to_owned()) {
            return Ok(());
        }
        order.push_back(key.to_owned());
        if order.len() >= 2 * self.kept {
            while order.len() > self.kept {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
            let text: String = order.iter().map(|key| format!("{key}\n")).collect();
            return replace(&self.path, text.as_bytes()).await;
        }
        let append = async {
            let mut log = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await?;
            log.write_all(format!("{key}\n").as_bytes()).await?;
            log.sync_data().await
        };
        append
            .await
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// A customer's thread: what a mail to them answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    /// Where mail to the customer goes (their `Reply-To`, else their address).
    pub reply_to: String,
    pub subject: String,
    /// The thread's message ids, oldest first, the latest last (without angle brackets).
    pub references: Vec<String>,
}

impl Thread {
    /// The thread with `message_id` (a mail in it, theirs or ours) as its latest.
    pub fn add(&mut self, message_id: &str) {
        self.references.retain(|id| id != message_id);
        self.references.push(message_id.to_owned());
        if self.references.len() > REFERENCES_KEPT {
            // The first (the thread's root) stays; the oldest after it go.
            let over = self.references.len() - REFERENCES_KEPT;
            self.references.drain(1..=over);
        }
    }
}

/// Every customer's thread, by customer identifier, in `threads.json`.
#[derive(Debug)]
pub struct Threads {
    path: PathBuf,
    threads: Mutex<HashMap<String, Thread>>,
}

impl Threads {
    pub async fn load(state_dir: &Path, assistant_id: i64) -> anyhow::Result<Self> {
        create_dir(state_dir).await?;
        let path = file(state_dir, assistant_id, "threads.json");
        let threads = match read_if_any(&path).await? {
            Some(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is not a record of customers' threads; delete it to start afresh",
                    path.display()
                )
            })?,
            None => HashMap::new(),
        };
        Ok(Self {
            path,
            threads: Mutex::new(threads),
        })
    }

    pub async fn get(&self, customer: &str) -> Option<Thread> {
        self.threads.lock().await.get(customer).cloned()
    }

    /// Sets `customer`'s thread and saves them all.
    pub async fn set(&self, customer: &str, thread: Thread) -> anyhow::Result<()> {
        let mut threads = self.threads.lock().await;
        threads.insert(customer.to_owned(), thread);
        replace(&self.path, &serde_json::to_vec(&*threads)?).await
    }

    /// Adds `message_id` (a mail the bridge sent) to `customer`'s thread and saves.
    pub async fn sent(&self, customer: &str, message_id: &str) -> anyhow::Result<()> {
        let mut threads = self.threads.lock().await;
        if let Some(thread) = threads.get_mut(customer) {
            thread.add(message_id);
        }
        replace(&self.path, &serde_json::to_vec(&*threads)?).await
    }
}

/// How far the mailbox has been read: every mail up to `uid` (of the mailbox whose
/// `UIDVALIDITY` is `validity`) is handled, in `imap-uid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadUpTo {
    pub validity: u32,
    pub uid: u32,
}

/// The file of [`ReadUpTo`].
#[derive(Debug, Clone)]
pub struct UidCursor {
    path: PathBuf,
}

impl UidCursor {
    pub async fn new(state_dir: &Path, assistant_id: i64) -> anyhow::Result<Self> {
        create_dir(state_dir).await?;
        Ok(Self {
            path: file(state_dir, assistant_id, "imap-uid.json"),
        })
    }

    /// `None` before the first save.
    pub async fn load(&self) -> anyhow::Result<Option<ReadUpTo>> {
        let Some(bytes) = read_if_any(&self.path).await? else {
            return Ok(None);
        };
        let read = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not a mailbox position; delete it to read the unread mail of the last week again",
                self.path.display()
            )
        })?;
        Ok(Some(read))
    }

    pub async fn save(&self, read: ReadUpTo) -> anyhow::Result<()> {
        replace(&self.path, &serde_json::to_vec(&read)?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("anyreply-email-{name}-{}", std::process::id()))
    }

    #[tokio::test]
    async fn handled_mail_is_remembered_across_a_restart_and_bounded() {
        let dir = dir("handled");
        let kept = 50;
        let handled = Handled::keeping(&dir, 7, kept).await.unwrap();
        for n in 0..2 * kept {
            handled.add(&format!("m{n}")).await.unwrap();
        }
        handled.add("m1").await.unwrap();
        handled.add("late").await.unwrap();
        let again = Handled::keeping(&dir, 7, kept).await.unwrap();
        assert!(!again.contains("m0").await, "the oldest are forgotten");
        assert!(again.contains(&format!("m{}", 2 * kept - 1)).await);
        assert!(again.contains(&format!("m{kept}")).await);
        assert!(again.contains("late").await, "appended after the rewrite");
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }

    #[tokio::test]
    async fn threads_and_the_cursor_survive_a_restart() {
        let dir = dir("threads");
        let threads = Threads::load(&dir, 7).await.unwrap();
        let thread = Thread {
            reply_to: "ada@example.org".into(),
            subject: "Order".into(),
            references: vec!["a@x".into()],
        };
        threads.set("ada@example.org", thread).await.unwrap();
        threads.sent("ada@example.org", "b@shop").await.unwrap();
        let again = Threads::load(&dir, 7).await.unwrap();
        let thread = again.get("ada@example.org").await.unwrap();
        assert_eq!(thread.references, ["a@x", "b@shop"]);
        assert_eq!(again.get("bob@example.org").await, None);

        let cursor = UidCursor::new(&dir, 7).await.unwrap();
        assert_eq!(cursor.load().await.unwrap(), None);
        let read = ReadUpTo {
            validity: 3,
            uid: 41,
        };
        cursor.save(read).await.unwrap();
        assert_eq!(cursor.load().await.unwrap(), Some(read));
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }

    #[test]
    fn a_long_thread_keeps_its_root_and_its_latest() {
        let mut thread = Thread {
            reply_to: String::new(),
            subject: String::new(),
            references: Vec::new(),
        };
        for n in 0..30 {
            thread.add(&format!("m{n}"));
        }
        assert_eq!(thread.references.len(), REFERENCES_KEPT);
        assert_eq!(thread.references[0], "m0");
        assert_eq!(thread.references.last().unwrap(), "m29");
    }
}
