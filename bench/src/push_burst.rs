//! `push-burst`: outbound pushes through `k` HTTP/2 connections of at most `window` unanswered
//! pushes each, against a fake LINE API that answers in a fixed latency, from a bounded buffer that
//! sheds load. The fake runs here; the pushing runs in the `broadcast` example's process, so the
//! peak RSS and CPU measured are the pusher's.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::testing::fake_api::{FakeApi, Latency};
use bot_line::testing::FakeLine;
use serde::Deserialize;

use crate::record::{Row, Verdict};
use crate::scenario::{Started, TOKEN, Usage, sibling_binary, thousands, usage};

/// The overflow policy of the pusher's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OverflowArg {
    /// Evict the oldest buffered push.
    DropOldest,
    /// Drop the push that does not fit.
    DropNewest,
    /// Refuse the push (the producer counts it as rejected).
    Reject,
    /// Make the producer wait (nothing is dropped; the offer rate follows the pushes).
    Wait,
}

impl OverflowArg {
    fn env(self) -> &'static str {
        match self {
            OverflowArg::DropOldest => "drop-oldest",
            OverflowArg::DropNewest => "drop-newest",
            OverflowArg::Reject => "reject",
            OverflowArg::Wait => "wait",
        }
    }
}

/// How the fake times its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FakeClock {
    /// A thread of the fake's own, from each request's arrival, within tens of microseconds.
    Precise,
    /// Tokio's timer after the body is read, rounded up to whole milliseconds (the fake before
    /// 2026-12-05).
    Tokio,
}

/// The scenario's knobs.
#[derive(Debug, clap::Args)]
pub(crate) struct PushBurstArgs {
    /// Pushes offered.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    /// Connections (lanes), one LINE client each.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    connections: u16,
    /// Pushes unanswered per connection (the fake announces this many HTTP/2 streams).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    window: u32,
    /// The fake's answer time (`20ms`).
    #[arg(long, default_value = "20ms", value_parser = crate::parse_duration)]
    latency: Duration,
    /// Pushes the buffer holds.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    capacity: u64,
    /// What a push into a full buffer does.
    #[arg(long, value_enum, default_value_t = OverflowArg::DropOldest)]
    overflow: OverflowArg,
    /// How the fake times its latency (`tokio`: as before 2026-12-05, up to 1-2 ms late).
    #[arg(long, value_enum, default_value_t = FakeClock::Precise)]
    fake_clock: FakeClock,
    /// Pushes offered per second (default: 110 % of the window limit, so the buffer sheds).
    #[arg(long)]
    offer_rate: Option<f64>,
    /// The pusher's Tokio worker threads (`BROADCAST_WORKERS`; 1: a current-thread runtime; 0:
    /// one per core).
    #[arg(long, default_value_t = 0)]
    pusher_workers: u16,
    /// The fake's Tokio worker threads on a runtime of its own (1: a current-thread runtime;
    /// 0: botload's own runtime, shared with its sampling).
    #[arg(long, default_value_t = 0)]
    fake_workers: u16,
    #[command(flatten)]
    pub(crate) record: crate::RecordArgs,
}

/// What `broadcast` prints with `BROADCAST_REPORT=json`.
#[derive(Debug, Deserialize)]
struct ChildReport {
    offered: u64,
    sent: u64,
    failed: u64,
    dropped_oldest: u64,
    dropped_newest: u64,
    rejected: u64,
    unsent: u64,
    cancelled: u64,
    seconds: f64,
    sent_per_second: f64,
    latency_ms: Percentiles,
}

#[derive(Debug, Deserialize)]
struct Percentiles {
    mean: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl ChildReport {
    fn dropped(&self) -> u64 {
        self.dropped_oldest + self.dropped_newest + self.rejected + self.unsent + self.cancelled
    }
}

/// Samples a process's peak RSS and CPU time until told to stop; the last sample is the figure
/// (VmHWM is a peak, CPU time only grows).
fn sample(pid: u32, stop: Arc<AtomicBool>, last: Arc<Mutex<Option<Usage>>>) {
    while !stop.load(Ordering::Acquire) {
        if let Some(now) = usage(pid) {
            *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
        }
        // Each sample runs `getconf` (a fork of this large process): rarely, then.
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// User and system CPU seconds of a process from `/proc/<pid>/stat`, which an exited process keeps
/// until it is reaped (its status has no memory figures by then).
fn cpu_seconds(pid: u32, ticks_per_second: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / ticks_per_second)
}

/// The fake on a Tokio runtime of its own, driven by a thread of its own until dropped.
struct FakeRuntime {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeRuntime {
    fn start(
        workers: u16,
        builder: bot_core::testing::fake_api::FakeApiBuilder,
    ) -> Result<(FakeLine, Self), String> {
        let runtime = match workers {
            1 => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            n => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(usize::from(n))
                .thread_name("fake-api")
                .enable_all()
                .build(),
        }
        .map_err(|e| format!("cannot start the fake's runtime: {e}"))?;
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fake-api".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let fake = FakeLine::start_with(TOKEN, builder).await;
                    let failed = fake.is_err();
                    let _ = started_tx.send(fake);
                    if !failed {
                        // A current-thread runtime runs the fake's tasks only while this waits.
                        let _ = stopped.await;
                    }
                });
            })
            .map_err(|e| format!("cannot start the fake's thread: {e}"))?;
        let fake = started_rx
            .recv()
            .map_err(|_| "the fake's thread ended before the fake started".to_owned())?
            .map_err(|e| format!("cannot start the fake LINE API: {e}"))?;
        Ok((
            fake,
            Self {
                stop: Some(stop),
                thread: Some(thread),
            },
        ))
    }
}

impl Drop for FakeRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The row's note of non-default runtime shapes.
fn workers_label(pusher: u16, fake: u16) -> String {
    let shape = |n: u16| match n {
        1 => "1 thread".to_owned(),
        n => format!("{n} workers"),
    };
    match (pusher, fake) {
        (0, 0) => String::new(),
        (0, f) => format!(" [fake: {}]", shape(f)),
        (p, 0) => format!(" [pusher: {}]", shape(p)),
        (p, f) => format!(" [pusher: {}, fake: {}]", shape(p), shape(f)),
    }
}

pub(crate) async fn push_burst(args: &PushBurstArgs) -> Result<Row, String> {
    let binary = sibling_binary("broadcast")?;
    let limit = f64::from(args.connections) * f64::from(args.window) / args.latency.as_secs_f64();
    let offer_rate = args.offer_rate.unwrap_or(1.1 * limit);
    let builder = FakeApi::builder()
        .max_concurrent_streams(args.window)
        .precise_latency(args.fake_clock == FakeClock::Precise)
        .latency(Latency::Fixed(args.latency));
    let (fake, _fake_runtime) = match args.fake_workers {
        0 => (
            FakeLine::start_with(TOKEN, builder)
                .await
                .map_err(|e| format!("cannot start the fake LINE API: {e}"))?,
            None,
        ),
        workers => {
            let (fake, runtime) = FakeRuntime::start(workers, builder)?;
            (fake, Some(runtime))
        }
    };
    fake.api().set_recording(false);
    // Pushes go round 1,000 made-up users.
    let to: Vec<String> = (0..1_000_u32).map(|n| format!("U{n:032x}")).collect();
    let child = Command::new(&binary)
        .env("RUST_LOG", "warn")
        .env("LINE_CHANNEL_ACCESS_TOKEN", TOKEN)
        .env("LINE_API_BASE", fake.url())
        .env("BROADCAST_TO", to.join(","))
        .env("BROADCAST_COUNT", args.count.to_string())
        .env("BROADCAST_LANES", args.connections.to_string())
        .env("BROADCAST_WINDOW", args.window.to_string())
        .env("BROADCAST_CAPACITY", args.capacity.to_string())
        .env("BROADCAST_OVERFLOW", args.overflow.env())
        .env("BROADCAST_RATE", format!("{offer_rate:.0}"))
        // The fake has no quota: the window is the limit.
        .env("BROADCAST_PUSH_PER_SECOND", "100000000")
        .env("BROADCAST_REPORT", "json")
        .env("BROADCAST_WORKERS", args.pusher_workers.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let mut pusher = Started(child);
    let pid = pusher.0.id();
    let own_before = usage(std::process::id());
    let stop = Arc::new(AtomicBool::new(false));
    let last = Arc::new(Mutex::new(None));
    let sampler = {
        let (stop, last) = (stop.clone(), last.clone());
        std::thread::spawn(move || sample(pid, stop, last))
    };
    eprintln!(
        "push-burst: {} pushes offered at {}/s through {} connections x {} window, {} ms answers, buffer {} ({})",
        thousands(args.count as f64),
        thousands(offer_rate),
        args.connections,
        args.window,
        args.latency.as_millis(),
        thousands(args.capacity as f64),
        args.overflow.env(),
    );
    let mut stdout = pusher.0.stdout.take().ok_or("no stdout of broadcast")?;
    let output = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).map(|_| out)
    })
    .await
    .map_err(|e| format!("reading broadcast's output: {e}"))?
    .map_err(|e| format!("reading broadcast's output: {e}"))?;
    // broadcast has closed its output: it has exited or is exiting, and is not reaped yet.
    let ticks_per_second = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    stop.store(true, Ordering::Release);
    let _ = sampler.join();
    std::thread::sleep(Duration::from_millis(50));
    let final_cpu = cpu_seconds(pid, ticks_per_second);
    let status = pusher
        .0
        .wait()
        .map_err(|e| format!("waiting for broadcast: {e}"))?;
    let own_after = usage(std::process::id());
    if !status.success() {
        return Err(format!("broadcast failed ({status}); its output: {output}"));
    }
    let report: ChildReport = serde_json::from_str(output.trim())
        .map_err(|e| format!("broadcast's report is not JSON ({e}): {output}"))?;
    let used = last.lock().unwrap_or_else(|p| p.into_inner()).take();
    let (peak_kib, sampled_cpu) = used.map_or((0, f64::NAN), |u| (u.peak_rss_kib, u.cpu_seconds));
    let cpu = final_cpu.unwrap_or(sampled_cpu);
    let fake_cpu = match (own_before, own_after) {
        (Some(a), Some(b)) => b.cpu_seconds - a.cpu_seconds,
        _ => f64::NAN,
    };
    let received = fake.api().call_count() as u64;
    let api = fake.api();

    // The counts must add up, and the fake must have seen every push that was sent.
    let accounted = report.sent + report.failed + report.dropped();
    if report.offered != args.count || accounted != report.offered {
        return Err(format!(
            "counts do not add up: offered {} of {}, sent {} + failed {} + dropped {} = {accounted}",
            report.offered,
            args.count,
            report.sent,
            report.failed,
            report.dropped()
        ));
    }
    if report.failed == 0 && received != report.sent {
        return Err(format!(
            "the pusher counted {} sent, the fake received {received}",
            report.sent
        ));
    }
    let peak_window = api.peak_in_flight_per_connection();
    if peak_window > args.window as usize {
        return Err(format!(
            "{peak_window} pushes were unanswered on one connection, above the window {}",
            args.window
        ));
    }
    let share = report.sent_per_second / limit;
    let per_minute = report.sent_per_second * 60.0;
    println!(
        "offered {}, sent {}, failed {}, dropped {} (oldest {}, newest {}, rejected {}); sent + failed + dropped = offered; the fake received {}",
        thousands(report.offered as f64),
        thousands(report.sent as f64),
        report.failed,
        thousands(report.dropped() as f64),
        report.dropped_oldest,
        report.dropped_newest,
        report.rejected,
        thousands(received as f64),
    );
    println!(
        "throughput {} pushes/s over {:.1} s = {:.1} % of the window limit {}/s ({} x {} / {} ms); {} pushes/min",
        thousands(report.sent_per_second),
        report.seconds,
        100.0 * share,
        thousands(limit),
        args.connections,
        args.window,
        args.latency.as_millis(),
        thousands(per_minute),
    );
    // Little's law: pushes in flight on average = throughput × mean latency.
    let window_use = report.sent_per_second * report.latency_ms.mean
        / 1000.0
        / (f64::from(args.connections) * f64::from(args.window));
    println!(
        "windows {:.1} % full on average (throughput x mean latency {:.1} ms / {} x {}): the rest of the gap to the limit is the round trip, not the pusher",
        100.0 * window_use,
        report.latency_ms.mean,
        args.connections,
        args.window,
    );
    let held_ms = api.mean_hold().unwrap_or_default().as_secs_f64() * 1000.0;
    let late_ms = api.mean_late().unwrap_or_default().as_secs_f64() * 1000.0;
    println!(
        "where a push's {:.2} ms go: the fake held it {held_ms:.2} ms from its arrival ({late_ms:.2} ms past the {} ms latency); the other {:.2} ms are the way to the fake and back (both processes' HTTP/2 stacks and schedulers)",
        report.latency_ms.mean,
        args.latency.as_millis(),
        report.latency_ms.mean - held_ms,
    );
    println!(
        "push latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; peak unanswered per connection {peak_window} on {} connections",
        report.latency_ms.p50,
        report.latency_ms.p90,
        report.latency_ms.p99,
        report.latency_ms.max,
        api.connections(),
    );
    println!(
        "pusher (broadcast): peak RSS {:.1} MiB, CPU {cpu:.1} s ({:.0} % of one core); fake LINE API and botload: CPU {fake_cpu:.1} s",
        peak_kib as f64 / 1024.0,
        100.0 * cpu / report.seconds,
    );
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned());
    let met = share >= 0.95 && per_minute >= 1_000_000.0;
    Ok(Row {
        name: format!(
            "push-burst ({} pushes, {} connections x {} window, {} ms, buffer {} {}){}{}",
            thousands(args.count as f64),
            args.connections,
            args.window,
            args.latency.as_millis(),
            thousands(args.capacity as f64),
            args.overflow.env(),
            match args.fake_clock {
                FakeClock::Precise => "",
                FakeClock::Tokio => " [fake on Tokio's timer]",
            },
            workers_label(args.pusher_workers, args.fake_workers),
        ),
        result: format!(
            "{} pushes/s = {:.1} % of the {}/s window limit ({} /min), windows {:.0} % full; offered {}, sent {}, dropped {} (exact); mean {:.1} ms (the fake held {held_ms:.1}, {late_ms:.2} late), p50 {:.1} ms, p99 {:.1} ms; pusher {:.0} MiB peak, {:.0} % CPU; load average {load}",
            thousands(report.sent_per_second),
            100.0 * share,
            thousands(limit),
            thousands(per_minute),
            100.0 * window_use,
            thousands(report.offered as f64),
            thousands(report.sent as f64),
            thousands(report.dropped() as f64),
            report.latency_ms.mean,
            report.latency_ms.p50,
            report.latency_ms.p99,
            peak_kib as f64 / 1024.0,
            100.0 * cpu / report.seconds,
        ),
        goal: "≥ 95 % of the window limit and ≥ 1,000,000 pushes/min".to_owned(),
        verdict: if met { Verdict::Met } else { Verdict::Missed },
    })
}
