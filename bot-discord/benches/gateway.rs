//! Gateway figures: what one shard costs per dispatch it reads and hands over, and what a process
//! with one idle shard takes.
//!
//! Run with: cargo bench -p bot-discord --bench gateway
//! Options (after `--`): `--dispatches N` (default 200,000), `--runs R` (default 1).
//!
//! Each figure comes from a process of its own (this binary again), so that peak memory is that
//! of one measurement alone, and the gateway is a minimal fake in yet another process, so that
//! the CPU time counted is the shard's side only:
//!
//! 1. Throughput: one shard of a bot with the memory queue (default limits) and a no-op handler
//!    connects to the fake, which sends `N` MESSAGE_CREATE dispatches of about 1 KB as fast as the
//!    socket takes them. From READY to the last dispatch handled: dispatches/s, CPU µs per
//!    dispatch (user + system time of the whole process, from `/proc/self/stat`) and peak RSS
//!    (`VmHWM`).
//! 2. Idle: one shard, ready and heartbeating, nothing else: resident memory of the process.
//! 3. Queued: `N / 2` dispatches held in the memory queue by a handler that never finishes:
//!    resident memory per queued dispatch.
//!
//! Under `cargo test` (no `--bench` argument) it runs a small load as a smoke test.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bot_core::{Bot, Context, Error, Event, Limits};
use bot_discord::gateway::{IdentifyQueue, ShardConfig, ShardId, ShardManager};
use futures::{SinkExt as _, StreamExt as _};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
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
    let benching = args.iter().any(|a| a == "--bench");
    let dispatches = arg(&args, "--dispatches").unwrap_or(if benching { 200_000 } else { 2_000 });
    let runs = arg(&args, "--runs").unwrap_or(1);
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    };
    if args.iter().any(|a| a == "--serve-fake-gateway") {
        runtime().block_on(serve_fake_gateway(dispatches));
        return;
    }
    if args.iter().any(|a| a == "--throughput-process") {
        runtime().block_on(throughput(dispatches));
        return;
    }
    if args.iter().any(|a| a == "--queued-process") {
        runtime().block_on(queued(dispatches));
        return;
    }
    if args.iter().any(|a| a == "--idle-process") {
        runtime().block_on(idle());
        return;
    }
    for _ in 0..runs {
        again(&["--idle-process"]);
        again(&[
            "--throughput-process",
            "--dispatches",
            &dispatches.to_string(),
        ]);
        let queued = (dispatches / 2).to_string();
        again(&["--queued-process", "--dispatches", &queued]);
    }
}

/// Runs this binary again with `args`, passing its output through.
fn again(args: &[&str]) {
    let status = Command::new(std::env::current_exe().expect("this binary"))
        .args(args)
        .status()
        .expect("a measuring process");
    assert!(status.success(), "{args:?} failed");
}

/// A MESSAGE_CREATE frame of about 1 KB, as Discord sends one in a guild.
fn message_frame(sequence: u64, n: u64) -> String {
    format!(
        r#"{{"t":"MESSAGE_CREATE","s":{sequence},"op":0,"d":{{"type":0,"tts":false,"timestamp":"2026-11-30T10:00:00.000000+00:00","position":0,"pinned":false,"nonce":"{nonce}","mentions":[],"mention_roles":[],"mention_everyone":false,"member":{{"roles":["1180000000000000101","1180000000000000102"],"premium_since":null,"pending":false,"nick":null,"mute":false,"joined_at":"2025-01-01T00:00:00.000000+00:00","flags":0,"deaf":false,"communication_disabled_until":null,"banner":null,"avatar":null}},"id":"{id}","flags":0,"embeds":[],"edited_timestamp":null,"content":"hello, bot: this is message {n} of the benchmark, long enough to look like what people write in a busy channel\nwith a second line","components":[],"channel_id":"{channel}","author":{{"username":"someone{user}","public_flags":0,"id":"{user_id}","global_name":"Some One","discriminator":"0","clan":null,"avatar_decoration_data":null,"avatar":"a5e7c2f0b9d84e1c6f3a2b1d0e9c8f7a"}},"attachments":[],"guild_id":"1180000000000000001"}}}}"#,
        nonce = 1_300_000_000_000_000_000_u64 + n,
        id = 1_180_000_000_000_000_000_u64 + n,
        channel = 1_180_000_000_000_001_000_u64 + n % 100,
        user = n % 500,
        user_id = 1_180_000_000_000_002_000_u64 + n % 500,
    )
}

/// The child process: a minimal gateway for one connection. Hello, READY on Identify, then
/// `dispatches` messages as fast as the socket takes them; ACKs every heartbeat.
async fn serve_fake_gateway(dispatches: usize) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    println!("ws://{}", listener.local_addr().expect("address"));
    let (stream, _) = listener.accept().await.expect("the shard connects");
    let socket = tokio_tungstenite::accept_async(stream)
        .await
        .expect("a websocket");
    let (mut sink, mut incoming) = socket.split();
    let hello = r#"{"op":10,"d":{"heartbeat_interval":41250}}"#;
    sink.send(Message::text(hello)).await.expect("hello");
    let (acks, mut ack_queue) = tokio::sync::mpsc::channel::<()>(16);
    let (identified, identify) = tokio::sync::oneshot::channel::<()>();
    #[allow(clippy::disallowed_methods)] // the fake's reader
    let reader = tokio::spawn(async move {
        let mut identified = Some(identified);
        while let Some(Ok(message)) = incoming.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            if text.contains(r#""op":2"#) {
                if let Some(identified) = identified.take() {
                    let _ = identified.send(());
                }
            } else if text.contains(r#""op":1"#) {
                let _ = acks.send(()).await;
            }
        }
    });
    identify.await.expect("identify");
    let ready = r#"{"t":"READY","s":1,"op":0,"d":{"v":10,"user":{"id":"1180000000000000999","username":"bench","bot":true},"guilds":[],"session_id":"bench-session","resume_gateway_url":"ws://127.0.0.1:9/","application":{"id":"1","flags":0}}}"#;
    sink.send(Message::text(ready)).await.expect("ready");
    let ack = r#"{"op":11}"#;
    for n in 0..dispatches as u64 {
        while ack_queue.try_recv().is_ok() {
            sink.send(Message::text(ack)).await.expect("ack");
        }
        if sink
            .feed(Message::text(message_frame(n + 2, n)))
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = sink.flush().await;
    // Keep answering heartbeats until the shard goes away.
    while ack_queue.recv().await.is_some() {
        if sink.send(Message::text(ack)).await.is_err() {
            break;
        }
    }
    reader.abort();
}

/// Starts the fake gateway process; returns it and its URL.
fn fake_gateway(dispatches: usize) -> (std::process::Child, String) {
    let mut child = Command::new(std::env::current_exe().expect("this binary"))
        .args([
            "--serve-fake-gateway",
            "--dispatches",
            &dispatches.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the fake gateway process");
    let mut url = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut url,
    )
    .expect("the fake's url");
    (child, url.trim().to_owned())
}

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let total = ticks(11) + ticks(12);
    // The clock tick is 100 Hz on Linux.
    Duration::from_millis(total * 10)
}

/// A `/proc/self/status` figure in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn start_shard(bot: &Bot, url: String) -> (Arc<ShardManager>, CancellationToken) {
    let stop = CancellationToken::new();
    let mut config = ShardConfig::new(TOKEN).url(url);
    // `BENCH_READ_BUFFER=131072` measures a larger WebSocket read buffer than the default.
    if let Some(bytes) = std::env::var("BENCH_READ_BUFFER")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config = config.read_buffer_bytes(bytes);
    }
    let manager = Arc::new(ShardManager::new(
        config,
        &[ShardId::ONE],
        IdentifyQueue::new(1),
    ));
    #[allow(clippy::disallowed_methods)] // the shard under measure
    tokio::spawn({
        let manager = manager.clone();
        let ingress = bot.ingress();
        let stop = stop.clone();
        async move { manager.run(ingress, stop).await }
    });
    (manager, stop)
}

async fn wait_ready(manager: &ShardManager) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while manager.shards()[0].status().session().is_none() {
        assert!(Instant::now() < deadline, "the shard never became ready");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn throughput(dispatches: usize) {
    let (mut fake, url) = fake_gateway(dispatches);
    let seen = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(Notify::new());
    let bot = {
        let seen = seen.clone();
        let done = done.clone();
        Bot::builder()
            .limits(Limits::default())
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
    let (manager, stop) = start_shard(&bot, url);
    wait_ready(&manager).await;
    let (cpu_before, started) = (cpu_time(), Instant::now());
    tokio::time::timeout(Duration::from_secs(600), done.notified())
        .await
        .expect("every dispatch handled");
    let (elapsed, cpu) = (started.elapsed(), cpu_time() - cpu_before);
    let peak = status_kib("VmHWM:");
    stop.cancel();
    bot.shutdown().await;
    let _ = fake.kill();
    let _ = fake.wait();
    let n = dispatches as f64;
    println!(
        "gateway throughput: {dispatches} MESSAGE_CREATE of ~{} B, one shard, memory queue, no-op handler: \
         {:.0} dispatches/s, {:.2} us CPU per dispatch ({:.2} s CPU in {:.2} s), peak RSS {:.1} MiB, \
         {} dispatches read in {} batches",
        message_frame(2, 0).len(),
        n / elapsed.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / n,
        cpu.as_secs_f64(),
        elapsed.as_secs_f64(),
        peak as f64 / 1024.0,
        manager.shards()[0].status().dispatches(),
        manager.shards()[0].status().hand_overs(),
    );
}

async fn idle() {
    let (mut fake, url) = fake_gateway(0);
    let bot = Bot::builder()
        .handler(|_cx: Context, _e: Event| async { Ok::<_, Error>(()) })
        .build()
        .expect("bot");
    bot.start();
    let (manager, stop) = start_shard(&bot, url);
    wait_ready(&manager).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss, peak) = (status_kib("VmRSS:"), status_kib("VmHWM:"));
    let threads = status_kib("Threads:");
    let smaps = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    let field = |name: &str| {
        smaps
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_owned()
    };
    // File-backed pages (the binary's code) against memory the process wrote.
    let anon = format!(
        "{} KiB, file-backed clean {} KiB",
        field("Anonymous:"),
        field("Private_Clean:").parse::<u64>().unwrap_or(0)
            + field("Shared_Clean:").parse::<u64>().unwrap_or(0)
    );
    stop.cancel();
    bot.shutdown().await;
    let _ = fake.kill();
    let _ = fake.wait();
    println!(
        "gateway idle: one shard ready and heartbeating: RSS {:.1} MiB (peak {:.1} MiB, anonymous {anon}, {threads} threads)",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
}

/// 3. Queued: the handler never finishes, so `N` dispatches stay in the memory queue (capacity
///    `N`); the growth of resident memory from READY to a full queue, per queued dispatch.
async fn queued(dispatches: usize) {
    let (mut fake, url) = fake_gateway(dispatches);
    let bot = Bot::builder()
        .limits(Limits {
            max_in_flight: 1,
            queue_capacity: dispatches + 1000,
            ..Limits::default()
        })
        .handler(|_cx: Context, _e: Event| async {
            std::future::pending::<()>().await;
            Ok::<_, Error>(())
        })
        .build()
        .expect("bot");
    bot.start();
    let (manager, stop) = start_shard(&bot, url);
    wait_ready(&manager).await;
    let before = status_kib("VmRSS:");
    let deadline = Instant::now() + Duration::from_secs(600);
    // Every dispatch read (READY counts too) and the last batches accepted: the queue is full.
    while manager.shards()[0].status().session().map(|s| s.sequence) < Some(dispatches as u64 + 1) {
        assert!(Instant::now() < deadline, "the queue never filled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = status_kib("VmRSS:");
    stop.cancel();
    let _ = fake.kill();
    let _ = fake.wait();
    println!(
        "gateway queued: {dispatches} MESSAGE_CREATE in the memory queue: RSS {:.1} MiB at READY, {:.1} MiB full = {:.0} bytes per queued dispatch",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        (after.saturating_sub(before) * 1024) as f64 / dispatches as f64
    );
    std::process::exit(0);
}
