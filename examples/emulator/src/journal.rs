//! [`Journal`]: what the page shows, kept in bounded memory: the conversation items and the
//! handler traces, with a version that moves on every change so the page can wait for one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::trace::TraceLayer;

/// Conversation items kept; older ones are dropped (the page has shown them).
const MAX_ITEMS: usize = 500;
/// Handler traces kept, the newest ones.
const MAX_TRACES: usize = 100;
/// Lines kept per trace; a handler that logs more shows the first ones and a count.
const MAX_TRACE_LINES: usize = 60;

/// Who an item comes from.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Author {
    /// The developer, as the platform's user.
    User,
    /// The bot, as the platform's API received it.
    Bot,
    /// A note about the exchange (a status, an API call that draws nothing).
    Note,
}

/// One thing shown in a conversation.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// Position in the journal, from 1.
    pub seq: u64,
    /// `line`, `messenger`, `discord` or `console`.
    pub platform: &'static str,
    /// Who it comes from.
    pub from: Author,
    /// How to draw `body`: `message` (the platform's message JSON), `interaction` (a Discord
    /// interaction response), `typing`, `text` (console output, or what the user typed) or
    /// `note`.
    pub kind: &'static str,
    /// The platform's JSON for the item, as sent or received.
    pub body: Value,
    /// How it travelled (`reply API · HTTP 200`, `signed webhook · HTTP 200`).
    pub via: String,
    /// For the user's items: the request the bot received (headers and body).
    pub event: Option<Value>,
}

/// What one handler attempt did, from its `bot.event` span.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    /// Position among traces, from 1.
    pub id: u64,
    /// The span's fields: platform, event id, conversation, kind, attempt.
    pub fields: Vec<(String, String)>,
    /// Log lines and child spans recorded inside the attempt.
    pub lines: Vec<String>,
    /// Lines left out past the bound.
    pub lines_dropped: usize,
    /// How long the attempt ran, once it ended.
    pub duration_ms: Option<f64>,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Item>,
    next_seq: u64,
    traces: VecDeque<Trace>,
    next_trace: u64,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    version: watch::Sender<u64>,
}

/// The page's record of the session. Create it first, install [`Journal::trace_layer`] in the
/// tracing subscriber, then hand it to [`crate::Emulator::start`].
#[derive(Debug, Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

impl Default for Journal {
    fn default() -> Self {
        Self::new()
    }
}

/// What the page asks for: the items and traces after what it has seen.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// The journal's version; ask again with it to wait for the next change.
    pub version: u64,
    /// Items with `seq` above the one asked for.
    pub items: Vec<Item>,
    /// The newest traces, newest first.
    pub traces: Vec<Trace>,
}

impl Journal {
    /// An empty journal.
    pub fn new() -> Self {
        let (version, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                version,
            }),
        }
    }

    /// A `tracing` layer that records every `bot.event` span (one handler attempt) with the
    /// log lines and spans inside it.
    pub fn trace_layer(&self) -> TraceLayer {
        TraceLayer::new(self.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self) {
        self.inner.version.send_modify(|v| *v += 1);
    }

    /// Adds an item (its `seq` is set here) and returns its `seq`.
    pub fn push(&self, mut item: Item) -> u64 {
        let seq = {
            let mut state = self.lock();
            state.next_seq += 1;
            item.seq = state.next_seq;
            if state.items.len() == MAX_ITEMS {
                state.items.pop_front();
            }
            state.items.push_back(item);
            state.next_seq
        };
        self.changed();
        seq
    }

    pub(crate) fn open_trace(&self, fields: Vec<(String, String)>) -> u64 {
        let id = {
            let mut state = self.lock();
            state.next_trace += 1;
            let id = state.next_trace;
            if state.traces.len() == MAX_TRACES {
                state.traces.pop_front();
            }
            state.traces.push_back(Trace {
                id,
                fields,
                lines: Vec::new(),
                lines_dropped: 0,
                duration_ms: None,
            });
            id
        };
        self.changed();
        id
    }

    pub(crate) fn trace_line(&self, id: u64, line: String) {
        {
            let mut state = self.lock();
            let Some(trace) = state.traces.iter_mut().rev().find(|t| t.id == id) else {
                return;
            };
            if trace.lines.len() < MAX_TRACE_LINES {
                trace.lines.push(line);
            } else {
                trace.lines_dropped += 1;
            }
        }
        self.changed();
    }

    pub(crate) fn close_trace(&self, id: u64, took: Duration) {
        {
            let mut state = self.lock();
            if let Some(trace) = state.traces.iter_mut().rev().find(|t| t.id == id) {
                trace.duration_ms = Some(took.as_secs_f64() * 1000.0);
            }
        }
        self.changed();
    }

    /// The items after `after` and the newest traces, once the version differs from `seen`
    /// or `wait` has passed.
    pub async fn snapshot(&self, after: u64, seen: u64, wait: Duration) -> Snapshot {
        let mut version = self.inner.version.subscribe();
        let _ = tokio::time::timeout(wait, version.wait_for(|v| *v != seen)).await;
        let version = *version.borrow();
        let state = self.lock();
        Snapshot {
            version,
            items: state
                .items
                .iter()
                .filter(|i| i.seq > after)
                .cloned()
                .collect(),
            traces: state.traces.iter().rev().take(20).cloned().collect(),
        }
    }

    /// Every item kept, oldest first.
    pub fn items(&self) -> Vec<Item> {
        self.lock().items.iter().cloned().collect()
    }

    /// Every trace kept, oldest first.
    pub fn traces(&self) -> Vec<Trace> {
        self.lock().traces.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(text: &str) -> Item {
        Item {
            seq: 0,
            platform: "line",
            from: Author::Note,
            kind: "note",
            body: Value::String(text.into()),
            via: String::new(),
            event: None,
        }
    }

    #[test]
    fn items_are_numbered_and_bounded() {
        let journal = Journal::new();
        for i in 0..MAX_ITEMS + 3 {
            journal.push(note(&i.to_string()));
        }
        let items = journal.items();
        assert_eq!(items.len(), MAX_ITEMS);
        assert_eq!(items[0].seq, 4);
        assert_eq!(items.last().map(|i| i.seq), Some(MAX_ITEMS as u64 + 3));
    }

    #[test]
    fn trace_lines_are_bounded_and_counted() {
        let journal = Journal::new();
        let id = journal.open_trace(vec![]);
        for i in 0..MAX_TRACE_LINES + 5 {
            journal.trace_line(id, i.to_string());
        }
        journal.close_trace(id, Duration::from_millis(3));
        let trace = &journal.traces()[0];
        assert_eq!(trace.lines.len(), MAX_TRACE_LINES);
        assert_eq!(trace.lines_dropped, 5);
        assert_eq!(trace.duration_ms, Some(3.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_snapshot_waits_for_a_change_and_returns_what_is_new() {
        let journal = Journal::new();
        journal.push(note("old"));
        let seen = journal.snapshot(0, u64::MAX, Duration::ZERO).await.version;
        let waiting = journal.clone();
        let snapshot = tokio::join!(waiting.snapshot(1, seen, Duration::from_secs(60)), async {
            tokio::task::yield_now().await;
            journal.push(note("new"));
        })
        .0;
        assert_eq!(snapshot.items.len(), 1);
        assert_eq!(snapshot.items[0].body, "new");
        assert!(snapshot.version > seen);
    }
}
