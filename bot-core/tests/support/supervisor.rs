//! Helpers of the supervisor tests (`supervisor*.rs`): counters to wait on, a concurrency gauge,
//! event builders and a metric reader.

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

use bot_core::{Bot, Event, Platform};
use tokio::sync::Notify;

/// Counts handled events and wakes the test when `target` is reached.
#[derive(Default)]
pub(crate) struct Done {
    pub(crate) count: AtomicUsize,
    pub(crate) notify: Notify,
}

impl Done {
    pub(crate) fn add(&self) {
        self.count.fetch_add(1, AtomicOrdering::SeqCst);
        self.notify.notify_waiters();
    }

    pub(crate) async fn wait(&self, target: usize) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count.load(AtomicOrdering::SeqCst) >= target {
                return;
            }
            notified.await;
        }
    }
}

/// Tracks concurrency: the current and the highest number of handlers inside a section.
#[derive(Default)]
pub(crate) struct Gauge {
    pub(crate) now: AtomicUsize,
    pub(crate) max: AtomicUsize,
}

impl Gauge {
    pub(crate) fn enter(&self) {
        let n = self.now.fetch_add(1, AtomicOrdering::SeqCst) + 1;
        self.max.fetch_max(n, AtomicOrdering::SeqCst);
    }

    pub(crate) fn exit(&self) {
        self.now.fetch_sub(1, AtomicOrdering::SeqCst);
    }
}

pub(crate) fn event(conversation: &str, id: String) -> Event {
    Event::text(Platform::TEST, conversation, id.clone()).with_id(id)
}

pub(crate) async fn submit(bot: &Bot, events: Vec<Event>) {
    for chunk in events.chunks(500) {
        bot.ingress().submit(chunk.to_vec()).await.unwrap();
    }
}

pub(crate) fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == name_and_labels).then(|| value.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("metric {name_and_labels} not found in:\n{text}"))
}
