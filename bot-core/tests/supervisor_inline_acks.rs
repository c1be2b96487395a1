//! Acknowledgements applied where handlers finish (`Queue::ack_now`), and the completer's path
//! for queues that cannot.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::queue::{Completed, Dead, DeadLetter, Delivery, Lease, Nack, PushReport};
use bot_core::{Bot, Context, Error, Event, Limits, MemoryQueue, Queue};
use support::supervisor::{event, submit};

/// A memory queue that counts how its acknowledgements come: through `ack` (the completer) or
/// through `ack_now` (where the handlers finish), and answers `ack_now` only when `at_once`.
#[derive(Debug)]
struct CountedAcks {
    inner: MemoryQueue,
    at_once: bool,
    acks: AtomicUsize,
    acks_now: AtomicUsize,
    /// Leases acknowledged through `ack_now`, all calls together.
    acked_now: AtomicUsize,
    /// How long leases last (`None`: until completed, as the memory queue's).
    lease: Option<Duration>,
    /// Each event's lease, as pulled.
    pulled: Mutex<Vec<(String, Lease)>>,
    /// The leases extended, every extension.
    extended: Mutex<Vec<Lease>>,
}

impl CountedAcks {
    fn new(at_once: bool) -> Self {
        Self {
            inner: MemoryQueue::new(&Limits::default()),
            at_once,
            acks: AtomicUsize::new(0),
            acks_now: AtomicUsize::new(0),
            acked_now: AtomicUsize::new(0),
            lease: None,
            pulled: Mutex::default(),
            extended: Mutex::default(),
        }
    }
}

#[async_trait::async_trait]
impl Queue for CountedAcks {
    async fn push_batch(&self, events: Vec<Event>) -> Result<PushReport, Error> {
        self.inner.push_batch(events).await
    }
    async fn pull(&self, max: usize) -> Result<Vec<Delivery>, Error> {
        let got = self.inner.pull(max).await?;
        self.pulled.lock().unwrap().extend(
            got.iter()
                .map(|d| (d.event.id.as_str().to_owned(), d.lease)),
        );
        Ok(got)
    }
    async fn ack(&self, leases: &[Lease]) -> Result<Completed, Error> {
        self.acks.fetch_add(1, AtomicOrdering::SeqCst);
        self.inner.ack(leases).await
    }
    fn ack_now(&self, leases: &[Lease]) -> Option<Completed> {
        self.acks_now.fetch_add(1, AtomicOrdering::SeqCst);
        if !self.at_once {
            return None;
        }
        let done = self.inner.ack_now(leases)?;
        self.acked_now
            .fetch_add(done.applied, AtomicOrdering::SeqCst);
        Some(done)
    }
    async fn nack(&self, nacks: Vec<Nack>) -> Result<Completed, Error> {
        self.inner.nack(nacks).await
    }
    async fn dead(&self, dead: Vec<Dead>) -> Result<Vec<DeadLetter>, Error> {
        self.inner.dead(dead).await
    }
    async fn release(&self, deliveries: Vec<Delivery>) -> Result<Completed, Error> {
        self.inner.release(deliveries).await
    }
    async fn extend_lease(&self, leases: &[Lease], by: Duration) -> Result<Completed, Error> {
        self.extended.lock().unwrap().extend_from_slice(leases);
        self.inner.extend_lease(leases, by).await
    }
    fn lease_duration(&self) -> Option<Duration> {
        self.lease
    }
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        self.inner.dead_letters(limit).await
    }
    async fn redrive(&self, max: usize) -> Result<usize, Error> {
        self.inner.redrive(max).await
    }
    fn close(&self) {
        self.inner.close();
    }
    fn depth(&self) -> u64 {
        self.inner.depth()
    }
}

/// Runs 3 conversations of 40 events each through a bot on `queue` (per-conversation ordering,
/// the default): every second event of a conversation fails once, so that retries go through
/// the completer beside the acknowledgements. Returns each conversation's handled order.
async fn run(queue: Arc<CountedAcks>) -> Vec<Vec<String>> {
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let failed: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    let (s, f) = (seen.clone(), failed.clone());
    let bot = Bot::builder()
        .queue(queue.clone())
        .limits(Limits {
            retry: bot_core::RetryPolicy {
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(1),
                ..bot_core::RetryPolicy::default()
            },
            ..Limits::default()
        })
        .handler(move |_cx: Context, e: Event| {
            let (s, f) = (s.clone(), f.clone());
            async move {
                let id = e.id.as_str().to_owned();
                let n: usize = id.rsplit('-').next().unwrap().parse().unwrap();
                if n % 2 == 1 && f.lock().unwrap().insert(id.clone()) {
                    return Err(Error::new(bot_core::ErrorKind::Outbound, "first try fails"));
                }
                s.lock()
                    .unwrap()
                    .push((e.conversation.as_str().to_owned(), id));
                Ok::<_, Error>(())
            }
        })
        .build()
        .unwrap();
    bot.start();
    let events = (0..40)
        .flat_map(|n| (0..3).map(move |c| event(&format!("c{c}"), format!("c{c}-{n}"))))
        .collect();
    submit(&bot, events).await;
    tokio::time::timeout(Duration::from_secs(30), bot.idle())
        .await
        .expect("every event was handled and completed");
    bot.shutdown().await;
    let seen = seen.lock().unwrap();
    (0..3)
        .map(|c| {
            let c = format!("c{c}");
            seen.iter()
                .filter(|(conversation, _)| *conversation == c)
                .map(|(_, id)| id.clone())
                .collect()
        })
        .collect()
}

fn in_order(conversation: usize) -> Vec<String> {
    (0..40).map(|n| format!("c{conversation}-{n}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_that_acknowledges_at_once_is_acknowledged_where_handlers_finish() {
    let queue = Arc::new(CountedAcks::new(true));
    let handled = run(queue.clone()).await;
    for (c, order) in handled.iter().enumerate() {
        assert_eq!(
            *order,
            in_order(c),
            "each acknowledgement freed its conversation"
        );
    }
    assert_eq!(
        queue.acks.load(AtomicOrdering::SeqCst),
        0,
        "nothing went through the completer's acknowledgement"
    );
    assert_eq!(queue.acked_now.load(AtomicOrdering::SeqCst), 120);
    assert_eq!(queue.inner.leased(), 0);
    assert_eq!(queue.depth(), 0);
    assert_eq!(queue.inner.stale_completions(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_that_cannot_is_acknowledged_by_the_completer() {
    let queue = Arc::new(CountedAcks::new(false));
    let handled = run(queue.clone()).await;
    for (c, order) in handled.iter().enumerate() {
        assert_eq!(*order, in_order(c));
    }
    assert!(
        queue.acks_now.load(AtomicOrdering::SeqCst) > 0,
        "asked first"
    );
    assert!(queue.acks.load(AtomicOrdering::SeqCst) > 0);
    assert_eq!(queue.acked_now.load(AtomicOrdering::SeqCst), 0);
    assert_eq!(queue.inner.leased(), 0);
    assert_eq!(queue.depth(), 0);
}

/// With a queue whose leases expire, the leases the dispatcher acknowledges itself are no longer
/// held: the lease keeper extends only the one still running.
#[tokio::test(start_paused = true)]
async fn a_lease_acknowledged_at_once_is_no_longer_extended() {
    let queue = Arc::new(CountedAcks {
        lease: Some(Duration::from_secs(3)),
        ..CountedAcks::new(true)
    });
    let bot = Bot::builder()
        .queue(queue.clone())
        .handler(move |_cx: Context, e: Event| async move {
            if e.id.as_str() == "long" {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Ok::<_, Error>(())
        })
        .build()
        .unwrap();
    bot.start();
    let mut events = vec![event("a", "long".to_owned())];
    events.extend((0..5).map(|n| event(&format!("b{n}"), format!("short-{n}"))));
    submit(&bot, events).await;
    bot.idle().await;
    bot.shutdown().await;
    let pulled = queue.pulled.lock().unwrap().clone();
    let long = pulled
        .iter()
        .find(|(id, _)| id == "long")
        .map(|(_, lease)| *lease)
        .unwrap();
    let extended = queue.extended.lock().unwrap().clone();
    assert!(
        extended.iter().filter(|l| **l == long).count() >= 3,
        "the running handler's lease is kept alive: {extended:?}"
    );
    assert!(
        extended.iter().all(|l| *l == long),
        "no acknowledged lease is extended: {extended:?} (pulled {pulled:?})"
    );
    assert_eq!(queue.acked_now.load(AtomicOrdering::SeqCst), 6);
    assert_eq!(queue.acks.load(AtomicOrdering::SeqCst), 0);
}

/// Handlers that finish while the bot drains are acknowledged at once too: nothing is left
/// leased, nothing goes through the completer.
#[tokio::test]
async fn handlers_finishing_during_the_drain_are_acknowledged_at_once() {
    let queue = Arc::new(CountedAcks::new(true));
    let entered = Arc::new(support::supervisor::Done::default());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (e, g) = (entered.clone(), gate.clone());
    let bot = Bot::builder()
        .queue(queue.clone())
        .handler(move |_cx: Context, _e: Event| {
            let (e, g) = (e.clone(), g.clone());
            async move {
                e.add();
                g.acquire().await.unwrap().forget();
                Ok::<_, Error>(())
            }
        })
        .build()
        .unwrap();
    bot.start();
    submit(
        &bot,
        (0..8)
            .map(|n| event(&format!("c{n}"), format!("e{n}")))
            .collect(),
    )
    .await;
    entered.wait(8).await;
    // The shutdown begins (its first poll stops the dispatcher's pulling) before the handlers
    // are let go.
    let (report, ()) = tokio::join!(bot.shutdown(), async { gate.add_permits(8) });
    assert_eq!(report.drained, 8, "{report:?}");
    assert_eq!(report.cancelled, 0);
    assert_eq!(queue.acked_now.load(AtomicOrdering::SeqCst), 8);
    assert_eq!(queue.acks.load(AtomicOrdering::SeqCst), 0);
    assert_eq!(queue.inner.leased(), 0);
}
