//! `ws-history`: proactive web chat sends on one node of a PostgreSQL cluster, in alternating
//! rounds of the two ways a cluster node can send, in one process on one database:
//!
//! - **fan-out only** (`.fanout(cluster)`, what a cluster node did before issue 15's history):
//!   numbers of this node's own, the message kept in memory, one `NOTIFY` round trip per send;
//! - **history** (`.cluster(cluster)`): numbers from PostgreSQL, every waiting send stored in
//!   one statement per batch and published in one `NOTIFY` statement per batch.
//!
//! Measured per mode: sends/s from concurrent senders, the latency of one send (until stored,
//! delivered here and published), round trips to PostgreSQL per send on the send path (the
//! history writer's two statements per batch, from `Stats::history_batches`; one `NOTIFY` per
//! send without it), and whether every socket saw every message of its user once, in order.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bot_core::pg::PgPool;
use bot_core::{Bot, Context, Event};
use bot_webchat::WebChat;
use bot_webchat::pg::PgCluster;
use futures::StreamExt as _;
use tokio_tungstenite::tungstenite::Message;

use crate::RecordArgs;
use crate::load::{Percentiles, histogram};
use crate::record::{Row, Verdict};
use crate::scenario::{SECRET, thousands};

/// The schema each round starts afresh.
const SCHEMA: &str = "botload_ws_history";

/// `botload scenario ws-history`.
#[derive(Debug, clap::Args)]
pub(crate) struct HistoryArgs {
    /// Users, each with one socket open.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=5_000))]
    users: u32,
    /// Concurrent senders (handlers or backend calls, each waiting for its send).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4_096))]
    senders: u32,
    /// How long each round sends.
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    duration: Duration,
    /// Rounds of each mode, alternating (fan-out only first).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    rounds: u32,
    /// The database (schema `botload_ws_history` is dropped and made again each round).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    database_url: String,
    #[command(flatten)]
    pub(crate) record: RecordArgs,
}

/// One round's figures.
#[derive(Debug, Default)]
struct Round {
    sends: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    round_trips_per_send: f64,
    /// Sockets that saw a number twice, out of order, or not every message.
    wrong_sockets: u64,
    failed_sends: u64,
}

async fn ignore(_: Context, _: Event) -> Result<(), bot_core::Error> {
    Ok(())
}

/// `botload scenario ws-history`.
pub(crate) async fn ws_history(args: &HistoryArgs) -> Result<Row, String> {
    let mut fanout_only = Vec::new();
    let mut history = Vec::new();
    for round in 0..args.rounds {
        for with_history in [false, true] {
            let r = one_round(args, with_history).await?;
            eprintln!(
                "round {round} {}: {:.0} sends/s, p50 {:.1} ms, p99 {:.1} ms, {:.3} round trips/send, {} wrong sockets, {} failed",
                if with_history {
                    "history"
                } else {
                    "fan-out only"
                },
                r.sends as f64 / r.seconds,
                r.p50_ms,
                r.p99_ms,
                r.round_trips_per_send,
                r.wrong_sockets,
                r.failed_sends
            );
            if with_history {
                history.push(r);
            } else {
                fanout_only.push(r);
            }
        }
    }
    let summary = |rounds: &[Round]| {
        let n = rounds.len() as f64;
        let rate = rounds
            .iter()
            .map(|r| r.sends as f64 / r.seconds)
            .sum::<f64>()
            / n;
        let p50 = rounds.iter().map(|r| r.p50_ms).sum::<f64>() / n;
        let p99 = rounds.iter().map(|r| r.p99_ms).sum::<f64>() / n;
        let commits = rounds.iter().map(|r| r.round_trips_per_send).sum::<f64>() / n;
        (rate, p50, p99, commits)
    };
    let (h_rate, h_p50, h_p99, h_commits) = summary(&history);
    let (f_rate, f_p50, f_p99, f_commits) = summary(&fanout_only);
    let wrong: u64 = history.iter().map(|r| r.wrong_sockets).sum();
    let failed: u64 = (history.iter().chain(&fanout_only))
        .map(|r| r.failed_sends)
        .sum();
    Ok(Row {
        name: format!(
            "ws-history ({} users, {} senders, one node on PostgreSQL, {} × {:?} rounds each)",
            thousands(f64::from(args.users)),
            args.senders,
            args.rounds,
            args.duration
        ),
        result: format!(
            "history: {} sends/s, p50 {h_p50:.1} ms, p99 {h_p99:.1} ms, {h_commits:.3} round trips/send, {wrong} sockets wrong; fan-out only (before): {} sends/s, p50 {f_p50:.1} ms, p99 {f_p99:.1} ms, {f_commits:.3} round trips/send; {failed} sends failed",
            thousands(h_rate),
            thousands(f_rate),
        ),
        goal: "history ≥ fan-out only in sends/s, < 0.5 round trips/send, every socket exact"
            .to_owned(),
        verdict: if h_rate >= f_rate && h_commits < 0.5 && wrong == 0 && failed == 0 {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    })
}

async fn one_round(args: &HistoryArgs, with_history: bool) -> Result<Round, String> {
    let url = &args.database_url;
    let admin = PgPool::builder(url)
        .max_size(1)
        .build()
        .map_err(|e| e.to_string())?;
    let conn = (admin.get().await).map_err(|e| format!("PostgreSQL at {url} is needed: {e}"))?;
    conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .await
        .map_err(|e| e.to_string())?;
    let pool = (PgPool::builder(url).schema(SCHEMA).build()).map_err(|e| e.to_string())?;
    let cluster = (PgCluster::builder(&pool).node("botload-history"))
        .build()
        .map_err(|e| e.to_string())?;
    cluster.migrate().await.map_err(|e| e.to_string())?;
    let webchat = WebChat::builder(SECRET);
    let webchat = if with_history {
        webchat.cluster(cluster.clone())
    } else {
        webchat.fanout(Arc::new(cluster.clone()))
    };
    let webchat = webchat.build().map_err(|e| e.to_string())?;
    let bot = (Bot::builder().adapter(webchat.clone()).handler(ignore))
        .build()
        .map_err(|e| e.to_string())?;
    let listener =
        (tokio::net::TcpListener::bind("127.0.0.1:0").await).map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // The bot under load: one long-lived task for the round.
    #[allow(clippy::disallowed_methods)]
    let server = tokio::spawn(
        bot.clone()
            .serve_with_shutdown(listener, std::future::pending()),
    );
    let ws_url = format!("ws://{addr}/webchat/ws");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster.is_listening() {
        if Instant::now() > deadline {
            return Err("the cluster's LISTEN connection did not come up".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // One socket per user; each reader checks its numbers (in order, once) and counts.
    let received: Arc<Vec<AtomicU64>> =
        Arc::new((0..args.users).map(|_| AtomicU64::new(0)).collect());
    let wrong = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::with_capacity(args.users as usize);
    for n in 0..args.users {
        let mut socket = crate::ws::join(&ws_url, &format!("h{n}")).await?;
        let (received, wrong) = (received.clone(), wrong.clone());
        // One reader per load socket, for the round (the load generator's own).
        #[allow(clippy::disallowed_methods)]
        readers.push(tokio::spawn(async move {
            let mut last = 0u64;
            let mut in_order = true;
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(frame) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
                    continue;
                };
                if frame["type"] != "message" {
                    continue;
                }
                let seq = frame["seq"].as_u64().unwrap_or(0);
                in_order &= seq == last + 1;
                last = seq;
                received[n as usize].fetch_add(1, Ordering::Relaxed);
            }
            if !in_order {
                wrong.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    let started = Instant::now();
    let until = started + args.duration;
    let mut senders = Vec::with_capacity(args.senders as usize);
    for s in 0..args.senders {
        let client = webchat.client().clone();
        let users = args.users;
        let senders_total = args.senders;
        // One task per load sender, for the round.
        #[allow(clippy::disallowed_methods)]
        senders.push(tokio::spawn(async move {
            let mut latencies = histogram();
            let mut sent: HashMap<u32, u64> = HashMap::new();
            let mut failed = 0u64;
            let mut k = s;
            while Instant::now() < until {
                let user = k % users;
                k += senders_total;
                let at = Instant::now();
                match client.send_to(&format!("h{user}"), &["x".into()]).await {
                    Ok(_) => {
                        let _ = latencies.record(at.elapsed().as_micros() as u64);
                        *sent.entry(user).or_default() += 1;
                    }
                    Err(_) => failed += 1,
                }
            }
            (latencies, sent, failed)
        }));
    }
    let mut all = histogram();
    let mut expected = vec![0u64; args.users as usize];
    let mut failed_sends = 0;
    for sender in senders {
        let (latencies, sent, failed) = sender.await.map_err(|e| e.to_string())?;
        all.add(&latencies).map_err(|e| e.to_string())?;
        for (user, n) in sent {
            expected[user as usize] += n;
        }
        failed_sends += failed;
    }
    let seconds = started.elapsed().as_secs_f64();
    let sends: u64 = expected.iter().sum();
    // Every socket gets every message of its user (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(30);
    while (received.iter().zip(&expected)).any(|(r, e)| r.load(Ordering::Relaxed) < *e) {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = webchat.stats();
    let short = (received.iter().zip(&expected))
        .filter(|(r, e)| r.load(Ordering::Relaxed) != **e)
        .count() as u64;
    bot.request_shutdown();
    let _ = server.await;
    for reader in readers {
        let _ = reader.await;
    }
    let p = Percentiles::of(&all);
    Ok(Round {
        sends,
        seconds,
        p50_ms: p.p50 as f64 / 1000.0,
        p99_ms: p.p99 as f64 / 1000.0,
        // The writer's store and NOTIFY per batch; without it one NOTIFY per send.
        round_trips_per_send: if with_history {
            (2 * stats.history_batches) as f64 / sends.max(1) as f64
        } else {
            1.0
        },
        wrong_sockets: wrong.load(Ordering::Relaxed) + short,
        failed_sends,
    })
}
