//! [`Raw`]: the original platform payload, kept as text and parsed on demand.

use std::fmt;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use once_cell::sync::OnceCell;
use serde::{Deserialize, Serialize};

use super::text;

/// The original platform payload of an event, shared so that clones are cheap.
///
/// Adapters keep it as the JSON text the platform sent: a slice of the request's or frame's body
/// ([`Raw::from_shared`], no copy and no allocation), or text of its own ([`Raw::from_json`]).
/// [`Raw::parse`] reads the text straight into a platform type; [`Raw::value`] builds the tree on
/// first use and keeps it. A payload made from a tree ([`Raw::new`]) keeps the tree and writes
/// its text on first use.
///
/// A payload sharing a body keeps the whole body alive while any event of it is queued or in
/// flight: the events of one request share one buffer instead of a copy each. An event the
/// memory queue keeps for a retry or as a dead letter is copied out of it first, so that one
/// failing event does not keep its whole request alive.
///
/// It serialises as the JSON it holds, embedded as is, with `serde_json` (the queues' format).
#[derive(Clone, Default)]
pub struct Raw {
    /// The JSON text, UTF-8 (every constructor takes a `str`). `once_cell`'s cell, not std's
    /// `OnceLock`: it is made holding the text (`with_value`), where `OnceLock::from` goes through
    /// its one-time initialisation's atomics for every event an adapter makes.
    text: OnceCell<Bytes>,
    /// The tree, built from the text on first use (or given).
    tree: OnceLock<Arc<serde_json::Value>>,
}

static NULL: serde_json::Value = serde_json::Value::Null;

impl Raw {
    /// Wraps a payload.
    pub fn new(value: serde_json::Value) -> Self {
        Self {
            text: OnceCell::new(),
            tree: OnceLock::from(Arc::new(value)),
        }
    }

    /// Wraps a payload's JSON text, parsed only when asked.
    pub fn from_json(json: Box<serde_json::value::RawValue>) -> Self {
        let text: Box<str> = json.into();
        Self::from_text(Bytes::from(text.into_boxed_bytes()))
    }

    /// The payload `json` (JSON text, such as a `RawValue` read from `payload`), sharing the
    /// buffer of `payload` (the request's or frame's body) instead of a copy; `json` that does not
    /// lie within `payload` is copied.
    ///
    /// `json` must be JSON text: it is embedded as is when the event is serialised.
    pub fn from_shared(payload: &Bytes, json: &str) -> Self {
        Self::from_text(
            text::shared_slice(payload, json)
                .unwrap_or_else(|| Bytes::copy_from_slice(json.as_bytes())),
        )
    }

    fn from_text(text: Bytes) -> Self {
        Self {
            text: OnceCell::with_value(text),
            tree: OnceLock::new(),
        }
    }

    fn is_none(&self) -> bool {
        self.text.get().is_none() && self.tree.get().is_none()
    }

    /// The payload as a JSON tree (built from the text on first use).
    ///
    /// `null` in the rare case where the text cannot become a tree although it was read as JSON
    /// (nesting deeper than serde_json's tree allows, or a lone surrogate escape): the text
    /// itself, in [`Raw::json`], is still whole.
    pub fn value(&self) -> &serde_json::Value {
        if self.is_none() {
            return &NULL;
        }
        self.tree.get_or_init(|| {
            Arc::new(serde_json::from_str(self.json()).unwrap_or_else(|e| {
                tracing::warn!(category = ?e.classify(), "raw payload cannot become a JSON tree");
                serde_json::Value::Null
            }))
        })
    }

    /// Drops the tree built from the text, keeping the text (a payload kept as a tree only keeps
    /// it): an event going back to a queue holds what the queue's byte count counts, not the
    /// several times larger tree a handler's read built.
    pub(crate) fn shed_tree(&mut self) {
        if self.text.get().is_some() {
            self.tree.take();
        }
    }

    /// Whether the tree has been built (or was given).
    #[cfg(test)]
    pub(crate) fn has_tree(&self) -> bool {
        self.tree.get().is_some()
    }

    /// The payload as JSON text (written from the tree on first use).
    pub fn json(&self) -> &str {
        self.raw_json().unwrap_or("null")
    }

    /// The length of [`Raw::json`] in bytes, without checking the text again; 0 when there is
    /// no payload or it is kept as a tree only.
    pub(crate) fn text_len(&self) -> usize {
        self.text.get().map_or(0, Bytes::len)
    }

    fn raw_json(&self) -> Option<&str> {
        if self.is_none() {
            return None;
        }
        let text = self.text.get_or_init(|| {
            let value = self.tree.get().map_or(&NULL, |tree| &**tree);
            Bytes::from(serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned()))
        });
        // UTF-8 by construction; checked again rather than trusted, which needs no `unsafe`.
        Some(std::str::from_utf8(text).unwrap_or("null"))
    }

    /// Deserialises the payload into a platform type.
    ///
    /// # Errors
    ///
    /// Fails when the payload does not have the shape of `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match self.tree.get() {
            Some(value) => T::deserialize(&**value),
            None => serde_json::from_str(self.json()),
        }
    }
}

impl PartialEq for Raw {
    fn eq(&self, other: &Self) -> bool {
        self.value() == other.value()
    }
}

/// Shows the payload's size, never its content: platform payloads carry reply and interaction
/// tokens, and `Debug` output ends up in logs.
impl fmt::Debug for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.raw_json() {
            None => f.write_str("Raw(none)"),
            Some(json) => write!(f, "Raw({} bytes)", json.len()),
        }
    }
}

impl Serialize for Raw {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.raw_json() {
            Some(json) => {
                // Borrowed: checks the text is one JSON value without copying it.
                let raw: &serde_json::value::RawValue =
                    serde_json::from_str(json).map_err(serde::ser::Error::custom)?;
                raw.serialize(s)
            }
            None => s.serialize_unit(),
        }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let json = Box::<serde_json::value::RawValue>::deserialize(d)?;
        Ok(if json.get() == "null" {
            Self::default()
        } else {
            Self::from_json(json)
        })
    }
}
