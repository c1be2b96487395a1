//! Gateway frames: parsing one, reading the next whole message (inflated when compressed),
//! and the URL and close frames a connection uses.

use std::time::Duration;

use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

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

/// A dispatch's envelope, read without parsing its data.
pub(super) struct QuickDispatch<'a> {
    /// `t`.
    pub(super) name: &'a str,
    /// `s`.
    pub(super) sequence: Option<u64>,
    /// `d`, from its first byte to the byte before the frame's closing brace: JSON text only
    /// if the frame was (the mapping that reads it checks it).
    pub(super) data: &'a str,
}

/// Reads a dispatch frame (`op` 0) whose `t`, `s` and `op` come before `d`, as Discord writes
/// them, from the few bytes before `d`: `d` then runs to the frame's closing brace, and the
/// dispatch's data is parsed once, by its mapping, instead of once more here to find its end.
/// `None` for anything else (another op, `d` not last, a key it does not know or twice, escapes
/// in `t`, a number serde_json may read otherwise): the caller parses the frame whole.
pub(super) fn quick_dispatch(text: &str) -> Option<QuickDispatch<'_>> {
    let bytes = text.as_bytes();
    let mut at = skip_whitespace(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    let (mut name, mut sequence, mut op) = (None, None, None);
    loop {
        at = skip_whitespace(bytes, at + 1);
        let (key, after) = plain_string(text, at)?;
        at = skip_whitespace(bytes, after);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        at = skip_whitespace(bytes, at + 1);
        match key {
            "t" if name.is_none() => {
                let (value, after) = plain_string(text, at)?;
                name = Some(value);
                at = after;
            }
            "s" if sequence.is_none() => {
                let (value, after) = plain_number(bytes, at)?;
                sequence = Some(value);
                at = after;
            }
            "op" if op.is_none() => {
                let (value, after) = plain_number(bytes, at)?;
                op = Some(value);
                at = after;
            }
            "d" => {
                // JSON's whitespace only: `trim_end` would also take Unicode's, which no JSON
                // parser accepts there.
                let end = text.trim_end_matches(JSON_WHITESPACE);
                if op != Some(Some(0)) || !end.ends_with('}') || at >= end.len() - 1 {
                    return None;
                }
                return Some(QuickDispatch {
                    name: name?,
                    sequence: sequence.flatten(),
                    data: end[at..end.len() - 1].trim_end_matches(JSON_WHITESPACE),
                });
            }
            _ => return None,
        }
        at = skip_whitespace(bytes, at);
        if bytes.get(at) != Some(&b',') {
            return None;
        }
    }
}

/// What JSON calls whitespace.
const JSON_WHITESPACE: [char; 4] = [' ', '\t', '\n', '\r'];

/// JSON's whitespace from `at` on.
fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// A string at `at` without escapes or control characters, and the index after it.
fn plain_string(text: &str, at: usize) -> Option<(&str, usize)> {
    let bytes = text.as_bytes();
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let len = bytes[at + 1..].iter().position(|&b| b == b'"')?;
    let value = &text[at + 1..at + 1 + len];
    if value.bytes().any(|b| b == b'\\' || b < 0x20) {
        return None;
    }
    Some((value, at + len + 2))
}

/// A non-negative integer at `at` (`null` is `None`) as JSON writes it (no leading zero, no
/// fraction or exponent), and the index after it.
fn plain_number(bytes: &[u8], at: usize) -> Option<(Option<u64>, usize)> {
    if bytes[at..].starts_with(b"null") {
        return Some((None, at + 4));
    }
    let digits = bytes[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0
        || (digits > 1 && bytes[at] == b'0')
        || matches!(bytes.get(at + digits), Some(b'.' | b'e' | b'E'))
    {
        return None;
    }
    let text = std::str::from_utf8(&bytes[at..at + digits]).ok()?;
    Some((Some(text.parse().ok()?), at + digits))
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

    /// One copy of the message, of its exact size, which its dispatches' payloads share: a
    /// slice of the WebSocket layer's buffer would keep its whole read buffer (16 KiB, or what
    /// a large frame made it reserve) alive for as long as one of its events is queued, and
    /// the inflater's buffer is reused for the next message. A text message is UTF-8 already
    /// (the WebSocket layer checked it) and its copy is not checked again; a binary or inflated
    /// one is checked once. `None` when it is not UTF-8, so no JSON.
    pub(super) fn text_copy(&self, inflater: Option<&Inflater>) -> Option<Utf8Bytes> {
        match self {
            Self::Message(Message::Text(text)) => Some(Utf8Bytes::from(text.as_str())),
            _ => Utf8Bytes::try_from(bot_core::body_for_events(self.bytes(inflater))).ok(),
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
    fn a_dispatch_written_as_discord_writes_it_is_read_from_its_envelope() {
        let frame = r#"{"t":"MESSAGE_CREATE","s":42,"op":0,"d":{"id":"1","content":"}"}}"#;
        let quick = quick_dispatch(frame).unwrap();
        assert_eq!(quick.name, "MESSAGE_CREATE");
        assert_eq!(quick.sequence, Some(42));
        assert_eq!(quick.data, r#"{"id":"1","content":"}"}"#);
        // Whitespace anywhere JSON allows it, and the keys in another order before `d`.
        let frame =
            " {\n \"op\" : 0 , \"s\":null,\t\"t\" : \"TYPING_START\", \"d\" : {\"a\":[1]} \n} \n";
        let quick = quick_dispatch(frame).unwrap();
        assert_eq!(quick.name, "TYPING_START");
        assert_eq!(quick.sequence, None);
        assert_eq!(quick.data, r#"{"a":[1]}"#);
    }

    #[test]
    fn frames_written_otherwise_are_left_to_the_whole_parse() {
        for frame in [
            // Not a dispatch, or no name.
            r#"{"t":null,"s":null,"op":11,"d":null}"#,
            r#"{"s":1,"op":0,"d":{}}"#,
            r#"{"t":null,"s":1,"op":0,"d":{}}"#,
            // `d` before the others, or no `d`.
            r#"{"d":{},"t":"MESSAGE_CREATE","s":1,"op":0}"#,
            r#"{"t":"MESSAGE_CREATE","s":1,"op":0}"#,
            // A key twice, or one it does not know.
            r#"{"t":"A","t":"B","s":1,"op":0,"d":{}}"#,
            r#"{"t":"A","s":1,"op":0,"x":1,"d":{}}"#,
            // Escapes in a key or the name; numbers JSON writes otherwise or that overflow.
            r#"{"t":"MESSAGE\u005fCREATE","s":1,"op":0,"d":{}}"#,
            r#"{"\u0074":"A","s":1,"op":0,"d":{}}"#,
            r#"{"t":"A","s":01,"op":0,"d":{}}"#,
            r#"{"t":"A","s":1.0,"op":0,"d":{}}"#,
            r#"{"t":"A","s":1e3,"op":0,"d":{}}"#,
            r#"{"t":"A","s":-1,"op":0,"d":{}}"#,
            r#"{"t":"A","s":18446744073709551616,"op":0,"d":{}}"#,
            r#"{"t":"A","s":1,"op":00,"d":{}}"#,
            // Not an object, or cut short.
            r#"[0]"#,
            r#"{"t":"A","s":1,"op":0,"d":"#,
            r#"{"t":"A","s":1,"op":0,"d":}"#,
            r#"{"t":"A","s":1,"op":0"#,
            "",
            // Whitespace JSON does not allow (Unicode's) after the frame.
            "{\"t\":\"A\",\"s\":1,\"op\":0,\"d\":{}}\u{A0}",
            "{\"t\":\"A\",\"s\":1,\"op\":0,\"d\":{}}\u{3000}",
        ] {
            assert!(quick_dispatch(frame).is_none(), "{frame}");
        }
        // Within the frame, it stays in the data, whose parse (the mapping's) then fails.
        for frame in [
            "{\"t\":\"A\",\"s\":1,\"op\":0,\"d\":{}\u{0C}}",
            "{\"t\":\"A\",\"s\":1,\"op\":0,\"d\":{}\u{2028}}",
        ] {
            let quick = quick_dispatch(frame).unwrap();
            assert!(
                serde_json::from_str::<serde::de::IgnoredAny>(quick.data).is_err(),
                "{frame}"
            );
        }
    }

    #[test]
    fn what_follows_d_stays_in_the_data_and_fails_its_parse() {
        // Read quickly, `d` takes the keys after it; its parse (the mapping's) then fails, and
        // the shard parses the frame whole instead.
        let frame = r#"{"t":"A","s":1,"op":0,"d":{"x":1},"s2":2}"#;
        let quick = quick_dispatch(frame).unwrap();
        assert_eq!(quick.data, r#"{"x":1},"s2":2"#);
        assert!(serde_json::from_str::<serde::de::IgnoredAny>(quick.data).is_err());
        let whole = parse_frame(frame.as_bytes()).unwrap();
        assert_eq!(whole.data().get(), r#"{"x":1}"#);
    }

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
