//! The typed structs the `ceiling` binary deserializes a webhook body into, what a
//! hand-written server would declare. Shared by path with the adapters' parse benchmarks
//! (`bot-line/benches/webhook.rs`, `bot-messenger/benches/webhook.rs`), which time the same
//! parse beside theirs; it needs only `serde`.

use serde::Deserialize;

// The fields are read by deserialization only: the ceiling pays for building them, as a
// hand-written server that then used them would.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
pub(crate) struct LineBody {
    pub(crate) destination: String,
    pub(crate) events: Vec<LineEvent>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LineEvent {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) mode: Option<String>,
    pub(crate) timestamp: u64,
    pub(crate) source: Option<LineSource>,
    pub(crate) reply_token: Option<String>,
    pub(crate) webhook_event_id: String,
    pub(crate) delivery_context: LineDeliveryContext,
    pub(crate) message: Option<LineMessage>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LineSource {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) user_id: Option<String>,
    pub(crate) group_id: Option<String>,
    pub(crate) room_id: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LineDeliveryContext {
    pub(crate) is_redelivery: bool,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LineMessage {
    pub(crate) id: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) text: Option<String>,
    pub(crate) quote_token: Option<String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
pub(crate) struct MessengerBody {
    pub(crate) object: String,
    pub(crate) entry: Vec<MessengerEntry>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
pub(crate) struct MessengerEntry {
    pub(crate) id: String,
    pub(crate) time: u64,
    #[serde(default)]
    pub(crate) messaging: Vec<Messaging>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
pub(crate) struct Messaging {
    pub(crate) sender: MessengerId,
    pub(crate) recipient: MessengerId,
    pub(crate) timestamp: u64,
    pub(crate) message: Option<MessengerMessage>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
pub(crate) struct MessengerId {
    pub(crate) id: String,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
pub(crate) struct MessengerMessage {
    pub(crate) mid: String,
    pub(crate) text: Option<String>,
    pub(crate) is_echo: Option<bool>,
}
