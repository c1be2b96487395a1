//! Supervisor throughput: events pushed through the memory queue to a no-op handler.
//!
//! Run with: cargo bench -p bot-core --bench supervisor
//!
//! Each iteration submits `EVENTS` events in batches of 1,000 (as webhooks would) and waits until
//! the handler has seen all of them, so the figure covers ingress, dedup, the queue, dispatch,
//! task spawn, metrics and acknowledgement.
//!
//! `ordered_webhook_batches_noop` brings the same events as webhooks under load do: batches of
//! 10 from 64 submitters, at most 64 batches in the bot at once, so that the dispatcher turns
//! over a few batches at a time rather than a thousand events (the regime of `botload scenario
//! webhook-noop`, without its HTTP and parsing).
//!
//! `memory_queue_handoff/*` runs the queue alone in that regime, its push and its pull on one
//! thread or on two, to price an event's crossing between cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use bot_core::{Bot, Context, Error, Event, Limits, Ordering, Platform};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group};
use tokio::sync::{Notify, Semaphore};

const EVENTS: usize = 100_000;
const BATCH: usize = 1_000;
/// A webhook's events (botload's requests carry 10).
const WEBHOOK_BATCH: usize = 10;
/// Webhooks in flight at once (botload's 64 connections).
const SUBMITTERS: usize = 64;

struct Counter {
    seen: AtomicUsize,
    target: AtomicUsize,
    done: Notify,
    /// Room for events in the bot, when the submitters are bounded: one permit back per event
    /// handled.
    room: Option<Arc<Semaphore>>,
}

fn bot(ordering: Ordering, counter: Arc<Counter>) -> Bot {
    Bot::builder()
        .limits(Limits {
            max_in_flight: 1024,
            queue_capacity: EVENTS * 2,
            // The whole iteration is submitted before it is handled: bound it by count only.
            queue_capacity_bytes: usize::MAX,
            ordering,
            ..Limits::default()
        })
        .handler(move |_cx: Context, _e: Event| {
            let c = counter.clone();
            async move {
                if let Some(room) = &c.room {
                    room.add_permits(1);
                }
                let n = c.seen.fetch_add(1, AtomicOrdering::Relaxed) + 1;
                if n == c.target.load(AtomicOrdering::Relaxed) {
                    c.done.notify_one();
                }
                Ok::<_, Error>(())
            }
        })
        .build()
        .expect("valid bot")
}

fn events(next_id: &AtomicU64, conversations: usize) -> Vec<Vec<Event>> {
    events_in(next_id, conversations, BATCH)
}

fn events_in(next_id: &AtomicU64, conversations: usize, batch: usize) -> Vec<Vec<Event>> {
    let mut rng = fastrand::Rng::with_seed(42);
    let all: Vec<Event> = (0..EVENTS)
        .map(|_| {
            let id = next_id.fetch_add(1, AtomicOrdering::Relaxed);
            Event::text(
                Platform::LINE,
                format!("conv-{}", rng.usize(..conversations)),
                "hi",
            )
            .with_id(format!("ev-{id}"))
        })
        .collect();
    all.chunks(batch).map(<[Event]>::to_vec).collect()
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`.
///
/// Wall-clock figures move with whatever else runs on the machine; CPU time per event much less.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 (1-based); the state (field 3) is index 0 here.
    let total = ticks(11) + ticks(12);
    // Linux reports them in USER_HZ, 100 per second on every supported architecture.
    Duration::from_millis(total * 10)
}

/// CPU time and events seen inside the timed regions of one case.
#[derive(Default)]
struct CpuTally {
    cpu: Duration,
    events: u64,
}

impl CpuTally {
    /// Runs `run`, the timed region of `events` events: its CPU time and events are added to the
    /// tally, and its wall-clock time returned (criterion's measure).
    fn time(&mut self, events: usize, run: impl FnOnce()) -> Duration {
        let cpu = process_cpu();
        let start = Instant::now();
        run();
        let elapsed = start.elapsed();
        self.cpu += process_cpu().saturating_sub(cpu);
        self.events += events as u64;
        elapsed
    }

    fn report(&self, name: &str) {
        if self.events > 0 {
            let per_event = self.cpu.as_secs_f64() * 1e9 / self.events as f64;
            println!(
                "{name}: {per_event:.0} ns CPU per event ({:.2} s CPU over {} events, timed regions only)",
                self.cpu.as_secs_f64(),
                self.events
            );
        }
    }
}

/// Benchmarks `name` in `group`: each of criterion's iterations runs `iteration`, which times
/// its region with the tally it is given and returns the wall-clock time; then prints the
/// case's CPU per event.
fn bench_cpu(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut iteration: impl FnMut(&mut CpuTally) -> Duration,
) {
    let mut tally = CpuTally::default();
    group.bench_function(name, |b| {
        b.iter_custom(|iters| (0..iters).map(|_| iteration(&mut tally)).sum());
    });
    tally.report(name);
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("supervisor");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.warm_up_time(Duration::from_secs(2));
    // Name, ordering, conversations, and whether webhook-sized batches come from bounded
    // submitters (else batches of `BATCH`, all submitted before they are handled).
    let cases = [
        ("unordered_noop", Ordering::Unordered, 10_000, false),
        (
            "ordered_10k_conversations_noop",
            Ordering::PerConversation,
            10_000,
            false,
        ),
        (
            "ordered_webhook_batches_noop",
            Ordering::PerConversation,
            10_000,
            true,
        ),
    ];
    for (name, ordering, conversations, webhooks) in cases {
        let counter = Arc::new(Counter {
            seen: AtomicUsize::new(0),
            target: AtomicUsize::new(usize::MAX),
            done: Notify::new(),
            room: webhooks.then(|| Arc::new(Semaphore::new(SUBMITTERS * WEBHOOK_BATCH))),
        });
        let bot = rt.block_on(async {
            let bot = bot(ordering, counter.clone());
            bot.start();
            bot
        });
        let next_id = AtomicU64::new(0);
        bench_cpu(&mut group, name, |tally| {
            let batch = if webhooks { WEBHOOK_BATCH } else { BATCH };
            let batches = events_in(&next_id, conversations, batch);
            let base = counter.seen.load(AtomicOrdering::Relaxed);
            counter.target.store(base + EVENTS, AtomicOrdering::Relaxed);
            let ingress = bot.ingress();
            tally.time(EVENTS, || {
                rt.block_on(async {
                    match &counter.room {
                        Some(room) => submit_bounded(&ingress, room, batches).await,
                        None => {
                            for batch in batches {
                                ingress.submit(batch).await.expect("accepted");
                            }
                        }
                    }
                    // A permit left by an earlier iteration only causes one more check.
                    while counter.seen.load(AtomicOrdering::Relaxed) < base + EVENTS {
                        counter.done.notified().await;
                    }
                });
            })
        });
        rt.block_on(bot.shutdown());
    }
    group.finish();
}

/// Submits `batches` from [`SUBMITTERS`] tasks, each batch once `room` has a permit for each of
/// its events (the handler gives one back per event), as webhooks on as many connections would.
async fn submit_bounded(
    ingress: &bot_core::Ingress,
    room: &Arc<Semaphore>,
    batches: Vec<Vec<Event>>,
) {
    let mut shares: Vec<Vec<Vec<Event>>> = (0..SUBMITTERS).map(|_| Vec::new()).collect();
    for (i, batch) in batches.into_iter().enumerate() {
        shares[i % SUBMITTERS].push(batch);
    }
    let mut submitters = tokio::task::JoinSet::new();
    for share in shares {
        let (ingress, room) = (ingress.clone(), room.clone());
        submitters.spawn(async move {
            for batch in share {
                let n = u32::try_from(batch.len()).expect("a small batch");
                room.acquire_many(n).await.expect("never closed").forget();
                ingress.submit(batch).await.expect("accepted");
            }
        });
    }
    while let Some(done) = submitters.join_next().await {
        done.expect("a submitter does not panic");
    }
}

/// The memory queue alone: push 100k events in batches, then pull and ack them all.
fn bench_queue(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("memory_queue");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    for (name, ordering) in [
        ("push_pull_ack_unordered", Ordering::Unordered),
        ("push_pull_ack_ordered", Ordering::PerConversation),
    ] {
        let queue = bot_core::MemoryQueue::new(&Limits {
            queue_capacity: EVENTS * 2,
            // The whole iteration is submitted before it is handled: bound it by count only.
            queue_capacity_bytes: usize::MAX,
            ordering,
            ..Limits::default()
        });
        let next_id = AtomicU64::new(0);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let batches = events(&next_id, 10_000);
                    let start = Instant::now();
                    rt.block_on(async {
                        use bot_core::Queue as _;
                        for batch in batches {
                            queue.push_batch(batch).await.expect("accepted");
                        }
                        drain(&queue, None).await;
                    });
                    total += start.elapsed();
                }
                total
            });
        });
    }
    group.finish();
}

/// Pulls and acknowledges [`EVENTS`] events from `queue`, up to 1,024 at a time, giving `room` a
/// permit back for each.
async fn drain(queue: &bot_core::MemoryQueue, room: Option<&Semaphore>) {
    use bot_core::Queue as _;
    let mut left = EVENTS;
    while left > 0 {
        let got = queue.pull(1024).await.expect("pulled");
        left -= got.len();
        let leases: Vec<_> = got.iter().map(|d| d.lease).collect();
        drop(got);
        queue.ack(&leases).await.expect("acked");
        if let Some(room) = room {
            room.add_permits(leases.len());
        }
    }
}

/// The memory queue in the webhook regime, its push on one thread and its pull and
/// acknowledgement on the same thread or on another: batches of 10 over 10,000 conversations,
/// at most 64 batches waiting or leased, each pull up to 1,024. What an event's crossing
/// between cores costs the queue, apart from any dispatcher.
fn bench_queue_handoff(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory_queue_handoff");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    let cases = [
        ("ordered_one_thread", 1, Ordering::PerConversation),
        ("ordered_two_threads", 2, Ordering::PerConversation),
        ("unordered_one_thread", 1, Ordering::Unordered),
        ("unordered_two_threads", 2, Ordering::Unordered),
    ];
    for (name, threads, ordering) in cases {
        let queue = Arc::new(bot_core::MemoryQueue::new(&Limits {
            queue_capacity: EVENTS * 2,
            queue_capacity_bytes: usize::MAX,
            ordering,
            ..Limits::default()
        }));
        let next_id = AtomicU64::new(0);
        bench_cpu(&mut group, name, |tally| {
            let batches = events_in(&next_id, 10_000, WEBHOOK_BATCH);
            let room = Arc::new(Semaphore::new(SUBMITTERS * WEBHOOK_BATCH));
            let produce = {
                let (queue, room) = (queue.clone(), room.clone());
                async move {
                    use bot_core::Queue as _;
                    for batch in batches {
                        let n = u32::try_from(batch.len()).expect("a small batch");
                        room.acquire_many(n).await.expect("never closed").forget();
                        queue.push_batch(batch).await.expect("accepted");
                    }
                }
            };
            let consume = {
                let queue = queue.clone();
                async move { drain(&queue, Some(&room)).await }
            };
            // Built before the timed region: one for the push and one for the pull.
            let runtime = || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
            };
            let (pushing, pulling) = (runtime(), runtime());
            tally.time(EVENTS, || {
                if threads == 1 {
                    pulling.block_on(async { tokio::join!(produce, consume) });
                } else {
                    std::thread::scope(|scope| {
                        scope.spawn(|| pushing.block_on(produce));
                        pulling.block_on(consume);
                    });
                }
            })
        });
    }
    group.finish();
}

/// An event as the LINE adapter makes it from botload's webhook-noop payload: the event's JSON
/// text kept as the raw payload, the text, the message id, the sender and the reply token.
fn line_event(n: u64) -> Event {
    let user = n % 100_000;
    let json = format!(
        r#"{{"type":"message","mode":"active","timestamp":{ts},"source":{{"type":"user","userId":"U{user:032x}"}},"webhookEventId":"01LOAD{n:020}","deliveryContext":{{"isRedelivery":false}},"replyToken":"rt{n:030x}","message":{{"type":"text","id":"{n}","quoteToken":"q{n}","text":"hello, bot"}}}}"#,
        ts = 1_700_000_000_000 + n,
    );
    let raw = serde_json::value::RawValue::from_string(json).expect("valid json");
    let mut message = bot_core::event::Message::text("hello, bot");
    message.id = Some(bot_core::event::MessageId::new(n.to_string()));
    Event::from_platform(
        Platform::LINE,
        format!("01LOAD{n:020}"),
        format!("U{user:032x}"),
        bot_core::event::EventKind::Message(message),
    )
    .with_sender(format!("U{user:032x}"))
    .with_reply_token(bot_core::event::ReplyToken::new(format!("rt{n:030x}")))
    .with_raw_json(raw)
}

/// Resident memory of this process, from `/proc/self/statm`.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A queue filled to the default limits, as a bot driven past saturation has it.
async fn fill_to_default_limits() {
    use bot_core::Queue as _;
    // Alone in its process: memory freed by the other steps would be reused and hide it.
    let queue = bot_core::MemoryQueue::new(&Limits::default());
    let before = rss_bytes();
    let mut queued = 0u64;
    loop {
        let n0 = 10_000_000 + queued;
        let batch: Vec<Event> = (n0..n0 + 10).map(line_event).collect();
        match queue.push_batch(batch).await {
            Ok(report) => queued += report.accepted as u64,
            Err(_) => break,
        }
    }
    println!(
        "full at the default limits: {queued} LINE events queued, {:.1} MiB RSS, {:.1} MiB counted",
        (rss_bytes().saturating_sub(before)) as f64 / (1 << 20) as f64,
        queue.waiting_bytes() as f64 / (1 << 20) as f64,
    );
    drop(queue);
}

/// `BOT_BENCH_MEMORY=1 cargo bench -p bot-core --bench supervisor`: the resident memory a
/// queued and an in-flight LINE event cost (RSS difference over many events; system allocator);
/// `BOT_BENCH_MEMORY=full`: what a queue filled to the default limits holds.
fn memory() {
    const N: u64 = 50_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use bot_core::Queue as _;
        let full = std::env::var("BOT_BENCH_MEMORY").is_ok_and(|v| v == "full");
        if full {
            fill_to_default_limits().await;
            return;
        }
        // Queued: pushed in webhook-sized batches of 10, never pulled.
        let queue = bot_core::MemoryQueue::new(&Limits {
            queue_capacity: N as usize,
            queue_capacity_bytes: usize::MAX,
            ..Limits::default()
        });
        let before = rss_bytes();
        for start in (0..N).step_by(10) {
            let batch: Vec<Event> = (start..start + 10).map(line_event).collect();
            queue.push_batch(batch).await.expect("accepted");
        }
        let after = rss_bytes();
        println!(
            "queued: {:.0} bytes RSS per LINE event over {N} events; the byte budget counts {:.0} per event",
            (after.saturating_sub(before)) as f64 / N as f64,
            queue.waiting_bytes() as f64 / N as f64,
        );
        drop(queue);

        // In flight: every handler only waits (as on a slow API call) until released.
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let all_started = Arc::new(Notify::new());
        let (r, s, a) = (release.clone(), started.clone(), all_started.clone());
        let bot = Bot::builder()
            .limits(Limits {
                max_in_flight: N as usize,
                queue_capacity: N as usize,
                queue_capacity_bytes: usize::MAX,
                ..Limits::default()
            })
            .handler(move |_cx: Context, _e: Event| {
                let (r, s, a) = (r.clone(), s.clone(), a.clone());
                async move {
                    if s.fetch_add(1, AtomicOrdering::SeqCst) + 1 == N as usize {
                        a.notify_one();
                    }
                    let _permit = r.acquire().await;
                    Ok::<_, Error>(())
                }
            })
            .build()
            .expect("valid bot");
        bot.start();
        let ingress = bot.ingress();
        // A first round to warm up (runtime, workers, allocator arenas), then the measured one.
        for round in 0..2 {
            started.store(0, AtomicOrdering::SeqCst);
            let before = rss_bytes();
            for start in (0..N).step_by(10) {
                let n0 = start + (round + 1) * 10 * N;
                let batch: Vec<Event> = (n0..n0 + 10).map(line_event).collect();
                ingress.submit(batch).await.expect("accepted");
            }
            all_started.notified().await;
            let after = rss_bytes();
            println!(
                "in flight (round {round}): {:.0} bytes RSS per LINE event over {N} handlers waiting",
                (after.saturating_sub(before)) as f64 / N as f64,
            );
            release.add_permits(N as usize);
            bot.idle().await;
            release.forget_permits(usize::MAX);
        }
        bot.shutdown().await;
    });
}

criterion_group!(benches, bench, bench_queue, bench_queue_handoff);

fn main() {
    if std::env::var_os("BOT_BENCH_MEMORY").is_some() {
        memory();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
