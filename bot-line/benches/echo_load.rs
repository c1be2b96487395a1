//! Load on the LINE echo path, over real HTTP on 127.0.0.1.
//!
//! Run with: cargo bench -p bot-line --bench echo_load
//! Options (after `--`): `--webhooks N` (default 20,000), `--connections C` (default 64),
//! `--events-per-webhook E` (default 10), `--reply-per-second R` (the client's Reply API limit;
//! default 1,000,000, so that the figure is the machine's; LINE's own limit is 2,000 per channel,
//! which `--reply-per-second 2000` reproduces).
//!
//! A bot with the LINE adapter and an echo handler serves on 127.0.0.1; the fake LINE API, also on
//! 127.0.0.1, answers its Reply API calls. `C` client tasks post pre-signed webhooks of `E` text
//! events each, one after another per connection, as fast as the bot answers. Every figure
//! includes the whole path: signature verification, parsing, mapping, the queue, the supervisor,
//! the handler, the rate limiter and one Reply API call over HTTP per event. The load generator
//! and the fake run on the same two cores as the bot.
//!
//! Printed: webhooks/s and events/s accepted (2xx), events/s answered end to end (the last reply
//! received by the fake), and the latency percentiles of the webhook requests.
//!
//! Under `cargo test` (no `--bench` argument) it runs a small load as a smoke test.

use std::time::{Duration, Instant};

use bot_core::{Bot, Context, Error, Event, Limits, Secret};
use bot_line::testing::{FakeLine, SignedWebhook, WebhookBuilder};
use bot_line::webhook::SIGNATURE_HEADER;
use bot_line::{ConfigureApi, Line, RateLimits};
use hdrhistogram::Histogram;

const SECRET: &str = "bench-secret";
const TOKEN: &str = "bench-token";

struct Options {
    webhooks: usize,
    connections: usize,
    events_per_webhook: usize,
    reply_per_second: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench");
    let mut o = if benching {
        Options {
            webhooks: 20_000,
            connections: 64,
            events_per_webhook: 10,
            reply_per_second: 1_000_000,
        }
    } else {
        Options {
            webhooks: 50,
            connections: 4,
            events_per_webhook: 10,
            reply_per_second: 1_000_000,
        }
    };
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse::<usize>()
                    .unwrap_or_else(|_| panic!("{name} takes a positive number, not {v:?}"))
            })
    };
    if let Some(n) = value("--webhooks") {
        o.webhooks = n;
    }
    if let Some(n) = value("--connections") {
        o.connections = n;
    }
    if let Some(n) = value("--events-per-webhook") {
        o.events_per_webhook = n;
    }
    if let Some(n) = value("--reply-per-second") {
        o.reply_per_second = n;
    }
    assert!(
        o.webhooks > 0
            && o.connections > 0
            && o.reply_per_second > 0
            && (1..=100).contains(&o.events_per_webhook),
        "--webhooks, --connections and --reply-per-second above zero, --events-per-webhook 1 to 100"
    );
    o
}

async fn echo(cx: Context, event: Event) -> Result<(), Error> {
    match event.text_content() {
        Some(text) => cx.reply(text).await,
        None => Ok(()),
    }
}

fn main() {
    let o = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(o));
}

async fn run(o: Options) {
    let fake = FakeLine::start(TOKEN).await.expect("fake LINE API");
    fake.api().set_recording(false);
    let reply_per_second = u32::try_from(o.reply_per_second).unwrap_or(u32::MAX);
    let line = Line::builder(SECRET, TOKEN)
        .api_base(fake.url())
        .client(|c| {
            c.rate_limits(RateLimits {
                reply_per_second,
                ..RateLimits::default()
            })
        })
        .build()
        .expect("line adapter");
    let events_total = o.webhooks * o.events_per_webhook;
    let bot = Bot::builder()
        .adapter(line)
        .handler(echo)
        .limits(Limits {
            max_in_flight: 1024,
            queue_capacity: events_total.max(1024),
            ..Limits::default()
        })
        .build()
        .expect("bot");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!(
        "http://{}/line/webhook",
        listener.local_addr().expect("addr")
    );
    #[allow(clippy::disallowed_methods)] // the server under load
    let server = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );

    // Every webhook unique (ids, reply tokens), signed before the clock starts.
    let secret = Secret::new(SECRET);
    let mut bodies: Vec<SignedWebhook> = (0..o.webhooks)
        .map(|w| {
            let mut builder = WebhookBuilder::new();
            for e in 0..o.events_per_webhook {
                builder = builder.text(&format!("U{:032x}", (w * 7 + e) % 5000), "hello, bot");
            }
            builder.sign(&secret)
        })
        .collect();
    let per_connection = bodies.len().div_ceil(o.connections);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(o.connections)
        .build()
        .expect("http client");

    let started = Instant::now();
    let mut tasks = Vec::new();
    while !bodies.is_empty() {
        let take = per_connection.min(bodies.len());
        let mine: Vec<SignedWebhook> = bodies.drain(..take).collect();
        let client = client.clone();
        let url = url.clone();
        #[allow(clippy::disallowed_methods)] // one load-generating connection each
        tasks.push(tokio::spawn(async move {
            let mut latencies =
                Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram");
            let mut failures = 0usize;
            for webhook in mine {
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header(SIGNATURE_HEADER, &webhook.signature)
                    .body(webhook.body)
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => {
                        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                        latencies.saturating_record(micros);
                    }
                    _ => failures += 1,
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram");
    let mut failures = 0;
    for task in tasks {
        let (h, f) = task.await.expect("load task");
        latencies.add(h).expect("same histogram bounds");
        failures += f;
    }
    let accepted_in = started.elapsed();
    let accepted = usize::try_from(latencies.len()).unwrap_or(usize::MAX);
    let answered_target = accepted * o.events_per_webhook;
    let waited = tokio::time::timeout(
        Duration::from_secs(600),
        fake.api().wait_for_count(answered_target),
    )
    .await;
    let answered_in = started.elapsed();
    bot.request_shutdown();
    let report = server.await.expect("server task").expect("server");
    let answered = fake.api().call_count();

    let secs = accepted_in.as_secs_f64();
    let end_to_end = answered_in.as_secs_f64();
    let pct = |q: f64| Duration::from_micros(latencies.value_at_quantile(q));
    println!(
        "LINE echo path, {} webhooks x {} events, {} connections",
        o.webhooks, o.events_per_webhook, o.connections
    );
    println!(
        "  accepted: {accepted} webhooks ({failures} failed) in {secs:.2} s = {:.0} webhooks/s, {:.0} events/s",
        accepted as f64 / secs,
        (accepted * o.events_per_webhook) as f64 / secs
    );
    println!(
        "  answered: {answered} replies in {end_to_end:.2} s = {:.0} events/s end to end",
        answered as f64 / end_to_end
    );
    println!(
        "  webhook latency: p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        Duration::from_micros(latencies.max())
    );
    println!("  shutdown: {report:?}");
    assert!(waited.is_ok(), "the replies did not all arrive");
    assert_eq!(failures, 0, "every webhook is accepted");
    assert_eq!(
        answered,
        o.webhooks * o.events_per_webhook,
        "every event answered once"
    );
}
