//! Gateway figures: dispatches per second one shard parses and hands to the runtime, and the
//! memory an idle shard takes.
//!
//! Run with: cargo bench -p bot-discord --bench gateway
//! Options (after `--`): `--dispatches N` (default 200,000), `--idle-shards K` (default 100).
//!
//! 1. `K` shards connect to a fake gateway running in a child process (so that only the shards'
//!    side is measured), identify and sit idle; the growth of this process's resident memory
//!    divided by `K` is the memory per idle shard.
//! 2. One shard connects to the fake gateway on 127.0.0.1; the fake sends `N` MESSAGE_CREATE
//!    dispatches (over 100 channels) as fast as the shard reads them; a no-op handler counts them.
//!    The figure is from the first dispatch sent to the last one handled. The fake runs in the
//!    same process, on the same two cores, so it takes a share of the CPU the shard would
//!    otherwise have.
//!
//! Under `cargo test` (no `--bench` argument) it runs a small load as a smoke test.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bot_core::{Bot, Context, Error, Event, Limits};
use bot_discord::gateway::{IdentifyQueue, ShardConfig, ShardId, ShardManager};
use bot_discord::testing::FakeGateway;
use serde_json::json;
use tokio::io::AsyncReadExt as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "bench-token";

fn arg(args: &[String], name: &str) -> Option<usize> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a positive number, not {v:?}"))
        })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if args.iter().any(|a| a == "--serve-fake-gateway") {
        runtime.block_on(serve_fake_gateway());
        return;
    }
    let benching = args.iter().any(|a| a == "--bench");
    let dispatches = arg(&args, "--dispatches").unwrap_or(if benching { 200_000 } else { 2_000 });
    let idle_shards = arg(&args, "--idle-shards").unwrap_or(if benching { 100 } else { 4 });
    assert!(
        dispatches > 0 && idle_shards > 0,
        "--dispatches and --idle-shards above zero"
    );
    runtime.block_on(async {
        // Memory first, before the throughput run leaves the allocator with free pages to reuse.
        idle_memory(idle_shards).await;
        throughput(dispatches).await;
    });
}

/// The child process: a fake gateway until stdin closes.
async fn serve_fake_gateway() {
    let gateway = FakeGateway::start(TOKEN).await.expect("fake gateway");
    println!("{}", gateway.url());
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
}

async fn throughput(dispatches: usize) {
    let gateway = FakeGateway::start(TOKEN).await.expect("fake gateway");
    let seen = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(Notify::new());
    let bot = {
        let seen = seen.clone();
        let done = done.clone();
        Bot::builder()
            .limits(Limits {
                max_in_flight: 1024,
                queue_capacity: 100_000,
                ..Limits::default()
            })
            .handler(move |_cx: Context, _e: Event| {
                let seen = seen.clone();
                let done = done.clone();
                async move {
                    if seen.fetch_add(1, Ordering::Relaxed) + 1 == dispatches {
                        done.notify_one();
                    }
                    Ok::<_, Error>(())
                }
            })
            .build()
            .expect("bot")
    };
    bot.start();
    let stop = CancellationToken::new();
    let manager = Arc::new(ShardManager::new(
        ShardConfig::new(TOKEN).url(gateway.url()),
        &[ShardId::ONE],
        IdentifyQueue::new(1),
    ));
    #[allow(clippy::disallowed_methods)] // the shard under load
    let shard = tokio::spawn({
        let manager = manager.clone();
        let ingress = bot.ingress();
        let stop = stop.clone();
        async move { manager.run(ingress, stop).await }
    });
    gateway.wait_for_readies(1).await;

    let frames: Vec<serde_json::Value> = (0..dispatches)
        .map(|i| {
            json!({"id": format!("{}", 1_180_000_000_000_000_000_u64 + i as u64),
                   "channel_id": format!("{}", 100 + i % 100), "guild_id": "1",
                   "author": {"id": format!("{}", 7000 + i % 500), "username": "someone"},
                   "content": "hello, bot", "attachments": [], "mentions": [], "embeds": [],
                   "timestamp": "2026-11-30T10:00:00.000000+00:00", "tts": false, "pinned": false, "type": 0})
        })
        .collect();
    let started = Instant::now();
    #[allow(clippy::disallowed_methods)] // the load generator
    let sender = tokio::spawn({
        let gateway = gateway.clone();
        async move {
            for frame in frames {
                gateway.dispatch("MESSAGE_CREATE", frame).await;
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(600), done.notified())
        .await
        .expect("every dispatch handled");
    let elapsed = started.elapsed();
    sender.await.expect("sender");
    stop.cancel();
    shard.await.expect("shard task").expect("shard");
    bot.shutdown().await;
    println!("Discord gateway, one shard, {dispatches} MESSAGE_CREATE dispatches");
    println!(
        "  handled {} in {:.2} s = {:.0} dispatches/s (parse, map, queue, no-op handler)",
        seen.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        dispatches as f64 / elapsed.as_secs_f64()
    );
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn idle_memory(shards: usize) {
    let mut child = Command::new(std::env::current_exe().expect("this binary"))
        .arg("--serve-fake-gateway")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the fake gateway process");
    let mut url = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut url,
    )
    .expect("the fake's url");
    let url = url.trim().to_owned();

    let bot = Bot::builder()
        .handler(|_cx: Context, _e: Event| async { Ok::<_, Error>(()) })
        .build()
        .expect("bot");
    bot.start();
    let total = u32::try_from(shards).expect("shards fit u32");
    let ids: Vec<ShardId> = (0..total).map(|n| ShardId { number: n, total }).collect();
    let before = rss_kib();
    let manager = Arc::new(ShardManager::new(
        ShardConfig::new(TOKEN).url(url),
        &ids,
        IdentifyQueue::with_interval(1, Duration::ZERO),
    ));
    let stop = CancellationToken::new();
    #[allow(clippy::disallowed_methods)] // the idle shards
    let run = tokio::spawn({
        let manager = manager.clone();
        let ingress = bot.ingress();
        let stop = stop.clone();
        async move { manager.run(ingress, stop).await }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while manager
        .shards()
        .iter()
        .any(|s| s.status().session().is_none())
    {
        assert!(
            Instant::now() < deadline,
            "the shards did not all become ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = rss_kib();
    stop.cancel();
    run.await.expect("run").expect("shards");
    bot.shutdown().await;
    drop(child.stdin.take());
    let _ = child.wait();
    let per_shard = after.saturating_sub(before) as f64 / shards as f64;
    println!("Discord gateway, {shards} idle shards (ready, heartbeating)");
    println!(
        "  resident memory: {before} KiB before, {after} KiB after = {per_shard:.1} KiB per idle shard"
    );
}
