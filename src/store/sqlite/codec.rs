//! How the store compresses what it keeps in the database: a small message's raw bytes and
//! attachments (`contents.codec`) and every event's JSON (`messages.event_codec`), each one zstd
//! frame. Mail text and JSON shrink to a third or less; an attachment that is already compressed
//! costs a few bytes of frame header (zstd stores incompressible blocks as they are).
//!
//! An event is mostly a copy of its raw message (headers, text, html, preview): when the raw
//! message is in the database too, the event is compressed with the raw bytes as zstd's dictionary
//! (`ZstdAfterRaw`), so those copies cost a reference each instead of their bytes again.
//!
//! Rows written before compression (codec `Plain`) are read as they are.

use std::cell::RefCell;

use zstd::zstd_safe::{CCtx, CParameter, DCtx};

/// The level: 3 is zstd's default; on messages of a few KB it costs about as much as parsing the
/// message's headers, and higher levels save a few per cent more for several times the CPU.
const LEVEL: i32 = 3;

/// The largest stored form read back: a corrupt row must not make us allocate without bound. A
/// kept message is at most `contents::INLINE_MAX`; an event is capped by the payload limit.
const READ_MAX: u64 = 1 << 30;

/// `contents.codec` and `messages.event_codec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Codec {
    /// As received (rows from before schema version 1).
    Plain = 0,
    /// One zstd frame.
    Zstd = 1,
    /// One zstd frame made with the message's raw bytes as its dictionary (events only).
    ZstdAfterRaw = 2,
}

impl Codec {
    pub(super) fn from_column(n: i64) -> Option<Codec> {
        match n {
            0 => Some(Codec::Plain),
            1 => Some(Codec::Zstd),
            2 => Some(Codec::ZstdAfterRaw),
            _ => None,
        }
    }
}

/// zstd reads a dictionary that starts with its magic number as a trained dictionary, not as
/// plain content: such raw bytes (never real mail, but a sender chooses them) are no dictionary.
const DICT_MAGIC: [u8; 4] = 0xEC30_A437u32.to_le_bytes();

pub(super) fn usable_as_dictionary(raw: &[u8]) -> bool {
    !raw.starts_with(&DICT_MAGIC)
}

thread_local! {
    // A context per thread, kept: making one per message would allocate and clear its tables
    // each time. Sessions compress on their own threads, outside the group commit's lock.
    static COMPRESS: RefCell<CCtx<'static>> = RefCell::new(new_cctx());
    static DECOMPRESS: RefCell<DCtx<'static>> = RefCell::new(DCtx::create());
}

fn new_cctx() -> CCtx<'static> {
    let mut c = CCtx::create();
    // Cannot fail for a level in zstd's range; were it to, zstd's own default (also 3) applies.
    let _ = c.set_parameter(CParameter::CompressionLevel(LEVEL));
    c
}

fn zstd_error(what: &str, code: usize) -> anyhow::Error {
    anyhow::anyhow!("{what}: {}", zstd::zstd_safe::get_error_name(code))
}

/// One zstd frame of `data`, with `dictionary` (a message's raw bytes, see `usable_as_dictionary`)
/// when given: reading it back needs the same dictionary.
pub(super) fn compress(data: &[u8], dictionary: Option<&[u8]>) -> anyhow::Result<Vec<u8>> {
    COMPRESS.with(|c| {
        let mut c = c.borrow_mut();
        // Loaded (copied) for this frame, or the previous frame's cleared: an empty one unsets it.
        c.load_dictionary(dictionary.unwrap_or(&[])).map_err(|e| zstd_error("loading the dictionary", e))?;
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
        c.compress2(&mut out, data).map_err(|e| zstd_error("compressing", e))?;
        Ok(out)
    })
}

/// The bytes of a frame made by `compress` (with the same dictionary).
pub(super) fn decompress(frame: &[u8], dictionary: Option<&[u8]>) -> anyhow::Result<Vec<u8>> {
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(n)) if n <= READ_MAX => n as usize,
        _ => anyhow::bail!("a stored zstd frame without a usable size"),
    };
    DECOMPRESS.with(|d| {
        let mut d = d.borrow_mut();
        d.load_dictionary(dictionary.unwrap_or(&[])).map_err(|e| zstd_error("loading the dictionary", e))?;
        let mut out = Vec::with_capacity(size);
        d.decompress(&mut out, frame).map_err(|e| zstd_error("decompressing", e))?;
        anyhow::ensure!(out.len() == size, "a stored zstd frame decompressed to {} of {size} bytes", out.len());
        Ok(out)
    })
}

/// Stored bytes as they were given to the store.
pub(super) fn decode(codec: Codec, stored: Vec<u8>, dictionary: Option<&[u8]>) -> anyhow::Result<Vec<u8>> {
    match codec {
        Codec::Plain => Ok(stored),
        Codec::Zstd => decompress(&stored, None),
        Codec::ZstdAfterRaw => {
            let dictionary =
                dictionary.ok_or_else(|| anyhow::anyhow!("the raw message the event was compressed with is gone"))?;
            decompress(&stored, Some(dictionary))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{compress, decompress, usable_as_dictionary};

    #[test]
    fn frames_read_back_with_and_without_a_dictionary_and_not_with_another() {
        let raw = b"Subject: hello there\r\nFrom: a@b.test\r\n\r\nThe body of the message, said twice.\r\n".repeat(3);
        let event = br#"{"subject":"hello there","text":"The body of the message, said twice.\r\n"}"#;
        let alone = compress(event, None).unwrap();
        let after = compress(event, Some(&raw)).unwrap();
        assert!(after.len() < alone.len(), "the raw bytes serve as dictionary: {} vs {}", after.len(), alone.len());
        assert_eq!(decompress(&alone, None).unwrap(), event);
        assert_eq!(decompress(&after, Some(&raw)).unwrap(), event);
        // A dictionary left loaded by the previous call must not leak into the next frame.
        assert_eq!(decompress(&alone, None).unwrap(), event);
        assert!(decompress(&after, Some(b"some other bytes entirely")).map_or(true, |b| b != event));
        assert_eq!(decompress(&compress(b"", None).unwrap(), None).unwrap(), b"");
        assert!(decompress(b"not a frame", None).is_err());
    }

    #[test]
    fn raw_bytes_that_look_like_a_zstd_dictionary_are_not_used_as_one() {
        let mut hostile = 0xEC30_A437u32.to_le_bytes().to_vec();
        hostile.extend_from_slice(b"rest of a message");
        assert!(!usable_as_dictionary(&hostile));
        assert!(usable_as_dictionary(b"Received: by x\r\n"));
    }
}
