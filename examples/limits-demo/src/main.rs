//! Run with: cargo run -p limits-demo
//!
//! Pushes synthetic events through `bot.ingress().submit(..)` into a bot with small limits and a
//! handler that fails on purpose, shows a full queue refusing a batch, then shuts down while work
//! is still running and prints the shutdown report. It ends by itself in a few seconds.
//!
//! The story goes to stdout; the runtime's logs (retries, dead letters) go to stderr.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::handler::Permanent;
use bot_core::queue::DeadLetter;
use bot_core::telemetry::Logging;
use bot_core::{
    Bot, BoxError, Context, Event, HandlerExt, Limits, Ordering, Overflow, Platform, RetryPolicy,
    Router,
};
use tokio::sync::watch;

/// The platform of the synthetic events.
const DEMO: Platform = Platform::from_static("demo");
/// Conversations the jobs are spread over.
const CONVERSATIONS: u32 = 3;
/// Jobs of the first phase.
const JOBS: u32 = 30;

// ANCHOR: limits
fn limits() -> Limits {
    Limits {
        // At most 4 handlers at once: the supervisor pulls only as many events as it has free slots.
        max_in_flight: 4,
        // At most 64 events wait; a batch that does not fit is refused whole (webhooks answer 503).
        queue_capacity: 64,
        overflow: Overflow::Reject,
        // One event at a time per conversation, in arrival order; conversations run in parallel.
        ordering: Ordering::PerConversation,
        // Routes without a time-out of their own get this one.
        handler_timeout: Duration::from_millis(200),
        // Three attempts in all, 50 ms then 100 ms apart (less up to 20 % of jitter).
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(400),
            multiplier: 2.0,
            jitter: 0.2,
        },
        // At shutdown, running handlers get this long before they are cancelled.
        shutdown_timeout: Duration::from_millis(500),
        ..Limits::default()
    }
}
// ANCHOR_END: limits

/// What the handlers and the dead-letter hook write down, shared as app state.
#[derive(Debug)]
struct Journal {
    /// Events done for good: handled or dead-lettered.
    finished: watch::Sender<u32>,
    /// Long handlers running now.
    running: watch::Sender<u32>,
    /// Per conversation, the jobs in the order they were done with.
    order: Mutex<BTreeMap<String, Vec<u32>>>,
}

impl Journal {
    fn new() -> Self {
        Self {
            finished: watch::Sender::new(0),
            running: watch::Sender::new(0),
            order: Mutex::new(BTreeMap::new()),
        }
    }

    fn done(&self, event: &Event) {
        if let Some(job) = job_number(event) {
            self.order
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(event.conversation.to_string())
                .or_default()
                .push(job);
        }
        self.finished.send_modify(|n| *n += 1);
    }
}

fn job_number(event: &Event) -> Option<u32> {
    event.text_content()?.rsplit(' ').next()?.parse().ok()
}

// ANCHOR: handler
/// Fails in every way a handler can, depending on the job number.
async fn flaky(cx: Context, event: Event) -> Result<(), BoxError> {
    let job = job_number(&event).ok_or("not a job")?;
    match job % 10 {
        // Fails on its first attempt only: the retry succeeds.
        3 if cx.attempt() == 1 => return Err(format!("job {job}: flaky dependency").into()),
        // Too slow on its first attempt: the time-out fails it (after the time-out the handler
        // gets a second of grace to stop; this one ignores its cancellation and takes longer),
        // and the retry succeeds.
        5 if cx.attempt() == 1 => tokio::time::sleep(Duration::from_secs(3)).await,
        // A bug: the panic is caught and the attempt is retried like any failure.
        7 if cx.attempt() == 1 => panic!("job {job}: unexpected input"),
        // Fails every attempt: dead-lettered after the last one.
        8 => return Err(format!("job {job}: always fails").into()),
        // Not worth retrying: dead-lettered at once.
        9 => return Err(Permanent::new(format!("job {job}: malformed")).into()),
        _ => tokio::time::sleep(Duration::from_millis(5)).await,
    }
    if let Some(journal) = cx.state::<Arc<Journal>>() {
        journal.done(&event);
    }
    Ok(())
}
// ANCHOR_END: handler

/// Runs until cancelled: shows what shutdown does to handlers that do not finish.
async fn stuck(cx: Context, _event: Event) -> Result<(), BoxError> {
    let journal = cx.state::<Arc<Journal>>().ok_or("no journal")?.clone();
    journal.running.send_modify(|n| *n += 1);
    cx.cancellation().cancelled().await;
    Err("cancelled".into())
}

/// Takes a while but finishes within the shutdown drain.
async fn slow(cx: Context, _event: Event) -> Result<(), BoxError> {
    let journal = cx.state::<Arc<Journal>>().ok_or("no journal")?.clone();
    journal.running.send_modify(|n| *n += 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

// ANCHOR: event
/// A text message in one of three conversations, with the id a platform would have given it.
fn job(n: u32, text: &str) -> Event {
    Event::text(
        DEMO,
        format!("conversation-{}", n % CONVERSATIONS),
        format!("{text} {n}"),
    )
    .with_id(format!("event-{n}"))
}
// ANCHOR_END: event

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr, so that stdout is only the story.
    let _logging = Logging::new().stderr().default_level("warn").init()?;
    let journal = Arc::new(Journal::new());

    // ANCHOR: build
    let dead_letters = journal.clone();
    let bot = Bot::builder()
        .limits(limits())
        .state(journal.clone())
        .handler(
            Router::new()
                // This route's own time-out replaces `handler_timeout`.
                .text_prefix("stuck ", stuck.with_timeout(Duration::from_secs(3600)))
                .text_prefix("slow ", slow.with_timeout(Duration::from_secs(60)))
                .text(flaky),
        )
        .on_dead_letter(move |letter: &DeadLetter| {
            println!(
                "dead letter: {} after {} attempt(s): {}",
                letter.event.text_content().unwrap_or_default(),
                letter.attempts,
                letter.error
            );
            dead_letters.done(&letter.event);
        })
        .build()?;
    bot.start();
    // ANCHOR_END: build

    // ANCHOR: submit
    // Ten "webhook requests" of three events each; a request is accepted whole or not at all.
    let ingress = bot.ingress();
    for first in (0..JOBS).step_by(10) {
        let batch = (first..first + 10).map(|n| job(n, "job")).collect();
        let report = ingress.submit(batch).await?;
        println!("accepted {} events", report.accepted);
    }
    // A platform redelivers an event: it is recognised and skipped.
    let report = ingress.submit(vec![job(1, "job")]).await?;
    println!(
        "redelivery of event-1: {} duplicate(s) skipped",
        report.duplicates
    );
    // ANCHOR_END: submit

    let mut finished = journal.finished.subscribe();
    tokio::time::timeout(Duration::from_secs(10), finished.wait_for(|n| *n >= JOBS)).await??;
    println!("all {JOBS} jobs done with:");
    let order = journal
        .order
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for (conversation, jobs) in &order {
        let in_order = jobs.windows(2).all(|w| w[0] < w[1]);
        println!("  {conversation}: {jobs:?} (in arrival order: {in_order})");
    }

    // ANCHOR: stuck
    // Two handlers that never finish, one that finishes in 200 ms, and one event waiting behind a
    // stuck one in its conversation.
    let batch = vec![
        job(2000, "stuck"),
        job(2001, "stuck"),
        job(2002, "slow"),
        job(2003, "job"),
    ];
    ingress.submit(batch).await?;
    let mut running = journal.running.subscribe();
    tokio::time::timeout(Duration::from_secs(5), running.wait_for(|n| *n >= 3)).await??;

    // ANCHOR_END: stuck

    // ANCHOR: overflow
    // A batch larger than the free room (one event waits behind a stuck one) is refused whole,
    // with a hint of when to retry.
    let flood = (1000..1100).map(|n| job(n, "job")).collect();
    if let Err(e) = ingress.submit(flood).await {
        let answer = bot_core::adapter::rejection(&e);
        let retry_after = answer.headers().get("retry-after");
        let retry_after = retry_after.and_then(|v| v.to_str().ok()).unwrap_or("-");
        println!("a batch of 100: {e}");
        println!(
            "  a webhook answers {} with Retry-After: {retry_after}",
            answer.status()
        );
    }
    // ANCHOR_END: overflow

    // ANCHOR: metrics
    // What `/metrics` serves, read directly.
    println!("metrics:");
    for line in bot.telemetry().render_prometheus().lines() {
        // Skip the histogram's buckets and comments.
        if line.starts_with("bot_") && !line.contains("_bucket") {
            println!("  {line}");
        }
    }
    // ANCHOR_END: metrics

    // ANCHOR: shutdown
    let report = bot.shutdown().await;
    println!(
        "shutdown: {} drained, {} cancelled, {} not started, in {:?}",
        report.drained, report.cancelled, report.not_started, report.drain_time
    );
    // ANCHOR_END: shutdown
    Ok(())
}
