//! The event's `message` object: what every stage fills in (parse the MIME fields, auth and spam
//! their verdicts, route the routes, ingest the links) and deliver sends. Its JSON form is
//! `event_json.rs`.

use serde::{Serialize, Serializer};

use super::{Auth, Bounce, Complaint, Standing};

#[derive(Debug, Serialize)]
pub struct EventMessage {
    pub id: String,
    pub received_at: String,
    pub smtp: Smtp,
    pub from: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub subject: Option<String>,
    pub date: Option<String>,
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub thread_id: String,
    pub headers: Vec<(String, String)>,
    pub text: Option<String>,
    /// The length of a text body larger than the whole event may be (see `parse_bounded`): it is
    /// not copied out of the message, and `fit_payload` leaves it out as it would the text itself.
    #[serde(skip)]
    pub withheld_text: Option<u64>,
    pub html: Option<String>,
    pub omitted: Vec<String>,
    pub attachments: Vec<Attachment>,
    /// A signed link to every attachment as one zip archive (ingest); null without attachments.
    pub attachments_url: Option<String>,
    pub parsed: ParseStatus,
    pub auth: Option<Auth>,
    pub spam: Spam,
    /// Each recipient's route (match, action, rule, tag), filled by the route stage.
    pub routes: serde_json::Value,
    /// The sender's standing with the block and allow lists (ingest): `"allowed"`, `"blocked"` or null.
    #[serde(serialize_with = "sender_list")]
    pub sender_list: Standing,
    /// Why the message was sent automatically (`Auto-Submitted: auto-replied`, `X-Autoreply`, …);
    /// null for a message a person sent. Filled by `classify/`.
    pub auto_submitted: Option<String>,
    /// The delivery status notification's report; null unless the type is `email.bounced`.
    pub bounce: Option<Bounce>,
    /// The ARF feedback report; null unless the type is `email.complained`.
    pub complaint: Option<Complaint>,
    /// The new text of the message: without the quoted history and the signature (`extract/`).
    /// Null when the message has no text, or when it was left out to fit the payload cap.
    pub reply: Option<ReplyText>,
    /// The forwarded original, when the message is a forward (inline or attached); else null.
    pub forward: Option<Forward>,
    /// The first 200 characters of `reply.text`, white space collapsed.
    pub preview: Option<String>,
    /// Last, and `base64` last in it: the JSON then ends with `"base64":…}}`, so the stored copy
    /// can leave the base64 out and have it put back without parsing (see `EventJson`).
    pub raw: Raw,
}

/// `message.reply`: what the sender just wrote.
#[derive(Debug, Serialize, Default, Clone, PartialEq)]
pub struct ReplyText {
    /// None (null): the same as the event's `text` less its trailing white space, which is most mail
    /// (nothing quoted, no signature): read `reply.text ?? text`.
    pub text: Option<String>,
    /// The HTML without its quoted history; null when the message has no HTML part.
    pub html: Option<String>,
    pub signature: Option<String>,
    /// Quoted history was found (and left out of `text`).
    pub quoted: bool,
}

/// `message.forward`: the forwarded original's header fields as written, its text, and the
/// forwarder's own note above it.
#[derive(Debug, Serialize, Default, Clone, PartialEq)]
pub struct Forward {
    pub from: Option<String>,
    pub to: Option<String>,
    pub date: Option<String>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Smtp {
    /// The client: the connecting address, or the one a `proxy_protocol` balancer's header carried.
    pub client_ip: String,
    /// The balancer the connection came through (PROXY protocol); null for a direct connection.
    pub proxy_ip: Option<String>,
    pub helo: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub tls: Option<String>,
    pub tls_cipher: Option<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Mailbox {
    pub address: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Attachment {
    pub id: String,
    pub filename: Option<String>,
    pub content_type: String,
    pub size: usize,
    pub sha256: String,
    pub inline: bool,
    pub content_id: Option<String>,
    pub url: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Raw {
    pub size: usize,
    pub sha256: String,
    pub url: Option<String>,
    /// Last: see `EventMessage::raw`.
    pub base64: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ParseStatus {
    pub status: &'static str,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, Default)]
pub struct Spam {
    pub verdict: Option<String>,
    pub score: Option<f64>,
    pub engine: Option<String>,
}

fn sender_list<S: Serializer>(standing: &Standing, s: S) -> Result<S::Ok, S::Error> {
    match standing {
        Standing::Unlisted => s.serialize_none(),
        Standing::Allowed => s.serialize_str("allowed"),
        Standing::Blocked => s.serialize_str("blocked"),
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    // By table: a `format!` per byte cost more than the rest of the message's hex.
    digest.as_ref().iter().flat_map(|b| [HEX[usize::from(b >> 4)] as char, HEX[usize::from(b & 15)] as char]).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha256_hex_is_lower_case_hex_of_the_digest() {
        assert_eq!(super::sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
