//! The files a bridge keeps in `ANYREPLY_BRIDGE_STATE_DIR`, read and written one way: a
//! directory that cannot be made names its setting, a missing file is "nothing yet", and a
//! write goes to a scratch file, flushed to disk and renamed over the old one, so a crash
//! leaves the old content or the new, never half of it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::io::AsyncWriteExt;

/// Creates `state_dir`, naming the setting when it cannot.
pub async fn create_dir(state_dir: &Path) -> anyhow::Result<()> {
    tokio::fs::create_dir_all(state_dir).await.with_context(|| {
        format!(
            "cannot create {} (ANYREPLY_BRIDGE_STATE_DIR)",
            state_dir.display()
        )
    })
}

/// The file at `path`, or `None` when there is none yet.
pub async fn read_if_any(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error)
            .with_context(|| format!("cannot read {} (ANYREPLY_BRIDGE_STATE_DIR)", path.display())),
    }
}

/// Writes `bytes` to `path` through `<path>.tmp`, flushed before the rename.
pub async fn replace(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut scratch = path.as_os_str().to_owned();
    scratch.push(".tmp");
    let scratch = PathBuf::from(scratch);
    let write = async {
        let mut file = tokio::fs::File::create(&scratch).await?;
        file.write_all(bytes).await?;
        file.sync_all().await?;
        tokio::fs::rename(&scratch, path).await
    };
    write
        .await
        .with_context(|| format!("cannot write {}", path.display()))
}
