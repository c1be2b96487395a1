//! PostgreSQL queue throughput and latency against the server in `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! Run with: cargo bench -p bot-core --features postgres --bench pg_queue
//!
//! - `drain/*`: 100,000 events inserted beforehand (not timed), then one or two bots (the
//!   "processes", here in one process on the same two cores) with a no-op handler run until
//!   all are handled. Ordered cases spread the events over 10,000 conversations.
//! - `end_to_end`: 50,000 events submitted through the ingress in batches of 100 by 8
//!   concurrent producers (as webhooks would: each batch committed before it returns), claimed,
//!   handled by a no-op handler and acknowledged.
//! - `pickup`: an idle bot; another queue instance (another "process") pushes one event at a
//!   time; the time from the push's commit to the handler's start. Percentiles are printed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use bot_core::pg::{PgPool, PgQueue};
use bot_core::{Bot, Context, Error, Event, Limits, Ordering, Platform, Queue as _};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::sync::{Notify, mpsc};

const DRAIN_EVENTS: usize = 100_000;
const E2E_EVENTS: usize = 50_000;
const CONVERSATIONS: usize = 10_000;

/// `cargo test --all-targets` runs each benchmark once as a smoke test, in the debug profile:
/// then a hundredth of the events is enough.
fn scaled(n: usize) -> usize {
    if std::env::args().any(|a| a == "--bench") {
        n
    } else {
        n / 100
    }
}

struct Counter {
    seen: AtomicUsize,
    done: Notify,
    target: AtomicUsize,
}

impl Counter {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            seen: AtomicUsize::new(0),
            done: Notify::new(),
            target: AtomicUsize::new(usize::MAX),
        })
    }

    async fn wait_for(&self, n: usize) {
        loop {
            // Registered before the check, so that a notification in between is not missed.
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.seen.load(AtomicOrdering::Relaxed) >= n {
                return;
            }
            notified.await;
        }
    }
}

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

async fn pool() -> PgPool {
    let pool = PgPool::builder(database_url())
        .schema("bench_pg")
        .max_size(16)
        .build()
        .expect("pool");
    bot_core::pg::migrate(&pool).await.expect("migrate");
    pool
}

async fn truncate(pool: &PgPool) {
    let conn = pool.get().await.expect("connection");
    // Separate statements: VACUUM cannot run in the implicit transaction of a multi-statement
    // string.
    conn.batch_execute("TRUNCATE botrt_events, botrt_dedup, botrt_dead_letters")
        .await
        .expect("truncate");
    conn.batch_execute("VACUUM ANALYZE botrt_events")
        .await
        .expect("vacuum");
}

/// Inserts `n` events spread over `conversations` in one statement (not through the queue, to
/// keep the set-up short).
async fn preinsert(pool: &PgPool, n: usize, conversations: usize) {
    truncate(pool).await;
    let template =
        serde_json::to_string(&Event::text(Platform::LINE, "__CONV__", "hi").with_id("__ID__"))
            .expect("serialise");
    let conn = pool.get().await.expect("connection");
    conn.execute(
        "INSERT INTO botrt_events (lane, platform, event_id, conversation, payload)
         SELECT hashtextextended('line' || chr(31) || c, 0), 'line', i, c,
                replace(replace($1, '__ID__', i), '__CONV__', c)::json
         FROM (SELECT 'ev-' || g AS i, 'conv-' || (g % $3::bigint) AS c
               FROM generate_series(1, $2::int) g) s",
        &[&template, &(n as i32), &(conversations as i64)],
    )
    .await
    .expect("preinsert");
    conn.batch_execute("ANALYZE botrt_events")
        .await
        .expect("analyze");
}

fn bot(queue: Arc<PgQueue>, counter: Arc<Counter>, ordering: Ordering) -> Bot {
    Bot::builder()
        .limits(Limits {
            max_in_flight: 1024,
            ordering,
            ..Limits::default()
        })
        .queue(queue)
        .handler(move |_cx: Context, _e: Event| {
            let c = counter.clone();
            async move {
                let n = c.seen.fetch_add(1, AtomicOrdering::Relaxed) + 1;
                if n >= c.target.load(AtomicOrdering::Relaxed) {
                    c.done.notify_waiters();
                }
                Ok::<_, Error>(())
            }
        })
        .build()
        .expect("bot")
}

fn queue(pool: &PgPool, ordering: Ordering) -> Arc<PgQueue> {
    Arc::new(
        PgQueue::builder(pool)
            .ordering(ordering)
            .prefetch(256)
            .build()
            .expect("queue"),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn drain(c: &mut Criterion) {
    let rt = runtime();
    let pool = rt.block_on(pool());
    let mut group = c.benchmark_group("pg_drain");
    let events = scaled(DRAIN_EVENTS);
    group.throughput(Throughput::Elements(events as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(100));
    group.measurement_time(Duration::from_secs(1));
    let cases = [
        ("ordered_1_process", Ordering::PerConversation, 1),
        ("ordered_2_processes", Ordering::PerConversation, 2),
        ("unordered_1_process", Ordering::Unordered, 1),
        ("unordered_2_processes", Ordering::Unordered, 2),
    ];
    for (name, ordering, processes) in cases {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    rt.block_on(preinsert(&pool, events, CONVERSATIONS));
                    let counter = Counter::new();
                    counter.target.store(events, AtomicOrdering::Relaxed);
                    let elapsed = rt.block_on(async {
                        let queues: Vec<_> =
                            (0..processes).map(|_| queue(&pool, ordering)).collect();
                        let bots: Vec<_> = queues
                            .iter()
                            .map(|q| bot(q.clone(), counter.clone(), ordering))
                            .collect();
                        let start = Instant::now();
                        for b in &bots {
                            b.start();
                        }
                        counter.wait_for(events).await;
                        let elapsed = start.elapsed();
                        for (b, q) in bots.iter().zip(&queues) {
                            b.shutdown().await;
                            q.shutdown().await;
                        }
                        elapsed
                    });
                    total += elapsed;
                }
                total
            });
        });
    }
    group.finish();
}

fn end_to_end(c: &mut Criterion) {
    let rt = runtime();
    let pool = rt.block_on(pool());
    let mut group = c.benchmark_group("pg_end_to_end");
    let events = scaled(E2E_EVENTS);
    group.throughput(Throughput::Elements(events as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(100));
    group.measurement_time(Duration::from_secs(1));
    let mut round = 0usize;
    group.bench_function("ordered_1_process_batches_of_100", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                rt.block_on(truncate(&pool));
                let counter = Counter::new();
                counter.target.store(events, AtomicOrdering::Relaxed);
                total += rt.block_on(async {
                    let q = queue(&pool, Ordering::PerConversation);
                    let bot = bot(q.clone(), counter.clone(), Ordering::PerConversation);
                    bot.start();
                    let start = Instant::now();
                    let producers = (0..8).map(|p| {
                        let ingress = bot.ingress();
                        async move {
                            for chunk in (p..events).step_by(8).collect::<Vec<_>>().chunks(100) {
                                let batch = chunk
                                    .iter()
                                    .map(|i| {
                                        Event::text(
                                            Platform::LINE,
                                            format!("conv-{}", i % CONVERSATIONS),
                                            "hi",
                                        )
                                        .with_id(format!("r{round}-{i}"))
                                    })
                                    .collect();
                                ingress.submit(batch).await.expect("accepted");
                            }
                        }
                    });
                    futures::future::join_all(producers).await;
                    counter.wait_for(events).await;
                    let elapsed = start.elapsed();
                    bot.shutdown().await;
                    q.shutdown().await;
                    elapsed
                });
            }
            total
        });
    });
    group.finish();
}

fn pickup(c: &mut Criterion) {
    let rt = runtime();
    let pool = rt.block_on(pool());
    rt.block_on(truncate(&pool));
    let (tx, mut rx) = mpsc::channel::<Instant>(16);
    let q = rt.block_on(async { queue(&pool, Ordering::PerConversation) });
    let pusher = rt.block_on(async {
        Arc::new(
            PgQueue::builder(&pool)
                .listen(false)
                .build()
                .expect("pusher"),
        )
    });
    let bot = rt.block_on(async {
        let bot = Bot::builder()
            .queue(q.clone())
            .handler(move |_cx: Context, _e: Event| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(Instant::now()).await;
                    Ok::<_, Error>(())
                }
            })
            .build()
            .expect("bot");
        bot.start();
        // Wait until the LISTEN connection is up.
        while !q.is_listening() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bot
    });
    let mut samples = Vec::new();
    let mut next = 0usize;
    let mut group = c.benchmark_group("pg_pickup");
    group.sample_size(50);
    group.bench_function("idle_cross_process", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                next += 1;
                let waited = rt.block_on(async {
                    // Idle: let the claimer settle into its wait.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let event = Event::text(Platform::LINE, format!("conv-{next}"), "hi")
                        .with_id(format!("pickup-{next}"));
                    pusher.push_batch(vec![event]).await.expect("push");
                    let committed = Instant::now();
                    let started = rx.recv().await.expect("handled");
                    started.saturating_duration_since(committed)
                });
                samples.push(waited);
                total += waited;
            }
            total
        });
    });
    group.finish();
    samples.sort();
    if !samples.is_empty() {
        let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
        println!(
            "pg_pickup idle_cross_process: {} samples, p50 {:?}, p99 {:?}, max {:?}",
            samples.len(),
            pct(0.50),
            pct(0.99),
            samples[samples.len() - 1]
        );
    }
    rt.block_on(async {
        bot.shutdown().await;
        q.shutdown().await;
        pusher.shutdown().await;
    });
}

criterion_group!(benches, drain, end_to_end, pickup);
criterion_main!(benches);
