//! The LINE webhook's properties: generated events, their inputs, and the checks. Run by
//! `tests/props.rs` (CI, a few hundred cases each) and by bench's `fuzz-run` (millions).
//!
//! Expects the including crate root to declare `mod fuzzing;`
//! (`bot-core/tests/support/fuzzing.rs`).

#![allow(dead_code, unreachable_pub)]

use bot_core::Secret;
use bot_line::event::events_from_body;
use bot_line::webhook::{DEFAULT_PATH, SIGNATURE_HEADER, SignatureError, sign, verify};
use bot_line::{ConfigureApi, Line};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};

use crate::fuzzing::{self, Harness, Mutations, Seen, check_seen, check_status, post};

/// The channel secret the harness verifies with.
pub const SECRET: &str = "props-line-channel-secret";
/// The bot's user id (`destination`).
pub const DESTINATION: &str = "U0123456789abcdef0123456789abcdef";

/// A bot with the LINE adapter, driven in-process.
pub fn harness() -> Harness {
    let line = Line::builder(SECRET, "props-access-token")
        // Nothing is sent: the harness's handler does not reply.
        .api_base("http://127.0.0.1:9")
        .build()
        .expect("the LINE adapter builds");
    Harness::new(line, false)
}

fn secret() -> Secret {
    Secret::new(SECRET)
}

/// Where an event happened.
#[derive(Debug, Clone)]
pub enum Chat {
    /// One to one.
    User,
    /// A group, by id.
    Group(String),
    /// A room, by id.
    Room(String),
}

/// What happened.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A text message.
    Text(String),
    /// An image message.
    Image,
    /// A file message.
    File(String, u64),
    /// A location message.
    Location(f64, f64, Option<String>),
    /// A sticker message.
    Sticker(String, String),
    /// `follow`.
    Follow,
    /// `unfollow`.
    Unfollow,
    /// `join`.
    Join,
    /// `leave`.
    Leave,
    /// `memberJoined` with these users.
    MemberJoined(Vec<String>),
    /// `memberLeft` with these users.
    MemberLeft(Vec<String>),
    /// `postback` with this data.
    Postback(String),
    /// `unsend`.
    Unsend,
    /// `beacon`, delivered as `Other`.
    Beacon(String),
    /// A type LINE may add later.
    Unknown(String),
}

/// One generated LINE event.
#[derive(Debug, Clone)]
pub struct LineEvent {
    /// The user who caused it.
    pub user: String,
    /// Where.
    pub chat: Chat,
    /// What.
    pub kind: Kind,
    /// Milliseconds.
    pub timestamp: i64,
    /// `deliveryContext.isRedelivery`.
    pub redelivered: bool,
    /// `mode: standby` (not delivered by default).
    pub standby: bool,
}

fn id_text() -> impl Strategy<Value = String> {
    "[0-9a-zA-Z]{1,33}"
}

/// Any text, control characters and astral planes included.
pub fn any_text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 1..40).prop_map(|c| c.into_iter().collect())
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => any_text().prop_map(Kind::Text),
        1 => Just(Kind::Image),
        1 => (any_text(), any::<u32>()).prop_map(|(name, size)| Kind::File(name, u64::from(size))),
        1 => (-90.0f64..90.0, -180.0f64..180.0, prop::option::of(any_text()))
            .prop_map(|(lat, lon, title)| Kind::Location(lat, lon, title)),
        1 => ("[0-9]{1,9}", "[0-9]{1,9}").prop_map(|(p, s)| Kind::Sticker(p, s)),
        1 => Just(Kind::Follow),
        1 => Just(Kind::Unfollow),
        1 => Just(Kind::Join),
        1 => Just(Kind::Leave),
        1 => prop::collection::vec(id_text(), 1..4).prop_map(Kind::MemberJoined),
        1 => prop::collection::vec(id_text(), 1..4).prop_map(Kind::MemberLeft),
        2 => any_text().prop_map(Kind::Postback),
        1 => Just(Kind::Unsend),
        1 => "[0-9a-f]{10}".prop_map(Kind::Beacon),
        1 => "x[a-zA-Z]{2,12}".prop_map(Kind::Unknown),
    ]
}

fn chat() -> impl Strategy<Value = Chat> {
    prop_oneof![
        2 => Just(Chat::User),
        1 => id_text().prop_map(|g| Chat::Group(format!("C{g}"))),
        1 => id_text().prop_map(|r| Chat::Room(format!("R{r}"))),
    ]
}

/// One LINE event of any documented type (and some unknown ones).
pub fn line_event() -> impl Strategy<Value = LineEvent> {
    (
        id_text(),
        chat(),
        kind(),
        0i64..4_102_444_800_000,
        any::<bool>(),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(user, chat, kind, timestamp, redelivered, standby)| LineEvent {
                user: format!("U{user}"),
                chat,
                kind,
                timestamp,
                redelivered,
                standby,
            },
        )
}

/// Zero to six events: one request.
pub fn line_events() -> impl Strategy<Value = Vec<LineEvent>> {
    prop::collection::vec(line_event(), 0..6)
}

impl LineEvent {
    fn event_id(&self, nonce: u64, i: usize) -> String {
        format!("01P{nonce:012}{i:04}")
    }

    fn message_id(&self, nonce: u64, i: usize) -> String {
        format!("{nonce}{i:04}")
    }

    fn reply_token(&self, nonce: u64, i: usize) -> Option<String> {
        let replyable = !self.standby && !matches!(self.kind, Kind::Unfollow | Kind::Leave);
        replyable.then(|| format!("rt-{nonce}-{i}"))
    }

    /// The event as LINE sends it; ids made unique by `nonce` and `i`.
    pub fn to_json(&self, nonce: u64, i: usize) -> Value {
        let message_id = self.message_id(nonce, i);
        let source = match &self.chat {
            Chat::User => json!({"type": "user", "userId": self.user}),
            Chat::Group(g) => json!({"type": "group", "groupId": g, "userId": self.user}),
            Chat::Room(r) => json!({"type": "room", "roomId": r, "userId": self.user}),
        };
        let mut event = json!({
            "mode": if self.standby { "standby" } else { "active" },
            "timestamp": self.timestamp,
            "source": source,
            "webhookEventId": self.event_id(nonce, i),
            "deliveryContext": {"isRedelivery": self.redelivered},
        });
        if let Some(token) = self.reply_token(nonce, i) {
            event["replyToken"] = json!(token);
        }
        let members = |users: &[String]| json!({"members": users.iter().map(|u| json!({"type": "user", "userId": u})).collect::<Vec<_>>()});
        let (event_type, key, payload) = match &self.kind {
            Kind::Text(text) => (
                "message",
                "message",
                json!({"type": "text", "id": message_id, "quoteToken": "q", "text": text}),
            ),
            Kind::Image => (
                "message",
                "message",
                json!({"type": "image", "id": message_id, "quoteToken": "q",
                       "contentProvider": {"type": "line"}}),
            ),
            Kind::File(name, size) => (
                "message",
                "message",
                json!({"type": "file", "id": message_id, "fileName": name, "fileSize": size}),
            ),
            Kind::Location(lat, lon, title) => (
                "message",
                "message",
                json!({"type": "location", "id": message_id, "title": title,
                       "latitude": lat, "longitude": lon}),
            ),
            Kind::Sticker(package, sticker) => (
                "message",
                "message",
                json!({"type": "sticker", "id": message_id, "quoteToken": "q",
                       "packageId": package, "stickerId": sticker,
                       "stickerResourceType": "STATIC"}),
            ),
            Kind::Follow => ("follow", "follow", json!({"isUnblocked": false})),
            Kind::Unfollow => ("unfollow", "", Value::Null),
            Kind::Join => ("join", "", Value::Null),
            Kind::Leave => ("leave", "", Value::Null),
            Kind::MemberJoined(users) => ("memberJoined", "joined", members(users)),
            Kind::MemberLeft(users) => ("memberLeft", "left", members(users)),
            Kind::Postback(data) => ("postback", "postback", json!({"data": data})),
            Kind::Unsend => ("unsend", "unsend", json!({"messageId": message_id})),
            Kind::Beacon(hwid) => ("beacon", "beacon", json!({"hwid": hwid, "type": "enter"})),
            Kind::Unknown(name) => (name.as_str(), "payload", json!({"some": "thing"})),
        };
        event["type"] = json!(event_type);
        if !key.is_empty() {
            event[key] = payload;
        }
        event
    }

    /// What the handler must see, or `None` when the event is not delivered (standby).
    pub fn expected(&self, nonce: u64, i: usize) -> Option<Seen> {
        if self.standby {
            return None;
        }
        let message_id = self.message_id(nonce, i);
        let (kind, text, detail) = match &self.kind {
            Kind::Text(text) => ("message", Some(text.clone()), String::new()),
            Kind::Image | Kind::File(..) | Kind::Location(..) => {
                ("message", None, message_id.clone())
            }
            Kind::Sticker(_, sticker) => ("message", None, sticker.clone()),
            Kind::Follow => ("followed", None, String::new()),
            Kind::Unfollow => ("unfollowed", None, String::new()),
            Kind::Join => ("member_joined", None, String::new()),
            Kind::Leave => ("member_left", None, String::new()),
            Kind::MemberJoined(users) => ("member_joined", None, users.join(",")),
            Kind::MemberLeft(users) => ("member_left", None, users.join(",")),
            Kind::Postback(data) => ("postback", None, data.clone()),
            Kind::Unsend => ("deleted", None, message_id.clone()),
            Kind::Beacon(_) => ("beacon", None, String::new()),
            Kind::Unknown(name) => (name.as_str(), None, String::new()),
        };
        let conversation = match &self.chat {
            Chat::User => self.user.clone(),
            Chat::Group(id) | Chat::Room(id) => id.clone(),
        };
        Some(Seen {
            id: Some(self.event_id(nonce, i)),
            conversation,
            sender: Some(self.user.clone()),
            kind: kind.to_owned(),
            text,
            detail,
            reply_token: self.reply_token(nonce, i),
            occurred_at: Some(self.timestamp),
            redelivered: self.redelivered,
        })
    }
}

/// The body of one request with `events`.
pub fn body(events: &[LineEvent], nonce: u64) -> Value {
    json!({
        "destination": DESTINATION,
        "events": events.iter().enumerate().map(|(i, e)| e.to_json(nonce, i)).collect::<Vec<_>>(),
    })
}

fn signed_post(body: &[u8], signature: &str) -> http::Request<axum::body::Body> {
    post(
        DEFAULT_PATH,
        &[(SIGNATURE_HEADER, signature)],
        bytes::Bytes::copy_from_slice(body),
    )
}

/// Valid events, signed: 200, and the handler sees each (standby ones aside) with its id,
/// chat, sender, text, reply token, time and redelivery flag.
pub fn check_round_trip(h: &Harness, events: &[LineEvent]) -> Result<(), TestCaseError> {
    let nonce = fuzzing::nonce();
    let body = body(events, nonce).to_string();
    let (status, _) = h.send(signed_post(
        body.as_bytes(),
        &sign(&secret(), body.as_bytes()),
    ));
    prop_assert_eq!(status, 200);
    let expected: Vec<Seen> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.expected(nonce, i))
        .collect();
    check_seen(&expected, &h.settle())
}

/// A valid body broken by `mutations`, then signed: never a panic or a 500; 400 exactly when the
/// parser refuses the body, and then nothing is handled.
pub fn check_signed_mutation(
    h: &Harness,
    events: &[LineEvent],
    mutations: &Mutations,
) -> Result<(), TestCaseError> {
    let body = mutations.apply(&body(events, fuzzing::nonce()));
    check_signed_body(h, &body)
}

/// `body` signed: as [`check_signed_mutation`].
pub fn check_signed_body(h: &Harness, body: &[u8]) -> Result<(), TestCaseError> {
    let parsed = events_from_body(body);
    let (status, _) = h.send(signed_post(body, &sign(&secret(), body)));
    check_status(status)?;
    prop_assert_ne!(status, 401, "a correctly signed body was refused");
    let handled = h.settle();
    if body.len() > fuzzing::MAX_BODY_BYTES {
        prop_assert_eq!(status, 413);
        prop_assert!(handled.is_empty());
        return Ok(());
    }
    match parsed {
        Ok(events) => {
            prop_assert_eq!(status, 200);
            // Standby events and duplicates are acknowledged without being handled.
            prop_assert!(handled.len() <= events.len());
        }
        Err(error) => {
            prop_assert_eq!(status, 400);
            prop_assert!(!error.to_string().is_empty());
            prop_assert!(handled.is_empty());
        }
    }
    Ok(())
}

/// Any bytes with any signature header (or none): 401 (or 413 when too large), nothing handled.
pub fn check_unsigned(
    h: &Harness,
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), TestCaseError> {
    let headers: Vec<(&str, &str)> = signature
        .map(|s| (SIGNATURE_HEADER, s))
        .into_iter()
        .collect();
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
    if let Some(signature) = signature {
        prop_assert!(verify(&secret(), body, signature.as_bytes()).is_err());
    }
    Ok(())
}

/// How a valid signed request is tampered with.
#[derive(Debug, Clone)]
pub enum Tamper {
    /// One bit of the body flipped.
    BodyBit(Index, u8),
    /// One character of the signature replaced by another.
    SignatureChar(Index, char),
    /// The body signed with another secret.
    WrongSecret(String),
    /// The signature of another body.
    OtherBody(Vec<u8>),
    /// The signature cut short.
    Truncated(Index),
}

/// Any tampering.
pub fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Tamper::BodyBit(at, bit)),
        (any::<Index>(), prop::char::range('!', '~'))
            .prop_map(|(at, c)| Tamper::SignatureChar(at, c)),
        "[ -~]{0,40}"
            .prop_filter("another secret", |s| s != SECRET)
            .prop_map(Tamper::WrongSecret),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Tamper::OtherBody),
        any::<Index>().prop_map(Tamper::Truncated),
    ]
}

/// A tampered request never verifies, and the webhook answers 401 with nothing handled.
pub fn check_tamper(
    h: &Harness,
    events: &[LineEvent],
    tamper: &Tamper,
) -> Result<(), TestCaseError> {
    let mut body = body(events, fuzzing::nonce()).to_string().into_bytes();
    let mut signature = sign(&secret(), &body);
    match tamper {
        Tamper::BodyBit(at, bit) => {
            let i = at.index(body.len());
            body[i] ^= 1 << bit;
        }
        Tamper::SignatureChar(at, c) => {
            let i = at.index(signature.len());
            let old = signature.as_bytes()[i];
            let new = if old == *c as u8 {
                if old == b'A' { 'B' } else { 'A' }
            } else {
                *c
            };
            signature.replace_range(i..=i, &new.to_string());
        }
        Tamper::WrongSecret(other) => signature = sign(&Secret::new(other.as_str()), &body),
        Tamper::OtherBody(other) => {
            if *other == body {
                return Ok(());
            }
            signature = sign(&secret(), other);
        }
        Tamper::Truncated(at) => {
            let len = signature.len();
            signature.truncate(at.index(len));
        }
    }
    let verdict = verify(&secret(), &body, signature.as_bytes());
    prop_assert!(verdict.is_err(), "{:?} verified", tamper);
    if matches!(
        tamper,
        Tamper::WrongSecret(_) | Tamper::OtherBody(_) | Tamper::BodyBit(..)
    ) {
        prop_assert_eq!(verdict, Err(SignatureError::Mismatch));
    }
    let (status, _) = h.send(signed_post(&body, &signature));
    prop_assert_eq!(status, 401);
    prop_assert!(h.settle().is_empty());
    Ok(())
}
