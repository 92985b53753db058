//! Serving what links point at: decoded attachments and raw messages, from the database (SQLite's
//! small messages whole, PostgreSQL's chunks a piece at a time) or streamed from disk by tower-http's
//! `ServeFile` (Content-Length, HEAD, Range), under headers that keep a browser from rendering
//! sender-controlled bytes as our page: always `attachment`, `nosniff`, `sandbox`.

use std::sync::Arc;

use std::io::{Read, Seek, SeekFrom};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_range_header::parse_range_header;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::App;
use super::links::Check;
use crate::store::{Content, ContentReader};
use crate::time::now_ms;

#[derive(Deserialize)]
pub struct LinkQuery {
    pub exp: Option<String>,
    pub sig: Option<String>,
}

/// RFC 5987 attr-char: everything else in `filename*` is percent-encoded.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

pub async fn attachment(
    State(app): State<Arc<App>>,
    Path((id, index)): Path<(String, String)>,
    Query(q): Query<LinkQuery>,
    req: Request,
) -> Response {
    let Ok(i) = index.parse::<usize>() else { return status(StatusCode::NOT_FOUND) };
    if let Some(refused) = check(&app, &format!("/att/{id}/{index}"), &q, &id) {
        return refused;
    }
    let (store, mid) = (app.store.clone(), id.clone());
    let found =
        tokio::task::spawn_blocking(move || anyhow::Ok((store.attachment(&mid, i)?, store.content(&mid, Some(i))?)))
            .await;
    match found {
        Ok(Ok((None, _))) => status(StatusCode::NOT_FOUND),
        Ok(Ok((Some(att), content))) => {
            let name = att.filename.unwrap_or_else(|| format!("attachment-{i}"));
            serve(content, &att.content_type, &name, req).await
        }
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e.into()),
    }
}

pub async fn raw(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<LinkQuery>,
    req: Request,
) -> Response {
    if let Some(refused) = check(&app, &format!("/raw/{id}"), &q, &id) {
        return refused;
    }
    let (store, mid) = (app.store.clone(), id.clone());
    match tokio::task::spawn_blocking(move || store.content(&mid, None)).await {
        Ok(Ok(content)) => serve(content, "message/rfc822", &format!("{id}.eml"), req).await,
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e.into()),
    }
}

/// Signature first (403), then expiry (410), then the id's shape (404): a forger learns nothing
/// about which messages exist.
pub(super) fn check(app: &App, path: &str, q: &LinkQuery, id: &str) -> Option<Response> {
    match app.signer.check(path, q.exp.as_deref(), q.sig.as_deref(), now_ms() / 1000) {
        Check::Forged => return Some(status(StatusCode::FORBIDDEN)),
        Check::Expired => return Some(status(StatusCode::GONE)),
        Check::Valid => {}
    }
    let ours = id.strip_prefix("msg_").is_some_and(|u| !u.is_empty() && u.bytes().all(|b| b.is_ascii_alphanumeric()));
    (!ours).then(|| status(StatusCode::NOT_FOUND))
}

pub(super) async fn serve(content: Content, content_type: &str, filename: &str, req: Request) -> Response {
    let mime = content_type.parse::<mime::Mime>().unwrap_or(mime::APPLICATION_OCTET_STREAM);
    let mut resp = match content {
        Content::Missing => return status(StatusCode::NOT_FOUND),
        Content::Removed => return status(StatusCode::GONE),
        Content::Bytes(bytes) => serve_bytes(bytes, &mime, &req),
        Content::Reader(r) => serve_reader(r, &mime, &req),
        Content::File(path) => match ServeFile::new_with_mime(path, &mime).oneshot(req).await {
            Ok(r) => r.map(Body::new),
            Err(e) => return internal(anyhow::anyhow!("{e}")),
        },
    };
    // The row exists but the file does not: retention got there first.
    if resp.status() == StatusCode::NOT_FOUND {
        return status(StatusCode::GONE);
    }
    let h = resp.headers_mut();
    h.insert(header::CONTENT_DISPOSITION, disposition(filename));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    h.remove(header::LAST_MODIFIED);
    resp
}

/// What `ServeFile` answers for a file, for bytes kept in the database: the whole body, or one
/// range (206), or 416 for a range outside it or a multipart range (as `ServeFile` does); HEAD
/// gets the headers only. The Range header is parsed by the crate tower-http itself uses.
fn serve_bytes(bytes: Vec<u8>, mime: &mime::Mime, req: &Request) -> Response {
    let answer = Answer::of(bytes.len() as u64, req);
    let (start, count) = (answer.start as usize, answer.count as usize);
    let body = if answer.head { Body::empty() } else { Body::from(bytes[start..start + count].to_vec()) };
    answer.response(mime, body)
}

/// `serve_bytes` for bytes read a piece at a time (PostgreSQL's chunks): a blocking task reads the
/// range into a bounded channel that is the response body, so memory holds a few pieces, never the
/// whole of a large message.
fn serve_reader(content: ContentReader, mime: &mime::Mime, req: &Request) -> Response {
    let answer = Answer::of(content.len, req);
    if answer.head || answer.count == 0 {
        return answer.response(mime, Body::empty());
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(QUEUED_PIECES);
    let (start, count) = (answer.start, answer.count);
    tokio::task::spawn_blocking(move || {
        let mut reader = content.reader;
        let sent = (|| -> std::io::Result<()> {
            reader.seek(SeekFrom::Start(start))?;
            let mut left = count;
            while left > 0 {
                let mut piece = vec![0u8; PIECE.min(left as usize)];
                let n = reader.read(&mut piece)?;
                if n == 0 {
                    return Err(std::io::Error::other("the stored bytes ended early"));
                }
                piece.truncate(n);
                left -= n as u64;
                tx.blocking_send(Ok(Bytes::from(piece))).map_err(|_| std::io::Error::other("the client went away"))?;
            }
            Ok(())
        })();
        if let Err(e) = sent {
            tracing::warn!(error = %e, "download stopped");
            // The client sees a broken transfer, never a short body that looks whole.
            let _ = tx.blocking_send(Err(e));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    answer.response(mime, Body::from_stream(stream))
}

/// Bytes read and handed to the body at a time, and how many may wait in the channel.
const PIECE: usize = 64 * 1024;
const QUEUED_PIECES: usize = 4;

/// The status and byte range a download of `len` bytes answers `req` with.
struct Answer {
    code: StatusCode,
    start: u64,
    count: u64,
    content_range: Option<String>,
    head: bool,
}

impl Answer {
    fn of(len: u64, req: &Request) -> Answer {
        let head = req.method() == Method::HEAD;
        let range = req.headers().get(header::RANGE).and_then(|v| v.to_str().ok());
        match range.map(|r| parse_range_header(r).and_then(|p| p.validate(len))) {
            None => Answer { code: StatusCode::OK, start: 0, count: len, content_range: None, head },
            Some(Ok(ranges)) if ranges.len() == 1 => {
                let (start, end) = (*ranges[0].start(), *ranges[0].end());
                let content_range = Some(format!("bytes {start}-{end}/{len}"));
                Answer { code: StatusCode::PARTIAL_CONTENT, start, count: end - start + 1, content_range, head }
            }
            Some(_) => Answer {
                code: StatusCode::RANGE_NOT_SATISFIABLE,
                start: 0,
                count: 0,
                content_range: Some(format!("bytes */{len}")),
                head,
            },
        }
    }

    fn response(self, mime: &mime::Mime, body: Body) -> Response {
        let mut resp = Response::builder()
            .status(self.code)
            .header(header::CONTENT_TYPE, mime.as_ref())
            .header(header::CONTENT_LENGTH, self.count)
            .header(header::ACCEPT_RANGES, "bytes");
        if let Some(r) = self.content_range {
            resp = resp.header(header::CONTENT_RANGE, r);
        }
        resp.body(body).unwrap_or_else(|e| internal(e.into()))
    }
}

/// `attachment; filename="ascii fallback"; filename*=UTF-8''…` (RFC 6266 / 5987), from a name made
/// safe first: no path separators, control characters or bidirectional overrides.
fn disposition(name: &str) -> HeaderValue {
    let clean: String = name
        .chars()
        .map(|c| match c {
            '/' | '\\' => '_',
            c if c.is_control() => '_',
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => '_',
            c => c,
        })
        .take(200)
        .collect();
    let clean = clean.trim_matches(|c: char| c == '.' || c.is_whitespace());
    let clean = if clean.is_empty() { "attachment" } else { clean };
    let ascii: String = clean
        .chars()
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' })
        .collect();
    let value = format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{}", utf8_percent_encode(clean, ATTR_CHAR));
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("attachment"))
}

pub(super) fn status(code: StatusCode) -> Response {
    let text = match code {
        StatusCode::FORBIDDEN => "invalid link signature\n",
        StatusCode::GONE => "this link has expired or its content was removed\n",
        StatusCode::NOT_FOUND => "not found\n",
        _ => "error\n",
    };
    (code, [(header::CACHE_CONTROL, "private")], text).into_response()
}

pub(super) fn internal(e: anyhow::Error) -> Response {
    tracing::error!(error = %format!("{e:#}"), "serving a link failed");
    status(StatusCode::INTERNAL_SERVER_ERROR)
}

#[cfg(test)]
mod tests {
    use super::disposition;

    #[test]
    fn file_names_are_made_safe() {
        assert_eq!(disposition("po.pdf"), "attachment; filename=\"po.pdf\"; filename*=UTF-8''po.pdf");
        let v = disposition("../../etc/passwd").to_str().unwrap().to_string();
        assert!(!v.contains('/'), "{v}");
        let v = disposition("invoice\u{202e}fdp.exe").to_str().unwrap().to_string();
        assert!(!v.contains('\u{202e}') && v.contains("invoice_fdp.exe"), "{v}");
        let v = disposition("résumé \"x\".pdf").to_str().unwrap().to_string();
        assert_eq!(v, "attachment; filename=\"r_sum_ _x_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22x%22.pdf");
    }
}
