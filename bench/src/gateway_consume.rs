//! `gateway-consume`: how fast one shard consumes MESSAGE_CREATE dispatches, botrt's (noop-bot
//! with one Discord shard and a no-op handler) against twilight-gateway 0.18's
//! (`twilight-consume`), each against the same fake gateway in the same run.
//!
//! The fake ([`FastGateway`]) speaks just enough of the gateway protocol (HELLO, IDENTIFY,
//! READY, heartbeat ACKs) and then writes `--messages` dispatches of about 1 KB, uncompressed,
//! with increasing sequence numbers, as fast as the client reads them: TCP back-pressure alone
//! sets the pace. Frames are written from a template into a buffer, so the generator costs
//! little next to the client. A client has consumed a dispatch when it is handled: for noop-bot,
//! counted by its `/metrics` (`bot_events_processed_total`, polled); for twilight-consume, when
//! it says `consumed N` after parsing the N-th into twilight-model's `Event`.

use std::fmt::Write as _;
use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bot_discord::testing::FakeDiscordApi;
use futures::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::RecordArgs;
use crate::record::{Row, Verdict};
use crate::scenario::{Started, free_port, rss_kib, sibling_binary, thousands, usage};

/// The token the fakes accept.
const TOKEN: &str = crate::gateway::TOKEN;
/// The heartbeat interval HELLO asks for (Discord's usual one).
const HEARTBEAT_INTERVAL_MS: u64 = 41_250;
/// The guild every message is in.
const GUILD_ID: u64 = 1_100_000_000_000_000_001;
/// Frames written between flushes: fewer syscalls, and still a steady stream.
const FLUSH_EVERY: u64 = 32;
/// How long without progress ends a run as failed.
const STALL: Duration = Duration::from_secs(30);

/// `botload scenario gateway-consume`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConsumeArgs {
    /// MESSAGE_CREATE dispatches per run.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    messages: u64,
    /// Runs of each client, alternated (twilight, noop-bot, twilight, ...).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Channels the messages are spread over.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    channels: u64,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    pub(crate) record: RecordArgs,
}

/// Writes MESSAGE_CREATE dispatch `number` (sequence `sequence`) into `out`, about 1 KB, shaped
/// as Discord sends it: author, member, mentions, ids, timestamps, empty embeds.
pub(crate) fn message_create(out: &mut String, sequence: u64, number: u64, channels: u64) {
    out.clear();
    let id = 1_180_000_000_000_000_000_u64 + number;
    let channel = 1_150_000_000_000_000_000_u64 + number % channels.max(1);
    let author = 1_120_000_000_000_000_000_u64 + number % 5_000;
    let mentioned = 1_120_000_000_000_000_000_u64 + (number + 1) % 5_000;
    let _ = write!(
        out,
        concat!(
            r#"{{"t":"MESSAGE_CREATE","s":{sequence},"op":0,"d":{{"type":0,"tts":false,"#,
            r#""timestamp":"2026-11-30T10:{minute:02}:{second:02}.{micros:06}+00:00","pinned":false,"#,
            r#""nonce":"{nonce}","mentions":[{{"username":"member{mentioned_n}","public_flags":0,"#,
            r#""id":"{mentioned}","global_name":"Member {mentioned_n}","discriminator":"0","#,
            r#""avatar":null}}],"mention_roles":[],"mention_everyone":false,"#,
            r#""member":{{"roles":["1100000000000000101"],"premium_since":null,"pending":false,"#,
            r#""nick":null,"mute":false,"joined_at":"2025-06-01T12:00:00.000000+00:00","flags":0,"#,
            r#""deaf":false,"communication_disabled_until":null,"banner":null,"avatar":null}},"#,
            r#""id":"{id}","flags":0,"embeds":[],"edited_timestamp":null,"#,
            r#""content":"<@{mentioned}> message {number}: the quick brown fox jumps over the lazy dog, "#,
            r#"then the lazy dog asks the bot for the weather in three cities and a reminder for tomorrow.","#,
            r#""components":[],"channel_id":"{channel}","author":{{"username":"member{author_n}","#,
            r#""public_flags":0,"id":"{author}","global_name":"Member {author_n}","discriminator":"0","#,
            r#""clan":null,"avatar_decoration_data":null,"avatar":"a_0123456789abcdef0123456789abcdef"}},"#,
            r#""attachments":[],"guild_id":"{guild}"}}}}"#
        ),
        sequence = sequence,
        mentioned = mentioned,
        id = id,
        number = number,
        channel = channel,
        author = author,
        minute = (number / 60_000_000) % 60,
        second = (number / 1_000_000) % 60,
        micros = number % 1_000_000,
        nonce = id + 7,
        mentioned_n = mentioned % 10_000,
        author_n = author % 10_000,
        guild = GUILD_ID,
    );
}

/// The READY dispatch (sequence 1).
pub(crate) fn ready(url: &str) -> String {
    json!({"t": "READY", "s": 1, "op": 0, "d": {
        "v": 10,
        "user": {"id": bot_discord::testing::BOT_USER_ID, "username": "botload", "discriminator": "0",
                 "global_name": null, "avatar": null, "bot": true, "mfa_enabled": false,
                 "verified": true, "flags": 0},
        "guilds": [{"id": GUILD_ID.to_string(), "unavailable": true}],
        "session_id": "botload-session",
        "resume_gateway_url": url,
        "shard": [0, 1],
        "application": {"id": bot_discord::testing::APPLICATION_ID, "flags": 0},
    }})
    .to_string()
}

/// What the fake saw of its client.
#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    heartbeats: AtomicU64,
    written: AtomicU64,
}

/// A fake gateway on 127.0.0.1 that dispatches `messages` MESSAGE_CREATE as fast as its one
/// client reads, once told to [`FastGateway::go`].
#[derive(Debug)]
pub(crate) struct FastGateway {
    url: String,
    ready: CancellationToken,
    go: CancellationToken,
    stop: CancellationToken,
    counters: Arc<Counters>,
}

impl Drop for FastGateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FastGateway {
    /// Binds 127.0.0.1 and serves clients (the first one in full; a second one is counted, a
    /// sign that the client reconnected and the run is void).
    pub(crate) async fn start(messages: u64, channels: u64) -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind the fake gateway: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("no address for the fake gateway: {e}"))?;
        let url = format!("ws://{addr}");
        let gateway = Self {
            url: url.clone(),
            ready: CancellationToken::new(),
            go: CancellationToken::new(),
            stop: CancellationToken::new(),
            counters: Arc::new(Counters::default()),
        };
        let (ready, go, stop, counters) = (
            gateway.ready.clone(),
            gateway.go.clone(),
            gateway.stop.clone(),
            gateway.counters.clone(),
        );
        // One long-lived task for the fake, ended by `stop` (on drop).
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((socket, _)) = accepted else { continue };
                let _ = socket.set_nodelay(true);
                let first = counters.connections.fetch_add(1, Ordering::Relaxed) == 0;
                if !first {
                    continue;
                }
                let session = Session {
                    url: url.clone(),
                    messages,
                    channels,
                    ready: ready.clone(),
                    go: go.clone(),
                    stop: stop.clone(),
                    counters: counters.clone(),
                };
                // One task for the one client; ended by `stop` or its disconnecting.
                #[allow(clippy::disallowed_methods)]
                tokio::spawn(async move {
                    if let Err(e) = session.serve(socket).await {
                        eprintln!("fake gateway: {e}");
                    }
                });
            }
        });
        Ok(gateway)
    }

    /// The URL to give the client.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Waits until READY was sent, or `alive` says the client is gone, or 30 s.
    pub(crate) async fn wait_for_ready(
        &self,
        mut alive: impl FnMut() -> Result<(), String>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ready.is_cancelled() {
            alive()?;
            if Instant::now() > deadline {
                return Err("the client did not identify on the fake gateway within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Starts dispatching.
    pub(crate) fn go(&self) {
        self.go.cancel();
    }

    /// Connections accepted so far (1 in a good run).
    pub(crate) fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::Relaxed)
    }

    /// Dispatches written to the socket so far.
    pub(crate) fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }
}

/// The fake's side of one connection.
struct Session {
    url: String,
    messages: u64,
    channels: u64,
    ready: CancellationToken,
    go: CancellationToken,
    stop: CancellationToken,
    counters: Arc<Counters>,
}

/// The op code of a client's frame.
fn op_of(message: &Message) -> Option<u64> {
    let text = message.to_text().ok()?;
    serde_json::from_str::<serde_json::Value>(text)
        .ok()?
        .get("op")?
        .as_u64()
}

const HEARTBEAT_ACK: &str = r#"{"op":11,"d":null}"#;

impl Session {
    async fn serve(self, socket: tokio::net::TcpStream) -> Result<(), String> {
        let mut ws = tokio_tungstenite::accept_async(socket)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let hello = json!({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}});
        ws.send(Message::text(hello.to_string()))
            .await
            .map_err(|e| format!("hello: {e}"))?;
        // IDENTIFY, answering heartbeats meanwhile.
        loop {
            let Some(Ok(message)) = ws.next().await else {
                return Err("the client left before identifying".into());
            };
            match op_of(&message) {
                Some(2) => break,
                Some(1) => {
                    self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
                    ws.send(Message::text(HEARTBEAT_ACK))
                        .await
                        .map_err(|e| format!("ack: {e}"))?;
                }
                _ => {}
            }
        }
        ws.send(Message::text(ready(&self.url)))
            .await
            .map_err(|e| format!("ready: {e}"))?;
        self.ready.cancel();
        let (mut sink, mut stream) = ws.split();
        let (acks, mut ack_queue) = tokio::sync::mpsc::channel::<()>(64);
        let heartbeats = &self.counters.heartbeats;
        let reader = async {
            while let Some(Ok(message)) = stream.next().await {
                if op_of(&message) == Some(1) {
                    heartbeats.fetch_add(1, Ordering::Relaxed);
                    let _ = acks.try_send(());
                }
            }
        };
        let writer = async {
            // Idle until told to go, answering heartbeats.
            loop {
                tokio::select! {
                    () = self.go.cancelled() => break,
                    () = self.stop.cancelled() => return Ok(()),
                    ack = ack_queue.recv() => {
                        if ack.is_none() { return Ok(()) }
                        sink.send(Message::text(HEARTBEAT_ACK)).await.map_err(|e| format!("ack: {e}"))?;
                    }
                }
            }
            for number in 0..self.messages {
                while ack_queue.try_recv().is_ok() {
                    sink.feed(Message::text(HEARTBEAT_ACK))
                        .await
                        .map_err(|e| format!("ack: {e}"))?;
                }
                let mut frame = String::with_capacity(1280);
                message_create(&mut frame, number + 2, number, self.channels);
                sink.feed(Message::text(frame))
                    .await
                    .map_err(|e| format!("dispatch: {e}"))?;
                if number % FLUSH_EVERY == FLUSH_EVERY - 1 {
                    sink.flush().await.map_err(|e| format!("dispatch: {e}"))?;
                    self.counters.written.store(number + 1, Ordering::Relaxed);
                }
            }
            sink.flush().await.map_err(|e| format!("dispatch: {e}"))?;
            self.counters
                .written
                .store(self.messages, Ordering::Relaxed);
            // Keep the connection (and heartbeats) until the run ends.
            loop {
                tokio::select! {
                    () = self.stop.cancelled() => return Ok::<(), String>(()),
                    ack = ack_queue.recv() => {
                        if ack.is_none() { return Ok(()) }
                        sink.send(Message::text(HEARTBEAT_ACK)).await.map_err(|e| format!("ack: {e}"))?;
                    }
                }
            }
        };
        tokio::select! {
            result = writer => result,
            () = reader => Ok(()),
        }
    }
}

/// The two clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Client {
    /// twilight-gateway 0.18 (`twilight-consume`).
    Twilight,
    /// noop-bot, one shard, no-op handler, memory queue.
    NoopBot,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Twilight => "twilight-gateway 0.18",
            Client::NoopBot => "noop-bot (botrt)",
        }
    }
}

/// One run of one client.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Measure {
    /// Which client.
    pub(crate) client: Client,
    /// Messages consumed per second, from the first dispatch to the last consumed.
    pub(crate) events_per_second: f64,
    /// The client's CPU (user + system) per message, microseconds.
    pub(crate) cpu_us_per_event: f64,
    /// The client's peak RSS (VmHWM), KiB.
    pub(crate) peak_rss_kib: u64,
    /// The client's RSS one second after READY, before any dispatch, KiB.
    pub(crate) idle_rss_kib: u64,
    /// The generator's (this process's) CPU per message, microseconds.
    pub(crate) generator_cpu_us_per_event: f64,
    /// Seconds from the first dispatch to the last consumed.
    pub(crate) seconds: f64,
}

/// Starts `client` against a new fake gateway, measures one run of `messages`.
async fn run_one(client: Client, messages: u64, channels: u64) -> Result<Measure, String> {
    let gateway = FastGateway::start(messages, channels).await?;
    // Held until the run ends: noop-bot asks it for `GET /gateway/bot`.
    let mut _api = None;
    let mut child;
    let mut metrics_url = None;
    match client {
        Client::Twilight => {
            let binary = sibling_binary("twilight-consume")?;
            child = Started(
                Command::new(&binary)
                    .arg("--url")
                    .arg(gateway.url())
                    .arg("--token")
                    .arg(TOKEN)
                    .arg("--count")
                    .arg(messages.to_string())
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("cannot start {}: {e}", binary.display()))?,
            );
        }
        Client::NoopBot => {
            let binary = sibling_binary("noop-bot")?;
            let api = FakeDiscordApi::start(TOKEN, gateway.url(), 1, 1)
                .await
                .map_err(|e| format!("cannot start the fake REST API: {e}"))?;
            let port = free_port()?;
            let mut command = Command::new(&binary);
            // Only Discord: the scenario measures the gateway path.
            for name in [
                "LINE_CHANNEL_SECRET",
                "LINE_CHANNEL_ACCESS_TOKEN",
                "MESSENGER_APP_SECRET",
                "MESSENGER_VERIFY_TOKEN",
                "MESSENGER_PAGE_ACCESS_TOKEN",
                "DATABASE_URL",
                bot_discord::ENV_APPLICATION_ID,
                bot_discord::ENV_PUBLIC_KEY,
                bot_discord::ENV_INTENTS,
            ] {
                command.env_remove(name);
            }
            child = Started(
                command
                    .env("BOT_ADDR", format!("127.0.0.1:{port}"))
                    .env("RUST_LOG", "warn")
                    .env(bot_discord::ENV_TOKEN, TOKEN)
                    .env(bot_discord::ENV_API_BASE, api.url())
                    .env(bot_discord::ENV_GATEWAY_URL, gateway.url())
                    .env(bot_discord::ENV_SHARDS, "1")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .map_err(|e| format!("cannot start {}: {e}", binary.display()))?,
            );
            metrics_url = Some(format!("http://127.0.0.1:{port}/metrics"));
            _api = Some(api);
        }
    }
    gateway
        .wait_for_ready(|| match child.0.try_wait() {
            Ok(Some(status)) => Err(format!("{} stopped: {status}", client.name())),
            _ => Ok(()),
        })
        .await?;
    let pid = child.0.id();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss_kib = rss_kib(pid).unwrap_or(0);
    let before = usage(pid).ok_or("cannot read the client's CPU time")?;
    let own_before = usage(std::process::id());
    let started = Instant::now();
    gateway.go();
    match metrics_url {
        Some(url) => poll_processed(&url, messages, &gateway).await?,
        None => {
            let stdout = child
                .0
                .stdout
                .take()
                .ok_or("no stdout of twilight-consume")?;
            let wanted = format!("consumed {messages}");
            let said = tokio::task::spawn_blocking(move || {
                std::io::BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                    .any(|line| line == wanted)
            })
            .await
            .map_err(|e| format!("reading twilight-consume: {e}"))?;
            if !said {
                return Err(format!(
                    "twilight-consume ended before consuming {messages} (the gateway wrote {})",
                    gateway.written()
                ));
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = usage(pid).ok_or("cannot read the client's CPU time")?;
    let own_after = usage(std::process::id());
    if gateway.connections() != 1 {
        return Err(format!(
            "{} connected {} times: the run is void",
            client.name(),
            gateway.connections()
        ));
    }
    drop(child);
    let per_event = |cpu: f64| cpu * 1e6 / messages as f64;
    Ok(Measure {
        client,
        events_per_second: messages as f64 / seconds,
        cpu_us_per_event: per_event(after.cpu_seconds - before.cpu_seconds),
        peak_rss_kib: after.peak_rss_kib,
        idle_rss_kib,
        generator_cpu_us_per_event: match (own_before, own_after) {
            (Some(a), Some(b)) => per_event(b.cpu_seconds - a.cpu_seconds),
            _ => f64::NAN,
        },
        seconds,
    })
}

/// Polls noop-bot's `/metrics` until `messages` events were processed.
async fn poll_processed(url: &str, messages: u64, gateway: &FastGateway) -> Result<(), String> {
    let client = reqwest::Client::new();
    let mut last = (0.0, Instant::now());
    loop {
        let processed = match client.get(url).send().await {
            Ok(response) => response
                .text()
                .await
                .map(|text| crate::prom::sum(&text, "bot_events_processed_total", &[]))
                .unwrap_or(0.0),
            Err(_) => 0.0,
        };
        if processed >= messages as f64 {
            return Ok(());
        }
        if processed > last.0 {
            last = (processed, Instant::now());
        } else if last.1.elapsed() > STALL {
            return Err(format!(
                "noop-bot processed {processed} of {messages} and no more for {} s (the gateway wrote {})",
                STALL.as_secs(),
                gateway.written()
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The mean of `field` over the runs of `client`.
fn mean(runs: &[Measure], client: Client, field: impl Fn(&Measure) -> f64) -> f64 {
    let values: Vec<f64> = runs
        .iter()
        .filter(|m| m.client == client)
        .map(field)
        .collect();
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// The largest of `field` over the runs of `client`.
fn max(runs: &[Measure], client: Client, field: impl Fn(&Measure) -> u64) -> u64 {
    runs.iter()
        .filter(|m| m.client == client)
        .map(field)
        .max()
        .unwrap_or(0)
}

/// `gateway-consume`: both clients, alternately, `runs` times each.
pub(crate) async fn gateway_consume(args: &ConsumeArgs) -> Result<Row, String> {
    let mut runs = Vec::new();
    for run in 0..args.runs {
        for client in [Client::Twilight, Client::NoopBot] {
            eprintln!(
                "gateway-consume: run {} of {}, {}: {} dispatches",
                run + 1,
                args.runs,
                client.name(),
                thousands(args.messages as f64)
            );
            let measure = run_one(client, args.messages, args.channels).await?;
            eprintln!(
                "  {} events/s, {:.2} µs CPU per event, peak RSS {:.1} MiB, idle RSS {:.1} MiB (generator {:.2} µs per event)",
                thousands(measure.events_per_second),
                measure.cpu_us_per_event,
                measure.peak_rss_kib as f64 / 1024.0,
                measure.idle_rss_kib as f64 / 1024.0,
                measure.generator_cpu_us_per_event,
            );
            runs.push(measure);
        }
    }
    let ours = mean(&runs, Client::NoopBot, |m| m.events_per_second);
    let theirs = mean(&runs, Client::Twilight, |m| m.events_per_second);
    let ratio = ours / theirs;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let peak = max(&runs, Client::NoopBot, |m| m.peak_rss_kib);
    let idle = max(&runs, Client::NoopBot, |m| m.idle_rss_kib);
    if args.json {
        crate::print_json(&json!({
            "scenario": "gateway-consume",
            "messages": args.messages,
            "runs": runs,
            "ratio_noop_bot_to_twilight": ratio,
        }));
    } else {
        println!(
            "gateway-consume: one shard, {} MESSAGE_CREATE of about 1 KB from a fake gateway on 127.0.0.1, as fast as read",
            thousands(args.messages as f64)
        );
        println!(
            "| client | runs | events/s (mean) | CPU µs per event | peak RSS MiB (max) | idle RSS MiB (max) |"
        );
        println!("| --- | --- | --- | --- | --- | --- |");
        for client in [Client::Twilight, Client::NoopBot] {
            println!(
                "| {} | {} | {} | {:.2} | {:.1} | {:.1} |",
                client.name(),
                args.runs,
                thousands(mean(&runs, client, |m| m.events_per_second)),
                mean(&runs, client, |m| m.cpu_us_per_event),
                mib(max(&runs, client, |m| m.peak_rss_kib)),
                mib(max(&runs, client, |m| m.idle_rss_kib)),
            );
        }
        println!("ratio noop-bot / twilight-gateway: {ratio:.2}x (goal ≥ 1.5x)");
        if let Some(own) = usage(std::process::id()) {
            println!(
                "fake gateway (botload): peak RSS {:.1} MiB over the whole scenario",
                mib(own.peak_rss_kib)
            );
        }
    }
    let met = ratio >= 1.5 && peak <= 64 * 1024 && idle <= 8 * 1024;
    Ok(Row {
        name: format!(
            "gateway-consume (one shard, {} MESSAGE_CREATE of ~1 KB, noop-bot vs twilight-gateway 0.18)",
            thousands(args.messages as f64)
        ),
        result: format!(
            "{ratio:.2}x twilight; noop-bot {} events/s, {:.1} µs CPU/event, {:.0} MiB peak, {:.1} MiB idle; twilight {} events/s, {:.1} µs CPU/event, {:.0} MiB peak, {:.1} MiB idle",
            thousands(ours),
            mean(&runs, Client::NoopBot, |m| m.cpu_us_per_event),
            mib(peak),
            mib(idle),
            thousands(theirs),
            mean(&runs, Client::Twilight, |m| m.cpu_us_per_event),
            mib(max(&runs, Client::Twilight, |m| m.peak_rss_kib)),
            mib(max(&runs, Client::Twilight, |m| m.idle_rss_kib)),
        ),
        goal: "≥ 1.5x twilight-gateway's events/s, ≤ 64 MiB peak, ≤ 8 MiB idle".to_owned(),
        verdict: if met { Verdict::Met } else { Verdict::Missed },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bot_core::{Bot, Context, Error, Event};
    use bot_discord::ConfigureApi as _;
    use bot_discord::Discord;
    use bot_discord::event::{DispatchContext, from_dispatch};
    use twilight_gateway::{EventTypeFlags, StreamExt as _};
    use twilight_model::gateway::event::{DispatchEvent, GatewayEvent};

    #[test]
    fn dispatches_are_about_a_kilobyte_and_parse_as_twilight_model() {
        let mut frame = String::new();
        for number in [0_u64, 7, 199_999] {
            message_create(&mut frame, number + 2, number, 100);
            assert!((900..=1300).contains(&frame.len()), "{}", frame.len());
            let parsed = twilight_gateway::parse(frame.clone(), EventTypeFlags::all())
                .unwrap()
                .unwrap();
            let GatewayEvent::Dispatch(sequence, DispatchEvent::MessageCreate(message)) = parsed
            else {
                panic!("not a MESSAGE_CREATE: {parsed:?}")
            };
            assert_eq!(sequence, number + 2);
            assert_eq!(
                message.id.get(),
                1_180_000_000_000_000_000 + number,
                "unique ids"
            );
            assert!(message.content.contains(&format!("message {number}:")));
            assert_eq!(message.mentions.len(), 1);
            assert!(message.member.is_some() && message.embeds.is_empty());
            assert_eq!(message.guild_id.map(|g| g.get()), Some(GUILD_ID));
        }
    }

    #[test]
    fn dispatches_map_to_our_events_and_ready_parses_as_twilight_model() {
        let mut frame = String::new();
        message_create(&mut frame, 9, 7, 100);
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
        let context = DispatchContext {
            bot_user_id: Some(bot_discord::testing::BOT_USER_ID.to_owned()),
            session_id: Some("botload-session".to_owned()),
            deliver_bot_messages: false,
        };
        let event = from_dispatch("MESSAGE_CREATE", value["d"].clone(), Some(9), &context).unwrap();
        assert!(
            event
                .text_content()
                .is_some_and(|t| t.contains("message 7:"))
        );
        let ready = ready("ws://127.0.0.1:1");
        let parsed = twilight_gateway::parse(ready, EventTypeFlags::all())
            .unwrap()
            .unwrap();
        assert!(matches!(
            parsed,
            GatewayEvent::Dispatch(1, DispatchEvent::Ready(_))
        ));
    }

    /// The fake's handshake and stream as a twilight shard sees them: READY, then every
    /// dispatch in sequence, nothing before `go`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_twilight_shard_reads_every_dispatch_in_order() {
        let gateway = FastGateway::start(100, 10).await.unwrap();
        let config = twilight_gateway::ConfigBuilder::new(
            TOKEN.to_owned(),
            twilight_gateway::Intents::GUILD_MESSAGES,
        )
        .proxy_url(gateway.url().to_owned())
        .build();
        let mut shard =
            twilight_gateway::Shard::with_config(twilight_gateway::ShardId::ONE, config);
        let mut seen = Vec::new();
        let mut ready = false;
        while seen.len() < 100 {
            let event = tokio::time::timeout(Duration::from_secs(10), async {
                shard.next_event(EventTypeFlags::all()).await
            })
            .await
            .expect("the fake stalled")
            .expect("the shard ended")
            .unwrap();
            match event {
                twilight_gateway::Event::Ready(_) => {
                    ready = true;
                    assert_eq!(gateway.written(), 0);
                    gateway.go();
                }
                twilight_gateway::Event::MessageCreate(m) => {
                    assert!(ready);
                    seen.push(m.id.get() - 1_180_000_000_000_000_000);
                }
                _ => {}
            }
        }
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        assert_eq!(gateway.connections(), 1);
    }

    /// botrt's shard consumes the fake's dispatches too (the same check the scenario makes on
    /// noop-bot, in this process).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_botrt_shard_handles_every_dispatch() {
        let gateway = FastGateway::start(200, 10).await.unwrap();
        let api = FakeDiscordApi::start(TOKEN, gateway.url(), 1, 1)
            .await
            .unwrap();
        let handled = Arc::new(AtomicU64::new(0));
        let counter = handled.clone();
        let discord = Discord::builder(TOKEN)
            .api_base(api.url())
            .gateway_url(gateway.url())
            .build()
            .unwrap();
        let bot = Bot::builder()
            .adapter(discord)
            .handler(move |_cx: Context, _event: Event| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, Error>(())
                }
            })
            .build()
            .unwrap();
        bot.start();
        gateway.wait_for_ready(|| Ok(())).await.unwrap();
        gateway.go();
        let deadline = Instant::now() + Duration::from_secs(20);
        while handled.load(Ordering::Relaxed) < 200 {
            assert!(
                Instant::now() < deadline,
                "{} handled",
                handled.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(gateway.written(), 200);
        assert_eq!(gateway.connections(), 1);
        bot.shutdown().await;
    }

    #[test]
    fn the_defaults_are_the_issues_run() {
        use clap::Parser as _;
        let cli = crate::Cli::try_parse_from(["botload", "scenario", "gateway-consume"]).unwrap();
        let crate::Command::Scenario {
            scenario: crate::Scenario::GatewayConsume(args),
        } = cli.command
        else {
            panic!("gateway-consume")
        };
        assert_eq!((args.messages, args.runs), (200_000, 2));
    }
}
