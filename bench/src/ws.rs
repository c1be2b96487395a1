//! `ws-idle` and `ws-chat`: web chat sockets against echo-bot (bot-webchat on an address of its
//! own, `WEBCHAT_ADDR`), from this process, which holds the client sockets (a process may open
//! 20,000 files here: the bot's sockets and ours are counted apart).
//!
//! - `ws-idle`: N sockets join and stay idle, each sending a heartbeat every `--heartbeat`
//!   (started at a random offset): the bot's user-space RSS per socket (RSS with the sockets open
//!   minus RSS before), its CPU over the idle window, heartbeats answered late (over 1 s) or not
//!   at all, sockets closed, and the connect rate.
//! - `ws-chat`: K sockets each keep `--in-flight` messages unanswered; echo-bot's handler echoes
//!   each through the runtime: echoes per second and the latency from send to echo.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bot_core::Secret;
use futures::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::RecordArgs;
use crate::load::{Percentiles, histogram};
use crate::record::{Row, Verdict};
use crate::scenario::{SECRET, Started, free_port, sibling_binary, thousands, usage};

/// A heartbeat answered later than this is late.
const LATE: Duration = Duration::from_secs(1);
/// Sockets connecting at once.
pub(crate) const CONNECTING: usize = 256;

type Socket = WebSocketStream<TcpStream>;

/// `botload scenario ws-idle`.
#[derive(Debug, clap::Args)]
pub(crate) struct IdleArgs {
    /// Sockets to open (a process may open 20,000 files here).
    #[arg(long, default_value_t = 19_000, value_parser = clap::value_parser!(u32).range(1..=19_500))]
    sockets: u32,
    /// Each socket's heartbeat interval.
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    heartbeat: Duration,
    /// How long the sockets stay idle while measured (default two heartbeat rounds).
    #[arg(long, default_value = "60s", value_parser = crate::parse_duration)]
    idle: Duration,
    #[command(flatten)]
    pub(crate) record: RecordArgs,
}

/// `botload scenario ws-chat`.
#[derive(Debug, clap::Args)]
pub(crate) struct ChatArgs {
    /// Sockets (users) sending messages.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    sockets: u32,
    /// Messages each socket keeps unanswered.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    in_flight: u32,
    /// How long to send.
    #[arg(long, default_value = "20s", value_parser = crate::parse_duration)]
    duration: Duration,
    #[command(flatten)]
    pub(crate) record: RecordArgs,
}

/// echo-bot serving web chat on a port of its own.
pub(crate) struct Bot {
    process: Started,
    pub(crate) url: String,
}

impl Bot {
    async fn start() -> Result<Self, String> {
        Self::start_with(&[]).await
    }

    /// echo-bot with `env` set too.
    pub(crate) async fn start_with(env: &[(&str, String)]) -> Result<Self, String> {
        let binary = sibling_binary("echo-bot")?;
        let (bot_port, chat_port) = (free_port()?, free_port()?);
        let child = std::process::Command::new(binary)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("BOT_ADDR", format!("127.0.0.1:{bot_port}"))
            .env("WEBCHAT_ADDR", format!("127.0.0.1:{chat_port}"))
            .env("WEBCHAT_SECRET", SECRET)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start echo-bot: {e}"))?;
        let bot = Self {
            process: Started(child),
            url: format!("ws://127.0.0.1:{chat_port}/webchat/ws"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", chat_port)).await.is_err() {
            if Instant::now() > deadline {
                return Err("echo-bot's web chat port did not open within 30 s".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(bot)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.process.0.id()
    }
}

/// The resident set now (VmRSS), KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Opens a socket and joins as `user`.
pub(crate) async fn join(url: &str, user: &str) -> Result<Socket, String> {
    let token = bot_webchat::token::issue(&Secret::new(SECRET), user, Duration::from_secs(3600))
        .map_err(|e| e.to_string())?;
    let host = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default();
    let tcp = TcpStream::connect(host)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let config = WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0);
    let (mut socket, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config))
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    let join = json!({"type": "join", "v": 1, "token": token});
    socket
        .send(Message::text(join.to_string()))
        .await
        .map_err(|e| format!("join: {e}"))?;
    match next_frame(&mut socket).await {
        Some(frame) if frame["type"] == "welcome" => Ok(socket),
        other => Err(format!("no welcome: {other:?}")),
    }
}

/// The next text frame as JSON; `None` when the socket ended.
async fn next_frame(socket: &mut Socket) -> Option<Value> {
    loop {
        match socket.next().await? {
            Ok(Message::Text(text)) => return serde_json::from_str(text.as_str()).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct HeartbeatTally {
    pub(crate) sent: AtomicU64,
    pub(crate) answered: AtomicU64,
    pub(crate) late: AtomicU64,
    pub(crate) unanswered: AtomicU64,
    pub(crate) closed: AtomicU64,
}

impl HeartbeatTally {
    /// `sent answered late unanswered closed`, as a client process prints them.
    pub(crate) fn words(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.sent.load(Ordering::Relaxed),
            self.answered.load(Ordering::Relaxed),
            self.late.load(Ordering::Relaxed),
            self.unanswered.load(Ordering::Relaxed),
            self.closed.load(Ordering::Relaxed)
        )
    }

    /// Late or never answered.
    pub(crate) fn late_or_unanswered(&self) -> u64 {
        self.late.load(Ordering::Relaxed) + self.unanswered.load(Ordering::Relaxed)
    }
}

/// The heartbeats of a run, apart by when they were sent: while sockets were still connecting
/// (this process's or, in `ws-cluster`, the other client processes'), or in the idle window; and
/// how late this process's own timers woke in each (its scheduling lag: a late answer with a
/// small lag here was late on the bot's side).
#[derive(Debug, Default)]
pub(crate) struct Heartbeats {
    pub(crate) connecting: HeartbeatTally,
    pub(crate) idle: HeartbeatTally,
    idle_phase: AtomicBool,
    /// The latest a timer of this process woke, in microseconds, while connecting.
    pub(crate) lag_connecting_us: AtomicU64,
    /// The same in the idle window.
    pub(crate) lag_idle_us: AtomicU64,
}

impl Heartbeats {
    /// The idle window begins: every socket joined.
    pub(crate) fn start_idle(&self) {
        self.idle_phase.store(true, Ordering::Relaxed);
    }

    /// The tally of a heartbeat sent now.
    fn now(&self) -> &HeartbeatTally {
        if self.idle_phase.load(Ordering::Relaxed) {
            &self.idle
        } else {
            &self.connecting
        }
    }

    fn lag_now(&self) -> &AtomicU64 {
        if self.idle_phase.load(Ordering::Relaxed) {
            &self.lag_idle_us
        } else {
            &self.lag_connecting_us
        }
    }

    /// Wakes every 10 ms until `stop`, keeping the latest wake-up of each phase.
    pub(crate) async fn probe_lag(&self, stop: &CancellationToken) {
        loop {
            let due = tokio::time::Instant::now() + LAG_PROBE;
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = stop.cancelled() => return,
            }
            let lag = due.elapsed().as_micros() as u64;
            self.lag_now().fetch_max(lag, Ordering::Relaxed);
        }
    }
}

/// How often [`Heartbeats::probe_lag`] wakes.
const LAG_PROBE: Duration = Duration::from_millis(10);

/// One idle socket: a heartbeat every `interval` from `offset` on, until `stop`.
pub(crate) async fn idle_socket(
    mut socket: Socket,
    offset: Duration,
    interval: Duration,
    heartbeats: Arc<Heartbeats>,
    stop: CancellationToken,
) {
    let mut next = tokio::time::Instant::now() + offset;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = stop.cancelled() => return,
        }
        next += interval;
        let sent = Instant::now();
        let tally = heartbeats.now();
        tally.sent.fetch_add(1, Ordering::Relaxed);
        if socket
            .send(Message::text(r#"{"type":"heartbeat"}"#))
            .await
            .is_err()
        {
            tally.closed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match tokio::time::timeout(interval, next_frame(&mut socket)).await {
            Ok(Some(_)) => {
                tally.answered.fetch_add(1, Ordering::Relaxed);
                if sent.elapsed() > LATE {
                    tally.late.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(None) => {
                tally.closed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(_) => {
                tally.unanswered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Opens a socket to `url` for each of `users` (named `prefix` and the number), `connecting` at a time,
/// each idle with a heartbeat every `interval` from a spread offset until `stop`; returns once
/// every one joined or failed: their tasks, and how many failed to join.
pub(crate) async fn open_idle_sockets(
    url: &str,
    prefix: &str,
    users: std::ops::Range<u32>,
    interval: Duration,
    connecting: usize,
    heartbeats: &Arc<Heartbeats>,
    stop: &CancellationToken,
) -> (Vec<tokio::task::JoinHandle<Result<(), String>>>, u64) {
    let connecting = connecting.max(1);
    let permits = Arc::new(Semaphore::new(connecting));
    let failed = Arc::new(AtomicU64::new(0));
    let mut joins = Vec::with_capacity(users.len());
    for n in users {
        let permit = permits.clone().acquire_owned().await.expect("never closed");
        let (url, user) = (url.to_owned(), format!("{prefix}{n}"));
        let (heartbeats, stop, failed) = (heartbeats.clone(), stop.clone(), failed.clone());
        let offset = interval.mul_f64(fastrand_unit(n));
        // One task per load socket, for the run's length (the load generator's own).
        #[allow(clippy::disallowed_methods)]
        joins.push(tokio::spawn(async move {
            let socket = join(&url, &user).await;
            drop(permit);
            let socket = socket.inspect_err(|_| {
                failed.fetch_add(1, Ordering::Relaxed);
            })?;
            idle_socket(socket, offset, interval, heartbeats, stop).await;
            Ok::<(), String>(())
        }));
        if joins.len() % 1000 == 0 {
            eprintln!("ws: {} sockets opening", joins.len());
        }
    }
    // Every permit back: every socket joined (or failed).
    let _all = permits
        .acquire_many(connecting as u32)
        .await
        .expect("never closed");
    (joins, failed.load(Ordering::Relaxed))
}

/// `ws-idle`.
pub(crate) async fn ws_idle(args: &IdleArgs) -> Result<Row, String> {
    let bot = Bot::start().await?;
    let pid = bot.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_kib = rss_kib(pid);
    let heartbeats = Arc::new(Heartbeats::default());
    let stop = CancellationToken::new();
    // The load generator's own probe, for the run's length.
    #[allow(clippy::disallowed_methods)]
    let probe = tokio::spawn({
        let (heartbeats, stop) = (heartbeats.clone(), stop.clone());
        async move { heartbeats.probe_lag(&stop).await }
    });
    let started = Instant::now();
    let (joins, _) = open_idle_sockets(
        &bot.url,
        "idle-",
        0..args.sockets,
        args.heartbeat,
        CONNECTING,
        &heartbeats,
        &stop,
    )
    .await;
    let connect_seconds = started.elapsed().as_secs_f64();
    heartbeats.start_idle();
    eprintln!(
        "ws-idle: {} sockets joined in {connect_seconds:.1} s; idle for {:?}",
        args.sockets, args.idle
    );
    let cpu_before = usage(pid).map_or(0.0, |u| u.cpu_seconds);
    let window = Instant::now();
    tokio::time::sleep(args.idle).await;
    let cpu = usage(pid).map_or(0.0, |u| u.cpu_seconds) - cpu_before;
    let idle_seconds = window.elapsed().as_secs_f64();
    let after_kib = rss_kib(pid);
    stop.cancel();
    let mut failed = 0u64;
    for join in joins {
        if !matches!(join.await, Ok(Ok(()))) {
            failed += 1;
        }
    }
    let _ = probe.await;
    let per_socket_kib = after_kib.saturating_sub(before_kib) as f64 / f64::from(args.sockets);
    let cpu_percent = 100.0 * cpu / idle_seconds;
    let (idle, connecting) = (&heartbeats.idle, &heartbeats.connecting);
    let late = idle.late_or_unanswered() + connecting.late_or_unanswered();
    let closed = idle.closed.load(Ordering::Relaxed) + connecting.closed.load(Ordering::Relaxed);
    let result = format!(
        "{per_socket_kib:.2} KiB/socket ({} → {} MiB); {cpu_percent:.1} % CPU idle; {}; {} sockets/s connecting; load average {}",
        before_kib / 1024,
        after_kib / 1024,
        heartbeat_summary(&heartbeats, failed),
        thousands(f64::from(args.sockets) / connect_seconds),
        load_average(),
    );
    let met =
        per_socket_kib <= 3.0 && cpu_percent <= 10.0 && late == 0 && closed == 0 && failed == 0;
    Ok(Row {
        name: format!(
            "ws-idle ({} sockets, {:?} heartbeats, one process)",
            thousands(f64::from(args.sockets)),
            args.heartbeat
        ),
        result,
        goal: "≤ 3 KiB/socket, ≤ 10 % CPU, 0 late".to_owned(),
        verdict: if met { Verdict::Met } else { Verdict::Missed },
    })
}

/// The heartbeats of a run in words: the idle window's, those sent while sockets were still
/// connecting, and the load generator's own timer lag in each.
pub(crate) fn heartbeat_summary(heartbeats: &Heartbeats, failed: u64) -> String {
    let phase = |tally: &HeartbeatTally, lag_us: &AtomicU64| {
        format!(
            "{} heartbeats, {} late (> 1 s; {} unanswered), {} closed; botload's timers up to {:.0} ms late",
            thousands(tally.sent.load(Ordering::Relaxed) as f64),
            tally.late_or_unanswered(),
            tally.unanswered.load(Ordering::Relaxed),
            tally.closed.load(Ordering::Relaxed),
            lag_us.load(Ordering::Relaxed) as f64 / 1000.0,
        )
    };
    format!(
        "idle window: {}; while connecting: {}; {failed} failed",
        phase(&heartbeats.idle, &heartbeats.lag_idle_us),
        phase(&heartbeats.connecting, &heartbeats.lag_connecting_us),
    )
}

/// The one-minute load average, which says how much of the machine the run had.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// A spread in [0, 1) from `n` (a heartbeat's offset), without a random source.
pub(crate) fn fastrand_unit(n: u32) -> f64 {
    // The golden ratio's fractional part spreads consecutive integers evenly.
    (f64::from(n) * 0.618_033_988_749_895).fract()
}

/// One chatting socket: keeps `in_flight` messages unanswered until `until`.
async fn chat_socket(
    mut socket: Socket,
    in_flight: u32,
    until: Instant,
    latencies: &mut Histogram<u64>,
) -> Result<u64, String> {
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut next_id = 0u64;
    let mut echoed = 0u64;
    loop {
        while sent.len() < in_flight as usize && Instant::now() < until {
            next_id += 1;
            let id = next_id.to_string();
            let frame = json!({"type": "message", "id": id, "text": id});
            socket
                .send(Message::text(frame.to_string()))
                .await
                .map_err(|e| format!("send: {e}"))?;
            sent.insert(id, Instant::now());
        }
        if sent.is_empty() {
            return Ok(echoed);
        }
        let frame = tokio::time::timeout(Duration::from_secs(10), next_frame(&mut socket))
            .await
            .map_err(|_| "no echo within 10 s".to_owned())?
            .ok_or("the socket closed")?;
        if frame["type"] == "message"
            && let Some(text) = frame["message"]["text"].as_str()
            && let Some(at) = sent.remove(text)
        {
            echoed += 1;
            let _ = latencies.record(at.elapsed().as_micros() as u64);
        }
    }
}

/// `ws-chat`.
pub(crate) async fn ws_chat(args: &ChatArgs) -> Result<Row, String> {
    let bot = Bot::start().await?;
    let mut sockets = Vec::with_capacity(args.sockets as usize);
    for n in 0..args.sockets {
        sockets.push(join(&bot.url, &format!("chat-{n}")).await?);
    }
    let cpu_before = usage(bot.pid()).map_or(0.0, |u| u.cpu_seconds);
    let started = Instant::now();
    let until = started + args.duration;
    let in_flight = args.in_flight;
    let mut tasks = Vec::with_capacity(sockets.len());
    for socket in sockets {
        // One task per load socket, for the run's length (the load generator's own).
        #[allow(clippy::disallowed_methods)]
        tasks.push(tokio::spawn(async move {
            let mut latencies = histogram();
            let echoed = chat_socket(socket, in_flight, until, &mut latencies).await;
            (echoed, latencies)
        }));
    }
    let mut all = histogram();
    let (mut echoed, mut failed) = (0u64, 0u64);
    for task in tasks {
        match task.await {
            Ok((Ok(n), latencies)) => {
                echoed += n;
                all.add(&latencies).map_err(|e| e.to_string())?;
            }
            _ => failed += 1,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = usage(bot.pid()).map_or(0.0, |u| u.cpu_seconds) - cpu_before;
    let peak_mib = usage(bot.pid()).map_or(0, |u| u.peak_rss_kib / 1024);
    let rate = echoed as f64 / seconds;
    let p = Percentiles::of(&all);
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(Row {
        name: format!(
            "ws-chat ({} sockets × {} in flight, one process)",
            thousands(f64::from(args.sockets)),
            args.in_flight
        ),
        result: format!(
            "{} messages/s echoed; p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {failed} sockets failed; bot {peak_mib} MiB peak, {:.0} % CPU; load average {}",
            thousands(rate),
            ms(p.p50),
            ms(p.p99),
            ms(p.max),
            100.0 * cpu / seconds,
            load_average()
        ),
        goal: "≥ 20,000 messages/s".to_owned(),
        verdict: if rate >= 20_000.0 && failed == 0 {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    })
}
