//! The event's JSON codec: serialised once under the payload cap (leaving out html, then text, …
//! when it cannot fit), and the stored form without `raw.base64`, put back from the raw bytes.

use base64::Engine;

use super::EventMessage;

/// The `message` object's JSON as sent, and as the store keeps it: without `raw.base64` when it
/// holds one (the store has the raw bytes anyway, and base64 is 40 % of a small message's event).
pub struct EventJson {
    pub full: String,
    /// `full` without `raw.base64`, when it had one: `with_raw_base64` puts it back.
    pub without_raw: Option<String>,
}

/// The JSON ends `"base64":"…"}}`, or `"base64":null}}` as stored.
const BASE64_KEY: &str = "\"base64\":";
const TAIL: &str = "}}";

fn without_raw_base64(full: &str, b64: &str) -> Option<String> {
    let head = full.strip_suffix(TAIL)?.strip_suffix('"')?.strip_suffix(b64)?.strip_suffix('"')?;
    head.ends_with(BASE64_KEY).then(|| format!("{head}null{TAIL}"))
}

/// The stored JSON of a message whose event had `raw.base64`, with it back: the event as sent.
pub fn with_raw_base64(stored: &str, raw: &[u8]) -> Option<String> {
    splice_base64(stored, &base64::engine::general_purpose::STANDARD.encode(raw))
}

/// `stored` (ending `"base64":null}}`) with `b64` in place of the null. Base64 needs no escaping:
/// the result is what serialising the event with it would give.
fn splice_base64(stored: &str, b64: &str) -> Option<String> {
    let head = stored.strip_suffix(TAIL)?.strip_suffix("null")?;
    if !head.ends_with(BASE64_KEY) {
        return None;
    }
    let mut json = String::with_capacity(head.len() + b64.len() + 4);
    for part in [head, "\"", b64, "\"", TAIL] {
        json.push_str(part);
    }
    Some(json)
}

/// A part of the event that can be left out to fit the cap: its name in `omitted`, and how to take it
/// out (false: it was not there).
type Omission = (&'static str, fn(&mut EventMessage) -> bool);

/// The event around `message` (ids, type, delivery) is small and bounded.
const ENVELOPE: u64 = 1024;

impl EventMessage {
    /// Inlines the raw message as `raw.base64` when it is at most `max` bytes.
    pub fn inline_raw(&mut self, raw: &[u8], max: u64) {
        if raw.len() as u64 <= max {
            self.raw.base64 = Some(base64::engine::general_purpose::STANDARD.encode(raw));
        }
    }

    /// Keeps the event body under `max` bytes: leaves out `html`, `forward`, `reply` (derived, like html), `text`, `preview`, then `raw.base64`,
    /// `headers` and the attachment list, naming each in `omitted`. What is left out stays
    /// reachable: the raw message by `raw.url` and the CLI.
    fn fit_payload(&mut self, max: u64) {
        // Counted, not built: a 50 MB text body is not serialised into another 50 MB.
        let size = |e: &Self| {
            let mut n = ByteCount(0);
            serde_json::to_writer(&mut n, e).map_or(u64::MAX, |()| n.0) + ENVELOPE + e.withheld_text.unwrap_or(0)
        };
        let steps: [Omission; 8] = [
            ("html", |e| e.html.take().is_some()),
            ("forward", |e| e.forward.take().is_some()),
            // A withheld text had no reply made of it: left out as well.
            ("reply", |e| e.reply.take().is_some() | e.withheld_text.is_some()),
            ("text", |e| e.text.take().is_some() | e.withheld_text.take().is_some()),
            ("preview", |e| e.preview.take().is_some()),
            ("raw.base64", |e| e.raw.base64.take().is_some()),
            ("headers", |e| !std::mem::take(&mut e.headers).is_empty()),
            ("attachments", |e| !std::mem::take(&mut e.attachments).is_empty()),
        ];
        for (name, drop) in steps {
            if size(self) <= max {
                return;
            }
            if drop(self) {
                self.omitted.push(name.to_string());
            }
        }
    }

    /// The JSON of the `message` object, kept under `max` bytes as `fit_payload` does. Almost
    /// every message fits as it is: it is serialised once, into a buffer that gives up at `max`
    /// (a 50 MB html body is not copied to find out it does not fit).
    pub fn to_json(&mut self, max: u64) -> anyhow::Result<EventJson> {
        if let Some(json) = self.stored_then_full(max)? {
            return Ok(json);
        }
        let full = self.fitted_json(max)?;
        let without_raw = self.raw.base64.as_deref().and_then(|b64| without_raw_base64(&full, b64));
        Ok(EventJson { full, without_raw })
    }

    /// The usual case, an event with `raw.base64` that fits as it is: serialised once without the
    /// base64 (the stored form), which is then spliced in for the full one. The base64 (4/3 of the
    /// message) is copied rather than run through the JSON string escaper. None: another case.
    fn stored_then_full(&mut self, max: u64) -> anyhow::Result<Option<EventJson>> {
        if self.withheld_text.is_some() {
            return Ok(None);
        }
        let Some(b64) = self.raw.base64.take() else { return Ok(None) };
        let room = max.saturating_sub(ENVELOPE) as usize;
        let mut out = Capped { buf: Vec::with_capacity(self.estimate().min(room)), room };
        let serialised = serde_json::to_writer(&mut out, &*self);
        // The full form: `null` (4 bytes) replaced by the quoted base64.
        let fits = serialised.is_ok() && out.buf.len() + b64.len() + 2 - 4 <= room;
        let json = match fits {
            true => {
                let stored = String::from_utf8(out.buf)?;
                splice_base64(&stored, &b64).map(|full| EventJson { full, without_raw: Some(stored) })
            }
            false => None,
        };
        self.raw.base64 = Some(b64);
        Ok(json)
    }

    /// About the size of the event's JSON without `raw.base64`: its bodies and a little more. Reserved
    /// at once, so the buffer is not copied as it doubles.
    fn estimate(&self) -> usize {
        let bodies = self.text.as_ref().map_or(0, String::len) + self.html.as_ref().map_or(0, String::len);
        bodies + bodies / 8 + 4096
    }

    fn fitted_json(&mut self, max: u64) -> anyhow::Result<String> {
        if self.withheld_text.is_none() {
            let mut out = Capped { buf: Vec::new(), room: max.saturating_sub(ENVELOPE) as usize };
            if serde_json::to_writer(&mut out, &*self).is_ok() {
                return Ok(String::from_utf8(out.buf)?);
            }
        }
        self.fit_payload(max);
        Ok(serde_json::to_string(&*self)?)
    }
}

/// An `io::Write` into a buffer that fails once more than `room` bytes are written.
struct Capped {
    buf: Vec<u8>,
    room: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + buf.len() > self.room {
            return Err(std::io::Error::other("over the payload cap"));
        }
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An `io::Write` that only counts what it is given.
struct ByteCount(u64);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
