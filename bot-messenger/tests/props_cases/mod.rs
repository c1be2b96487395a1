//! The Messenger webhook's properties: generated items, their inputs, and the checks. Run by
//! `tests/props.rs` (CI, a few hundred cases each) and by bench's `fuzz-run` (millions).
//!
//! Expects the including crate root to declare `mod fuzzing;`
//! (`bot-core/tests/support/fuzzing.rs`).

#![allow(dead_code, unreachable_pub)]

use bot_core::Secret;
use bot_messenger::event::{TEXT_QUICK_REPLY_PAYLOAD, parse_body};
use bot_messenger::webhook::{DEFAULT_PATH, SIGNATURE_HEADER, SignatureError, sign, verify};
use bot_messenger::{ConfigureApi as _, Messenger};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};

use crate::fuzzing::{self, Harness, Mutations, Seen, check_seen, check_status, post};

/// The app secret the harness verifies with.
pub const SECRET: &str = "props-messenger-app-secret";
/// The verify token of the subscription handshake.
pub const VERIFY_TOKEN: &str = "propsVerifyToken42";
/// The page.
pub const PAGE_ID: &str = "106000000000001";

/// A bot with the Messenger adapter, driven in-process.
pub fn harness() -> Harness {
    let messenger = Messenger::builder(SECRET, VERIFY_TOKEN, "props-page-token")
        // Nothing is sent: the harness's handler does not reply.
        .api_base("http://127.0.0.1:9")
        .build()
        .expect("the Messenger adapter builds");
    Harness::new(messenger, false)
}

fn secret() -> Secret {
    Secret::new(SECRET)
}

/// What an item carries.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A text message.
    Text(String),
    /// A text message sent by tapping a quick reply made from a message action.
    TextQuickReply(String),
    /// A sticker (an image attachment with a sticker id).
    Sticker(String),
    /// A quick reply: a postback.
    QuickReply(String, String),
    /// A button's postback: title and payload.
    Postback(String, String),
    /// A reaction: emoji, removed.
    Reaction(String, bool),
    /// A read receipt.
    Read(i64),
    /// A delivery receipt (Meta sends it without `timestamp`).
    Delivery,
    /// A checkbox plugin opt-in, known only by `user_ref`.
    OptinUserRef(String),
    /// A key Meta may add later.
    Unknown(String),
    /// An echo of the page's own message (not delivered by default).
    Echo(String),
}

/// One generated item of `messaging[]` (or `standby[]`, or a `changes[]` item).
#[derive(Debug, Clone)]
pub enum Item {
    /// A `messaging[]` (or, when `standby`, a `standby[]`) item from `psid`.
    Messaging {
        /// The user.
        psid: String,
        /// What.
        kind: Kind,
        /// Milliseconds.
        timestamp: i64,
        /// In `standby[]` (not delivered by default).
        standby: bool,
    },
    /// A `changes[]` item: field, and the commenter.
    Change(String, Option<String>),
}

fn psid() -> impl Strategy<Value = String> {
    "[1-9][0-9]{5,16}"
}

/// Any text, control characters and astral planes included.
pub fn any_text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 1..40).prop_map(|c| c.into_iter().collect())
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        5 => any_text().prop_map(Kind::Text),
        1 => any_text().prop_map(Kind::TextQuickReply),
        1 => "[0-9]{6,15}".prop_map(Kind::Sticker),
        2 => (any_text(), any_text().prop_filter("not the text payload", |p| p != TEXT_QUICK_REPLY_PAYLOAD))
            .prop_map(|(text, payload)| Kind::QuickReply(text, payload)),
        2 => (any_text(), any_text()).prop_map(|(title, payload)| Kind::Postback(title, payload)),
        1 => (any_text(), any::<bool>()).prop_map(|(emoji, removed)| Kind::Reaction(emoji, removed)),
        1 => (0i64..4_102_444_800_000).prop_map(Kind::Read),
        1 => Just(Kind::Delivery),
        1 => "[a-zA-Z0-9_-]{1,20}".prop_map(Kind::OptinUserRef),
        1 => "x[a-z_]{2,12}".prop_map(Kind::Unknown),
        1 => any_text().prop_map(Kind::Echo),
    ]
}

/// One item of any kind.
pub fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        9 => (psid(), kind(), 0i64..4_102_444_800_000, prop::bool::weighted(0.1)).prop_map(
            |(psid, kind, timestamp, standby)| Item::Messaging { psid, kind, timestamp, standby }
        ),
        1 => ("[a-z_]{1,12}", prop::option::of(psid()))
            .prop_map(|(field, from)| Item::Change(field, from)),
    ]
}

/// One request: one or two entries of up to five items each, and the entries' times.
pub fn entries() -> impl Strategy<Value = Vec<(i64, Vec<Item>)>> {
    prop::collection::vec(
        (0i64..4_102_444_800_000, prop::collection::vec(item(), 0..5)),
        0..3,
    )
}

fn mid(nonce: u64, entry: usize, i: usize) -> String {
    format!("m_props{nonce:012}_{entry}_{i}")
}

impl Item {
    /// The item as Meta sends it; ids made unique by `nonce`, `entry` and `i`.
    pub fn to_json(&self, nonce: u64, entry: usize, i: usize) -> Value {
        let (psid, kind, timestamp) = match self {
            Item::Messaging {
                psid,
                kind,
                timestamp,
                ..
            } => (psid, kind, timestamp),
            Item::Change(field, from) => {
                let mut value = json!({"item": "comment", "comment_id": mid(nonce, entry, i)});
                if let Some(from) = from {
                    value["from"] = json!({"id": from, "name": "someone"});
                }
                return json!({"field": field, "value": value});
            }
        };
        let mid = mid(nonce, entry, i);
        let mut item = json!({
            "sender": {"id": psid},
            "recipient": {"id": PAGE_ID},
            "timestamp": timestamp,
        });
        match kind {
            Kind::Text(text) => item["message"] = json!({"mid": mid, "text": text}),
            Kind::TextQuickReply(text) => {
                item["message"] = json!({"mid": mid, "text": text,
                    "quick_reply": {"payload": TEXT_QUICK_REPLY_PAYLOAD}});
            }
            Kind::Sticker(sticker) => {
                item["message"] = json!({"mid": mid, "sticker_id": sticker.parse::<u64>().unwrap_or(1),
                    "attachments": [{"type": "image", "payload": {"url": "https://example.invalid/s.png", "sticker_id": sticker}}]});
            }
            Kind::QuickReply(text, payload) => {
                item["message"] =
                    json!({"mid": mid, "text": text, "quick_reply": {"payload": payload}});
            }
            Kind::Postback(title, payload) => {
                item["postback"] = json!({"title": title, "payload": payload, "mid": mid});
            }
            Kind::Reaction(emoji, removed) => {
                item["reaction"] = json!({"reaction": "other", "emoji": emoji,
                    "action": if *removed { "unreact" } else { "react" }, "mid": mid});
            }
            Kind::Read(watermark) => item["read"] = json!({"watermark": watermark}),
            Kind::Delivery => {
                item["delivery"] = json!({"mids": [mid], "watermark": 1});
                item.as_object_mut().map(|m| m.remove("timestamp"));
            }
            Kind::OptinUserRef(user_ref) => {
                item.as_object_mut().map(|m| m.remove("sender"));
                item["optin"] = json!({"ref": "props", "user_ref": user_ref});
            }
            Kind::Unknown(key) => item[key.as_str()] = json!({"some": "thing"}),
            Kind::Echo(text) => {
                item["sender"] = json!({"id": PAGE_ID});
                item["recipient"] = json!({"id": psid});
                item["message"] = json!({"mid": mid, "is_echo": true, "text": text});
            }
        }
        item
    }

    /// What the handler must see, or `None` when the item is not delivered (echoes, standby).
    pub fn expected(&self, nonce: u64, entry: usize, i: usize, time: i64) -> Option<Seen> {
        let (psid, kind, timestamp) = match self {
            Item::Messaging { standby: true, .. } => return None,
            Item::Messaging {
                psid,
                kind,
                timestamp,
                ..
            } => (psid, kind, *timestamp),
            Item::Change(field, from) => {
                return Some(Seen {
                    id: None,
                    conversation: from.clone().unwrap_or_else(|| PAGE_ID.to_owned()),
                    sender: from.clone(),
                    kind: format!("changes_{field}"),
                    text: None,
                    detail: String::new(),
                    reply_token: None,
                    occurred_at: Some(time),
                    redelivered: false,
                });
            }
        };
        let mid = mid(nonce, entry, i);
        let mut seen = Seen {
            id: Some(mid.clone()),
            conversation: psid.clone(),
            sender: Some(psid.clone()),
            kind: "message".to_owned(),
            text: None,
            detail: String::new(),
            reply_token: None,
            occurred_at: Some(timestamp),
            redelivered: false,
        };
        match kind {
            Kind::Echo(_) => return None,
            Kind::Text(text) | Kind::TextQuickReply(text) => seen.text = Some(text.clone()),
            Kind::Sticker(sticker) => seen.detail = sticker.clone(),
            Kind::QuickReply(_, payload) | Kind::Postback(_, payload) => {
                seen.kind = "postback".to_owned();
                seen.detail = payload.clone();
            }
            Kind::Reaction(emoji, removed) => {
                seen.id = None;
                seen.kind = "reaction".to_owned();
                seen.detail = format!("{mid}:{emoji}:{removed}");
            }
            Kind::Read(_) => {
                seen.id = None;
                seen.kind = "read".to_owned();
            }
            Kind::Delivery => {
                seen.id = None;
                seen.kind = "delivery".to_owned();
                seen.occurred_at = Some(time);
            }
            Kind::OptinUserRef(user_ref) => {
                seen.id = None;
                seen.kind = "optin".to_owned();
                seen.conversation = format!("user_ref:{user_ref}");
                seen.sender = None;
            }
            Kind::Unknown(key) => {
                seen.id = None;
                seen.kind = key.clone();
            }
        }
        Some(seen)
    }

    fn standby(&self) -> bool {
        matches!(self, Item::Messaging { standby: true, .. })
    }
}

/// The body of one request with these entries.
pub fn body(entries: &[(i64, Vec<Item>)], nonce: u64) -> Value {
    let entries: Vec<Value> = entries
        .iter()
        .enumerate()
        .map(|(e, (time, items))| {
            let pick = |want: &dyn Fn(&Item) -> bool| -> Vec<Value> {
                items
                    .iter()
                    .enumerate()
                    .filter(|(_, item)| want(item))
                    .map(|(i, item)| item.to_json(nonce, e, i))
                    .collect()
            };
            json!({
                "id": PAGE_ID,
                "time": time,
                "messaging": pick(&|item| matches!(item, Item::Messaging { .. }) && !item.standby()),
                "standby": pick(&Item::standby),
                "changes": pick(&|item| matches!(item, Item::Change(..))),
            })
        })
        .collect();
    json!({"object": "page", "entry": entries})
}

fn signed_post(body: &[u8], signature: &str) -> http::Request<axum::body::Body> {
    post(
        DEFAULT_PATH,
        &[(SIGNATURE_HEADER, signature)],
        bytes::Bytes::copy_from_slice(body),
    )
}

/// Valid items, signed: 200, and the handler sees each (echoes and standby aside) with its id,
/// conversation, sender, text, postback payload and time.
pub fn check_round_trip(h: &Harness, entries: &[(i64, Vec<Item>)]) -> Result<(), TestCaseError> {
    let nonce = fuzzing::nonce();
    let body = body(entries, nonce).to_string();
    let (status, _) = h.send(signed_post(
        body.as_bytes(),
        &sign(&secret(), body.as_bytes()),
    ));
    prop_assert_eq!(status, 200);
    let expected: Vec<Seen> = entries
        .iter()
        .enumerate()
        .flat_map(|(e, (time, items))| {
            items
                .iter()
                .enumerate()
                .filter_map(move |(i, item)| item.expected(nonce, e, i, *time))
        })
        .collect();
    check_seen(&expected, &h.settle())
}

/// A valid body broken by `mutations`, then signed: as [`check_signed_body`].
pub fn check_signed_mutation(
    h: &Harness,
    entries: &[(i64, Vec<Item>)],
    mutations: &Mutations,
) -> Result<(), TestCaseError> {
    let body = mutations.apply(&body(entries, fuzzing::nonce()));
    check_signed_body(h, &body)
}

/// `body`, signed: never a panic or a 500; 400 exactly when the parser refuses the body, and then
/// nothing is handled.
pub fn check_signed_body(h: &Harness, body: &[u8]) -> Result<(), TestCaseError> {
    let parsed = parse_body(body);
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
        Ok(batch) => {
            prop_assert_eq!(status, 200);
            prop_assert!(handled.len() <= batch.events.len());
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
    /// One hex digit of the signature replaced by another value.
    SignatureDigit(Index, u8),
    /// Any one character of the header replaced.
    HeaderChar(Index, char),
    /// The body signed with another secret.
    WrongSecret(String),
    /// The signature of another body.
    OtherBody(Vec<u8>),
    /// The header cut short.
    Truncated(Index),
}

/// Any tampering.
pub fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Tamper::BodyBit(at, bit)),
        (any::<Index>(), 1u8..16).prop_map(|(at, delta)| Tamper::SignatureDigit(at, delta)),
        (any::<Index>(), prop::char::range('!', '~')).prop_map(|(at, c)| Tamper::HeaderChar(at, c)),
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
    entries: &[(i64, Vec<Item>)],
    tamper: &Tamper,
) -> Result<(), TestCaseError> {
    let mut body = body(entries, fuzzing::nonce()).to_string().into_bytes();
    let mut signature = sign(&secret(), &body);
    match tamper {
        Tamper::BodyBit(at, bit) => {
            let i = at.index(body.len());
            body[i] ^= 1 << bit;
        }
        Tamper::SignatureDigit(at, delta) => {
            // A digit of the hex part changed to another value (not just its case).
            let i = "sha256=".len() + at.index(64);
            let old = u8::from_str_radix(&signature[i..=i], 16).expect("hex");
            let new = format!("{:x}", (old + delta) % 16);
            signature.replace_range(i..=i, &new);
        }
        Tamper::HeaderChar(at, c) => {
            let i = at.index(signature.len());
            let old = char::from(signature.as_bytes()[i]);
            if old.eq_ignore_ascii_case(c) {
                return Ok(());
            }
            signature.replace_range(i..=i, &c.to_string());
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
    if !matches!(tamper, Tamper::HeaderChar(..) | Tamper::Truncated(_)) {
        prop_assert_eq!(verdict, Err(SignatureError::Mismatch));
    }
    let (status, _) = h.send(signed_post(&body, &signature));
    prop_assert_eq!(status, 401);
    prop_assert!(h.settle().is_empty());
    Ok(())
}

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One parameter of a subscription handshake.
pub fn query_param() -> impl Strategy<Value = (String, String)> {
    let key = prop_oneof![
        3 => Just("hub.mode".to_owned()),
        3 => Just("hub.verify_token".to_owned()),
        3 => Just("hub.challenge".to_owned()),
        1 => "[a-z.]{1,10}",
    ];
    let value = prop_oneof![
        2 => Just("subscribe".to_owned()),
        2 => Just(VERIFY_TOKEN.to_owned()),
        1 => (0..VERIFY_TOKEN.len()).prop_map(|n| VERIFY_TOKEN[..n].to_owned()),
        1 => Just(format!("{VERIFY_TOKEN} ")),
        1 => Just(VERIFY_TOKEN.to_ascii_lowercase()),
        3 => any_text(),
    ];
    (key, value)
}

/// A handshake's parameters: the right three, perhaps with a value changed or extra and
/// repeated parameters, in any order; or any parameters at all.
pub fn subscription() -> impl Strategy<Value = Vec<(String, String)>> {
    let value = || prop::option::weighted(0.3, query_param().prop_map(|(_, v)| v));
    prop_oneof![
        prop::collection::vec(query_param(), 0..5),
        (
            value(),
            value(),
            any_text(),
            prop::collection::vec(query_param(), 0..2),
            any::<Index>(),
        )
            .prop_map(|(mode, token, challenge, extra, rotation)| {
                let mut params = vec![
                    (
                        "hub.mode".to_owned(),
                        mode.unwrap_or_else(|| "subscribe".to_owned()),
                    ),
                    (
                        "hub.verify_token".to_owned(),
                        token.unwrap_or_else(|| VERIFY_TOKEN.to_owned()),
                    ),
                    ("hub.challenge".to_owned(), challenge),
                ];
                params.extend(extra);
                let n = rotation.index(params.len());
                params.rotate_left(n);
                params
            }),
    ]
}

/// The handshake: 200 with the challenge verbatim exactly when the mode is `subscribe`, the
/// token is the configured one and a challenge is given (each once); 403 otherwise.
pub fn check_subscription(h: &Harness, params: &[(String, String)]) -> Result<(), TestCaseError> {
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let uri = format!("{DEFAULT_PATH}?{}", query.join("&"));
    let request = http::Request::get(uri)
        .body(axum::body::Body::empty())
        .expect("a valid request");
    let (status, body) = h.send(request);
    let once = |key: &str| {
        let mut values = params.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
        match (values.next(), values.next()) {
            (Some(value), None) => Ok(Some(value.clone())),
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(()),
        }
    };
    let expected = match (
        once("hub.mode"),
        once("hub.verify_token"),
        once("hub.challenge"),
    ) {
        (Ok(Some(mode)), Ok(Some(token)), Ok(Some(challenge)))
            if mode == "subscribe" && token == VERIFY_TOKEN =>
        {
            Some(challenge)
        }
        _ => None,
    };
    match expected {
        Some(challenge) => {
            prop_assert_eq!(status, 200);
            prop_assert_eq!(&body[..], challenge.as_bytes());
        }
        None => prop_assert_eq!(status, 403, "answered {:?}", body),
    }
    Ok(())
}

/// Any query string of URL characters: 200 or 403, and 200 only with the token in it.
pub fn check_raw_subscription(h: &Harness, query: &str) -> Result<(), TestCaseError> {
    let request = http::Request::get(format!("{DEFAULT_PATH}?{query}"))
        .body(axum::body::Body::empty())
        .expect("a valid request");
    let (status, _) = h.send(request);
    prop_assert!(status == 200 || status == 403, "answered {}", status);
    if status == 200 {
        prop_assert!(query.contains(VERIFY_TOKEN));
    }
    Ok(())
}

/// Query strings of URL characters, often with the handshake's keys and token in them.
pub fn raw_query() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[A-Za-z0-9._~%&=+-]{0,12}",
            Just("hub.mode=subscribe".to_owned()),
            Just(format!("hub.verify_token={VERIFY_TOKEN}")),
            Just("hub.challenge=".to_owned()),
            Just("&".to_owned()),
            Just("%".to_owned()),
            Just("%zz".to_owned()),
            Just("%C3%28".to_owned()),
        ],
        0..8,
    )
    .prop_map(|parts| parts.concat())
}
