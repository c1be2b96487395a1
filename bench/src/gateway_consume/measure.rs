//! A run of each client against the fake, what it measured, and the `gateway-consume` report.

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bot_discord::testing::FakeDiscordApi;
use serde::Serialize;
use serde_json::json;

use super::fake_gateway::FastGateway;
use super::{ConsumeArgs, STALL, TOKEN};
use crate::record::{Row, Verdict};
use crate::scenario::{Started, free_port, rss_kib, sibling_binary, thousands, usage};

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
    pub(super) fn name(self) -> &'static str {
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

/// Sets up `command` (noop-bot, or a tool that runs it) to start one Discord shard against the
/// fake gateway at `gateway_url` and the fake REST API at `api_url`, its server on `port`, and
/// nothing else: the other adapters' and the database's variables are removed, so the scenario
/// measures the gateway path alone.
pub(crate) fn discord_only(command: &mut Command, gateway_url: &str, api_url: &str, port: u16) {
    crate::gateway::only_discord(command);
    command
        .env("BOT_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .env(bot_discord::ENV_TOKEN, TOKEN)
        .env(bot_discord::ENV_API_BASE, api_url)
        .env(bot_discord::ENV_GATEWAY_URL, gateway_url)
        .env(bot_discord::ENV_SHARDS, "1");
}

/// Starts `client` against a new fake gateway, measures one run of `messages`.
pub(super) async fn run_one(
    client: Client,
    messages: u64,
    channels: u64,
) -> Result<Measure, String> {
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
            discord_only(&mut command, gateway.url(), &api.url(), port);
            child = Started(
                command
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
pub(crate) async fn poll_processed(
    url: &str,
    messages: u64,
    gateway: &FastGateway,
) -> Result<(), String> {
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
pub(super) fn mean(runs: &[Measure], client: Client, field: impl Fn(&Measure) -> f64) -> f64 {
    let values: Vec<f64> = runs
        .iter()
        .filter(|m| m.client == client)
        .map(field)
        .collect();
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// The largest of `field` over the runs of `client`.
pub(super) fn max(runs: &[Measure], client: Client, field: impl Fn(&Measure) -> u64) -> u64 {
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
