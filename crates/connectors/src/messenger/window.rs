//! When each customer last wrote, kept on disk: Meta lets a page answer freely for 24 hours
//! after a customer's message, with the `HUMAN_AGENT` tag for 7 days, and not at all after.
//! Kept in `ANYREPLY_BRIDGE_STATE_DIR/messenger-assistant-<id>.last-wrote.json`, so a restart
//! keeps the windows open.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::Mutex;

/// The free window after a customer's message.
pub const STANDARD: Duration = Duration::from_secs(24 * 3600);
/// The `HUMAN_AGENT` tag's window.
pub const HUMAN_AGENT: Duration = Duration::from_secs(7 * 24 * 3600);

/// How a message may go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Within 24 hours: `messaging_type: RESPONSE`.
    Open,
    /// Within 7 days, or not known (Meta decides): `MESSAGE_TAG` with `HUMAN_AGENT`.
    HumanAgent,
    /// Past 7 days: Meta would refuse it; not sent.
    Closed,
}

/// Customers' last messages, in memory and on disk.
#[derive(Debug)]
pub struct LastWrote {
    path: PathBuf,
    /// Customer identifier → seconds since the epoch.
    times: Mutex<HashMap<String, u64>>,
}

/// The file of assistant `assistant_id`'s Messenger bridge in `state_dir`.
pub fn path(state_dir: &Path, assistant_id: i64) -> PathBuf {
    state_dir.join(format!(
        "messenger-assistant-{assistant_id}.last-wrote.json"
    ))
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

impl LastWrote {
    /// Loads the file; none yet is an empty record. A file that cannot be read fails at start.
    pub async fn load(state_dir: &Path, assistant_id: i64) -> anyhow::Result<Self> {
        let path = path(state_dir, assistant_id);
        crate::state_file::create_dir(state_dir).await?;
        let times = match crate::state_file::read_if_any(&path).await? {
            Some(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is not a record of customers' last messages; delete it to start afresh",
                    path.display()
                )
            })?,
            None => HashMap::new(),
        };
        Ok(Self {
            path,
            times: Mutex::new(times),
        })
    }

    /// `customer` wrote at `at` (seconds since the epoch); saved at once (temporary file and
    /// rename, so a crash leaves the old record or the new one).
    pub async fn wrote(&self, customer: &str, at: u64) -> anyhow::Result<()> {
        let mut times = self.times.lock().await;
        times.insert(customer.to_owned(), at);
        crate::state_file::replace(&self.path, &serde_json::to_vec(&*times)?).await
    }

    /// How a message to `customer` may go at `now`.
    pub async fn window(&self, customer: &str, now: u64) -> Window {
        let Some(at) = self.times.lock().await.get(customer).copied() else {
            return Window::HumanAgent;
        };
        let since = Duration::from_secs(now.saturating_sub(at));
        if since <= STANDARD {
            Window::Open
        } else if since <= HUMAN_AGENT {
            Window::HumanAgent
        } else {
            Window::Closed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn windows_follow_the_last_message_and_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("anyreply-window-{}", std::process::id()));
        let record = LastWrote::load(&dir, 7).await.unwrap();
        let hour = 3600;
        record.wrote("messenger:1", 1_000_000).await.unwrap();
        assert_eq!(
            record.window("messenger:1", 1_000_000 + 23 * hour).await,
            Window::Open
        );
        assert_eq!(
            record.window("messenger:1", 1_000_000 + 25 * hour).await,
            Window::HumanAgent
        );
        assert_eq!(
            record.window("messenger:1", 1_000_000 + 169 * hour).await,
            Window::Closed
        );
        assert_eq!(record.window("messenger:2", 0).await, Window::HumanAgent);
        let again = LastWrote::load(&dir, 7).await.unwrap();
        assert_eq!(again.window("messenger:1", 1_000_001).await, Window::Open);
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
}
