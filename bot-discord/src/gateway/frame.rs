//! Gateway frames: parsing one, reading the next whole message (inflated when compressed),
//! and the URL and close frames a connection uses.

use std::time::Duration;

use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::close::{CloseAction, classify, fatal_error};
use super::compression::Inflater;
use super::shard::{GATEWAY_VERSION, Next};
use crate::event::Text;

/// One gateway frame, borrowed from the message's bytes; `d` stays JSON text.
#[derive(Deserialize)]
pub(super) struct Frame<'a> {
    pub(super) op: u8,
    #[serde(borrow, default)]
    pub(super) d: Option<&'a RawValue>,
    #[serde(default)]
    pub(super) s: Option<u64>,
    #[serde(borrow, default)]
    pub(super) t: Option<Text<'a>>,
}

impl<'a> Frame<'a> {
    /// `d`, `null` when missing.
    pub(super) fn data(&self) -> &'a RawValue {
        self.d.unwrap_or(RawValue::NULL)
    }

    /// `t`, empty when missing.
    pub(super) fn name(&self) -> &str {
        self.t.as_ref().map_or("", |t| &t.0)
    }
}

/// Parses a frame; an unreadable one is logged (its category only: the message may quote the
/// frame's content) and skipped, and the connection goes on.
pub(super) fn parse_frame(bytes: &[u8]) -> Option<Frame<'_>> {
    match serde_json::from_slice::<Frame<'_>>(bytes) {
        Ok(frame) => Some(frame),
        Err(error) => {
            tracing::warn!(category = ?error.classify(), "discord gateway frame is not a payload");
            None
        }
    }
}

/// A whole message as received: its bytes are in the message, or in the inflater.
pub(super) enum Payload {
    Message(Message),
    Inflated,
}

impl Payload {
    pub(super) fn bytes<'a>(&'a self, inflater: Option<&'a Inflater>) -> &'a [u8] {
        match self {
            Self::Message(Message::Text(text)) => text.as_bytes(),
            Self::Message(Message::Binary(bytes)) => bytes,
            Self::Message(_) => &[],
            Self::Inflated => inflater.map_or(&[], Inflater::last),
        }
    }
}

/// The next whole gateway message; the error says how the connection ended. Cancel-safe: a
/// compressed message's first parts stay in the inflater.
pub(super) async fn next_payload<S>(
    stream: &mut S,
    inflater: &mut Option<Inflater>,
) -> Result<Payload, Next>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = match stream.next().await {
            None => {
                return Err(Next::Resume {
                    reason: "connection_closed",
                    at_once: false,
                });
            }
            Some(Err(error)) => {
                tracing::debug!(%error, "discord gateway read failed");
                return Err(Next::Resume {
                    reason: "connection_error",
                    at_once: false,
                });
            }
            Some(Ok(message)) => message,
        };
        match &message {
            Message::Text(_) => return Ok(Payload::Message(message)),
            Message::Binary(bytes) => match inflater {
                Some(inflater) => match inflater.push(bytes) {
                    Ok(Some(_)) => return Ok(Payload::Inflated),
                    Ok(None) => continue,
                    Err(error) => {
                        tracing::warn!(%error, "discord gateway compression broke");
                        return Err(Next::Resume {
                            reason: "decompress_failed",
                            at_once: false,
                        });
                    }
                },
                None => return Ok(Payload::Message(message)),
            },
            Message::Close(frame) => {
                let (code, reason) = frame.as_ref().map_or((1006, String::new()), |f| {
                    (u16::from(f.code), f.reason.to_string())
                });
                return Err(match classify(code) {
                    CloseAction::Resume => Next::Resume {
                        reason: "closed_by_gateway",
                        at_once: false,
                    },
                    CloseAction::Reidentify => Next::Reidentify {
                        reason: "session_closed",
                        wait: Duration::ZERO,
                    },
                    CloseAction::Fatal(kind) => Next::Fatal(fatal_error(kind, code, &reason)),
                });
            }
            _ => continue,
        }
    }
}

pub(super) fn close(code: u16) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: "".into(),
    }))
}

pub(super) fn gateway_url(base: &str, compress: bool) -> String {
    let base = base.trim_end_matches('/');
    let compression = if compress {
        "&compress=zlib-stream"
    } else {
        ""
    };
    format!("{base}/?v={GATEWAY_VERSION}&encoding=json{compression}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_version_encoding_and_compression() {
        assert_eq!(
            gateway_url("wss://gateway.discord.gg/", false),
            "wss://gateway.discord.gg/?v=10&encoding=json"
        );
        assert_eq!(
            gateway_url("wss://resume.discord.gg", true),
            "wss://resume.discord.gg/?v=10&encoding=json&compress=zlib-stream"
        );
    }
}
