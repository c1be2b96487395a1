// Over 700 lines: one property suite, included whole by tests/props.rs and by bench's fuzz-run
// (which includes this file by path), so it stays one file.
//! Discord's properties: the interactions endpoint (Ed25519 check, parsing, mapping, answers),
//! gateway frames (parsing and dispatch mapping) and zlib-stream inflation. Run by
//! `tests/props.rs` (CI, a few hundred cases each) and by bench's `fuzz-run` (millions).
//!
//! Expects the including crate root to declare `mod fuzzing;`
//! (`bot-core/tests/support/fuzzing.rs`).

#![allow(dead_code, unreachable_pub)]

use std::io::Write as _;

use bot_discord::ConfigureApi as _;
use bot_discord::Discord;
use bot_discord::gateway::fuzz::{FrameReader, ZlibStream};
use bot_discord::interactions::{DEFAULT_PATH, PublicKey, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use bot_discord::testing::{APPLICATION_ID, InteractionSigner};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};

use crate::fuzzing::{self, Harness, Mutations, Seen, check_seen, check_status, post};

/// Discord's epoch (2015-01-01) in milliseconds since the Unix epoch.
const DISCORD_EPOCH_MS: i64 = 1_420_070_400_000;
/// The bot's own user id (READY).
pub const BOT_USER: &str = "1000000000000000001";

/// The key the endpoint verifies with.
pub fn signer() -> InteractionSigner {
    InteractionSigner::new([42; 32])
}

/// A bot with the Discord adapter serving only the interactions endpoint, driven in-process;
/// its handler answers every event with `seen <event id>`.
pub fn harness() -> Harness {
    let discord = Discord::builder("props-bot-token")
        // Answers go into the HTTP response; nothing reaches the REST API.
        .api_base("http://127.0.0.1:9")
        .application_id(APPLICATION_ID)
        .public_key(PublicKey::from_hex(&signer().public_key_hex()).expect("a valid key"))
        .gateway(false)
        .build()
        .expect("the Discord adapter builds");
    Harness::new(discord, true)
}

/// A snowflake made at `millis` after Discord's epoch.
fn snowflake(millis: u64, low: u64) -> String {
    ((millis << 22) | (low & 0x3f_ffff)).to_string()
}

fn snowflake_id() -> impl Strategy<Value = String> {
    (0u64..(1 << 41), any::<u64>()).prop_map(|(millis, low)| snowflake(millis, low))
}

/// Any text, control characters and astral planes included.
pub fn any_text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 1..40).prop_map(|c| c.into_iter().collect())
}

// ---------------------------------------------------------------------------------------------
// Interactions
// ---------------------------------------------------------------------------------------------

/// What an interaction is.
#[derive(Debug, Clone)]
pub enum InteractionKind {
    /// A slash command with an optional `text` option.
    Command(String, Option<String>),
    /// A button or select menu.
    Component(String, Vec<String>),
    /// A modal's submission.
    Modal(String, Vec<(String, String)>),
    /// Discord checking the endpoint.
    Ping,
    /// Autocomplete (answered with no choices, not delivered).
    Autocomplete,
    /// A type Discord may add later.
    Unknown(u8),
}

/// One generated interaction.
#[derive(Debug, Clone)]
pub struct Interaction {
    /// What.
    pub kind: InteractionKind,
    /// The channel, when there is one.
    pub channel: Option<String>,
    /// The user.
    pub user: String,
    /// In a guild (`member.user`) or a DM (`user`).
    pub in_guild: bool,
}

fn interaction_kind() -> impl Strategy<Value = InteractionKind> {
    prop_oneof![
        4 => ("[a-z_-]{1,32}", prop::option::of(any_text()))
            .prop_map(|(name, text)| InteractionKind::Command(name, text)),
        2 => (any_text(), prop::collection::vec(any_text(), 0..3))
            .prop_map(|(id, values)| InteractionKind::Component(id, values)),
        1 => (any_text(), prop::collection::vec((any_text(), any_text()), 0..3))
            .prop_map(|(id, fields)| InteractionKind::Modal(id, fields)),
        1 => Just(InteractionKind::Ping),
        1 => Just(InteractionKind::Autocomplete),
        1 => (6u8..=255).prop_map(InteractionKind::Unknown),
    ]
}

/// One interaction of any type.
pub fn interaction() -> impl Strategy<Value = Interaction> {
    (
        interaction_kind(),
        prop::option::weighted(0.9, snowflake_id()),
        snowflake_id(),
        any::<bool>(),
    )
        .prop_map(|(kind, channel, user, in_guild)| Interaction {
            kind,
            channel,
            user,
            in_guild,
        })
}

impl Interaction {
    /// Its id: unique by `nonce`, made now-ish (so `occurred_at` is checkable).
    fn id(nonce: u64) -> String {
        snowflake(1_300_000_000_000 + nonce, nonce)
    }

    fn token(nonce: u64) -> String {
        format!("props-interaction-token-{nonce}")
    }

    /// The interaction as Discord sends it.
    pub fn to_json(&self, nonce: u64) -> Value {
        let (interaction_type, data) = match &self.kind {
            InteractionKind::Command(name, text) => {
                let options: Vec<Value> = text
                    .iter()
                    .map(|t| json!({"name": "text", "type": 3, "value": t}))
                    .collect();
                (
                    2,
                    json!({"id": "42", "name": name, "type": 1, "options": options}),
                )
            }
            InteractionKind::Component(custom_id, values) => (
                3,
                json!({"custom_id": custom_id, "component_type": 3, "values": values}),
            ),
            InteractionKind::Modal(custom_id, fields) => {
                let rows: Vec<Value> = fields
                    .iter()
                    .map(|(id, value)| {
                        json!({"type": 1, "components": [{"type": 4, "custom_id": id, "value": value}]})
                    })
                    .collect();
                (5, json!({"custom_id": custom_id, "components": rows}))
            }
            InteractionKind::Ping => (1, Value::Null),
            InteractionKind::Autocomplete => (4, json!({"id": "42", "name": "x", "type": 1})),
            InteractionKind::Unknown(n) => (u64::from(*n), json!({})),
        };
        let mut interaction = json!({
            "id": Self::id(nonce),
            "application_id": APPLICATION_ID,
            "type": interaction_type,
            "token": Self::token(nonce),
            "version": 1,
        });
        if !data.is_null() {
            interaction["data"] = data;
        }
        if let Some(channel) = &self.channel {
            interaction["channel_id"] = json!(channel);
            interaction["channel"] = json!({"id": channel, "type": 0});
        }
        if self.in_guild {
            interaction["guild_id"] = json!("1");
            interaction["member"] = json!({"user": {"id": self.user, "username": "someone"}});
        } else {
            interaction["user"] = json!({"id": self.user, "username": "someone"});
        }
        interaction
    }

    /// What the handler must see, or `None` when nothing is delivered (PING, autocomplete).
    pub fn expected(&self, nonce: u64) -> Option<Seen> {
        let (kind, detail) = match &self.kind {
            InteractionKind::Ping | InteractionKind::Autocomplete => return None,
            InteractionKind::Command(name, text) => (
                "command".to_owned(),
                format!("{name} {}", text.as_deref().unwrap_or("")),
            ),
            InteractionKind::Component(custom_id, _) | InteractionKind::Modal(custom_id, _) => {
                ("postback".to_owned(), custom_id.clone())
            }
            InteractionKind::Unknown(n) => (format!("INTERACTION_{n}"), String::new()),
        };
        let millis = i64::try_from(1_300_000_000_000 + nonce).expect("in range");
        Some(Seen {
            id: Some(Self::id(nonce)),
            conversation: self.channel.clone().unwrap_or_else(|| {
                // Without a channel: the DM's user, or Discord's catch-all.
                if self.in_guild {
                    "discord".to_owned()
                } else {
                    self.user.clone()
                }
            }),
            sender: Some(self.user.clone()),
            kind,
            text: None,
            detail,
            reply_token: Some(Self::token(nonce)),
            occurred_at: Some(millis + DISCORD_EPOCH_MS),
            redelivered: false,
        })
    }
}

fn signed(body: &[u8], timestamp: &str, signature: &str) -> http::Request<axum::body::Body> {
    post(
        DEFAULT_PATH,
        &[(SIGNATURE_HEADER, signature), (TIMESTAMP_HEADER, timestamp)],
        bytes::Bytes::copy_from_slice(body),
    )
}

fn signed_now(body: &[u8]) -> http::Request<axum::body::Body> {
    let timestamp = InteractionSigner::now();
    signed(body, &timestamp, &signer().sign(&timestamp, body))
}

/// A valid interaction, signed now: PING gets PONG, autocomplete no choices, anything else the
/// handler's answer (`seen <id>`) as the response, and the handler saw it with its id, channel,
/// user, command or custom id, token and time.
pub fn check_interaction_round_trip(
    h: &Harness,
    interaction: &Interaction,
) -> Result<(), TestCaseError> {
    let nonce = fuzzing::nonce();
    let body = interaction.to_json(nonce).to_string();
    let (status, response) = h.send(signed_now(body.as_bytes()));
    prop_assert_eq!(status, 200);
    let response: Value = serde_json::from_slice(&response)
        .map_err(|e| TestCaseError::fail(format!("the answer is not JSON: {e}")))?;
    let expected = interaction.expected(nonce);
    match (&interaction.kind, &expected) {
        (InteractionKind::Ping, _) => prop_assert_eq!(&response, &json!({"type": 1})),
        (InteractionKind::Autocomplete, _) => {
            prop_assert_eq!(&response, &json!({"type": 8, "data": {"choices": []}}));
        }
        (_, Some(seen)) => {
            prop_assert_eq!(&response["type"], &json!(4));
            let content = format!("seen {}", seen.id.as_deref().unwrap_or_default());
            prop_assert_eq!(&response["data"]["content"], &json!(content));
        }
        (_, None) => unreachable!("only PING and autocomplete are not delivered"),
    }
    check_seen(&expected.into_iter().collect::<Vec<_>>(), &h.settle())
}

/// A valid interaction broken by `mutations`, then signed now: 200 or 400 (413 when too large),
/// never a panic or a 500; 400 exactly when the body is not JSON.
pub fn check_interaction_mutation(
    h: &Harness,
    interaction: &Interaction,
    mutations: &Mutations,
) -> Result<(), TestCaseError> {
    let body = mutations.apply(&interaction.to_json(fuzzing::nonce()));
    check_signed_interaction(h, &body)
}

/// `body`, signed now: as [`check_interaction_mutation`].
pub fn check_signed_interaction(h: &Harness, body: &[u8]) -> Result<(), TestCaseError> {
    let (status, _) = h.send(signed_now(body));
    check_status(status)?;
    prop_assert_ne!(status, 401, "a correctly signed body was refused");
    h.settle();
    if body.len() > fuzzing::MAX_BODY_BYTES {
        prop_assert_eq!(status, 413);
    } else if serde_json::from_slice::<Value>(body).is_err() {
        prop_assert_eq!(status, 400);
    } else {
        prop_assert_eq!(status, 200);
    }
    Ok(())
}

/// Any bytes with any signature and timestamp headers (or none): 401 (or 413 when too large).
pub fn check_interaction_unsigned(
    h: &Harness,
    body: &[u8],
    signature: Option<&str>,
    timestamp: Option<&str>,
) -> Result<(), TestCaseError> {
    let mut headers = Vec::new();
    if let Some(signature) = signature {
        headers.push((SIGNATURE_HEADER, signature));
    }
    if let Some(timestamp) = timestamp {
        headers.push((TIMESTAMP_HEADER, timestamp));
    }
    let (status, _) = h.send(post(
        DEFAULT_PATH,
        &headers,
        bytes::Bytes::copy_from_slice(body),
    ));
    let expected = if body.len() > fuzzing::MAX_BODY_BYTES {
        413
    } else {
        401
    };
    prop_assert_eq!(status, expected);
    prop_assert!(h.settle().is_empty());
    Ok(())
}

/// How a valid signed interaction is tampered with.
#[derive(Debug, Clone)]
pub enum Tamper {
    /// One bit of the body flipped.
    BodyBit(Index, u8),
    /// The timestamp changed by this many seconds (1..=300: still fresh).
    Timestamp(u16),
    /// One hex digit of the signature changed to another value.
    SignatureDigit(Index, u8),
    /// Signed by another key.
    WrongKey([u8; 32]),
    /// The signature of another body.
    OtherBody(Vec<u8>),
    /// The signature cut short.
    Truncated(Index),
}

/// Any tampering.
pub fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Tamper::BodyBit(at, bit)),
        (1u16..=300).prop_map(Tamper::Timestamp),
        (any::<Index>(), 1u8..16).prop_map(|(at, delta)| Tamper::SignatureDigit(at, delta)),
        any::<[u8; 32]>()
            .prop_filter("another key", |k| *k != [42; 32])
            .prop_map(Tamper::WrongKey),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Tamper::OtherBody),
        any::<Index>().prop_map(Tamper::Truncated),
    ]
}

/// A tampered interaction never verifies, and the endpoint answers 401 with nothing handled.
pub fn check_interaction_tamper(
    h: &Harness,
    interaction: &Interaction,
    tamper: &Tamper,
) -> Result<(), TestCaseError> {
    let mut body = interaction
        .to_json(fuzzing::nonce())
        .to_string()
        .into_bytes();
    let mut timestamp = InteractionSigner::now();
    let mut signature = signer().sign(&timestamp, &body);
    match tamper {
        Tamper::BodyBit(at, bit) => {
            let i = at.index(body.len());
            body[i] ^= 1 << bit;
        }
        Tamper::Timestamp(delta) => {
            let now: u64 = timestamp.parse().expect("a number");
            timestamp = (now - u64::from(*delta)).to_string();
        }
        Tamper::SignatureDigit(at, delta) => {
            let i = at.index(signature.len());
            let old = u8::from_str_radix(&signature[i..=i], 16).expect("hex");
            let new = format!("{:x}", (old + delta) % 16);
            signature.replace_range(i..=i, &new);
        }
        Tamper::WrongKey(key) => signature = InteractionSigner::new(*key).sign(&timestamp, &body),
        Tamper::OtherBody(other) => {
            if *other == body {
                return Ok(());
            }
            signature = signer().sign(&timestamp, other);
        }
        Tamper::Truncated(at) => {
            let len = signature.len();
            signature.truncate(at.index(len));
        }
    }
    let key = PublicKey::from_hex(&signer().public_key_hex()).expect("a valid key");
    prop_assert!(
        !key.verify(timestamp.as_bytes(), &body, signature.as_bytes()),
        "{:?} verified",
        tamper
    );
    let (status, _) = h.send(signed(&body, &timestamp, &signature));
    prop_assert_eq!(status, 401);
    prop_assert!(h.settle().is_empty());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Gateway frames
// ---------------------------------------------------------------------------------------------

/// A dispatch's payload.
#[derive(Debug, Clone)]
pub enum Dispatch {
    /// A message: id, channel, author, content, whether the author is a bot, by the bot itself.
    MessageCreate(String, String, String, String, bool, bool),
    /// A deleted message: id, channel.
    MessageDelete(String, String),
    /// A reaction: message, user, emoji, channel.
    ReactionAdd(String, String, String, String),
    /// A member joined: guild, user.
    MemberAdd(String, String),
    /// A dispatch Discord may add later: name, channel.
    Unknown(String, String),
}

/// A frame the gateway sends.
#[derive(Debug, Clone)]
pub enum GatewayFrame {
    /// op 10.
    Hello(u64),
    /// op 11.
    HeartbeatAck,
    /// op 1.
    Heartbeat,
    /// op 7.
    Reconnect,
    /// op 9.
    InvalidSession(bool),
    /// op 0.
    Dispatch(Dispatch),
}

fn dispatch() -> impl Strategy<Value = Dispatch> {
    prop_oneof![
        4 => (snowflake_id(), snowflake_id(), snowflake_id(), any_text(), prop::bool::weighted(0.1), prop::bool::weighted(0.1))
            .prop_map(|(id, channel, author, content, bot, own)| Dispatch::MessageCreate(id, channel, author, content, bot, own)),
        1 => (snowflake_id(), snowflake_id()).prop_map(|(id, channel)| Dispatch::MessageDelete(id, channel)),
        1 => (snowflake_id(), snowflake_id(), any_text(), snowflake_id())
            .prop_map(|(m, u, e, c)| Dispatch::ReactionAdd(m, u, e, c)),
        1 => (snowflake_id(), snowflake_id()).prop_map(|(g, u)| Dispatch::MemberAdd(g, u)),
        1 => ("X[A-Z_]{2,20}", snowflake_id()).prop_map(|(name, channel)| Dispatch::Unknown(name, channel)),
    ]
}

/// Any frame.
pub fn gateway_frame() -> impl Strategy<Value = GatewayFrame> {
    prop_oneof![
        1 => (1u64..100_000).prop_map(GatewayFrame::Hello),
        1 => Just(GatewayFrame::HeartbeatAck),
        1 => Just(GatewayFrame::Heartbeat),
        1 => Just(GatewayFrame::Reconnect),
        1 => any::<bool>().prop_map(GatewayFrame::InvalidSession),
        8 => dispatch().prop_map(GatewayFrame::Dispatch),
    ]
}

/// A connection's frames after READY.
pub fn gateway_frames() -> impl Strategy<Value = Vec<GatewayFrame>> {
    prop::collection::vec(gateway_frame(), 0..8)
}

fn session(nonce: u64) -> String {
    format!("props-session-{nonce}")
}

fn ready(nonce: u64) -> Value {
    json!({"op": 0, "s": 1, "t": "READY", "d": {
        "v": 10, "user": {"id": BOT_USER, "username": "bot", "bot": true},
        "guilds": [], "session_id": session(nonce),
        "resume_gateway_url": "wss://resume.invalid", "application": {"id": APPLICATION_ID, "flags": 0},
    }})
}

fn snowflake_millis(id: &str) -> i64 {
    id.parse::<u64>()
        .ok()
        .and_then(|id| i64::try_from(id >> 22).ok())
        .map_or(0, |ms| ms + DISCORD_EPOCH_MS)
}

impl GatewayFrame {
    /// The frame as the gateway sends it, with sequence `seq` for a dispatch.
    pub fn to_json(&self, seq: u64) -> Value {
        let dispatch = |name: &str, d: Value| json!({"op": 0, "s": seq, "t": name, "d": d});
        match self {
            GatewayFrame::Hello(ms) => json!({"op": 10, "d": {"heartbeat_interval": ms}}),
            GatewayFrame::HeartbeatAck => json!({"op": 11}),
            GatewayFrame::Heartbeat => json!({"op": 1, "d": null}),
            GatewayFrame::Reconnect => json!({"op": 7, "d": null}),
            GatewayFrame::InvalidSession(resumable) => json!({"op": 9, "d": resumable}),
            GatewayFrame::Dispatch(Dispatch::MessageCreate(
                id,
                channel,
                author,
                content,
                bot,
                own,
            )) => {
                let author = if *own { BOT_USER } else { author.as_str() };
                dispatch(
                    "MESSAGE_CREATE",
                    json!({"id": id, "channel_id": channel, "content": content, "tts": false,
                           "author": {"id": author, "username": "someone", "bot": bot},
                           "attachments": [], "mentions": [], "type": 0}),
                )
            }
            GatewayFrame::Dispatch(Dispatch::MessageDelete(id, channel)) => {
                dispatch("MESSAGE_DELETE", json!({"id": id, "channel_id": channel}))
            }
            GatewayFrame::Dispatch(Dispatch::ReactionAdd(message, user, emoji, channel)) => {
                dispatch(
                    "MESSAGE_REACTION_ADD",
                    json!({"message_id": message, "user_id": user, "channel_id": channel,
                           "emoji": {"id": null, "name": emoji}}),
                )
            }
            GatewayFrame::Dispatch(Dispatch::MemberAdd(guild, user)) => dispatch(
                "GUILD_MEMBER_ADD",
                json!({"guild_id": guild, "user": {"id": user, "username": "someone"}}),
            ),
            GatewayFrame::Dispatch(Dispatch::Unknown(name, channel)) => {
                dispatch(name, json!({"channel_id": channel, "what": "ever"}))
            }
        }
    }

    /// The event the shard hands over, or `None`.
    pub fn expected(&self, nonce: u64, seq: u64) -> Option<Seen> {
        let GatewayFrame::Dispatch(dispatch) = self else {
            return None;
        };
        let sequenced = format!("{}:{seq}", session(nonce));
        let base = |id: String, conversation: &str, kind: &str| Seen {
            id: Some(id),
            conversation: conversation.to_owned(),
            sender: None,
            kind: kind.to_owned(),
            text: None,
            detail: String::new(),
            reply_token: None,
            occurred_at: None,
            redelivered: false,
        };
        Some(match dispatch {
            Dispatch::MessageCreate(_, _, _, _, true, _) | Dispatch::MessageCreate(.., true) => {
                return None;
            }
            Dispatch::MessageCreate(id, channel, author, content, ..) => Seen {
                sender: Some(author.clone()),
                text: Some(content.clone()),
                occurred_at: Some(snowflake_millis(id)),
                ..base(id.clone(), channel, "message")
            },
            Dispatch::MessageDelete(id, channel) => Seen {
                detail: id.clone(),
                occurred_at: Some(snowflake_millis(id)),
                ..base(format!("{id}:delete"), channel, "deleted")
            },
            Dispatch::ReactionAdd(message, user, emoji, channel) => Seen {
                sender: Some(user.clone()),
                detail: format!("{message}:{emoji}:false"),
                ..base(sequenced, channel, "reaction")
            },
            Dispatch::MemberAdd(guild, user) => Seen {
                sender: Some(user.clone()),
                detail: user.clone(),
                ..base(sequenced, guild, "member_joined")
            },
            Dispatch::Unknown(name, channel) => base(sequenced, channel, name),
        })
    }
}

/// READY, then `frames`, read as a shard reads them: every frame parses, and each dispatch maps
/// to its event (messages by bots and by the bot itself are not delivered).
pub fn check_frames_round_trip(frames: &[GatewayFrame]) -> Result<(), TestCaseError> {
    let nonce = fuzzing::nonce();
    let mut reader = FrameReader::default();
    let read = reader
        .read(ready(nonce).to_string().as_bytes())
        .map_err(|e| TestCaseError::fail(format!("READY: {e}")))?;
    prop_assert!(read.event.is_none());
    for (i, frame) in frames.iter().enumerate() {
        let seq = 2 + i as u64;
        let text = frame.to_json(seq).to_string();
        let read = reader
            .read(text.as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{frame:?}: {e}")))?;
        let expected: Vec<Seen> = frame.expected(nonce, seq).into_iter().collect();
        let got: Vec<_> = read.event.into_iter().collect();
        check_seen(&expected, &got)?;
    }
    Ok(())
}

/// Mutated frames never panic: each is read (perhaps to an event) or refused with an error.
pub fn check_frame_mutation(
    frame: &GatewayFrame,
    mutations: &Mutations,
) -> Result<(), TestCaseError> {
    let nonce = fuzzing::nonce();
    let mut reader = FrameReader::default();
    let _ = reader.read(ready(nonce).to_string().as_bytes());
    check_frame_bytes(&mut reader, &mutations.apply(&frame.to_json(7)))
}

/// Any bytes: read or refused with an error, never a panic.
pub fn check_frame_bytes(reader: &mut FrameReader, bytes: &[u8]) -> Result<(), TestCaseError> {
    match reader.read(bytes) {
        Ok(read) => {
            if let Some(event) = read.event {
                prop_assert_eq!(read.op, 0);
                prop_assert_eq!(&event.platform, &bot_core::Platform::DISCORD);
            }
        }
        Err(error) => prop_assert!(!error.to_string().is_empty()),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// zlib-stream
// ---------------------------------------------------------------------------------------------

/// Compresses `messages` as Discord does: one stream, a sync flush after each message.
pub fn zlib_stream(messages: &[String]) -> Vec<Vec<u8>> {
    let mut deflater = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    messages
        .iter()
        .map(|m| {
            deflater.write_all(m.as_bytes()).expect("writes to memory");
            deflater.flush().expect("writes to memory");
            std::mem::take(deflater.get_mut())
        })
        .collect()
}

/// Gateway payloads to compress: frames' JSON, sometimes long and repetitive.
pub fn zlib_messages() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            gateway_frame().prop_map(|f| f.to_json(1).to_string()),
            (any_text(), 1usize..200).prop_map(|(t, n)| t.repeat(n)),
        ],
        1..6,
    )
}

/// Where each message is cut into frames.
pub fn splits() -> impl Strategy<Value = Vec<Vec<Index>>> {
    prop::collection::vec(prop::collection::vec(any::<Index>(), 0..4), 6)
}

const SUFFIX: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Any split of each compressed message into frames inflates to the same messages.
pub fn check_zlib_split(messages: &[String], splits: &[Vec<Index>]) -> Result<(), TestCaseError> {
    let stream = zlib_stream(messages);
    let mut inflater = ZlibStream::default();
    let mut out = Vec::new();
    for (compressed, cuts) in stream.iter().zip(splits.iter().cycle()) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(compressed.len())).collect();
        points.sort_unstable();
        points.dedup();
        let mut start = 0;
        for end in points.into_iter().chain([compressed.len()]) {
            let frame = &compressed[start..end];
            if end < compressed.len() && frame.ends_with(&SUFFIX) {
                // A frame ending like a message (a compressed block's bytes can): the inflater
                // would inflate early, which Discord never makes it do. Not this property's case.
                return Ok(());
            }
            if let Some(message) = inflater
                .push(frame)
                .map_err(|e| TestCaseError::fail(format!("inflating: {e}")))?
            {
                out.push(String::from_utf8(message).expect("UTF-8 in, UTF-8 out"));
            }
            start = end;
        }
    }
    prop_assert_eq!(out, messages.to_vec());
    Ok(())
}

/// A valid stream with bytes broken, or garbage: errors or (wrong) messages, never a panic,
/// never more than the limit.
pub fn check_zlib_corrupt(
    messages: &[String],
    mutations: &[fuzzing::ByteMutation],
    garbage: &[Vec<u8>],
) -> Result<(), TestCaseError> {
    const LIMIT: usize = 1024 * 1024;
    let mut frames = zlib_stream(messages);
    if let Some(first) = frames.first_mut() {
        *first = fuzzing::apply_bytes(first, mutations);
    }
    frames.extend(garbage.iter().cloned());
    let mut inflater = ZlibStream::with_limit(LIMIT);
    for frame in &frames {
        match inflater.push(frame) {
            Ok(Some(message)) => prop_assert!(message.len() <= LIMIT),
            Ok(None) => {}
            // The shard drops the connection on the first error.
            Err(error) => {
                prop_assert!(!error.is_empty());
                break;
            }
        }
    }
    Ok(())
}

/// A stream cut in the middle of a message: the messages before it inflate, the cut one waits
/// for the rest (the shard's read timeout and reconnect take over), and bytes of another stream
/// after it fail or inflate to something bounded, never a panic.
pub fn check_zlib_truncated(messages: &[String], cut: Index) -> Result<(), TestCaseError> {
    let stream = zlib_stream(messages);
    let last = stream.len() - 1;
    let mut inflater = ZlibStream::default();
    for (i, compressed) in stream.iter().enumerate() {
        if i == last {
            let keep = cut.index(compressed.len() - SUFFIX.len());
            let partial = &compressed[..keep];
            if partial.ends_with(&SUFFIX) {
                return Ok(());
            }
            prop_assert_eq!(inflater.push(partial), Ok(None));
        } else {
            let out = inflater.push(compressed);
            prop_assert_eq!(out, Ok(Some(messages[i].clone().into_bytes())));
        }
    }
    // A fresh stream's bytes where the rest should have been.
    let other = zlib_stream(&["{\"op\":11}".to_owned()]);
    if let Ok(Some(out)) = inflater.push(&other[0]) {
        prop_assert!(out.len() <= 64 * 1024 * 1024);
    }
    Ok(())
}

/// A message of `len` zeros (compressing ~1000:1) against a limit of `limit` bytes: inflated
/// when within it, refused past it.
pub fn check_zlib_limit(len: usize, limit: usize) -> Result<(), TestCaseError> {
    let mut deflater = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    deflater.write_all(&vec![0; len]).expect("writes to memory");
    deflater.flush().expect("writes to memory");
    let mut inflater = ZlibStream::with_limit(limit);
    match inflater.push(deflater.get_ref()) {
        Ok(Some(out)) => {
            prop_assert!(len <= limit, "{len} bytes inflated past a limit of {limit}");
            prop_assert_eq!(out.len(), len);
        }
        Ok(None) => prop_assert!(false, "a whole message was not inflated"),
        Err(error) => {
            prop_assert!(
                len > limit,
                "{len} bytes refused under a limit of {limit}: {error}"
            );
        }
    }
    Ok(())
}

/// A message length around a limit (1 KiB to 256 KiB).
pub fn limit_case() -> impl Strategy<Value = (usize, usize)> {
    (1024usize..256 * 1024).prop_flat_map(|limit| (limit - 64..limit + 64, Just(limit)))
}

/// The shard's reading (the envelope borrowed, the data kept as text and mapped from a view)
/// gives the very event the whole-tree reading gave, for valid and mutated frames alike:
/// whenever the tree reads a frame, the view reads it to the same event (raw payload included).
pub fn check_view_matches_tree(
    frame: &GatewayFrame,
    mutations: Option<&Mutations>,
) -> Result<(), TestCaseError> {
    let json = frame.to_json(7);
    let bytes = mutations.map_or_else(|| json.to_string().into_bytes(), |m| m.apply(&json));
    check_read_matches_tree(&bytes)
}

/// [`check_view_matches_tree`] with the frame written as Discord writes it (`t`, `s`, `op`, then
/// `d`), which the shard reads from its envelope alone; `mutations` change `d` only, so that
/// what follows `d` in the text may be anything.
pub fn check_envelope_read_matches_tree(
    frame: &GatewayFrame,
    mutations: Option<&Mutations>,
) -> Result<(), TestCaseError> {
    let json = frame.to_json(7);
    let field = |key: &str| json.get(key).unwrap_or(&Value::Null).to_string();
    let data = json.get("d").cloned().unwrap_or(Value::Null);
    let data = mutations.map_or_else(|| data.to_string().into_bytes(), |m| m.apply(&data));
    let mut bytes = format!(
        r#"{{"t":{},"s":{},"op":{},"d":"#,
        field("t"),
        field("s"),
        field("op")
    )
    .into_bytes();
    bytes.extend_from_slice(&data);
    bytes.push(b'}');
    check_read_matches_tree(&bytes)
}

fn check_read_matches_tree(bytes: &[u8]) -> Result<(), TestCaseError> {
    let nonce = fuzzing::nonce();
    let (mut view, mut tree) = (FrameReader::default(), FrameReader::default());
    let ready = ready(nonce).to_string();
    view.read(ready.as_bytes()).expect("READY");
    tree.read_tree(ready.as_bytes()).expect("READY");
    let bytes = bytes.to_vec();
    let Ok(expected) = tree.read_tree(&bytes) else {
        return Ok(());
    };
    let got = view
        .read(&bytes)
        .map_err(|e| TestCaseError::fail(format!("the tree read it, the view did not: {e}")))?;
    prop_assert_eq!(got.op, expected.op);
    prop_assert_eq!(got.sequence, expected.sequence);
    prop_assert_eq!(&got.name, &expected.name);
    match (got.event, expected.event) {
        (None, None) => {}
        (Some(mut got), Some(expected)) => {
            // Events without a snowflake take the time they were read.
            let apart = got.occurred_at.as_millis() - expected.occurred_at.as_millis();
            if apart.abs() < 60_000 {
                got.occurred_at = expected.occurred_at;
            }
            prop_assert_eq!(got, expected);
        }
        (got, expected) => {
            return Err(TestCaseError::fail(format!(
                "view {got:?}, tree {expected:?}"
            )));
        }
    }
    Ok(())
}
