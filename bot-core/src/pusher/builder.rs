//! [`PusherBuilder`]: a pusher's window, buffer and overflow policy, and the start of its lanes.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::buffer::{Buffer, Shared};
use super::handle::{CloseOnDrop, Pusher};
use super::lane::Lane;
use super::push::Push;
use super::report::{Counts, Metrics};
use super::{DEFAULT_CAPACITY, DEFAULT_WINDOW};
use crate::error::Error;
use crate::limits::Overflow;
use crate::outbound::Outbound;
use crate::telemetry::Telemetry;

/// Sets a [`Pusher`] up: its window, buffer and overflow policy.
#[derive(Debug, Clone)]
#[must_use]
pub struct PusherBuilder {
    name: String,
    window: usize,
    capacity: usize,
    overflow: Overflow,
    telemetry: Option<Telemetry>,
}

impl Default for PusherBuilder {
    fn default() -> Self {
        Self {
            name: "push".to_owned(),
            window: DEFAULT_WINDOW,
            capacity: DEFAULT_CAPACITY,
            overflow: Overflow::Reject,
            telemetry: None,
        }
    }
}

impl PusherBuilder {
    /// Names the pusher in metrics (the `pusher` attribute) and logs. Default `push`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// At most this many sends in flight per lane (per connection). Default 100.
    pub fn window(mut self, window: usize) -> Self {
        self.window = window;
        self
    }

    /// At most this many pushes waiting in the buffer. Default 10,000.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// What a push into a full buffer does. Default [`Overflow::Reject`].
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Records the `bot.push.*` metrics in `telemetry` (a bot's, from [`crate::Bot::telemetry`]).
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Starts one lane per sender; each lane calls `send(sender, item)` for the pushes it takes,
    /// with at most `window` calls unanswered.
    ///
    /// Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// A [`crate::ErrorKind::Config`] error when there is no sender, or the window or capacity
    /// is zero.
    pub fn start<T, S, F, Fut, E>(self, senders: Vec<S>, send: F) -> Result<Pusher<T>, Error>
    where
        T: Send + 'static,
        S: Clone + Send + Sync + 'static,
        F: Fn(S, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        if senders.is_empty() {
            return Err(Error::config(
                "pusher: at least one sender (lane) is needed",
            ));
        }
        if self.window == 0 {
            return Err(Error::config("pusher: window must be at least 1"));
        }
        if self.capacity == 0 {
            return Err(Error::config("pusher: capacity must be at least 1"));
        }
        let counts = Arc::new(Counts::default());
        let metrics = self
            .telemetry
            .as_ref()
            .map(|t| Metrics::register(t, &self.name, &counts));
        let (running, _) = watch::channel(senders.len());
        let shared = Arc::new(Shared {
            name: self.name,
            buffer: Mutex::new(Buffer {
                items: VecDeque::with_capacity(self.capacity.min(1 << 16)),
                closed: false,
            }),
            capacity: self.capacity,
            overflow: self.overflow,
            counts,
            metrics,
            work: Notify::new(),
            room: Notify::new(),
            cancel: CancellationToken::new(),
            running,
            started: Instant::now(),
        });
        let send = Arc::new(send);
        for (index, sender) in senders.into_iter().enumerate() {
            let lane = Lane {
                shared: shared.clone(),
                sender,
                send: send.clone(),
                window: self.window,
                index,
            };
            // One long-lived task per lane, as many as the caller gave senders: bounded.
            #[allow(clippy::disallowed_methods)]
            tokio::spawn(lane.run());
        }
        Ok(Pusher {
            close_on_drop: Arc::new(CloseOnDrop(shared.clone())),
            shared,
        })
    }

    /// Starts one lane per [`Outbound`] client, sending each [`Push`] with
    /// [`Outbound::send`]; see [`PusherBuilder::start`].
    ///
    /// # Errors
    ///
    /// As [`PusherBuilder::start`].
    pub fn start_outbound(self, clients: Vec<Arc<dyn Outbound>>) -> Result<Pusher<Push>, Error> {
        self.start(
            clients,
            |client: Arc<dyn Outbound>, push: Push| async move {
                client.send(&push.target, push.messages).await
            },
        )
    }
}
