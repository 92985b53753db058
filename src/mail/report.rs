//! The report objects of the event's `message`: `bounce` for a delivery status notification and
//! `complaint` for an ARF feedback report (both null otherwise). `classify/` fills them in.

use serde::Serialize;

#[derive(Debug, Serialize, Default, PartialEq)]
pub struct Bounce {
    pub recipients: Vec<BounceRecipient>,
    /// `hard` (a 5.x.x status, or a permanent failure), `soft` (4.x.x, or a delay).
    pub kind: &'static str,
    pub original: BounceOriginal,
    /// The recipient at our domain that the bounce was sent to, with its `+tag` (a VERP id).
    pub to: BounceTo,
}

#[derive(Debug, Serialize, Default, PartialEq)]
pub struct BounceRecipient {
    /// Final-Recipient (the address the remote server tried), without its `rfc822;` type.
    pub address: Option<String>,
    pub original_recipient: Option<String>,
    /// failed, delayed, delivered, relayed or expanded.
    pub action: Option<String>,
    /// The enhanced status code, e.g. `5.1.1`.
    pub status: Option<String>,
    pub diagnostic_code: Option<String>,
    pub remote_mta: Option<String>,
}

/// The bounced message, as far as the report includes it.
#[derive(Debug, Serialize, Default, PartialEq)]
pub struct BounceOriginal {
    pub message_id: Option<String>,
    pub subject: Option<String>,
    /// Its envelope sender (Return-Path of the returned headers).
    pub mail_from: Option<String>,
}

#[derive(Debug, Serialize, Default, PartialEq)]
pub struct BounceTo {
    pub address: Option<String>,
    pub tag: Option<String>,
}

#[derive(Debug, Serialize, Default, PartialEq)]
pub struct Complaint {
    /// abuse, fraud, virus, other, not-spam or auth-failure.
    pub feedback_type: String,
    pub user_agent: Option<String>,
    pub original_recipient: Option<String>,
    pub original_message_id: Option<String>,
    pub source_ip: Option<String>,
}
