//! `/zip/{message_id}`: every attachment of a message as one zip archive, streamed. A blocking task
//! writes the archive (stored, not compressed: attachments are mostly compressed already) into a
//! bounded channel that is the response body, reading each attachment from the database row or
//! its file in chunks: no temporary copy on disk, and memory bounded by the channel, whatever the size
//! of the attachments. Names are made safe (no directories, no control characters) and unique.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tokio::sync::mpsc;
use zip::write::SimpleFileOptions;

use super::App;
use super::files::{LinkQuery, check, internal, status};
use crate::store::Content;

/// Bytes handed to the body at a time, and how many may wait in the channel.
const CHUNK: usize = 64 * 1024;
const QUEUED_CHUNKS: usize = 4;

pub async fn zip(State(app): State<Arc<App>>, Path(id): Path<String>, Query(q): Query<LinkQuery>) -> Response {
    if let Some(refused) = check(&app, &format!("/zip/{id}"), &q, &id) {
        return refused;
    }
    let (store, mid) = (app.store.clone(), id.clone());
    // What exists is decided before the first byte: 404, 410 or 200 with the archive.
    let found = tokio::task::spawn_blocking(move || {
        let list = store.attachments(&mid)?;
        let state = if list.is_empty() { Content::Missing } else { store.content(&mid, None)? };
        anyhow::Ok((list, state))
    })
    .await;
    let list = match found {
        Ok(Ok((_, Content::Missing))) => return status(StatusCode::NOT_FOUND),
        Ok(Ok((_, Content::Removed))) => return status(StatusCode::GONE),
        Ok(Ok((list, _))) => list,
        Ok(Err(e)) => return internal(e),
        Err(e) => return internal(e.into()),
    };
    let names = unique_names(list.iter().map(|a| a.filename.as_deref()));
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(QUEUED_CHUNKS);
    let (store, mid) = (app.store.clone(), id.clone());
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter { tx: tx.clone(), buf: Vec::with_capacity(CHUNK) };
        if let Err(e) = write_archive(&store, &mid, &names, &mut out) {
            // The client sees a broken transfer, never a truncated archive that looks whole.
            tracing::warn!(message_id = %mid, error = %format!("{e:#}"), "zip download stopped");
            let _ = tx.blocking_send(Err(std::io::Error::other("archive failed")));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    let disposition = format!("attachment; filename=\"{id}-attachments.zip\"");
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).unwrap_or(HeaderValue::from_static("attachment")),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    resp
}

fn write_archive(
    store: &crate::store::Store,
    mid: &str,
    names: &[String],
    out: &mut ChannelWriter,
) -> anyhow::Result<()> {
    let mut zip = zip::ZipWriter::new_stream(&mut *out);
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(false);
    for (i, name) in names.iter().enumerate() {
        zip.start_file(name.as_str(), options)?;
        match store.content(mid, Some(i))? {
            Content::Bytes(b) => zip.write_all(&b)?,
            Content::Reader(mut r) => {
                std::io::copy(&mut r.reader, &mut zip)?;
            }
            Content::File(path) => {
                let mut f = std::fs::File::open(&path)?;
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    zip.write_all(&buf[..n])?;
                }
            }
            Content::Missing | Content::Removed => anyhow::bail!("attachment {i} is gone"),
        }
    }
    zip.finish()?;
    out.flush()?;
    Ok(())
}

/// `io::Write` into the response body: chunks of `CHUNK` bytes, blocking while the client is slow.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| std::io::Error::other("the client went away"))
    }
}

/// Each attachment's name in the archive: its own file name without directories, control or
/// bidirectional characters, or `attachment-N`; a name seen before gets ` (2)`, ` (3)` … before its
/// extension.
pub fn unique_names<'a>(names: impl Iterator<Item = Option<&'a str>>) -> Vec<String> {
    let mut seen = HashSet::new();
    names
        .enumerate()
        .map(|(i, name)| {
            let base = name.map(safe_name).filter(|n| !n.is_empty()).unwrap_or_else(|| format!("attachment-{i}"));
            let (stem, ext) = match base.rfind('.') {
                Some(dot) if dot > 0 => (base[..dot].to_string(), base[dot..].to_string()),
                _ => (base.clone(), String::new()),
            };
            let mut candidate = base;
            let mut n = 2;
            while !seen.insert(candidate.to_lowercase()) {
                candidate = format!("{stem} ({n}){ext}");
                n += 1;
            }
            candidate
        })
        .collect()
}

fn safe_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let clean: String = last
        .chars()
        .map(|c| match c {
            c if c.is_control() => '_',
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => '_',
            ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c => c,
        })
        .take(200)
        .collect();
    clean.trim_matches(|c: char| c == '.' || c.is_whitespace()).to_string()
}

#[cfg(test)]
mod tests {
    use super::unique_names;

    #[test]
    fn names_are_made_safe_and_unique() {
        let names = unique_names(
            [
                Some("a.pdf"),
                Some("../../etc/A.pdf"),
                None,
                Some("x\u{202e}fdp.exe"),
                Some("C:\\dir\\a.pdf"),
                Some(".."),
            ]
            .into_iter(),
        );
        assert_eq!(names, ["a.pdf", "A (2).pdf", "attachment-2", "x_fdp.exe", "a (3).pdf", "attachment-5"]);
    }
}
