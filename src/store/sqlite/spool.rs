//! Raw messages on disk: `data_dir/spool/<msg_id>.eml`, written and fsync'd (file, then directory)
//! before the SQLite transaction that makes the message exist, so a 250 never points at missing bytes.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub fn path(spool_dir: &Path, message_id: &str) -> PathBuf {
    // Ids are ours (`msg_` + ULID), never the sender's; still, refuse anything that could leave the dir.
    debug_assert!(message_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    spool_dir.join(format!("{message_id}.eml"))
}

/// Writes the file and fsyncs its data and inode. Its directory entry is made durable by the
/// caller's `sync_dir` (the store's group commit does one for a whole batch of messages).
pub fn write_synced(spool_dir: &Path, message_id: &str, raw: &[u8]) -> std::io::Result<PathBuf> {
    let path = path(spool_dir, message_id);
    let mut file = OpenOptions::new().write(true).create_new(true).open(&path)?;
    let written = file.write_all(raw).and_then(|_| file.sync_all());
    if let Err(e) = written {
        // A half-written file must not linger: no 250 was given for it.
        drop(file);
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// Makes the entries created in `dir` durable (fsync of the directory).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `data_dir/attachments/<msg_id>/<index>`: named by our ids, never by the sender's file name.
pub fn attachment_path(attachment_dir: &Path, message_id: &str, index: usize) -> PathBuf {
    attachment_dir.join(message_id).join(index.to_string())
}

/// Writes each decoded attachment durably (skipped when there are none).
pub fn write_attachments(attachment_dir: &Path, message_id: &str, parts: &[&[u8]]) -> std::io::Result<()> {
    if parts.is_empty() {
        return Ok(());
    }
    let dir = attachment_dir.join(message_id);
    fs::create_dir(&dir)?;
    for (i, bytes) in parts.iter().enumerate() {
        let mut f = OpenOptions::new().write(true).create_new(true).open(dir.join(i.to_string()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    File::open(&dir)?.sync_all()?;
    File::open(attachment_dir)?.sync_all()
}

/// Removes the files of a message (retention, or a transaction that did not commit; best effort:
/// an orphan is harmless).
pub fn discard(spool_dir: &Path, attachment_dir: &Path, message_id: &str) {
    let _ = fs::remove_file(path(spool_dir, message_id));
    let _ = fs::remove_dir_all(attachment_dir.join(message_id));
}
