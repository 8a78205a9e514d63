//! A bridge's place in its assistant's event stream, kept on disk: the id of the last event it
//! handled, in `ANYREPLY_BRIDGE_STATE_DIR/<channel>-assistant-<id>.last-event-id`.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The file holding one bridge's last handled event id.
#[derive(Debug, Clone)]
pub struct EventCursor {
    path: PathBuf,
}

impl EventCursor {
    /// The cursor of `channel`'s bridge for `assistant_id` (two bridges may share a directory).
    pub fn new(state_dir: &Path, channel: &str, assistant_id: i64) -> Self {
        Self {
            path: state_dir.join(format!("{channel}-assistant-{assistant_id}.last-event-id")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The id saved last; `None` before the first save. Creates the directory, so a directory
    /// that cannot be used fails at start, not at the first operator message.
    pub async fn load(&self) -> anyhow::Result<Option<i64>> {
        crate::state_file::create_dir(self.path.parent().unwrap_or(Path::new("."))).await?;
        let Some(bytes) = crate::state_file::read_if_any(&self.path).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&bytes);
        let id = text.trim().parse().with_context(|| {
            format!(
                "{} holds {:?}, not an event id; delete it to start with new events only",
                self.path.display(),
                text.trim()
            )
        })?;
        Ok(Some(id))
    }

    /// Saves `id` (see [`crate::state_file::replace`]: the old id or the new one, never half
    /// a number).
    pub async fn save(&self, id: i64) -> anyhow::Result<()> {
        crate::state_file::replace(&self.path, format!("{id}\n").as_bytes()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn saves_and_loads_the_last_id() {
        let dir = std::env::temp_dir().join(format!("anyreply-cursor-{}", std::process::id()));
        let cursor = EventCursor::new(&dir.join("nested"), "sms", 7);
        assert_eq!(cursor.load().await.unwrap(), None);
        cursor.save(41).await.unwrap();
        cursor.save(42).await.unwrap();
        assert_eq!(cursor.load().await.unwrap(), Some(42));
        tokio::fs::write(cursor.path(), "garbage").await.unwrap();
        let error = cursor.load().await.unwrap_err().to_string();
        assert!(error.contains("not an event id"), "{error}");
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
}
