//! Shared by the fault suites: a queue that fails on a switch, the handler's record, captured
//! logs, `/readyz` on a real socket, and the dispatch stream with a failure window in the middle.
#![allow(dead_code, unreachable_pub)] // each test target uses a part

/// Prints what a fault case counted straight to stderr, past the test harness's capture, so
/// that CI's log shows it for passing tests too.
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bot_core::queue::{Completed, Dead, DeadLetter, Delivery, Lease, Nack, PushReport, Queue};
use bot_core::{Bot, Context, Error, ErrorKind, Event, Limits, MemoryQueue};
use bot_discord::gateway::{IdentifyQueue, Shard, ShardConfig, ShardId};
use bot_discord::testing::FakeGateway;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "faults-gateway-token";
/// How long any wait of these tests lasts before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Opens and closes the failure window of a queue.
/// `impl Queue for $ty` with the given `push_batch` (where the test queues differ) and every
/// other method passed straight to the queue's `inner` queue.
macro_rules! queue_over_inner {
    ($ty:ty; $($push_batch:tt)*) => {
        #[async_trait]
        impl Queue for $ty {
            $($push_batch)*
            async fn pull(&self, max: usize) -> Result<Vec<Delivery>, Error> {
                self.inner.pull(max).await
            }
            async fn ack(&self, leases: &[Lease]) -> Result<Completed, Error> {
                self.inner.ack(leases).await
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
                self.inner.extend_lease(leases, by).await
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
    };
}

#[async_trait]
pub trait QueueSwitch: Send + Sync {
    /// Makes pushes fail (true) or work again (false).
    async fn set_failing(&self, failing: bool);
    /// Pushes refused so far, when the switch can count them.
    fn refused(&self) -> Option<u64>;
}

/// A memory queue whose pushes fail with a backend error while `failing` is set.
#[derive(Debug)]
pub struct FlakyQueue {
    inner: MemoryQueue,
    failing: AtomicBool,
    refused: AtomicU64,
    changed: Notify,
}

impl FlakyQueue {
    pub fn new() -> Self {
        Self {
            inner: MemoryQueue::new(&Limits::default()),
            failing: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }
}

#[async_trait]
impl QueueSwitch for FlakyQueue {
    async fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
    fn refused(&self) -> Option<u64> {
        Some(self.refused.load(Ordering::SeqCst))
    }
}

queue_over_inner! {
FlakyQueue;
    async fn push_batch(&self, events: Vec<Event>) -> Result<PushReport, Error> {
        if self.failing.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            self.changed.notify_waiters();
            // What PgQueue answers for a read-only database after a failover (25006).
            return Err(Error::new(
                ErrorKind::Queue,
                "queue unavailable: cannot execute INSERT in a read-only transaction",
            ));
        }
        self.inner.push_batch(events).await
    }
}

/// Event ids the handler saw, in order.
#[derive(Clone, Default)]
pub struct Seen {
    ids: Arc<Mutex<Vec<String>>>,
    notify: Arc<Notify>,
}

impl Seen {
    pub fn ids(&self) -> Vec<String> {
        self.ids.lock().unwrap().clone()
    }

    pub async fn wait_for(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.ids().len() >= count {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("handled {} of {count}", self.ids().len());
            }
        }
    }
}

/// Log lines at WARN and above, captured.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

pub fn message(id: u64) -> Value {
    json!({"id": id.to_string(), "channel_id": "c", "guild_id": "1",
           "author": {"id": "501", "bot": false},
           "content": format!("message {id}"), "attachments": [], "mentions": []})
}

/// Waits until `ready()` holds, looking every 10 ms, failing after [`DEADLINE`].
pub async fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !ready() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what} after {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `/readyz` of `bot`, served on a real socket: (status, body).
pub async fn serve_ops(bot: &Bot) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/readyz", listener.local_addr().unwrap());
    let routes = bot.ops_routes();
    tokio::spawn(async move { axum::serve(listener, routes).await });
    url
}

pub async fn readyz(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Streams 150 dispatches; the queue fails from the 51st on until the shard retried a few times
/// (and, with `cut_session`, the gateway dropped the connection meanwhile); then it is back.
pub async fn queue_fails_mid_stream(
    queue: Arc<dyn Queue>,
    switch: &dyn QueueSwitch,
    cut_session: bool,
    batch_dispatches: usize,
) {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let gateway = FakeGateway::start(TOKEN).await.unwrap();
    // Long enough that a loaded machine never misses a beat (the fake would end the session,
    // and the dispatches sent to it with it); short enough to notice a cut connection soon.
    gateway.set_heartbeat_interval(Duration::from_millis(1000));
    let seen = Seen::default();
    let handler = {
        let seen = seen.clone();
        move |_cx: Context, event: Event| {
            let seen = seen.clone();
            async move {
                seen.ids.lock().unwrap().push(event.id.to_string());
                seen.notify.notify_waiters();
                Ok::<_, Error>(())
            }
        }
    };
    let bot = Bot::builder()
        .handler(handler)
        .queue(queue)
        .build()
        .unwrap();
    bot.start();
    let readyz_url = serve_ops(&bot).await;

    let config = ShardConfig::new(TOKEN)
        .url(gateway.url())
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .queue_retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .hand_over_batch(batch_dispatches, 1024 * 1024);
    let shard = Arc::new(Shard::new(
        ShardId::ONE,
        Arc::new(config),
        IdentifyQueue::new(1),
    ));
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (shard, ingress, stop) = (shard.clone(), bot.ingress(), stop.clone());
        async move { shard.run(ingress, stop).await }
    });
    gateway.wait_for_readies(1).await;

    let sent: u64 = 150;
    for i in 0..50 {
        gateway
            .dispatch("MESSAGE_CREATE", message(70_000 + i))
            .await;
    }
    seen.wait_for(50).await;
    assert!(bot.is_ready());
    assert_eq!(readyz(&readyz_url).await.0, 200);

    // The window opens: every push fails until the switch is flipped back.
    switch.set_failing(true).await;
    for i in 50..sent {
        gateway
            .dispatch("MESSAGE_CREATE", message(70_000 + i))
            .await;
    }
    wait_until("retried hand-over", || {
        shard.status().hand_over_retries() >= 5
    })
    .await;
    assert_eq!(gateway.timed_out(), 0, "the fake never missed a heartbeat");
    assert!(!bot.is_ready(), "not ready while the queue refuses");
    let (status, body) = readyz(&readyz_url).await;
    assert_eq!(status, 503, "/readyz during the window: {body}");
    assert!(
        body.contains("discord shard 0/1") && body.contains("the queue refuses dispatches"),
        "/readyz names the shard and why: {body}"
    );
    if cut_session {
        // The connection drops while the shard holds a dispatch it could not hand over: it
        // resumes from the last accepted sequence, and the fake replays the rest.
        gateway.close(4000).await;
        gateway
            .wait_until("a second connection", |g| g.connections().len() >= 2)
            .await;
        gateway.wait_for_resumes(1).await;
        let retries = shard.status().hand_over_retries();
        wait_until("a refused replay", || {
            shard.status().hand_over_retries() > retries + 2
        })
        .await;
        assert!(!bot.is_ready(), "still not ready after the resume");
    }
    let seen_in_window = seen.ids().len();
    assert_eq!(
        seen_in_window, 50,
        "nothing handled while the queue refused"
    );

    switch.set_failing(false).await;
    seen.wait_for(sent as usize).await;
    bot.idle().await;

    let ids = seen.ids();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &ids {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    assert_eq!(counts.len(), sent as usize, "every dispatch handled");
    assert!(counts.values().all(|n| *n == 1), "each exactly once");
    let expected: Vec<String> = (0..sent).map(|i| (70_000 + i).to_string()).collect();
    assert_eq!(ids, expected, "one channel: in order");
    assert!(
        bot.is_ready(),
        "ready again once the queue takes dispatches"
    );
    assert_eq!(readyz(&readyz_url).await.0, 200);
    assert_eq!(gateway.readies(), 1, "no new session: no second IDENTIFY");
    assert_eq!(gateway.received_op(2).len(), 1);
    if cut_session {
        let resumes = gateway.received_op(6);
        assert!(!resumes.is_empty());
        assert_eq!(
            resumes[0].d["seq"], 51,
            "resumed from the last accepted sequence (READY + 50)"
        );
    } else {
        assert_eq!(gateway.connections().len(), 1, "the session was kept");
    }
    let text = logs.text();
    let errors = text
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("the queue refuses a dispatch"))
        .count();
    assert!(errors >= 1, "an error is logged: {text}");
    let retries = shard.status().hand_over_retries();
    assert!(
        errors as u64 <= 2 + retries / 5,
        "not one error line per retry: {errors} lines for {retries} retries"
    );
    report!(
        "faults_gateway (cut_session={cut_session}): dispatches sent {sent}, handled {}, \
         pushes refused {:?}, hand-over retries {}, error lines {errors}, connections {}",
        ids.len(),
        switch.refused(),
        shard.status().hand_over_retries(),
        gateway.connections().len()
    );

    stop.cancel();
    task.await.unwrap().unwrap();
    bot.shutdown().await;
}

/// A memory queue whose pushes wait at a gate the test opens, one permit per push, and that
/// records the size of every push it let through.
#[derive(Debug)]
pub struct GatedQueue {
    inner: MemoryQueue,
    gate: tokio::sync::Semaphore,
    waiting: AtomicU64,
    pushes: Mutex<Vec<usize>>,
}

impl GatedQueue {
    /// Closed: every push waits for [`GatedQueue::open`].
    pub fn new() -> Self {
        Self {
            inner: MemoryQueue::new(&Limits::default()),
            gate: tokio::sync::Semaphore::new(0),
            waiting: AtomicU64::new(0),
            pushes: Mutex::new(Vec::new()),
        }
    }

    /// Lets `pushes` more pushes through.
    pub fn open(&self, pushes: usize) {
        self.gate.add_permits(pushes);
    }

    /// Pushes waiting at the gate now.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::SeqCst)
    }

    /// The sizes of the pushes let through, in order.
    pub fn pushes(&self) -> Vec<usize> {
        self.pushes.lock().unwrap().clone()
    }
}

queue_over_inner! {
GatedQueue;
    async fn push_batch(&self, events: Vec<Event>) -> Result<PushReport, Error> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        // Undone when the push is dropped at the gate (the shard's connection ended).
        struct Leave<'a>(&'a AtomicU64);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let leave = Leave(&self.waiting);
        self.gate.acquire().await.expect("open").forget();
        drop(leave);
        self.pushes.lock().unwrap().push(events.len());
        self.inner.push_batch(events).await
    }
}

/// A bot on `queue` whose handler records what it saw.
pub fn recording_bot(queue: Arc<dyn Queue>) -> (Bot, Seen) {
    let seen = Seen::default();
    let handler = {
        let seen = seen.clone();
        move |_cx: Context, event: Event| {
            let seen = seen.clone();
            async move {
                seen.ids.lock().unwrap().push(event.id.to_string());
                seen.notify.notify_waiters();
                Ok::<_, Error>(())
            }
        }
    };
    let bot = Bot::builder()
        .handler(handler)
        .queue(queue)
        .build()
        .unwrap();
    bot.start();
    (bot, seen)
}
