//! The nouns every stage shares, on a floor of their own: the envelope and the SMTP reply, the
//! event's `message` object and its JSON form, the auth verdicts, a delivery's destination, status
//! and outcome, the endpoint signing key. This module imports no stage; every stage imports it.

mod delivery;
mod envelope;
mod event;
mod event_body;
mod event_json;
mod event_type;
mod reply;
mod report;
pub mod schema;
mod signing_key;
mod standing;
mod verdicts;

pub use delivery::{DeliveryStatus, Destination, NextState};
pub use envelope::{Envelope, Ingress};
pub use event::{Attachment, EventMessage, Forward, Mailbox, ParseStatus, Raw, ReplyText, Smtp, Spam, sha256_hex};
pub use event_body::{Via, event_body};
pub use event_json::{EventJson, with_raw_base64};
pub use event_type::EventType;
pub use reply::{Reason, Reply, printable};
pub use report::{Bounce, BounceOriginal, BounceRecipient, BounceTo, Complaint};
pub use schema::EVENT_VERSION;
pub use signing_key::{KeyError, SigningKey, SigningKeys, generate_secret};
pub use standing::Standing;
pub use verdicts::{ArcVerdict, Auth, AuthSource, DkimVerdict, DmarcVerdict, SpfVerdict};
