//! Bytes a backend hands out as a stream rather than whole: a `Read + Seek` of known length, read a
//! piece at a time while a link or the zip archive is served (PostgreSQL's chunks), so a 50 MB
//! message is never held whole in memory to be downloaded.

use std::io::{Read, Seek};

/// What a reader must be: readable, seekable (a `Range` request starts anywhere), and movable to the
/// blocking thread that feeds the response body.
pub trait ReadSeek: Read + Seek + Send {}

impl<T: Read + Seek + Send> ReadSeek for T {}

/// A stored part (raw message or one attachment), to be read in pieces.
pub struct ContentReader {
    /// The whole part's length, in bytes (the Content-Length of a full download).
    pub len: u64,
    pub reader: Box<dyn ReadSeek>,
}

impl ContentReader {
    /// Reads it all into memory (the CLI's `--raw`, the forward relay: callers that need it whole).
    pub fn into_bytes(mut self) -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        self.reader.read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}
