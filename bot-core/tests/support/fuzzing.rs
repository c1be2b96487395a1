//! What the property tests and the fuzz run share: mutations of network input (byte-level and
//! JSON-aware), arbitrary inputs, and an in-process webhook harness.
//!
//! Included by path (not a crate) from each adapter's `tests/props.rs` and from bench's
//! `fuzz-run`, so that the CI properties and the long fuzz run make the same inputs and check
//! the same things. Each includer declares it as `mod fuzzing;` at its crate root.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use bot_core::{Adapter, Bot, Context, Error, Event, Limits};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;
use tower::ServiceExt as _;

/// The body limit of the harness: small, so that mutations reach 413 too.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The statuses a webhook may answer to anything a network peer sends.
pub const WEBHOOK_STATUSES: [u16; 5] = [200, 400, 401, 413, 503];

/// Fails the case unless `status` is one a webhook may answer.
pub fn check_status(status: StatusCode) -> Result<(), TestCaseError> {
    prop_assert!(
        WEBHOOK_STATUSES.contains(&status.as_u16()),
        "status {status} is not one of {WEBHOOK_STATUSES:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Byte mutations
// ---------------------------------------------------------------------------------------------

/// One change to a byte string.
#[derive(Debug, Clone)]
pub enum ByteMutation {
    /// Flips one bit.
    FlipBit(Index, u8),
    /// Keeps only a prefix.
    Truncate(Index),
    /// Inserts bytes.
    Insert(Index, Vec<u8>),
    /// Overwrites bytes.
    Overwrite(Index, Vec<u8>),
    /// Removes a run of bytes.
    Delete(Index, usize),
    /// Repeats a run of bytes in place.
    Duplicate(Index, usize),
    /// Swaps the bytes after a point with those before it (splices the input with itself).
    Rotate(Index),
}

/// Byte strings that matter to parsers: JSON punctuation, escapes, invalid UTF-8, NUL.
fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 1..8),
        prop::sample::select(vec![
            b"\"".to_vec(),
            b"\\".to_vec(),
            b"\\u".to_vec(),
            b"\\ud800".to_vec(),
            b"{".to_vec(),
            b"}".to_vec(),
            b"[".to_vec(),
            b"]".to_vec(),
            b",".to_vec(),
            b":".to_vec(),
            b"null".to_vec(),
            b"-".to_vec(),
            b"e999".to_vec(),
            b"\xff\xfe".to_vec(),
            b"\xc3".to_vec(),
            b"\0".to_vec(),
            b"\xf0\x9f\x98".to_vec(),
        ]),
    ]
}

/// Any one byte mutation.
pub fn byte_mutation() -> impl Strategy<Value = ByteMutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| ByteMutation::FlipBit(at, bit)),
        1 => any::<Index>().prop_map(ByteMutation::Truncate),
        2 => (any::<Index>(), interesting_bytes()).prop_map(|(at, b)| ByteMutation::Insert(at, b)),
        2 => (any::<Index>(), interesting_bytes()).prop_map(|(at, b)| ByteMutation::Overwrite(at, b)),
        1 => (any::<Index>(), 1usize..64).prop_map(|(at, n)| ByteMutation::Delete(at, n)),
        1 => (any::<Index>(), 1usize..64).prop_map(|(at, n)| ByteMutation::Duplicate(at, n)),
        1 => any::<Index>().prop_map(ByteMutation::Rotate),
    ]
}

/// Applies `mutations` to `input`, in order.
pub fn apply_bytes(input: &[u8], mutations: &[ByteMutation]) -> Vec<u8> {
    let mut out = input.to_vec();
    for mutation in mutations {
        // Positions 0..=len, so that the end can be picked too.
        let at = |index: &Index, len: usize| index.index(len + 1);
        match mutation {
            ByteMutation::FlipBit(index, bit) => {
                if !out.is_empty() {
                    let i = index.index(out.len());
                    out[i] ^= 1 << bit;
                }
            }
            ByteMutation::Truncate(index) => {
                let i = at(index, out.len());
                out.truncate(i);
            }
            ByteMutation::Insert(index, bytes) => {
                let i = at(index, out.len());
                out.splice(i..i, bytes.iter().copied());
            }
            ByteMutation::Overwrite(index, bytes) => {
                let i = at(index, out.len());
                let end = (i + bytes.len()).min(out.len());
                out.splice(i..end, bytes.iter().copied());
            }
            ByteMutation::Delete(index, len) => {
                let i = at(index, out.len());
                let end = (i + len).min(out.len());
                out.drain(i..end);
            }
            ByteMutation::Duplicate(index, len) => {
                let i = at(index, out.len());
                let end = (i + len).min(out.len());
                let run = out[i..end].to_vec();
                out.splice(end..end, run);
            }
            ByteMutation::Rotate(index) => {
                let i = at(index, out.len());
                out.rotate_left(i);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// JSON mutations
// ---------------------------------------------------------------------------------------------

/// Text put in place of a value as it is, not as a JSON value: what serde_json would never
/// write but a peer may send.
const RAW_LITERALS: &[&str] = &[
    "1e999",
    "-1e999",
    "18446744073709551616",
    "-9223372036854775809",
    "340282366920938463463374607431768211456",
    "123456789012345678901234567890.5e-400",
    "-0",
    "0.0000000000000000000000000000000000000001",
    "1E+2",
    r#""\ud800""#,
    r#""\udfff\ud800""#,
    r#""\u0000""#,
    r#""\uffff\ufffe""#,
    r#""\ud83d\ude00""#,
    r#""\u202e\u00e4\u0301""#,
    r#""\/\b\f\n\r\t""#,
    r#""\x41""#,
    r#""\u12""#,
    "NaN",
    "Infinity",
    "true false",
    "\"unterminated",
    "'single'",
    "[1,]",
    "{\"a\":1,}",
    "{\"a\" 1}",
    "{\"dup\":1,\"dup\":2}",
];

/// A value put where another was: the wrong type, an edge of a type, or odd text.
#[derive(Debug, Clone)]
pub enum Replacement {
    /// A JSON value.
    Value(Value),
    /// Text of [`RAW_LITERALS`].
    Raw(usize),
    /// The node wrapped in this many arrays (past serde_json's recursion limit when large).
    NestedArrays(usize),
    /// The node wrapped in this many objects.
    NestedObjects(usize),
    /// A long string of one character.
    Long(char, usize),
}

fn weird_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![i64::MIN, i64::MAX, -1, 0, 1, 1 << 53]).prop_map(Value::from),
        prop::sample::select(vec![u64::MAX, u64::MAX - 1]).prop_map(Value::from),
        ".{0,16}".prop_map(Value::String),
        "[\\u{0}-\\u{7f}\\u{80}-\\u{10ffff}]{0,8}".prop_map(Value::String),
        Just(Value::Array(Vec::new())),
        Just(Value::Object(serde_json::Map::new())),
        prop::collection::vec(any::<i32>().prop_map(Value::from), 0..4).prop_map(Value::Array),
    ]
}

fn replacement() -> impl Strategy<Value = Replacement> {
    prop_oneof![
        6 => weird_value().prop_map(Replacement::Value),
        4 => (0..RAW_LITERALS.len()).prop_map(Replacement::Raw),
        1 => prop_oneof![1usize..20, 100usize..140, 1000usize..3000].prop_map(Replacement::NestedArrays),
        1 => prop_oneof![1usize..20, 100usize..140].prop_map(Replacement::NestedObjects),
        1 => (prop::sample::select(vec!['a', 'é', '\u{1F600}', '"', '\\']), 1000usize..70_000)
            .prop_map(|(c, n)| Replacement::Long(c, n)),
    ]
}

/// One JSON-aware change, at a node picked among all of the document's nodes.
#[derive(Debug, Clone)]
pub enum JsonMutation {
    /// The node becomes something else.
    Replace(Index, Replacement),
    /// The node is removed from its object or array (a missing field).
    Remove(Index),
    /// An extra member in the node if it is an object, an extra element if an array.
    Add(Index, String, Replacement),
    /// A string node gets unicode and escapes spliced in.
    Unicode(Index, String),
}

/// Any one JSON-aware mutation.
pub fn json_mutation() -> impl Strategy<Value = JsonMutation> {
    prop_oneof![
        4 => (any::<Index>(), replacement()).prop_map(|(at, r)| JsonMutation::Replace(at, r)),
        3 => any::<Index>().prop_map(JsonMutation::Remove),
        2 => (any::<Index>(), "[a-zA-Z_]{1,12}", replacement())
            .prop_map(|(at, key, r)| JsonMutation::Add(at, key, r)),
        2 => (any::<Index>(), "\\PC{0,6}").prop_map(|(at, text)| JsonMutation::Unicode(at, text)),
    ]
}

/// The JSON pointers of every node of `value`, in document order.
fn pointers(value: &Value) -> Vec<String> {
    fn walk(value: &Value, here: &mut String, out: &mut Vec<String>) {
        out.push(here.clone());
        let len = here.len();
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    here.push('/');
                    here.push_str(&key.replace('~', "~0").replace('/', "~1"));
                    walk(child, here, out);
                    here.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    here.push('/');
                    here.push_str(&i.to_string());
                    walk(child, here, out);
                    here.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut String::new(), &mut out);
    out
}

/// The marker a raw replacement takes in the tree until the text is written.
fn marker(n: usize) -> String {
    format!("\u{1}raw-{n}\u{1}")
}

/// Applies `mutations` to `valid` and writes the result as text, raw replacements spliced in.
pub fn apply_json(valid: &Value, mutations: &[JsonMutation]) -> Vec<u8> {
    let mut doc = valid.clone();
    let mut raws: Vec<String> = Vec::new();
    let place = |replacement: &Replacement, node: Value, raws: &mut Vec<String>| -> Value {
        let raw = match replacement {
            Replacement::Value(value) => return value.clone(),
            Replacement::Raw(i) => RAW_LITERALS[*i].to_owned(),
            Replacement::NestedArrays(depth) => {
                format!("{}{}{}", "[".repeat(*depth), node, "]".repeat(*depth))
            }
            Replacement::NestedObjects(depth) => {
                format!(
                    "{}{}{}",
                    r#"{"n":"#.repeat(*depth),
                    node,
                    "}".repeat(*depth)
                )
            }
            Replacement::Long(c, n) => Value::String(c.to_string().repeat(*n)).to_string(),
        };
        raws.push(raw);
        Value::String(marker(raws.len() - 1))
    };
    for mutation in mutations {
        let all = pointers(&doc);
        let pick = |index: &Index| all[index.index(all.len())].clone();
        match mutation {
            JsonMutation::Replace(index, replacement) => {
                let at = pick(index);
                if let Some(node) = doc.pointer_mut(&at) {
                    let old = node.take();
                    *node = place(replacement, old, &mut raws);
                }
            }
            JsonMutation::Remove(index) => {
                let at = pick(index);
                let Some((parent, last)) = at.rsplit_once('/') else {
                    doc = Value::Null;
                    continue;
                };
                let key = last.replace("~1", "/").replace("~0", "~");
                match doc.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.remove(&key);
                    }
                    Some(Value::Array(items)) => {
                        if let Some(i) = key.parse::<usize>().ok().filter(|i| *i < items.len()) {
                            items.remove(i);
                        }
                    }
                    _ => {}
                }
            }
            JsonMutation::Add(index, key, replacement) => {
                let at = pick(index);
                let value = place(replacement, Value::Null, &mut raws);
                match doc.pointer_mut(&at) {
                    Some(Value::Object(map)) => {
                        map.insert(key.clone(), value);
                    }
                    Some(Value::Array(items)) => items.push(value),
                    _ => {}
                }
            }
            JsonMutation::Unicode(index, text) => {
                let at = pick(index);
                if let Some(Value::String(s)) = doc.pointer_mut(&at) {
                    let mid = s
                        .char_indices()
                        .nth(s.chars().count() / 2)
                        .map_or(s.len(), |(i, _)| i);
                    s.insert_str(mid, text);
                }
            }
        }
    }
    let mut text = doc.to_string();
    for (i, raw) in raws.iter().enumerate() {
        let quoted = Value::String(marker(i)).to_string();
        text = text.replacen(&quoted, raw, 1);
    }
    text.into_bytes()
}

/// How a valid document is broken: JSON-aware mutations, then byte mutations.
#[derive(Debug, Clone)]
pub struct Mutations {
    /// Applied to the tree first.
    pub json: Vec<JsonMutation>,
    /// Applied to the text after.
    pub bytes: Vec<ByteMutation>,
}

impl Mutations {
    /// `valid` with the mutations applied.
    pub fn apply(&self, valid: &Value) -> Vec<u8> {
        apply_bytes(&apply_json(valid, &self.json), &self.bytes)
    }
}

/// One to four JSON-aware mutations, often alone, sometimes followed by byte mutations; or byte
/// mutations alone.
pub fn mutations() -> impl Strategy<Value = Mutations> {
    let json = || prop::collection::vec(json_mutation(), 1..4);
    let bytes = || prop::collection::vec(byte_mutation(), 1..4);
    prop_oneof![
        6 => json().prop_map(|json| Mutations { json, bytes: Vec::new() }),
        2 => (json(), bytes()).prop_map(|(json, bytes)| Mutations { json, bytes }),
        1 => bytes().prop_map(|bytes| Mutations { json: Vec::new(), bytes }),
    ]
}

/// Bytes a peer may send: anything, JSON-like text, or a valid body's prefix of odd bytes.
pub fn arbitrary_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        "[\\[\\]{}:,\"0-9a-z\\\\ .eE+-]{0,256}".prop_map(String::into_bytes),
        "\\PC{0,64}".prop_map(String::into_bytes),
    ]
}

/// Header values a peer may send (visible ASCII, as an HTTP header must be).
pub fn arbitrary_header_value() -> impl Strategy<Value = String> {
    "[ -~]{0,140}"
}

// ---------------------------------------------------------------------------------------------
// The webhook harness
// ---------------------------------------------------------------------------------------------

/// Makes every id of a generated case unique across cases (dedup would hide a repeat).
pub fn nonce() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, AtomicOrdering::Relaxed)
}

/// A bot with one adapter, driven in-process through its webhook router on a paused
/// current-thread runtime (timers such as the interactions' deferral fire as soon as nothing
/// else can run, so no case waits on the clock).
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    bot: Bot,
    router: axum::Router,
    seen: Arc<Mutex<Vec<Event>>>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness").finish_non_exhaustive()
    }
}

impl Harness {
    /// A started bot with `adapter` whose handler records every event; with `reply`, it also
    /// answers each with `seen <event id>`.
    pub fn new(adapter: impl Adapter, reply: bool) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a tokio runtime");
        let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
        let recorder = seen.clone();
        let handler = move |cx: Context, event: Event| {
            let recorder = recorder.clone();
            async move {
                let id = event.id.to_string();
                recorder
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(event);
                if reply {
                    cx.reply(format!("seen {id}")).await?;
                }
                Ok::<(), Error>(())
            }
        };
        // One attempt: a handler error (a reply that cannot go out) is not retried forever.
        let mut limits = Limits::default();
        limits.retry.max_attempts = 1;
        let bot = Bot::builder()
            .adapter(adapter)
            .handler(handler)
            .limits(limits)
            .max_body_bytes(MAX_BODY_BYTES)
            .build()
            .expect("the harness bot builds");
        let router = bot.webhooks();
        runtime.block_on(async { bot.start() });
        Self {
            runtime,
            bot,
            router,
            seen,
        }
    }

    /// Sends `request` through the webhook router; returns the status and the body.
    pub fn send(&self, request: Request<Body>) -> (StatusCode, Bytes) {
        self.runtime.block_on(async {
            // Requests 10 ms apart: bounded-time memories (interactions waiting for an answer,
            // dedup keys) expire as they would at 100 requests a second.
            tokio::time::advance(std::time::Duration::from_millis(10)).await;
            let response = self
                .router
                .clone()
                .oneshot(request)
                .await
                .expect("axum routers are infallible");
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (status, body)
        })
    }

    /// Waits until every accepted event is handled; returns the events handled since the last
    /// call.
    pub fn settle(&self) -> Vec<Event> {
        self.runtime.block_on(self.bot.idle());
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A POST of `body` to `path` with `headers`.
pub fn post(path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Request<Body> {
    let mut request = Request::post(path).header(http::header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .body(Body::from(body.into()))
        .expect("a valid request")
}

// ---------------------------------------------------------------------------------------------
// What a round trip checks
// ---------------------------------------------------------------------------------------------

/// The parts of an event a round trip checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The event id; `None` in an expectation when the platform gives none (a content hash).
    pub id: Option<String>,
    /// The conversation.
    pub conversation: String,
    /// The sender.
    pub sender: Option<String>,
    /// [`bot_core::EventKind::name`].
    pub kind: String,
    /// The message text.
    pub text: Option<String>,
    /// What else the kind carries (see [`seen`]).
    pub detail: String,
    /// The reply token.
    pub reply_token: Option<String>,
    /// When it happened, in milliseconds; `None` in an expectation when the platform does not
    /// say (the time of receipt).
    pub occurred_at: Option<i64>,
    /// Whether the platform redelivered it.
    pub redelivered: bool,
}

/// What a round trip checks of `event`. `detail` is: a message's attachment ids joined by
/// commas; a postback's data; a command's name, a space, and its `text` option; a deletion's
/// message id; members' ids joined by commas; a reaction's `message:emoji:removed`.
pub fn seen(event: &Event) -> Seen {
    use bot_core::EventKind;
    let join = |ids: Vec<&str>| ids.join(",");
    let detail = match &event.kind {
        EventKind::Message(m) | EventKind::Edited(m) => join(
            m.attachments
                .iter()
                .map(|a| a.id.as_deref().unwrap_or(""))
                .collect(),
        ),
        EventKind::Postback(p) => p.data.clone(),
        EventKind::Command(c) => format!(
            "{} {}",
            c.name,
            c.options.get("text").and_then(Value::as_str).unwrap_or("")
        ),
        EventKind::Deleted(d) => d.message_id.as_str().to_owned(),
        EventKind::MemberJoined(m) | EventKind::MemberLeft(m) => {
            join(m.users.iter().map(|u| u.as_str()).collect())
        }
        EventKind::Reaction(r) => format!("{}:{}:{}", r.message_id.as_str(), r.emoji, r.removed),
        _ => String::new(),
    };
    Seen {
        id: Some(event.id.to_string()),
        conversation: event.conversation.as_str().to_owned(),
        sender: event.sender.as_ref().map(|s| s.as_str().to_owned()),
        kind: event.kind.name().to_owned(),
        text: event.message().and_then(|m| m.text.clone()),
        detail,
        reply_token: event.reply_token.as_ref().map(|t| t.expose().to_owned()),
        occurred_at: Some(event.occurred_at.as_millis()),
        redelivered: event.redelivered,
    }
}

/// Fails unless the handler saw exactly the `expected` events, in any order.
pub fn check_seen(expected: &[Seen], actual: &[Event]) -> Result<(), TestCaseError> {
    let mut left: Vec<Seen> = actual.iter().map(seen).collect();
    prop_assert_eq!(
        left.len(),
        expected.len(),
        "handled {:?}, expected {:?}",
        left,
        expected
    );
    // Expectations with an id first, so that those without cannot take their events.
    let mut order: Vec<&Seen> = expected.iter().collect();
    order.sort_by_key(|e| e.id.is_none());
    for want in order {
        // What the expectation leaves open is taken as it is.
        let open = |got: &Seen| Seen {
            id: want.id.as_ref().and(got.id.clone()),
            occurred_at: want.occurred_at.and(got.occurred_at),
            ..got.clone()
        };
        let found = left.iter().position(|got| match &want.id {
            Some(_) => got.id == want.id,
            None => open(got) == *want,
        });
        let Some(found) = found else {
            return Err(TestCaseError::fail(format!(
                "expected {want:?} among {left:?}"
            )));
        };
        let got = left.swap_remove(found);
        prop_assert!(
            got.id.as_deref().is_some_and(|id| !id.is_empty()),
            "{got:?} has no id"
        );
        prop_assert_eq!(open(&got), want.clone());
    }
    Ok(())
}
