//! Serde types of Messenger's webhook JSON (incoming), of the Send API (outgoing), and of the
//! page's setup ([`profile`]: the Messenger profile; [`subscription`]: the webhook subscription).
//!
//! Every messaging item key Meta documents (`message`, `postback`, `reaction`, `read`,
//! `delivery`, `referral`, `optin`, `account_linking`, the handover keys) has its payload type;
//! unknown keys parse into [`MessagingKind::Unknown`] with their payload, unknown enum values
//! into `Unknown` variants carrying the value Meta sent, and unknown fields are ignored, so a new
//! Messenger feature never fails a webhook. Instagram bodies (`object: "instagram"`) use the same
//! types. Field names are Meta's snake_case.

mod message;
pub mod profile;
pub mod send;
pub mod subscription;
pub mod template;
mod webhook;

pub use message::{
    Attachment, AttachmentPayload, AttachmentType, Coordinates, Message, QuickReplyPayload, ReplyTo,
};
pub use send::GraphError;
pub use webhook::{
    AccountLinking, Delivery, Entry, LinkStatus, MessagingEvent, MessagingKind, Object, Optin,
    Party, PassThreadControl, Postback, Reaction, ReactionAction, Read, Referral,
    RequestThreadControl, TakeThreadControl, WebhookBody,
};

use serde::Deserialize;
use serde_json::Value;

/// Ids that Meta sends as JSON numbers in some places and strings in others, kept as text.
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::de::Error as _;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(D::Error::custom(format!(
            "expected an id as a string or number, got {other}"
        ))),
    }
}

/// As [`string_or_number`], for ids that are always present.
fn string_or_number_required<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    string_or_number(d).map(Option::unwrap_or_default)
}
