//! The supervisor and queues whose leases expire: extensions, and completions that fail.
#![allow(clippy::disallowed_methods)] // tests spawn producers directly

mod support;

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::queue::DeadLetter;
use bot_core::{Bot, Context, Error, ErrorKind, Event, Limits, MemoryQueue};
use support::supervisor::{Done, event, submit};

/// A memory queue whose leases "expire", to see the supervisor keep them alive.
#[derive(Debug)]
struct ExpiringLeases {
    inner: MemoryQueue,
    extended: Mutex<Vec<(bot_core::queue::Lease, tokio::time::Instant)>>,
    /// How long each acknowledgement takes (a slow database).
    ack_delay: Duration,
    /// Acknowledgements fail until then (a database refusing them for a while).
    acks_fail_until: Option<tokio::time::Instant>,
    /// Acknowledgement calls that failed.
    failed_acks: AtomicUsize,
}

impl ExpiringLeases {
    fn new() -> Self {
        Self {
            inner: MemoryQueue::new(&Limits::default()),
            extended: Mutex::new(Vec::new()),
            ack_delay: Duration::ZERO,
            acks_fail_until: None,
            failed_acks: AtomicUsize::new(0),
        }
    }

    /// When `lease` was extended.
    fn extensions_of(&self, lease: bot_core::queue::Lease) -> Vec<tokio::time::Instant> {
        self.extended
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, _)| *l == lease)
            .map(|(_, at)| *at)
            .collect()
    }
}

#[async_trait::async_trait]
impl bot_core::Queue for ExpiringLeases {
    async fn push_batch(&self, events: Vec<Event>) -> Result<bot_core::queue::PushReport, Error> {
        self.inner.push_batch(events).await
    }
    async fn pull(&self, max: usize) -> Result<Vec<bot_core::queue::Delivery>, Error> {
        self.inner.pull(max).await
    }
    async fn ack(
        &self,
        leases: &[bot_core::queue::Lease],
    ) -> Result<bot_core::queue::Completed, Error> {
        tokio::time::sleep(self.ack_delay).await;
        if self
            .acks_fail_until
            .is_some_and(|until| tokio::time::Instant::now() < until)
        {
            self.failed_acks.fetch_add(1, AtomicOrdering::SeqCst);
            return Err(Error::new(
                ErrorKind::Queue,
                "injected: acknowledgement refused",
            ));
        }
        self.inner.ack(leases).await
    }
    async fn nack(
        &self,
        nacks: Vec<bot_core::queue::Nack>,
    ) -> Result<bot_core::queue::Completed, Error> {
        self.inner.nack(nacks).await
    }
    async fn dead(&self, dead: Vec<bot_core::queue::Dead>) -> Result<Vec<DeadLetter>, Error> {
        self.inner.dead(dead).await
    }
    async fn release(
        &self,
        deliveries: Vec<bot_core::queue::Delivery>,
    ) -> Result<bot_core::queue::Completed, Error> {
        self.inner.release(deliveries).await
    }
    async fn extend_lease(
        &self,
        leases: &[bot_core::queue::Lease],
        by: Duration,
    ) -> Result<bot_core::queue::Completed, Error> {
        assert_eq!(by, Duration::from_secs(3));
        let now = tokio::time::Instant::now();
        self.extended
            .lock()
            .unwrap()
            .extend(leases.iter().map(|l| (*l, now)));
        self.inner.extend_lease(leases, by).await
    }
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        self.inner.dead_letters(limit).await
    }
    async fn redrive(&self, max: usize) -> Result<usize, Error> {
        self.inner.redrive(max).await
    }
    fn lease_duration(&self) -> Option<Duration> {
        Some(Duration::from_secs(3))
    }
    fn close(&self) {
        self.inner.close();
    }
    fn depth(&self) -> u64 {
        self.inner.depth()
    }
}

#[tokio::test(start_paused = true)]
async fn leases_of_long_handlers_are_extended_while_they_run() {
    let queue = Arc::new(ExpiringLeases::new());
    let done = Arc::new(Done::default());
    let d = done.clone();
    let bot = Bot::builder()
        .queue(queue.clone())
        .handler(move |_cx: Context, e: Event| {
            let d = d.clone();
            async move {
                let secs = if e.id.as_str() == "long" { 10 } else { 0 };
                tokio::time::sleep(Duration::from_secs(secs)).await;
                d.add();
                Ok::<_, Error>(())
            }
        })
        .build()
        .unwrap();
    bot.start();
    let start = tokio::time::Instant::now();
    submit(
        &bot,
        vec![event("a", "long".into()), event("b", "quick".into())],
    )
    .await;
    done.wait(2).await;
    bot.idle().await;
    // Let time pass after the handler finished: its lease must not be extended any more.
    tokio::time::sleep(Duration::from_secs(5)).await;
    bot.shutdown().await;
    let extended = queue.extended.lock().unwrap();
    let leases: std::collections::HashSet<_> = extended.iter().map(|(l, _)| *l).collect();
    assert_eq!(leases.len(), 1, "only the long handler's lease is extended");
    // Every third of the 3 s lease while the 10 s handler ran, and never after it finished.
    assert!(extended.len() >= 9, "extended {} times", extended.len());
    assert!(
        extended
            .iter()
            .all(|(_, at)| *at <= start + Duration::from_secs(10))
    );
}

/// The lease keeper used to be the last branch of the dispatcher's biased `select!`: while
/// completions kept arriving during each (slow) acknowledgement, it never ran and a long handler's
/// lease lapsed. A steady stream of quick handlers and 200 ms acknowledgements must not delay it.
#[tokio::test(start_paused = true)]
async fn the_lease_keeper_extends_on_time_under_a_saturated_dispatcher() {
    let queue = Arc::new(ExpiringLeases {
        ack_delay: Duration::from_millis(200),
        ..ExpiringLeases::new()
    });
    let long_lease = Arc::new(Mutex::new(None));
    let done = Arc::new(Done::default());
    let (d, l) = (done.clone(), long_lease.clone());
    let bot = Bot::builder()
        .queue(queue.clone())
        .limits(Limits {
            max_in_flight: 100,
            queue_capacity: 20_000,
            ..Limits::default()
        })
        .handler(move |cx: Context, e: Event| {
            let (d, l) = (d.clone(), l.clone());
            async move {
                let millis = if e.id.as_str() == "long" {
                    *l.lock().unwrap() = Some(tokio::time::Instant::now());
                    10_000
                } else {
                    // Spread over 0-3 s, so that some handler finishes during every ack.
                    let n: u64 = e.id.as_str()[1..].parse().unwrap();
                    (n * 7919) % 3000
                };
                let _ = cx.attempt();
                tokio::time::sleep(Duration::from_millis(millis)).await;
                d.add();
                Ok::<_, Error>(())
            }
        })
        .build()
        .unwrap();
    bot.start();
    let mut events = vec![event("long", "long".into())];
    events.extend((0..3000).map(|i| event(&format!("c{i}"), format!("q{i}"))));
    submit(&bot, events).await;
    done.wait(3001).await;
    bot.idle().await;
    bot.shutdown().await;
    let started = long_lease.lock().unwrap().expect("the long handler ran");
    let extended = queue.extended.lock().unwrap().clone();
    // The long handler's lease is the one extended at its start + 1 s.
    let lease = extended
        .iter()
        .filter(|(_, at)| *at > started && *at <= started + Duration::from_millis(1500))
        .map(|(l, _)| *l)
        .find(|l| {
            let ats = queue.extensions_of(*l);
            ats.iter().any(|at| *at >= started + Duration::from_secs(9))
        })
        .expect("the long handler's lease was extended while it ran");
    let mut previous = started;
    for at in queue
        .extensions_of(lease)
        .into_iter()
        .filter(|at| *at <= started + Duration::from_secs(10))
    {
        assert!(
            at - previous <= Duration::from_millis(1100),
            "{:?} without an extension of a 3 s lease",
            at - previous
        );
        previous = at;
    }
    assert!(previous >= started + Duration::from_secs(9));
}

/// A failed acknowledgement is retried (its lease still extended meanwhile) until it applies:
/// the event is done once, and `idle` sees it finish.
#[tokio::test(start_paused = true)]
async fn a_failed_ack_is_retried_and_its_lease_kept_until_it_applies() {
    let t0 = tokio::time::Instant::now();
    let queue = Arc::new(ExpiringLeases {
        acks_fail_until: Some(t0 + Duration::from_secs(8)),
        ..ExpiringLeases::new()
    });
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let bot = Bot::builder()
        .queue(queue.clone())
        .handler(move |_cx: Context, _e: Event| {
            r.fetch_add(1, AtomicOrdering::SeqCst);
            async { Ok::<_, Error>(()) }
        })
        .build()
        .unwrap();
    bot.start();
    submit(&bot, vec![event("a", "only".into())]).await;
    tokio::time::timeout(Duration::from_secs(60), bot.idle())
        .await
        .expect("the acknowledgement was never applied");
    let acked_at = tokio::time::Instant::now();
    assert!(
        acked_at >= t0 + Duration::from_secs(8),
        "acked while refused"
    );
    assert!(
        acked_at <= t0 + Duration::from_secs(10),
        "the retry came late: {:?}",
        acked_at - t0
    );
    assert!(queue.failed_acks.load(AtomicOrdering::SeqCst) >= 3);
    // The lease of the finished, not yet acknowledged event was kept alive all along.
    let extended = queue.extended.lock().unwrap().clone();
    let mut ats: Vec<_> = extended.iter().map(|(_, at)| *at).collect();
    ats.sort();
    assert!(ats.len() >= 7, "extended {} times in 8 s", ats.len());
    assert!(
        ats.windows(2)
            .all(|w| w[1] - w[0] <= Duration::from_millis(1100))
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        queue.extensions_of(extended[0].0).len(),
        ats.len(),
        "not extended after its ack applied"
    );
    let report = bot.shutdown().await;
    assert_eq!(runs.load(AtomicOrdering::SeqCst), 1);
    assert_eq!(report.not_run(), 0);
}
