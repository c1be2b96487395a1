//! `gateway-echo`: Discord gateway traffic through the fake gateway and fake REST API of
//! `bot_discord::testing`, served by this process on 127.0.0.1.
//!
//! echo-bot runs as a child process pointed at the fakes (`DISCORD_GATEWAY_URL`,
//! `DISCORD_API_BASE`, `DISCORD_TOKEN`). The fake gateway sends it MESSAGE_CREATE dispatches
//! (`botload <n>` over `--channels` channels), at `--rate` or with `--in-flight` messages
//! unanswered at a time; the latency of a message runs from its dispatch to the fake REST API
//! answering echo-bot's reply. Discord's REST limits are lifted for the run (the fake's
//! buckets and the bot's proactive global limit), unless `--rest-limit` / `--global-limit` ask
//! for them.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bot_discord::testing::{FakeDiscordApi, FakeGateway};
use governor::{Quota, RateLimiter};
use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::RecordArgs;
use crate::load::{Length, Percentiles, histogram, progress_bar};
use crate::record::{Row, Verdict};
use crate::scenario::{Started, free_port, sibling_binary, thousands, usage};

/// The bot token the fakes accept.
pub(crate) const TOKEN: &str = "botload-discord-token";
/// A REST bucket limit high enough never to be reached in a run.
const LIFTED: u32 = 1_000_000;

/// `botload scenario gateway-echo`.
#[derive(Debug, clap::Args)]
pub(crate) struct GatewayArgs {
    /// Messages to dispatch (default 20,000 unless --duration is given).
    #[arg(long, conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    messages: Option<u64>,
    /// Dispatch for this long (`30s`, `2m`).
    #[arg(long, value_parser = crate::parse_duration)]
    duration: Option<Duration>,
    /// Dispatches per second (default: as fast as replies come back, --in-flight at a time).
    #[arg(long)]
    rate: Option<NonZeroU32>,
    /// Messages dispatched and not answered yet, at most.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    in_flight: u32,
    /// Channels the messages are spread over (the bot answers a channel's messages in order).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    channels: u64,
    /// Requests per second each REST bucket of the fake allows (Discord's message route allows
    /// about 5 per 5 s per channel); default: lifted.
    #[arg(long)]
    rest_limit: Option<NonZeroU32>,
    /// The bot's proactive global REST limit (`DISCORD_GLOBAL_PER_SECOND`, Discord's default
    /// 50); default: lifted.
    #[arg(long, default_value_t = LIFTED, value_parser = clap::value_parser!(u32).range(1..))]
    global_limit: u32,
    /// How long to wait for the replies to the last messages.
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    reply_timeout: Duration,
    /// Print the report as JSON on stdout (and no progress bar).
    #[arg(long)]
    json: bool,
    /// Draw no progress bar.
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    pub(crate) record: RecordArgs,
}

/// How to load the bot.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// How many messages, or how long.
    pub(crate) length: Length,
    /// Dispatches per second; `None`: as fast as replies come back.
    pub(crate) rate: Option<NonZeroU32>,
    /// Unanswered messages at most.
    pub(crate) in_flight: usize,
    /// Channels the messages are spread over.
    pub(crate) channels: u64,
    /// How long to wait for the last replies.
    pub(crate) reply_timeout: Duration,
    /// Whether to draw a progress bar on stderr.
    pub(crate) progress: bool,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// MESSAGE_CREATE dispatches sent.
    pub(crate) dispatched: u64,
    /// Echoes that came back to the fake REST API.
    pub(crate) replied: u64,
    /// Dispatches without an echo by the end of the reply time-out.
    pub(crate) missing: u64,
    /// Messages the bot created that answer no dispatch of this run (or answer one twice).
    pub(crate) unexpected: u64,
    /// REST requests the fake answered 429.
    pub(crate) rate_limited: usize,
    /// Seconds from the first dispatch to the last echo.
    pub(crate) seconds: f64,
    /// Echoes per second.
    pub(crate) messages_per_second: f64,
    /// From dispatch to echo, microseconds.
    pub(crate) latency_us: Percentiles,
}

/// The fake gateway and REST API, with the REST limits of the run.
#[derive(Debug)]
pub(crate) struct Fakes {
    pub(crate) gateway: FakeGateway,
    pub(crate) api: FakeDiscordApi,
}

impl Fakes {
    /// Starts both on 127.0.0.1; `rest_limit` requests per second per bucket, or lifted.
    pub(crate) async fn start(rest_limit: Option<NonZeroU32>) -> Result<Self, String> {
        let gateway = FakeGateway::start(TOKEN)
            .await
            .map_err(|e| format!("cannot start the fake gateway: {e}"))?;
        let api = FakeDiscordApi::start(TOKEN, &gateway.url(), 1, 1)
            .await
            .map_err(|e| format!("cannot start the fake REST API: {e}"))?;
        api.set_bucket_limit(
            rest_limit.map_or(LIFTED, NonZeroU32::get),
            Duration::from_secs(1),
        );
        Ok(Self { gateway, api })
    }

    /// Waits until a shard identified, failing after 30 s or when `alive` says the bot is gone.
    pub(crate) async fn wait_for_ready(
        &self,
        mut alive: impl FnMut() -> Result<(), String>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.gateway.readies() == 0 {
            alive()?;
            if Instant::now() > deadline {
                return Err("the bot did not identify on the fake gateway within 30 s".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

fn message(sequence: u64, channels: u64) -> serde_json::Value {
    json!({
        "id": (1_180_000_000_000_000_000_u64 + sequence).to_string(),
        "channel_id": (100 + sequence % channels).to_string(),
        "guild_id": "1",
        "author": {"id": (7000 + sequence % 500).to_string(), "username": "botload"},
        "content": format!("botload {sequence}"),
        "attachments": [], "mentions": [], "embeds": [],
        "timestamp": "2026-11-30T10:00:00.000000+00:00", "tts": false, "pinned": false, "type": 0,
    })
}

/// Dispatches MESSAGE_CREATE to the bot connected to `fakes` and measures its echoes.
///
/// # Panics
///
/// When no shard has identified yet ([`Fakes::wait_for_ready`] first).
pub(crate) async fn pump(fakes: &Fakes, plan: &Plan) -> Report {
    let mut feed = fakes.api.message_feed(plan.in_flight + 65_536);
    let sent: Mutex<HashMap<u64, Instant>> = Mutex::new(HashMap::new());
    let slots = Semaphore::new(plan.in_flight);
    let limiter = plan.rate.map(|r| RateLimiter::direct(Quota::per_second(r)));
    let dispatched = AtomicU64::new(0);
    let dispatching_done = AtomicBool::new(false);
    let bar = progress_bar(plan.length, plan.progress, "echoes");
    let started = Instant::now();
    let deadline = match plan.length {
        Length::Duration(d) => Some(started + d),
        Length::Requests(_) => None,
    };

    let dispatcher = async {
        let mut sequence = 0u64;
        loop {
            match plan.length {
                Length::Requests(n) if sequence >= n => break,
                Length::Duration(_) if deadline.is_some_and(|d| Instant::now() >= d) => break,
                _ => {}
            }
            if let Some(limiter) = &limiter {
                limiter.until_ready().await;
            }
            // A slot is given back when an echo arrives; none for a whole reply time-out means
            // the bot stopped answering.
            match tokio::time::timeout(plan.reply_timeout, slots.acquire()).await {
                Ok(Ok(slot)) => slot.forget(),
                _ => break,
            }
            sent.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(sequence, Instant::now());
            fakes
                .gateway
                .dispatch("MESSAGE_CREATE", message(sequence, plan.channels))
                .await;
            sequence += 1;
            dispatched.store(sequence, Ordering::Release);
        }
        dispatching_done.store(true, Ordering::Release);
        Instant::now()
    };

    let receiver = async {
        let mut latencies = histogram();
        let (mut replied, mut unexpected) = (0u64, 0u64);
        let mut last_echo = started;
        let mut done_at: Option<Instant> = None;
        loop {
            if dispatching_done.load(Ordering::Acquire) {
                let at = *done_at.get_or_insert_with(Instant::now);
                if replied >= dispatched.load(Ordering::Acquire)
                    || Instant::now() >= at + plan.reply_timeout
                {
                    break;
                }
            }
            let Ok(Some(created)) =
                tokio::time::timeout(Duration::from_millis(50), feed.recv()).await
            else {
                continue;
            };
            let sequence = created
                .content
                .strip_prefix("botload ")
                .and_then(|n| n.parse::<u64>().ok());
            let sent_at =
                sequence.and_then(|s| sent.lock().unwrap_or_else(|p| p.into_inner()).remove(&s));
            match sent_at {
                Some(sent_at) => {
                    let micros = created.at.saturating_duration_since(sent_at).as_micros();
                    latencies.saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
                    replied += 1;
                    last_echo = last_echo.max(created.at);
                    slots.add_permits(1);
                    bar.inc(1);
                }
                None => unexpected += 1,
            }
        }
        (latencies, replied, unexpected, last_echo)
    };

    let (_, (latencies, replied, unexpected, last_echo)) = tokio::join!(dispatcher, receiver);
    bar.finish_and_clear();
    let dispatched = dispatched.load(Ordering::Acquire);
    let seconds = last_echo.saturating_duration_since(started).as_secs_f64();
    Report {
        dispatched,
        replied,
        missing: dispatched.saturating_sub(replied),
        unexpected,
        rate_limited: fakes.api.rate_limited(),
        seconds,
        messages_per_second: if seconds > 0.0 {
            replied as f64 / seconds
        } else {
            0.0
        },
        latency_us: Percentiles::of(&latencies),
    }
}

/// The report as a table.
pub(crate) fn table(title: &str, plan: &Plan, report: &Report) -> String {
    let l = &report.latency_us;
    let ms = |us: u64| us as f64 / 1000.0;
    let rate = plan
        .rate
        .map_or_else(|| "max".to_owned(), |r| r.get().to_string());
    format!(
        "{title}\n\
         | channels | rate/s | in flight | dispatched | echoed | missing | unexpected | 429 | seconds | messages/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n\
         | {channels} | {rate} | {in_flight} | {dispatched} | {replied} | {missing} | {unexpected} | {limited} | {seconds:.2} | {mps:.0} | {p50:.2} | {p90:.2} | {p99:.2} | {p999:.2} | {max:.2} |",
        channels = plan.channels,
        in_flight = plan.in_flight,
        dispatched = report.dispatched,
        replied = report.replied,
        missing = report.missing,
        unexpected = report.unexpected,
        limited = report.rate_limited,
        seconds = report.seconds,
        mps = report.messages_per_second,
        p50 = ms(l.p50),
        p90 = ms(l.p90),
        p99 = ms(l.p99),
        p999 = ms(l.p999),
        max = ms(l.max),
    )
}

impl GatewayArgs {
    fn plan(&self) -> Plan {
        Plan {
            length: match (self.messages, self.duration) {
                (_, Some(d)) => Length::Duration(d),
                (Some(n), None) => Length::Requests(n),
                (None, None) => Length::Requests(20_000),
            },
            rate: self.rate,
            in_flight: self.in_flight as usize,
            channels: self.channels,
            reply_timeout: self.reply_timeout,
            progress: !self.json && !self.no_progress,
        }
    }
}

/// Removes from `command`'s environment the other adapters' variables, the database's and the
/// Discord settings a scenario sets itself, so that a bot started with it runs Discord alone on
/// the memory queue, whatever the caller's environment holds.
pub(crate) fn only_discord(command: &mut Command) {
    for name in [
        "LINE_CHANNEL_SECRET",
        "LINE_CHANNEL_ACCESS_TOKEN",
        "MESSENGER_APP_SECRET",
        "MESSENGER_VERIFY_TOKEN",
        "MESSENGER_PAGE_ACCESS_TOKEN",
        "DATABASE_URL",
        bot_discord::ENV_APPLICATION_ID,
        bot_discord::ENV_PUBLIC_KEY,
        bot_discord::ENV_SHARDS,
        bot_discord::ENV_INTENTS,
    ] {
        command.env_remove(name);
    }
}

/// `gateway-echo`: echo-bot in its own process on the fakes served by this one.
pub(crate) async fn gateway_echo(args: &GatewayArgs) -> Result<Row, String> {
    let binary = sibling_binary("echo-bot")?;
    let fakes = Fakes::start(args.rest_limit).await?;
    let port = free_port()?;
    let mut command = Command::new(&binary);
    // Only Discord, and the memory queue: the scenario measures the gateway path.
    only_discord(&mut command);
    let child = command
        .env("BOT_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .env(bot_discord::ENV_TOKEN, TOKEN)
        .env(bot_discord::ENV_API_BASE, fakes.api.url())
        .env(bot_discord::ENV_GATEWAY_URL, fakes.gateway.url())
        .env(
            bot_discord::ENV_GLOBAL_PER_SECOND,
            args.global_limit.to_string(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let mut bot = Started(child);
    fakes
        .wait_for_ready(|| match bot.0.try_wait() {
            Ok(Some(status)) => Err(format!("echo-bot stopped: {status}")),
            _ => Ok(()),
        })
        .await?;
    let pid = bot.0.id();
    let before = usage(pid);
    let plan = args.plan();
    let report = pump(&fakes, &plan).await;
    let after = usage(pid);
    drop(bot);

    let bot_cpu = match (&before, &after) {
        (Some(a), Some(b)) => b.cpu_seconds - a.cpu_seconds,
        _ => f64::NAN,
    };
    let peak = after.as_ref().map_or(0, |u| u.peak_rss_kib);
    let cpu_percent = 100.0 * bot_cpu / report.seconds;
    if args.json {
        let json = json!({
            "scenario": "gateway-echo",
            "report": report,
            "bot_peak_rss_kib": peak,
            "bot_cpu_seconds": bot_cpu,
        });
        crate::print_json(&json);
    } else {
        println!(
            "{}",
            table(
                "gateway-echo (echo-bot, one shard, fake Discord gateway and REST API)",
                &plan,
                &report
            )
        );
        println!(
            "bot: peak RSS {:.1} MiB, CPU {bot_cpu:.1} s ({cpu_percent:.0} % of one core)",
            peak as f64 / 1024.0,
        );
    }
    if report.replied == 0 {
        return Err("echo-bot answered no message".to_owned());
    }
    let rate = plan
        .rate
        .map_or_else(|| "as fast as answered".to_owned(), |r| format!("{r}/s"));
    Ok(Row {
        name: format!(
            "gateway-echo ({} channels, {rate}, {} in flight{})",
            plan.channels,
            plan.in_flight,
            match (args.rest_limit, args.global_limit) {
                (None, LIFTED) => String::new(),
                (bucket, global) => format!(
                    ", REST limits {}/s per bucket and {global}/s global",
                    bucket.map_or(LIFTED, NonZeroU32::get)
                ),
            }
        ),
        result: format!(
            "{} messages/s echoed; {} missing; p50 {:.1} ms, p99 {:.1} ms; bot {:.0} MiB peak, {:.0} % CPU",
            thousands(report.messages_per_second),
            report.missing,
            report.latency_us.p50 as f64 / 1000.0,
            report.latency_us.p99 as f64 / 1000.0,
            peak as f64 / 1024.0,
            cpu_percent,
        ),
        goal: String::new(),
        verdict: Verdict::NoGoal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bot_core::{Bot, Context, Error, Event};
    use bot_discord::ConfigureApi as _;
    use bot_discord::Discord;

    fn plan(messages: u64, reply_timeout: Duration) -> Plan {
        Plan {
            length: Length::Requests(messages),
            rate: None,
            in_flight: 16,
            channels: 10,
            reply_timeout,
            progress: false,
        }
    }

    /// A bot in this process on the fakes; `echo` says whether it answers.
    async fn bot(fakes: &Fakes, echo: bool) -> Bot {
        let discord = Discord::builder(TOKEN)
            .api_base(fakes.api.url())
            .gateway_url(fakes.gateway.url())
            .http(|h| h.global_per_second(LIFTED))
            .build()
            .unwrap();
        let bot = Bot::builder()
            .adapter(discord)
            .handler(move |cx: Context, event: Event| async move {
                match event.text_content() {
                    Some(text) if echo => cx.reply(text.to_owned()).await,
                    _ => Ok::<_, Error>(()),
                }
            })
            .build()
            .unwrap();
        bot.start();
        fakes.wait_for_ready(|| Ok(())).await.unwrap();
        bot
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_message_is_echoed_and_timed() {
        let fakes = Fakes::start(None).await.unwrap();
        let bot = bot(&fakes, true).await;
        let report = pump(&fakes, &plan(300, Duration::from_secs(10))).await;
        assert_eq!(report.dispatched, 300);
        assert_eq!(report.replied, 300, "{report:?}");
        assert_eq!((report.missing, report.unexpected), (0, 0));
        assert_eq!(report.rate_limited, 0);
        assert!(report.latency_us.p50 > 0 && report.latency_us.max >= report.latency_us.p99);
        assert!(report.messages_per_second > 0.0);
        // Ten channels, in order within each.
        assert_eq!(
            fakes.api.messages_in("103"),
            (0..30)
                .map(|i| format!("botload {}", 3 + i * 10))
                .collect::<Vec<_>>()
        );
        bot.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_without_an_echo_are_counted_missing() {
        let fakes = Fakes::start(None).await.unwrap();
        let bot = bot(&fakes, false).await;
        let report = pump(&fakes, &plan(5, Duration::from_millis(300))).await;
        assert_eq!(
            (report.dispatched, report.replied, report.missing),
            (5, 0, 5)
        );
        bot.shutdown().await;
    }

    #[test]
    fn the_plan_defaults_to_twenty_thousand_messages() {
        use clap::Parser as _;
        let cli = crate::Cli::try_parse_from(["botload", "scenario", "gateway-echo"]).unwrap();
        let crate::Command::Scenario {
            scenario: crate::Scenario::GatewayEcho(args),
        } = cli.command
        else {
            panic!("gateway-echo")
        };
        let plan = args.plan();
        assert!(matches!(plan.length, Length::Requests(20_000)));
        assert_eq!((plan.in_flight, plan.channels), (256, 100));
    }
}
