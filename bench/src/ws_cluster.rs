//! `ws-cluster`: N echo-bot processes on one PostgreSQL (web chat's `PgCluster`: fan-out and
//! presence) holding M idle sockets together, which one process cannot (it may open 20,000 files
//! here). The client sockets are held by N child processes of botload (`botload ws-clients`,
//! hidden), one per bot, for the same reason.
//!
//! Measured: each bot's user-space RSS per socket and idle CPU, heartbeats answered late or not
//! at all, and whether presence in PostgreSQL is right: every user online, each node counting
//! exactly the sockets it holds.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bot_core::pg::PgPool;
use bot_webchat::pg::PgCluster;
use tokio_util::sync::CancellationToken;

use crate::RecordArgs;
use crate::record::{Row, Verdict};
use crate::scenario::{thousands, usage};
use crate::ws::{Bot, CONNECTING, Heartbeats, heartbeat_summary, open_idle_sockets, rss_kib};

/// How long the clients may take to join, and presence to settle.
const JOIN_TIME_OUT: Duration = Duration::from_secs(600);
const PRESENCE_TIME_OUT: Duration = Duration::from_secs(60);
/// The fewest sockets a client process connects at once.
const MIN_CONNECTING: usize = 16;

/// `botload scenario ws-cluster`.
#[derive(Debug, clap::Args)]
pub(crate) struct ClusterArgs {
    /// echo-bot processes (nodes).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(2..=32))]
    processes: u32,
    /// Client processes of botload per node, sharing its sockets.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    clients_per_node: u32,
    /// Sockets in all, spread evenly over the nodes (at most 19,500 each).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(2..))]
    sockets: u32,
    /// Each socket's heartbeat interval.
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    heartbeat: Duration,
    /// How long the sockets stay idle while measured.
    #[arg(long, default_value = "60s", value_parser = crate::parse_duration)]
    idle: Duration,
    /// The database the nodes share (its `webchat_*` tables are emptied first).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    database_url: String,
    #[command(flatten)]
    pub(crate) record: RecordArgs,
}

/// `botload ws-clients` (started by `ws-cluster`): joins `--sockets` sockets as users
/// `u<first>`.., prints `joined <ok> <failed> <seconds>`, keeps them idle with heartbeats, counts
/// them in the idle window once a line `idle` comes on its standard input, and when that input
/// closes prints `tally` and, for the idle window then the connecting phase, `<sent> <answered>
/// <late> <unanswered> <closed>`, then its timers' latest wake-up in each (microseconds).
#[derive(Debug, clap::Args)]
pub(crate) struct ClientArgs {
    #[arg(long)]
    url: String,
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=19_500))]
    sockets: u32,
    #[arg(long, default_value_t = 0)]
    first_user: u32,
    #[arg(long, default_value = "30s", value_parser = crate::parse_duration)]
    heartbeat: Duration,
    /// Sockets connecting at once in this process.
    #[arg(long, default_value_t = CONNECTING)]
    connecting: usize,
}

/// The child: holds its share of the sockets.
pub(crate) async fn ws_clients(args: &ClientArgs) -> Result<(), String> {
    let heartbeats = Arc::new(Heartbeats::default());
    let stop = CancellationToken::new();
    // The load generator's own probe, for the process's life.
    #[allow(clippy::disallowed_methods)]
    let probe = tokio::spawn({
        let (heartbeats, stop) = (heartbeats.clone(), stop.clone());
        async move { heartbeats.probe_lag(&stop).await }
    });
    let started = Instant::now();
    let users = args.first_user..args.first_user + args.sockets;
    let (joins, failed) = open_idle_sockets(
        &args.url,
        "u",
        users,
        args.heartbeat,
        args.connecting,
        &heartbeats,
        &stop,
    )
    .await;
    println!(
        "joined {} {failed} {:.3}",
        joins.len() as u64 - failed,
        started.elapsed().as_secs_f64()
    );
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    // `idle` when every client process joined; the end when the parent closes our input.
    let phases = heartbeats.clone();
    tokio::task::spawn_blocking(move || {
        for line in std::io::stdin().lock().lines() {
            if line?.trim() == "idle" {
                phases.start_idle();
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    stop.cancel();
    for join in joins {
        let _ = join.await;
    }
    let _ = probe.await;
    println!(
        "tally {} {} {} {}",
        heartbeats.idle.words(),
        heartbeats.connecting.words(),
        heartbeats.lag_idle_us.load(Ordering::Relaxed),
        heartbeats.lag_connecting_us.load(Ordering::Relaxed),
    );
    Ok(())
}

/// A client child process and its pipes.
struct Clients {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Clients {
    fn start(
        url: &str,
        sockets: u32,
        first_user: u32,
        heartbeat: Duration,
        connecting: usize,
    ) -> Result<Self, String> {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(me)
            .args(["ws-clients", "--url", url])
            .args(["--sockets", &sockets.to_string()])
            .args(["--first-user", &first_user.to_string()])
            .args(["--heartbeat", &format!("{}ms", heartbeat.as_millis())])
            .args(["--connecting", &connecting.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start a client process: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    /// The next line the child prints, split into words after `tag`.
    fn line(&mut self, tag: &str) -> Result<Vec<String>, String> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| format!("reading a client process: {e}"))?;
        let mut words = line.split_whitespace().map(str::to_owned);
        match words.next() {
            Some(first) if first == tag => Ok(words.collect()),
            _ => Err(format!("a client process said {line:?}, not {tag}")),
        }
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn number<T: std::str::FromStr>(words: &[String], at: usize) -> Result<T, String> {
    words
        .get(at)
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("a client process's report lacks field {at}"))
}

/// Runs `blocking` off the runtime's threads.
async fn off_runtime<T: Send + 'static>(
    blocking: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(blocking)
        .await
        .map_err(|e| e.to_string())?
}

/// `ws-cluster`.
pub(crate) async fn ws_cluster(args: &ClusterArgs) -> Result<Row, String> {
    let nodes = args.processes;
    let per_node = args.sockets.div_ceil(nodes);
    if per_node > 19_500 {
        return Err(format!(
            "{per_node} sockets a node is over the 20,000 files a process may open here; add processes"
        ));
    }
    let pool = PgPool::builder(&args.database_url)
        .max_size(2)
        .build()
        .map_err(|e| e.to_string())?;
    let observer = PgCluster::builder(&pool)
        .node("ws-cluster-observer")
        .build()
        .map_err(|e| e.to_string())?;
    observer
        .migrate()
        .await
        .map_err(|e| format!("PostgreSQL at {} is needed: {e}", args.database_url))?;
    pool.get()
        .await
        .map_err(|e| e.to_string())?
        .batch_execute("DELETE FROM webchat_presence; DELETE FROM webchat_nodes;")
        .await
        .map_err(|e| format!("emptying the presence tables: {e}"))?;

    let mut bots = Vec::new();
    for i in 0..nodes {
        let env = [
            ("DATABASE_URL", args.database_url.clone()),
            ("BOT_NODE_ID", format!("ws-cluster-{i}")),
            // So that each node warns when the pools of all do not fit in max_connections.
            ("BOT_PROCESSES", nodes.to_string()),
        ];
        bots.push(Bot::start_with(&env).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_kib: Vec<u64> = bots.iter().map(|b| rss_kib(b.pid())).collect();

    let started = Instant::now();
    let mut shares = Vec::new();
    let mut clients = Vec::new();
    // As many sockets connecting at once over all client processes as `ws-idle` has in its one:
    // 256 in each of six processes starved every process on two cores (client timers 4.7 s
    // late, joins waiting past the pool's time-out).
    let client_count = nodes * args.clients_per_node;
    let at_once = (CONNECTING / client_count as usize).max(MIN_CONNECTING);
    for (i, bot) in bots.iter().enumerate() {
        let first = per_node * i as u32;
        let share = per_node.min(args.sockets - first);
        shares.push(share);
        // The node's share over its client processes.
        let per_client = share.div_ceil(args.clients_per_node);
        let mut user = first;
        while user < first + share {
            let sockets = per_client.min(first + share - user);
            clients.push(Clients::start(
                &bot.url,
                sockets,
                user,
                args.heartbeat,
                at_once,
            )?);
            user += sockets;
        }
    }
    let client_processes = clients.len();
    eprintln!(
        "ws-cluster: {client_processes} client processes joining {} sockets",
        thousands(f64::from(args.sockets))
    );
    let mut failed = 0u64;
    let mut joined_clients = Vec::new();
    for mut client in clients {
        let (words, client) = off_runtime(move || {
            let words = client.line("joined");
            words.map(|w| (w, client))
        })
        .await?;
        failed += number::<u64>(&words, 1)?;
        joined_clients.push(client);
        if started.elapsed() > JOIN_TIME_OUT {
            return Err("the sockets did not join within 10 minutes".to_owned());
        }
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    for client in &mut joined_clients {
        let stdin = client
            .stdin
            .as_mut()
            .ok_or("a client process without input")?;
        writeln!(stdin, "idle")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("telling a client process the idle window began: {e}"))?;
    }
    eprintln!(
        "ws-cluster: joined in {connect_seconds:.1} s ({failed} failed); idle for {:?}",
        args.idle
    );

    let cpu_before: Vec<f64> = bots
        .iter()
        .map(|b| usage(b.pid()).map_or(0.0, |u| u.cpu_seconds))
        .collect();
    let window = Instant::now();
    tokio::time::sleep(args.idle).await;
    let idle_seconds = window.elapsed().as_secs_f64();
    let cpu_percent: Vec<f64> = bots
        .iter()
        .zip(&cpu_before)
        .map(|(b, before)| {
            100.0 * (usage(b.pid()).map_or(0.0, |u| u.cpu_seconds) - before) / idle_seconds
        })
        .collect();
    let per_socket_kib: Vec<f64> = bots
        .iter()
        .zip(&before_kib)
        .zip(&shares)
        .map(|((b, before), share)| {
            rss_kib(b.pid()).saturating_sub(*before) as f64 / f64::from(*share)
        })
        .collect();

    // Presence: every node counts exactly its sockets, every user online once.
    let presence_started = Instant::now();
    let (presence_ok, presence) = loop {
        let counts = observer.node_counts().await.map_err(|e| e.to_string())?;
        let found: Vec<(String, u64, u64)> = counts
            .iter()
            .map(|c| (c.node.clone(), c.users, c.sockets))
            .collect();
        let right = found.len() == nodes as usize
            && (0..nodes as usize).all(|i| {
                let share = u64::from(shares[i]);
                found
                    .iter()
                    .any(|(n, u, s)| *n == format!("ws-cluster-{i}") && *u == share && *s == share)
            });
        if right || presence_started.elapsed() > PRESENCE_TIME_OUT {
            let users: u64 = found.iter().map(|(_, u, _)| u).sum();
            break (
                right,
                format!("{users} users online over {} nodes", found.len()),
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    let heartbeats = Heartbeats::default();
    for mut client in joined_clients {
        let words = off_runtime(move || {
            drop(client.stdin.take());
            client.line("tally")
        })
        .await?;
        let tallies = [&heartbeats.idle, &heartbeats.connecting];
        for (phase, tally) in tallies.into_iter().enumerate() {
            let counters = [
                &tally.sent,
                &tally.answered,
                &tally.late,
                &tally.unanswered,
                &tally.closed,
            ];
            for (at, counter) in counters.into_iter().enumerate() {
                counter.fetch_add(number(&words, phase * 5 + at)?, Ordering::Relaxed);
            }
        }
        (heartbeats.lag_idle_us).fetch_max(number(&words, 10)?, Ordering::Relaxed);
        (heartbeats.lag_connecting_us).fetch_max(number(&words, 11)?, Ordering::Relaxed);
    }
    let (idle, connecting) = (&heartbeats.idle, &heartbeats.connecting);
    let late = idle.late_or_unanswered() + connecting.late_or_unanswered();
    let closed = idle.closed.load(Ordering::Relaxed) + connecting.closed.load(Ordering::Relaxed);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let worst = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let result = format!(
        "{:.2} KiB/socket (mean of the nodes; worst {:.2}); {:.1} % CPU idle per node (worst {:.1}); presence {}: {presence}; {}; {} sockets/s connecting; {} client processes, {at_once} sockets connecting at once in each",
        mean(&per_socket_kib),
        worst(&per_socket_kib),
        mean(&cpu_percent),
        worst(&cpu_percent),
        if presence_ok { "right" } else { "WRONG" },
        heartbeat_summary(&heartbeats, failed),
        thousands(f64::from(args.sockets) / connect_seconds),
        client_processes,
    );
    let met = worst(&per_socket_kib) <= 3.0
        && worst(&cpu_percent) <= 10.0
        && late == 0
        && closed == 0
        && failed == 0
        && presence_ok;
    drop(bots);
    Ok(Row {
        name: format!(
            "ws-cluster ({} processes on one PostgreSQL, {} sockets, {:?} heartbeats)",
            nodes,
            thousands(f64::from(args.sockets)),
            args.heartbeat
        ),
        result,
        goal: "≤ 3 KiB/socket, ≤ 10 % CPU, 0 late, presence right".to_owned(),
        verdict: if met { Verdict::Met } else { Verdict::Missed },
    })
}
