//! Entry points for the property tests and the fuzz run (feature `testing`, hidden from the
//! docs): the shard's frame reader and zlib-stream inflater without a socket. Not an API.

use serde::Deserialize;
use serde_json::Value;

use super::compression::Inflater;
use super::frame::{Frame, quick_dispatch};
use crate::event::{DispatchContext, from_dispatch, map_dispatch};
use bot_core::Event;
use bot_core::event::Raw;
use bytes::Bytes;

/// The zlib-stream inflater of one gateway connection.
#[derive(Debug)]
pub struct ZlibStream(Inflater);

impl Default for ZlibStream {
    fn default() -> Self {
        Self(Inflater::new())
    }
}

impl ZlibStream {
    /// An inflater refusing messages larger than `max_message` bytes (the shard's allows 64 MiB).
    pub fn with_limit(max_message: usize) -> Self {
        Self(Inflater::with_limit(max_message))
    }

    /// Takes one binary WebSocket message; returns the inflated payload once a whole message
    /// (ending in `00 00 ff ff`) has arrived.
    ///
    /// # Errors
    ///
    /// The inflater's error: a broken stream, or a message too large.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.0.push(bytes).map(|out| out.map(<[u8]>::to_vec))
    }
}

/// A frame as the shard read it.
#[derive(Debug)]
pub struct ReadFrame {
    /// `op`.
    pub op: u8,
    /// `s`.
    pub sequence: Option<u64>,
    /// `t`.
    pub name: Option<String>,
    /// The event a dispatch maps to; `None` for other ops, READY, RESUMED and what is not
    /// delivered.
    pub event: Option<Event>,
}

/// A frame parsed whole into a tree, as the shard read frames before it kept `d` as text.
#[derive(Deserialize)]
struct TreeFrame {
    op: u8,
    #[serde(default)]
    d: Value,
    #[serde(default)]
    s: Option<u64>,
    #[serde(default)]
    t: Option<String>,
}

/// Reads frames as one shard connection does, keeping what READY says.
#[derive(Debug, Default)]
pub struct FrameReader {
    context: DispatchContext,
}

impl FrameReader {
    /// Parses one frame's bytes (a text message, or an inflated binary one) and maps a dispatch,
    /// as the shard does: a dispatch whose envelope comes first read from it alone and its data
    /// mapped from a view, any other frame parsed whole with `d` kept as text.
    ///
    /// # Errors
    ///
    /// The frame is not a gateway payload (the shard logs and skips it), or its dispatch data
    /// cannot become a tree (the shard logs and skips the dispatch).
    pub fn read(&mut self, bytes: &[u8]) -> Result<ReadFrame, serde_json::Error> {
        // A dispatch written as Discord writes it: the envelope read alone, the data parsed once
        // by its mapping; data the mapping cannot read takes the whole parse below.
        if let Some(quick) = std::str::from_utf8(bytes).ok().and_then(quick_dispatch)
            && !matches!(quick.name, "READY" | "RESUMED")
            && let Ok(event) = map_dispatch(quick.name, quick.data, quick.sequence, &self.context)
        {
            return Ok(ReadFrame {
                op: 0,
                sequence: quick.sequence,
                name: Some(quick.name.to_owned()),
                event: event.map(|mut event| {
                    event.raw = Raw::from_shared(&Bytes::new(), quick.data);
                    Event::from(event)
                }),
            });
        }
        let frame: Frame<'_> = serde_json::from_slice(bytes)?;
        let name = frame.t.as_ref().map(|t| t.0.clone().into_owned());
        let event = match (frame.op, name.as_deref()) {
            (0, Some("READY")) => {
                let data: Value = serde_json::from_str(frame.data().get()).unwrap_or_default();
                self.ready(&data);
                None
            }
            (0, Some("RESUMED")) => None,
            (0, name) => {
                let data = frame.data();
                let name = name.unwrap_or_default();
                map_dispatch(name, data.get(), frame.s, &self.context)?
                    .map(|event| Event::from(event).with_raw_json(data.to_owned()))
            }
            _ => None,
        };
        Ok(ReadFrame {
            op: frame.op,
            sequence: frame.s,
            name,
            event,
        })
    }

    /// [`FrameReader::read`] the way the shard read frames before: the whole frame parsed into
    /// a tree and mapped from it. For comparison.
    ///
    /// # Errors
    ///
    /// The frame is not a gateway payload.
    pub fn read_tree(&mut self, bytes: &[u8]) -> Result<ReadFrame, serde_json::Error> {
        let frame: TreeFrame = serde_json::from_slice(bytes)?;
        let name = frame.t;
        let event = match (frame.op, name.as_deref()) {
            (0, Some("READY")) => {
                self.ready(&frame.d);
                None
            }
            (0, Some("RESUMED")) => None,
            (0, name) => from_dispatch(name.unwrap_or_default(), frame.d, frame.s, &self.context),
            _ => None,
        };
        Ok(ReadFrame {
            op: frame.op,
            sequence: frame.s,
            name,
            event,
        })
    }

    fn ready(&mut self, data: &Value) {
        self.context.session_id = data
            .get("session_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        self.context.bot_user_id = data
            .pointer("/user/id")
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
}
