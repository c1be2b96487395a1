//! botload: load for bots built on botrt, and the benchmark scenarios of BENCHMARKS.md.
//!
//! ```sh
//! # Signed LINE webhooks of 10 text events, as fast as answered, 100,000 requests:
//! botload webhook --url http://127.0.0.1:8080/line/webhook --secret "$LINE_CHANNEL_SECRET"
//! # Messenger, 500 requests/s for 30 s, JSON out:
//! botload webhook --platform messenger --url http://127.0.0.1:8080/messenger/webhook \
//!     --secret "$MESSENGER_APP_SECRET" --rate 500 --duration 30s --json
//! # The webhook-noop scenario: noop-bot and the hand-written `ceiling` alternately under the
//! # same load, their CPU per request, RSS and 503s, the ratio, then noop-bot past saturation:
//! cargo build --release -p noop-bot -p bench && target/release/botload scenario webhook-noop
//! # One gateway shard, 200,000 MESSAGE_CREATE: noop-bot against twilight-gateway 0.18:
//! target/release/botload scenario gateway-consume --record BENCHMARKS.md
//! # Signed bodies for wrk (bench/wrk/webhook.lua posts them):
//! botload bodies --secret "$LINE_CHANNEL_SECRET" --out /tmp/bodies.txt
//! ```

mod gateway;
mod gateway_consume;
mod load;
mod outbox_burst;
mod payload;
mod prom;
mod push_burst;
mod queue_drain;
mod queue_pickup;
mod record;
mod scenario;
mod slow_api;
mod startup_order;
mod ws;
mod ws_cluster;
mod ws_history;

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bot_core::Secret;
use clap::{Parser, Subcommand};

use crate::load::{Length, Plan};
use crate::payload::Platform;

/// Load for bots built on botrt.
#[derive(Debug, Parser)]
#[command(name = "botload", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sends signed webhooks to a running bot.
    Webhook(WebhookArgs),
    /// Writes signed webhook bodies for another load generator (`bench/wrk/webhook.lua` for
    /// wrk): one line per request, the signature, a tab, the body.
    Bodies(BodiesArgs),
    /// The client sockets of one `ws-cluster` node, in a process of their own (started by
    /// `ws-cluster`).
    #[command(hide = true)]
    WsClients(ws_cluster::ClientArgs),
    /// Records which functions a bot runs from its start to its idle point (under valgrind's
    /// callgrind) and writes them as a linker symbol-ordering file: relinked with it, the bot's
    /// start-up code sits together and an idle process keeps far fewer of its binary's pages
    /// resident. By default it records noop-bot with one Discord shard against a fake gateway.
    StartupOrder(startup_order::StartupOrderArgs),
    /// Runs a benchmark scenario from start to end.
    Scenario {
        #[command(subcommand)]
        scenario: Scenario,
    },
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// 10 text events per signed LINE webhook to noop-bot (a no-op handler, the memory queue)
    /// and, in the same run and alternately, to the `ceiling` binary (a hand-written axum
    /// server): events/s, CPU per request, peak RSS, 503s, and the ratio; then noop-bot past
    /// saturation.
    WebhookNoop(NoopArgs),
    /// 10 text events per signed LINE webhook to scenario-bot, whose every handler awaits a 2-3 s
    /// reply call (50,000 in flight over one HTTP/2 connection to a fake API): events/s against
    /// in-flight / latency, RSS per in-flight event, CPU.
    SlowApi(slow_api::SlowApiArgs),
    /// slow-api plus one PostgreSQL query per event (a primary-key select, or an upsert) through
    /// `cx.db()` with a 16-connection pool: pool wait percentiles, time-outs (none allowed), CPU
    /// of the bot and the database.
    DbPool(slow_api::DbPoolArgs),
    /// Events loaded into the PostgreSQL queue beforehand, drained by 1, 2 and 4 queue-worker
    /// processes with a no-op handler: events/s, duplicates, the workers' and PostgreSQL's CPU.
    QueueDrain(queue_drain::QueueDrainArgs),
    /// One event at a time pushed to an idle PostgreSQL queue whose puller is another
    /// "process" (own pools, own LISTEN connection): pickup latency percentiles.
    QueuePickup(queue_pickup::PickupArgs),
    /// MESSAGE_CREATE dispatches through a fake Discord gateway to echo-bot, which answers
    /// through a fake REST API: messages/s and latency from dispatch to echo.
    GatewayEcho(gateway::GatewayArgs),
    /// One shard consuming 200,000 MESSAGE_CREATE dispatches of about 1 KB from a fake gateway,
    /// as fast as read: noop-bot (no-op handler) against twilight-gateway 0.18, alternately:
    /// events/s, CPU per event, peak and idle RSS, and the ratio.
    GatewayConsume(gateway_consume::ConsumeArgs),
    /// Pushes through k HTTP/2 connections of at most `window` unanswered each, against a fake
    /// LINE API with a fixed latency, from a bounded buffer that sheds load: throughput against
    /// the window limit, exact drops, the pusher's peak RSS and CPU.
    PushBurst(push_burst::PushBurstArgs),
    /// A campaign of durable sends through the outbox from several `campaign` processes against a
    /// fake LINE API: sends/min together, the most pushes in any one second against the channel's
    /// limit, every message delivered once (by retry key); optionally one process killed mid-run.
    OutboxBurst(outbox_burst::OutboxBurstArgs),
    /// N idle web chat sockets (19,000 by default) on echo-bot, a heartbeat each every 30 s:
    /// the bot's user-space RSS per socket, its idle CPU, late heartbeats, the connect rate.
    WsIdle(ws::IdleArgs),
    /// Web chat sockets each keeping messages unanswered; echo-bot's handler echoes them:
    /// messages/s and latency percentiles from send to echo.
    WsChat(ws::ChatArgs),
    /// N echo-bot processes on one PostgreSQL holding M idle web chat sockets together (100,000
    /// over 6 by default), each with a client process of its own: RSS per socket and idle CPU per
    /// node, late heartbeats, and whether presence in PostgreSQL counts every node's sockets.
    WsCluster(ws_cluster::ClusterArgs),
    /// Proactive web chat sends on one node of a PostgreSQL cluster, alternating rounds with
    /// and without the history in PostgreSQL: sends/s, latency, round trips per send, and
    /// whether every socket saw its user's messages once, in order.
    WsHistory(ws_history::HistoryArgs),
}

#[derive(Debug, clap::Args)]
struct Shape {
    /// Events per request.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=100))]
    events_per_request: u16,
    /// Conversations the events are spread over.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    conversations: u64,
    /// Connections, each with one request at a time.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    connections: u16,
    /// Requests per second in all (default: as fast as the bot answers).
    #[arg(long)]
    rate: Option<NonZeroU32>,
    /// Stop after this many requests (default 100,000 unless --duration is given).
    #[arg(long, conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    requests: Option<u64>,
    /// Stop after this long (`30s`, `2m`).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Print the report as JSON on stdout (and no progress bar).
    #[arg(long)]
    json: bool,
    /// Draw no progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Debug, clap::Args)]
struct WebhookArgs {
    /// The webhook URL (`http://host:port/line/webhook`).
    #[arg(long, value_parser = parse_url)]
    url: String,
    /// The platform whose webhooks to send.
    #[arg(long, value_enum, default_value_t = Platform::Line)]
    platform: Platform,
    /// The channel secret (LINE) or app secret (Messenger) to sign with.
    #[arg(long, value_parser = parse_secret)]
    secret: Secret,
    #[command(flatten)]
    shape: Shape,
}

#[derive(Debug, clap::Args)]
struct NoopArgs {
    /// The platform whose webhooks to send.
    #[arg(long, value_enum, default_value_t = Platform::Line)]
    platform: Platform,
    #[command(flatten)]
    shape: Shape,
    /// What to run beside noop-bot (default: the ceiling when its binary sits next to botload).
    #[arg(long, value_enum)]
    against: Option<scenario::Against>,
    /// Runs of each server, alternated.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Connections of the run past saturation (noop-bot only; 0: none).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u16).range(0..=4096))]
    saturation_connections: u16,
    #[command(flatten)]
    record: RecordArgs,
}

#[derive(Debug, clap::Args)]
struct BodiesArgs {
    /// The platform whose webhooks to write.
    #[arg(long, value_enum, default_value_t = Platform::Line)]
    platform: Platform,
    /// The channel secret (LINE) or app secret (Messenger) to sign with.
    #[arg(long, value_parser = parse_secret)]
    secret: Secret,
    /// Requests to write; their events never repeat an id.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    count: u64,
    /// Events per request.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=100))]
    events_per_request: u16,
    /// Conversations the events are spread over.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    conversations: u64,
    /// The file to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Writes `args.count` signed bodies to `args.out`, one `signature<TAB>body` line each.
fn write_bodies(args: &BodiesArgs) -> Result<(), String> {
    use std::io::Write as _;
    let file = std::fs::File::create(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for request in 0..args.count {
        let signed = payload::signed(
            args.platform,
            &args.secret,
            request,
            usize::from(args.events_per_request),
            args.conversations,
        );
        writeln!(out, "{}\t{}", signed.signature, signed.body)
            .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
    }
    out.flush()
        .map_err(|e| format!("cannot write {}: {e}", args.out.display()))
}

/// Where a scenario writes its row.
#[derive(Debug, clap::Args)]
struct RecordArgs {
    /// Writes the scenario's row into the table of this Markdown file (BENCHMARKS.md), replacing
    /// the row of the same name.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Added to the row's name, to keep variants of one scenario apart in the table (the bot's
    /// allocator, a machine).
    #[arg(long, value_name = "TEXT")]
    label: Option<String>,
}

impl RecordArgs {
    /// Prints the row and, with `--record`, writes it.
    fn finish(&self, outcome: Result<record::Row, String>) -> ExitCode {
        let mut row = match outcome {
            Ok(row) => row,
            Err(e) => {
                eprintln!("botload: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(label) = &self.label {
            row.name = format!("{} [{label}]", row.name);
        }
        eprintln!("row: {} | {} | {}", row.name, row.result, row.goal);
        if let Some(path) = &self.record {
            if let Err(e) = record::record(path, &row) {
                eprintln!("botload: {e}");
                return ExitCode::FAILURE;
            }
            eprintln!("recorded in {}", path.display());
        }
        ExitCode::SUCCESS
    }
}

/// Prints `value` as pretty JSON on stdout (`--json`).
fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(value)
        .map_err(|e| format!("{value:?} is not a duration such as 30s or 2m: {e}"))?;
    if duration.is_zero() {
        return Err("the duration must be above zero".to_owned());
    }
    Ok(duration)
}

fn parse_url(value: &str) -> Result<String, String> {
    if value.starts_with("http://") || value.starts_with("https://") {
        Ok(value.to_owned())
    } else {
        Err(format!("{value:?} is not an http(s) URL"))
    }
}

fn parse_secret(value: &str) -> Result<Secret, String> {
    if value.is_empty() {
        Err("the secret must not be empty".to_owned())
    } else {
        Ok(Secret::new(value))
    }
}

impl Shape {
    fn plan(&self, url: String, platform: Platform, secret: Secret) -> Plan {
        let length = match (self.requests, self.duration) {
            (_, Some(d)) => Length::Duration(d),
            (Some(n), None) => Length::Requests(n),
            (None, None) => Length::Requests(100_000),
        };
        Plan {
            url,
            platform,
            secret,
            events_per_request: usize::from(self.events_per_request),
            conversations: self.conversations,
            connections: usize::from(self.connections),
            rate: self.rate,
            length,
            progress: !self.json && !self.no_progress,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("botload: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Bodies(args) => match write_bodies(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("botload: {e}");
                    ExitCode::FAILURE
                }
            },
            Command::StartupOrder(args) => match startup_order::startup_order(&args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("botload: {e}");
                    ExitCode::FAILURE
                }
            },
            Command::Webhook(args) => {
                let json = args.shape.json;
                let plan = args.shape.plan(args.url, args.platform, args.secret);
                let report = load::run(plan.clone()).await;
                if json {
                    print_json(&report);
                } else {
                    println!("{}", load::table("botload webhook", &plan, &report));
                }
                if report.ok == 0 {
                    eprintln!("botload: no request was accepted");
                    return ExitCode::FAILURE;
                }
                ExitCode::SUCCESS
            }
            Command::Scenario {
                scenario: Scenario::WebhookNoop(args),
            } => args.record.finish(
                scenario::webhook_noop(
                    args.platform,
                    &args.shape,
                    args.against,
                    args.runs,
                    args.saturation_connections,
                )
                .await,
            ),
            Command::Scenario {
                scenario: Scenario::SlowApi(args),
            } => args.record.finish(slow_api::slow_api(&args.load).await),
            Command::Scenario {
                scenario: Scenario::DbPool(args),
            } => args.record.finish(slow_api::db_pool(&args).await),
            Command::Scenario {
                scenario: Scenario::QueueDrain(args),
            } => queue_drain::run(&args).await,
            Command::Scenario {
                scenario: Scenario::QueuePickup(args),
            } => args.record.finish(queue_pickup::queue_pickup(&args).await),
            Command::Scenario {
                scenario: Scenario::GatewayEcho(args),
            } => args.record.finish(gateway::gateway_echo(&args).await),
            Command::Scenario {
                scenario: Scenario::GatewayConsume(args),
            } => args
                .record
                .finish(gateway_consume::gateway_consume(&args).await),
            Command::Scenario {
                scenario: Scenario::PushBurst(args),
            } => args.record.finish(push_burst::push_burst(&args).await),
            Command::Scenario {
                scenario: Scenario::OutboxBurst(args),
            } => args.record.finish(outbox_burst::outbox_burst(&args).await),
            Command::Scenario {
                scenario: Scenario::WsIdle(args),
            } => args.record.finish(ws::ws_idle(&args).await),
            Command::Scenario {
                scenario: Scenario::WsChat(args),
            } => args.record.finish(ws::ws_chat(&args).await),
            Command::Scenario {
                scenario: Scenario::WsCluster(args),
            } => args.record.finish(ws_cluster::ws_cluster(&args).await),
            Command::Scenario {
                scenario: Scenario::WsHistory(args),
            } => args.record.finish(ws_history::ws_history(&args).await),
            Command::WsClients(args) => match ws_cluster::ws_clients(&args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ws-clients: {e}");
                    ExitCode::FAILURE
                }
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn bodies_for_other_load_generators_are_signed_and_unique() {
        let out = std::env::temp_dir().join(format!("botload-bodies-{}.txt", std::process::id()));
        let args = BodiesArgs {
            platform: Platform::Line,
            secret: Secret::new("s"),
            count: 3,
            events_per_request: 2,
            conversations: 5,
            out: out.clone(),
        };
        write_bodies(&args).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        let mut ids = std::collections::HashSet::new();
        for line in text.lines() {
            let (signature, body) = line.split_once('\t').unwrap();
            bot_line::webhook::verify(&Secret::new("s"), body.as_bytes(), signature.as_bytes())
                .unwrap();
            for event in bot_line::event::events_from_body(body.as_bytes()).unwrap() {
                assert!(ids.insert(event.into_data().id), "an id repeats");
            }
        }
        assert_eq!(ids.len(), 6);
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_arguments_are_refused_with_a_clear_message() {
        let refused = |args: &[&str]| {
            let error = Cli::try_parse_from(args).unwrap_err();
            error.to_string()
        };
        let base = [
            "botload",
            "webhook",
            "--url",
            "http://127.0.0.1:1/line/webhook",
            "--secret",
            "s",
        ];
        let with = |extra: &[&'static str]| -> Vec<&str> {
            base.iter().copied().chain(extra.iter().copied()).collect()
        };
        assert!(refused(&with(&["--connections", "0"])).contains("connections"));
        assert!(refused(&with(&["--events-per-request", "101"])).contains("events-per-request"));
        assert!(refused(&with(&["--duration", "soon"])).contains("not a duration"));
        assert!(refused(&with(&["--duration", "0s"])).contains("above zero"));
        assert!(
            refused(&with(&["--requests", "5", "--duration", "5s"]))
                .contains("cannot be used with")
        );
        assert!(refused(&with(&["--rate", "0"])).contains("rate"));
        assert!(
            refused(&["botload", "webhook", "--url", "ftp://x", "--secret", "s"])
                .contains("not an http(s) URL")
        );
        assert!(
            refused(&["botload", "webhook", "--url", "http://x", "--secret", ""])
                .contains("must not be empty")
        );
        assert!(refused(&["botload", "webhook", "--secret", "s"]).contains("--url"));
        let ok = Cli::try_parse_from(with(&[
            "--platform",
            "messenger",
            "--rate",
            "500",
            "--duration",
            "30s",
        ]))
        .unwrap();
        let Command::Webhook(args) = ok.command else {
            panic!("webhook")
        };
        let plan = args.shape.plan(args.url, args.platform, args.secret);
        assert!(matches!(plan.length, Length::Duration(d) if d == Duration::from_secs(30)));
        assert_eq!(plan.platform, Platform::Messenger);
    }
}
