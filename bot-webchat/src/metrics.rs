//! The adapter's figures: atomic counters readable with [`crate::WebChat::stats`], and the same
//! as OpenTelemetry instruments once the adapter is attached to a bot (`bot.webchat.*`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, Weak};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;

use crate::protocol::CloseReason;

/// How a socket ended, beyond the server's own [`CloseReason`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The server closed it.
    Server(CloseReason),
    /// The browser closed it, or the connection dropped.
    Client,
}

impl Ended {
    fn label(self) -> &'static str {
        match self {
            Ended::Server(reason) => reason.as_str(),
            Ended::Client => "client_closed",
        }
    }

    fn index(self) -> usize {
        match self {
            Ended::Server(reason) => reason.index(),
            Ended::Client => CloseReason::ALL.len(),
        }
    }
}

/// A snapshot of the adapter's counters on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Sockets open now (joined or not).
    pub open: u64,
    /// Sockets that joined, since start.
    pub joined: u64,
    /// Sockets the server closed, by reason, since start.
    pub closed: Vec<(CloseReason, u64)>,
    /// Sockets the browser closed or that dropped, since start.
    pub client_closed: u64,
    /// Frames read from browsers.
    pub frames_in: u64,
    /// Frames queued to browsers.
    pub frames_out: u64,
    /// Bot messages not kept for resume because too many offline users had a history.
    pub history_dropped: u64,
    /// With the history in PostgreSQL: sends that failed because they could not be stored
    /// or published in time, and joins that could not read the history.
    pub history_errors: u64,
    /// With the history in PostgreSQL: the statements that stored sends (each stores every
    /// send that waited for it), since start.
    pub history_batches: u64,
    /// With the history in PostgreSQL: the reads of what the sockets' users have in the table
    /// beyond what reached them (when the fan-out listens again, and every catch-up interval).
    pub history_catch_ups: u64,
    /// With the history in PostgreSQL: the statements that stored sends run again after
    /// PostgreSQL refused them for a conflict (a deadlock, a serialization failure, a send
    /// stored by another statement at the same moment), since start.
    pub history_retries: u64,
    /// With the history in PostgreSQL: the `webchat_seqs` rows this node pruned (users whose
    /// history the retention emptied), since start.
    pub seqs_pruned: u64,
}

impl Stats {
    /// How many sockets the server closed for `reason`.
    pub fn closed_for(&self, reason: CloseReason) -> u64 {
        (self.closed.iter())
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) joined: AtomicU64,
    ended: [AtomicU64; CloseReason::ALL.len() + 1],
    pub(crate) frames_in: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    pub(crate) history_dropped: AtomicU64,
    instruments: OnceLock<Instruments>,
}

#[derive(Debug)]
struct Instruments {
    closed: Counter<u64>,
    frames_in: Counter<u64>,
    frames_out: Counter<u64>,
}

impl Counters {
    pub(crate) fn ended(&self, how: Ended) {
        self.ended[how.index()].fetch_add(1, Ordering::Relaxed);
        if let Some(i) = self.instruments.get() {
            i.closed.add(1, &[KeyValue::new("reason", how.label())]);
        }
    }

    pub(crate) fn frame_in(&self) {
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = self.instruments.get() {
            i.frames_in.add(1, &[]);
        }
    }

    pub(crate) fn frames_out(&self, count: u64) {
        self.frames_out.fetch_add(count, Ordering::Relaxed);
        if let Some(i) = self.instruments.get() {
            i.frames_out.add(count, &[]);
        }
    }

    pub(crate) fn snapshot(&self, open: u64) -> Stats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            open,
            joined: load(&self.joined),
            closed: (CloseReason::ALL.iter())
                .map(|r| (*r, load(&self.ended[r.index()])))
                .collect(),
            client_closed: load(&self.ended[CloseReason::ALL.len()]),
            frames_in: load(&self.frames_in),
            frames_out: load(&self.frames_out),
            history_dropped: load(&self.history_dropped),
            history_errors: 0,
            history_batches: 0,
            history_catch_ups: 0,
            history_retries: 0,
            seqs_pruned: 0,
        }
    }

    /// Records into `telemetry` from now on, with a gauge of open sockets read from `hub`.
    pub(crate) fn attach(&self, telemetry: &bot_core::Telemetry, hub: Weak<crate::hub::Hub>) {
        let meter = telemetry.meter();
        let _open = meter
            .u64_observable_gauge("bot.webchat.connections")
            .with_description("Web chat sockets open on this node")
            .with_callback(move |o| {
                if let Some(hub) = hub.upgrade() {
                    o.observe(hub.open_sockets() as u64, &[]);
                }
            })
            .build();
        let _ = self.instruments.set(Instruments {
            closed: meter
                .u64_counter("bot.webchat.closed")
                .with_description("Web chat sockets closed, by reason")
                .build(),
            frames_in: meter
                .u64_counter("bot.webchat.frames.received")
                .with_description("Frames read from web chat browsers")
                .build(),
            frames_out: meter
                .u64_counter("bot.webchat.frames.sent")
                .with_description("Frames queued to web chat browsers")
                .build(),
        });
    }
}
