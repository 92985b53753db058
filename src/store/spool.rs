//! Raw messages on disk: `data_dir/spool/<msg_id>.eml`, written and fsync'd (file and directory)
//! before the SQLite transaction that makes the message exist, so a 250 never points at missing bytes.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub fn path(spool_dir: &Path, message_id: &str) -> PathBuf {
    // Ids are ours (`msg_` + ULID), never the sender's; still, refuse anything that could leave the dir.
    debug_assert!(message_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    spool_dir.join(format!("{message_id}.eml"))
}

/// Writes the file durably: data and inode flushed, then the directory entry.
pub fn write_durable(spool_dir: &Path, message_id: &str, raw: &[u8]) -> std::io::Result<PathBuf> {
    let path = path(spool_dir, message_id);
    let mut file = OpenOptions::new().write(true).create_new(true).open(&path)?;
    let written = file.write_all(raw).and_then(|_| file.sync_all());
    if let Err(e) = written {
        // A half-written file must not linger: no 250 was given for it.
        drop(file);
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    File::open(spool_dir)?.sync_all()?;
    Ok(path)
}

/// Removes a spool file whose transaction did not commit (best effort: an orphan is harmless).
pub fn discard(spool_dir: &Path, message_id: &str) {
    let _ = fs::remove_file(path(spool_dir, message_id));
}
