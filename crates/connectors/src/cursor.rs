//! A bridge's place in its assistant's event stream, kept on disk: the id of the last event it
//! handled, in `ANYREPLY_BRIDGE_STATE_DIR/<channel>-assistant-<id>.last-event-id`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::io::AsyncWriteExt;

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
        let dir = self.path.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(dir).await.with_context(|| {
            format!(
                "cannot create {} (ANYREPLY_BRIDGE_STATE_DIR)",
                dir.display()
            )
        })?;
        let text = match tokio::fs::read_to_string(&self.path).await {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(error).with_context(|| {
                    format!(
                        "cannot read {} (ANYREPLY_BRIDGE_STATE_DIR)",
                        self.path.display()
                    )
                });
            }
        };
        let id = text.trim().parse().with_context(|| {
            format!(
                "{} holds {:?}, not an event id; delete it to start with new events only",
                self.path.display(),
                text.trim()
            )
        })?;
        Ok(Some(id))
    }

    /// Saves `id`: written to a temporary file, flushed to disk and renamed over the old one,
    /// so a crash leaves the old id or the new one, never half a number.
    pub async fn save(&self, id: i64) -> anyhow::Result<()> {
        let scratch = self.path.with_extension("last-event-id.tmp");
        let write = async {
            let mut file = tokio::fs::File::create(&scratch).await?;
            file.write_all(format!("{id}\n").as_bytes()).await?;
            file.sync_all().await?;
            tokio::fs::rename(&scratch, &self.path).await
        };
        write
            .await
            .with_context(|| format!("cannot write {}", self.path.display()))
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
