//! The web chat wire protocol, version 1: JSON text frames over one WebSocket.
//!
//! # The conversation of a socket
//!
//! 1. The browser opens `GET /webchat/ws` and sends a **join** first:
//!    `{"type":"join","v":1,"token":"v1....","last_seq":12,"epoch":"node-a-1733360000000"}`.
//!    `token` is a user token the site's backend issued ([`crate::token`]); `last_seq` and
//!    `epoch`, when given, are the last sequence number this browser saw and the epoch of the
//!    welcome it came after, and ask for what it missed. No other frame is accepted before the join, and a
//!    socket that does not join within the join time-out is closed ([`CloseReason::JoinRequired`]).
//! 2. The server answers **welcome**:
//!    `{"type":"welcome","v":1,"epoch":"node-a-1733360000000","user":"u1","seq":14,
//!    "heartbeat_ms":20000,"resumed":2,"gap":false}`: the numbering's epoch, the user id, the
//!    latest sequence number of this user, the heartbeat interval the browser keeps, how many
//!    missed messages follow, and whether some may be missing (`gap`: older ones were no longer
//!    kept, or the browser's `last_seq` belongs to another epoch). The missed messages follow at
//!    once, in order, as ordinary `message` frames.
//! 3. Then, in any order:
//!    - browser → server: `{"type":"message","id":"c-1","text":"hi"}`,
//!      `{"type":"postback","id":"c-2","data":"order=42"}`, `{"type":"typing"}`,
//!      `{"type":"read","seq":14}`, `{"type":"heartbeat"}`. `id` is the browser's own id of the
//!      message (optional, at most 64 bytes): a message sent again with the same id after a
//!      reconnect is handled once. Frames of other types are delivered to the handlers as
//!      [`bot_core::EventKind::Other`] named by their `type`.
//!    - server → browser: `{"type":"ack","id":"c-1"}` once a message or postback is in the bot's
//!      queue (resend what has no ack after a reconnect); `{"type":"error","id":"c-1",
//!      "code":"busy","retry_after_ms":1000}` when the queue refused it (send it again later);
//!      `{"type":"message","seq":15,"id":"...","at":1733360000000,"message":{...}}` for each
//!      message of the bot ([`WireMessage`]); `{"type":"typing"}` while the bot is typing;
//!      `{"type":"heartbeat"}` answering each heartbeat.
//!
//! Sequence numbers count the bot's messages to one user, from 1, on every tab of the user; the
//! epoch names the numbering. The server keeps the latest messages of each user for a while (a
//! bounded history), so a browser that reconnects with `last_seq` gets each message it missed
//! exactly once, in order. On a single node the numbering is the node's (one run, the history
//! in memory): reconnected to another node (another epoch), a browser gets `gap: true` and
//! numbers from that node's welcome on. With a PostgreSQL cluster (`WebChatBuilder::cluster`,
//! feature `postgres`) the numbering is the cluster's (one epoch for every node, the history in
//! PostgreSQL), and a resume is exact on any node.
//!
//! Any frame (a heartbeat, a message, a WebSocket ping) shows the socket is alive; a socket that
//! sends nothing for the heartbeat time-out is closed ([`CloseReason::HeartbeatTimeout`]).
//!
//! # Close codes
//!
//! The server closes a socket with one of [`CloseReason`]'s codes (4001 to 4008, and 1001 when
//! the server shuts down or cannot read a cluster's history for the join); each close is counted
//! in `bot.webchat.closed{reason}`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::render::WireMessage;

/// The protocol version this crate speaks.
pub const VERSION: u32 = 1;
/// The longest client message id accepted, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 64;

/// Why the server closed a socket: each is a WebSocket close code and a short reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// 4001: the join token is not signed with the adapter's secret, or not a token at all.
    BadToken,
    /// 4002: the join token is signed but expired; ask the site's backend for a new one.
    TokenExpired,
    /// 4003: the first frame was not a join, or no join came within the join time-out.
    JoinRequired,
    /// 4004: the join asked for a protocol version this server does not speak.
    UnsupportedVersion,
    /// 4005: a frame is not a JSON object with a known shape, or not text.
    MalformedFrame,
    /// 4006: a frame is larger than the adapter's frame limit.
    FrameTooLarge,
    /// 4007: the browser read too slowly; more than the outbound bound was waiting for it.
    SlowReader,
    /// 4008: nothing came from the browser for the heartbeat time-out.
    HeartbeatTimeout,
    /// 1001: the server is shutting down, or cannot read a cluster's history for the join;
    /// reconnect (to another node).
    GoingAway,
}

impl CloseReason {
    /// Every reason, for metrics and documentation.
    pub const ALL: [CloseReason; 9] = [
        CloseReason::BadToken,
        CloseReason::TokenExpired,
        CloseReason::JoinRequired,
        CloseReason::UnsupportedVersion,
        CloseReason::MalformedFrame,
        CloseReason::FrameTooLarge,
        CloseReason::SlowReader,
        CloseReason::HeartbeatTimeout,
        CloseReason::GoingAway,
    ];

    /// The WebSocket close code.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::BadToken => 4001,
            CloseReason::TokenExpired => 4002,
            CloseReason::JoinRequired => 4003,
            CloseReason::UnsupportedVersion => 4004,
            CloseReason::MalformedFrame => 4005,
            CloseReason::FrameTooLarge => 4006,
            CloseReason::SlowReader => 4007,
            CloseReason::HeartbeatTimeout => 4008,
            CloseReason::GoingAway => 1001,
        }
    }

    /// The reason by its code, if it is one of these.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// A short stable name: the close frame's reason text and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::BadToken => "bad_token",
            CloseReason::TokenExpired => "token_expired",
            CloseReason::JoinRequired => "join_required",
            CloseReason::UnsupportedVersion => "unsupported_version",
            CloseReason::MalformedFrame => "malformed_frame",
            CloseReason::FrameTooLarge => "frame_too_large",
            CloseReason::SlowReader => "slow_reader",
            CloseReason::HeartbeatTimeout => "heartbeat_timeout",
            CloseReason::GoingAway => "going_away",
        }
    }

    pub(crate) fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|r| *r == self)
            .expect("every reason is in ALL")
    }
}

/// A frame from the browser, as read off the wire: every field any type uses, all optional.
#[derive(Debug, Deserialize)]
struct WireInbound<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    v: Option<u32>,
    #[serde(default, borrow)]
    token: Option<Cow<'a, str>>,
    #[serde(default)]
    last_seq: Option<u64>,
    #[serde(default, borrow)]
    epoch: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    seq: Option<u64>,
}

/// A frame from the browser, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inbound {
    /// Join as the token's user, resuming after `last_seq` when given.
    Join {
        /// The protocol version the browser speaks.
        version: u32,
        /// The user token.
        token: String,
        /// The last sequence number the browser saw.
        last_seq: Option<u64>,
        /// The epoch of that number (the welcome's `epoch`).
        epoch: Option<String>,
    },
    /// A text message of the user.
    Message {
        /// The browser's id of the message.
        id: Option<String>,
        /// The text.
        text: String,
    },
    /// A button or quick reply with postback data was tapped.
    Postback {
        /// The browser's id of the tap.
        id: Option<String>,
        /// The button's data.
        data: String,
    },
    /// The user is typing.
    Typing,
    /// The user has seen the bot's messages up to `seq`.
    Read {
        /// The sequence number of the last message seen.
        seq: u64,
    },
    /// The browser is alive.
    Heartbeat,
    /// A frame of a type this version does not know, with its browser id if any.
    Other {
        /// The frame's `type`.
        name: String,
        /// The browser's id, if the frame had one.
        id: Option<String>,
    },
}

/// Why a frame from the browser was refused: it closes the socket with
/// [`CloseReason::MalformedFrame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedFrame(pub(crate) &'static str);

impl std::fmt::Display for MalformedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for MalformedFrame {}

impl Inbound {
    /// Reads one text frame.
    ///
    /// # Errors
    ///
    /// [`MalformedFrame`] when it is not a JSON object with a string `type`, or a known type
    /// lacks a field it needs (a join without a token, a message without text), or an id is
    /// longer than [`MAX_CLIENT_ID_BYTES`].
    pub fn parse(text: &str) -> Result<Self, MalformedFrame> {
        let wire: WireInbound<'_> = serde_json::from_str(text)
            .map_err(|_| MalformedFrame("not a JSON object with a type"))?;
        let id = match wire.id {
            Some(id) if id.len() > MAX_CLIENT_ID_BYTES || id.is_empty() => {
                return Err(MalformedFrame("an id has 1 to 64 bytes"));
            }
            id => id.map(Cow::into_owned),
        };
        Ok(match &*wire.kind {
            "join" => Inbound::Join {
                version: wire.v.unwrap_or(VERSION),
                token: wire
                    .token
                    .ok_or(MalformedFrame("a join without a token"))?
                    .into_owned(),
                last_seq: wire.last_seq,
                epoch: wire.epoch.map(Cow::into_owned),
            },
            "message" => Inbound::Message {
                id,
                text: wire.text.ok_or(MalformedFrame("a message without text"))?,
            },
            "postback" => Inbound::Postback {
                id,
                data: wire.data.ok_or(MalformedFrame("a postback without data"))?,
            },
            "typing" => Inbound::Typing,
            "read" => Inbound::Read {
                seq: wire
                    .seq
                    .ok_or(MalformedFrame("a read receipt without seq"))?,
            },
            "heartbeat" => Inbound::Heartbeat,
            other => Inbound::Other {
                name: other.to_owned(),
                id,
            },
        })
    }
}

/// The server's frames, as they go out.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outbound<'a> {
    /// The answer to a join.
    Welcome {
        /// The protocol version.
        v: u32,
        /// The numbering's epoch: send it back with `last_seq` when resuming.
        epoch: &'a str,
        /// The user joined as.
        user: &'a str,
        /// The user's latest sequence number.
        seq: u64,
        /// How often the browser sends a heartbeat.
        heartbeat_ms: u64,
        /// How many missed messages follow.
        resumed: usize,
        /// Whether messages after `last_seq` were no longer kept.
        gap: bool,
    },
    /// A message of the bot.
    Message {
        /// Its sequence number.
        seq: u64,
        /// Its id, unique per user.
        id: &'a str,
        /// When it was sent, in milliseconds since the Unix epoch.
        at: u64,
        /// The content.
        message: &'a WireMessage,
    },
    /// A message or postback of the browser is in the bot's queue.
    Ack {
        /// The browser's id of it (or the one the server gave it).
        id: &'a str,
    },
    /// A message or postback was refused; send it again after `retry_after_ms`.
    Error {
        /// The browser's id of it.
        id: &'a str,
        /// `busy` (the bot's queue is full) or `unavailable` (shutting down, or a fault).
        code: &'a str,
        /// How long to wait before sending again.
        retry_after_ms: u64,
    },
    /// The bot is typing.
    Typing,
    /// The answer to a heartbeat.
    Heartbeat,
}

impl Outbound<'_> {
    /// The frame's JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server frames serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_type_parses() {
        let cases = [
            (
                r#"{"type":"join","v":1,"token":"t","last_seq":3}"#,
                Inbound::Join {
                    version: 1,
                    token: "t".into(),
                    last_seq: Some(3),
                    epoch: None,
                },
            ),
            (
                r#"{"type":"message","id":"c1","text":"hi","extra":true}"#,
                Inbound::Message {
                    id: Some("c1".into()),
                    text: "hi".into(),
                },
            ),
            (
                r#"{"type":"postback","data":"d"}"#,
                Inbound::Postback {
                    id: None,
                    data: "d".into(),
                },
            ),
            (r#"{"type":"typing"}"#, Inbound::Typing),
            (r#"{"type":"read","seq":9}"#, Inbound::Read { seq: 9 }),
            (r#"{"type":"heartbeat"}"#, Inbound::Heartbeat),
            (
                r#"{"type":"location","id":"x","lat":1}"#,
                Inbound::Other {
                    name: "location".into(),
                    id: Some("x".into()),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(Inbound::parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn malformed_frames_are_refused() {
        for text in [
            "",
            "null",
            "[1]",
            r#"{"no":"type"}"#,
            r#"{"type":7}"#,
            r#"{"type":"join"}"#,
            r#"{"type":"message"}"#,
            r#"{"type":"postback"}"#,
            r#"{"type":"read"}"#,
            r#"{"type":"message","text":"x","id":""}"#,
        ] {
            assert!(Inbound::parse(text).is_err(), "{text}");
        }
        let long_id = format!(
            r#"{{"type":"message","text":"x","id":"{}"}}"#,
            "i".repeat(65)
        );
        assert!(Inbound::parse(&long_id).is_err());
    }

    #[test]
    fn server_frames_have_their_documented_shape() {
        let welcome = Outbound::Welcome {
            v: 1,
            epoch: "n1-1",
            user: "u1",
            seq: 14,
            heartbeat_ms: 20_000,
            resumed: 2,
            gap: false,
        };
        assert_eq!(
            welcome.to_json(),
            r#"{"type":"welcome","v":1,"epoch":"n1-1","user":"u1","seq":14,"heartbeat_ms":20000,"resumed":2,"gap":false}"#
        );
        assert_eq!(Outbound::Heartbeat.to_json(), r#"{"type":"heartbeat"}"#);
        assert_eq!(
            Outbound::Ack { id: "c1" }.to_json(),
            r#"{"type":"ack","id":"c1"}"#
        );
    }

    #[test]
    fn close_codes_round_trip_and_are_distinct() {
        for reason in CloseReason::ALL {
            assert_eq!(CloseReason::from_code(reason.code()), Some(reason));
            assert_eq!(CloseReason::ALL[reason.index()], reason);
        }
        assert_eq!(CloseReason::from_code(1000), None);
    }
}
