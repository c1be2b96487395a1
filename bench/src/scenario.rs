//! Scenarios: start what they measure, load it, report, stop it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bot_core::Secret;

use crate::Shape;
use crate::load::{self, Plan};
use crate::payload::Platform;
use crate::record::{Row, Verdict};

pub(crate) const SECRET: &str = "botload-secret";
pub(crate) const TOKEN: &str = "botload-token";

/// A process started for a scenario; killed when dropped.
pub(crate) struct Started(pub(crate) Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Resource use of a process, from /proc.
pub(crate) struct Usage {
    /// Peak resident set (VmHWM), KiB.
    pub(crate) peak_rss_kib: u64,
    /// User and system CPU time, seconds.
    pub(crate) cpu_seconds: f64,
}

pub(crate) fn usage(pid: u32) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let peak_rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces, inside parentheses).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_second = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(100);
    Some(Usage {
        peak_rss_kib,
        cpu_seconds: ticks as f64 / per_second as f64,
    })
}

pub(crate) fn sibling_binary(name: &str) -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find botload's own path: {e}"))?;
    let path = me.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found; build it next to botload with: cargo build --release -p {name} -p bench",
            path.display()
        ))
    }
}

pub(crate) fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

pub(crate) async fn wait_ready(base: &str) -> Result<(), String> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the bot at {base} was not ready after 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts PostgreSQL with `scripts/ensure-postgres.sh` (found from the working directory or from
/// botload's own place in `target/release`) when `url` names the local server and it did not
/// answer (`error`); otherwise says what to do.
pub(crate) fn ensure_postgres(url: &str, error: &str) -> Result<(), String> {
    let local = [
        "@127.0.0.1:5432/",
        "@localhost:5432/",
        "@127.0.0.1/",
        "@localhost/",
    ]
    .iter()
    .any(|host| url.contains(host));
    let advice = "start it (./scripts/ensure-postgres.sh) or point --database-url / DATABASE_URL \
                  at one";
    if !local {
        return Err(format!(
            "PostgreSQL at {url} does not answer ({error}); {advice}"
        ));
    }
    run_ensure_script("ensure-postgres.sh", "PostgreSQL", url, error, advice)
}

/// Starts NATS with `scripts/ensure-nats.sh` when `url` names the local server on 4222 and it
/// did not answer (`error`); otherwise says what to do.
pub(crate) fn ensure_nats(url: &str, error: &str) -> Result<(), String> {
    let advice = "start it (./scripts/ensure-nats.sh) or point --nats-url / NATS_URL at one";
    if !(url.contains("127.0.0.1:4222") || url.contains("localhost:4222")) {
        return Err(format!("NATS at {url} does not answer ({error}); {advice}"));
    }
    run_ensure_script("ensure-nats.sh", "NATS", url, error, advice)
}

/// Runs `scripts/<script>` (found from the working directory or from botload's own place in
/// `target/release`) to start `service`.
fn run_ensure_script(
    script: &str,
    service: &str,
    url: &str,
    error: &str,
    advice: &str,
) -> Result<(), String> {
    let script = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .into_iter()
        .chain(std::env::current_dir().ok())
        .map(|root| root.join("scripts").join(script))
        .find(|path| path.exists())
        .ok_or_else(|| {
            format!("{service} at {url} does not answer ({error}) and scripts/{script} is not found; {advice}")
        })?;
    eprintln!(
        "{service} at {url} does not answer ({error}): starting it with {}",
        script.display()
    );
    let status = Command::new("bash")
        .arg(&script)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} could not start {service} ({status}); {advice}",
            script.display()
        ))
    }
}

/// What `webhook-noop` compares noop-bot with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Against {
    /// The `ceiling` binary (a hand-written axum server), in the same run, alternately.
    Ceiling,
    /// Nothing: noop-bot alone.
    Nothing,
}

/// One load run of one server.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ServerRun {
    /// The binary (`ceiling`, `noop-bot`).
    pub(crate) server: &'static str,
    /// Connections of the load.
    pub(crate) connections: usize,
    /// What the load generator measured.
    pub(crate) report: load::Report,
    /// The server's CPU (user + system) per answered request, microseconds.
    pub(crate) cpu_us_per_request: f64,
    /// The server's CPU over the run, seconds.
    pub(crate) cpu_seconds: f64,
    /// The server's peak RSS (VmHWM), KiB.
    pub(crate) peak_rss_kib: u64,
    /// The load generator's (this process's) CPU per request, microseconds.
    pub(crate) generator_cpu_us_per_request: f64,
}

impl ServerRun {
    fn answered(&self) -> u64 {
        self.report.ok + self.report.refused_503 + self.report.other_status
    }
}

/// Starts `server` (noop-bot or ceiling, configured alike), loads it with `shape` over
/// `connections`, and measures it.
async fn run_server(
    server: &'static str,
    platform: Platform,
    shape: &Shape,
    connections: usize,
) -> Result<ServerRun, String> {
    let binary = sibling_binary(server)?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(&binary)
        .env("BOT_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .env("LINE_CHANNEL_SECRET", SECRET)
        .env("LINE_CHANNEL_ACCESS_TOKEN", TOKEN)
        .env("LINE_API_BASE", "http://127.0.0.1:9")
        .env("MESSENGER_APP_SECRET", SECRET)
        .env("MESSENGER_VERIFY_TOKEN", TOKEN)
        .env("MESSENGER_PAGE_ACCESS_TOKEN", TOKEN)
        .env("MESSENGER_API_BASE", "http://127.0.0.1:9")
        .env_remove("DISCORD_TOKEN")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let bot = Started(child);
    wait_ready(&base).await?;
    let pid = bot.0.id();
    let before = usage(pid);
    let own_before = usage(std::process::id());
    let mut plan: Plan = shape.plan(
        format!("{base}{}", platform.path()),
        platform,
        Secret::new(SECRET),
    );
    plan.connections = connections;
    let report = load::run(plan).await;
    let after = usage(pid);
    let own_after = usage(std::process::id());
    drop(bot);
    let cpu = |a: &Option<Usage>, b: &Option<Usage>| match (a, b) {
        (Some(a), Some(b)) => b.cpu_seconds - a.cpu_seconds,
        _ => f64::NAN,
    };
    let mut run = ServerRun {
        server,
        connections,
        report,
        cpu_us_per_request: f64::NAN,
        cpu_seconds: cpu(&before, &after),
        peak_rss_kib: after.as_ref().map_or(0, |u| u.peak_rss_kib),
        generator_cpu_us_per_request: f64::NAN,
    };
    let answered = run.answered().max(1) as f64;
    run.cpu_us_per_request = run.cpu_seconds * 1e6 / answered;
    run.generator_cpu_us_per_request = cpu(&own_before, &own_after) * 1e6 / answered;
    if run.report.ok == 0 {
        return Err(format!("{server} accepted no request"));
    }
    Ok(run)
}

/// The mean of `field` over the runs of `server` at `connections`.
fn mean_of(
    runs: &[ServerRun],
    server: &str,
    connections: usize,
    field: impl Fn(&ServerRun) -> f64,
) -> f64 {
    let values: Vec<f64> = runs
        .iter()
        .filter(|r| r.server == server && r.connections == connections)
        .map(field)
        .collect();
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn print_runs(title: &str, runs: &[ServerRun]) {
    println!("{title}");
    println!(
        "| server | connections | requests ok | events/s (2xx) | CPU µs per request | peak RSS MiB | 503 | 503 with Retry-After | other / errors | p50 ms | p99 ms | generator CPU µs per request |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for run in runs {
        let r = &run.report;
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {} | {} | {} / {} | {:.2} | {:.2} | {:.1} |",
            run.server,
            run.connections,
            r.ok,
            thousands(r.events_per_second),
            run.cpu_us_per_request,
            run.peak_rss_kib as f64 / 1024.0,
            r.refused_503,
            r.refused_503_with_retry_after,
            r.other_status,
            r.errors,
            r.latency_us.p50 as f64 / 1000.0,
            r.latency_us.p99 as f64 / 1000.0,
            run.generator_cpu_us_per_request,
        );
    }
}

/// `webhook-noop`: noop-bot (the memory queue, a no-op handler) in its own process, loaded with
/// signed webhooks by this one; with `against` the ceiling, both alternately (`runs` each, the
/// same load), then noop-bot past saturation over `saturation_connections`.
pub(crate) async fn webhook_noop(
    platform: Platform,
    shape: &Shape,
    against: Option<Against>,
    runs: u32,
    saturation_connections: u16,
) -> Result<Row, String> {
    let against = against.unwrap_or(if sibling_binary("ceiling").is_ok() {
        Against::Ceiling
    } else {
        Against::Nothing
    });
    let servers: &[&'static str] = match against {
        Against::Ceiling => &["ceiling", "noop-bot"],
        Against::Nothing => &["noop-bot"],
    };
    let connections = usize::from(shape.connections);
    let mut measured = Vec::new();
    for run in 0..runs {
        for &server in servers {
            if !shape.json {
                eprintln!(
                    "webhook-noop: run {} of {runs}, {server}, {connections} connections",
                    run + 1
                );
            }
            measured.push(run_server(server, platform, shape, connections).await?);
        }
    }
    let saturation = usize::from(saturation_connections);
    let past = if saturation > 0 {
        if !shape.json {
            eprintln!("webhook-noop: past saturation, noop-bot, {saturation} connections");
        }
        Some(run_server("noop-bot", platform, shape, saturation).await?)
    } else {
        None
    };
    let bot_eps = mean_of(&measured, "noop-bot", connections, |r| {
        r.report.events_per_second
    });
    let bot_cpu = mean_of(&measured, "noop-bot", connections, |r| r.cpu_us_per_request);
    let bot_peak = measured
        .iter()
        .filter(|r| r.server == "noop-bot")
        .map(|r| r.peak_rss_kib)
        .max()
        .unwrap_or(0);
    let bot_503: u64 = measured
        .iter()
        .filter(|r| r.server == "noop-bot")
        .map(|r| r.report.refused_503)
        .sum();
    let ceiling_eps = mean_of(&measured, "ceiling", connections, |r| {
        r.report.events_per_second
    });
    let ceiling_cpu = mean_of(&measured, "ceiling", connections, |r| r.cpu_us_per_request);
    let ceiling_peak = measured
        .iter()
        .filter(|r| r.server == "ceiling")
        .map(|r| r.peak_rss_kib)
        .max()
        .unwrap_or(0);
    let ratio = bot_eps / ceiling_eps;
    let mib = |kib: u64| kib as f64 / 1024.0;
    if shape.json {
        crate::print_json(&serde_json::json!({
            "scenario": "webhook-noop",
            "platform": format!("{platform:?}"),
            "runs": measured,
            "past_saturation": past,
            "ratio_noop_bot_to_ceiling": (against == Against::Ceiling).then_some(ratio),
        }));
    } else {
        let mut all = measured.clone();
        all.extend(past.clone());
        print_runs(
            &format!(
                "webhook-noop ({platform:?}, {} events per request, unique bodies)",
                shape.events_per_request
            ),
            &all,
        );
        println!(
            "noop-bot (mean of {runs}): {} events/s, {bot_cpu:.1} µs CPU per request, peak RSS {:.1} MiB, {bot_503} answered 503",
            thousands(bot_eps),
            mib(bot_peak),
        );
        if against == Against::Ceiling {
            println!(
                "ceiling (mean of {runs}): {} events/s, {ceiling_cpu:.1} µs CPU per request, peak RSS {:.1} MiB",
                thousands(ceiling_eps),
                mib(ceiling_peak),
            );
            println!("ratio noop-bot / ceiling: {ratio:.2}x (goal ≥ 0.8x)");
        }
        if let Some(own) = usage(std::process::id()) {
            println!(
                "load generator (botload): peak RSS {:.1} MiB over the whole scenario",
                mib(own.peak_rss_kib)
            );
        }
        if let Some(past) = &past {
            println!(
                "past saturation ({saturation} connections): noop-bot peak RSS {:.1} MiB, {} answered 503 ({} with Retry-After), {} events/s accepted",
                mib(past.peak_rss_kib),
                past.report.refused_503,
                past.report.refused_503_with_retry_after,
                thousands(past.report.events_per_second),
            );
            if past.report.refused_503 == 0 {
                println!(
                    "  (no 503: the run did not pass saturation; raise --saturation-connections or --requests)"
                );
            }
        }
    }
    let past_text = past.as_ref().map_or(String::new(), |p| {
        format!(
            "; past saturation ({saturation} connections): {:.0} MiB peak, {} answered 503 ({} with Retry-After)",
            mib(p.peak_rss_kib),
            p.report.refused_503,
            p.report.refused_503_with_retry_after,
        )
    });
    let past_ok = past.as_ref().is_none_or(|p| {
        p.peak_rss_kib <= 64 * 1024
            && p.report.refused_503 == p.report.refused_503_with_retry_after
            && p.report.other_status == 0
    });
    match against {
        Against::Ceiling => Ok(Row {
            name: format!(
                "webhook-noop ({platform:?}, {connections} connections, noop-bot vs ceiling)"
            ),
            result: format!(
                "{ratio:.2}x ceiling; noop-bot {} events/s, {bot_cpu:.0} µs CPU/request, {:.0} MiB peak, {bot_503} answered 503; ceiling {} events/s, {ceiling_cpu:.0} µs CPU/request, {:.0} MiB peak{past_text}",
                thousands(bot_eps),
                mib(bot_peak),
                thousands(ceiling_eps),
                mib(ceiling_peak),
            ),
            goal: "≥ 0.8x ceiling, ≤ 35 µs CPU per 10-event request, no 503 at that rate, ≤ 64 MiB peak past saturation (excess 503 with Retry-After)".to_owned(),
            verdict: if ratio >= 0.8 && bot_cpu <= 35.0 && bot_503 == 0 && past_ok {
                Verdict::Met
            } else {
                Verdict::Missed
            },
        }),
        Against::Nothing => Ok(Row {
            name: format!("webhook-noop ({platform:?}, {connections} connections)"),
            result: format!(
                "{} events/s accepted; {bot_503} refused 503; bot {:.0} MiB peak, {bot_cpu:.0} µs CPU/request{past_text}",
                thousands(bot_eps),
                mib(bot_peak),
            ),
            goal: "≥ 300,000 events/s".to_owned(),
            verdict: if bot_eps >= 300_000.0 {
                Verdict::Met
            } else {
                Verdict::Missed
            },
        }),
    }
}

/// The resident set (VmRSS) of a process, KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `1234567.8` as `1,234,568`.
pub(crate) fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The database of a PostgreSQL scenario: `given`, else `DATABASE_URL`, else the local one.
pub(crate) fn database_url(given: Option<&str>) -> String {
    given
        .map(str::to_owned)
        .or_else(|| std::env::var(bot_core::pg::DATABASE_URL_ENV).ok())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A one-connection pool on `url` for a scenario's own statements, with PostgreSQL started
/// (or installed) first when a local one does not answer.
pub(crate) async fn admin_pool(url: &str) -> Result<bot_core::pg::PgPool, String> {
    let admin = bot_core::pg::PgPool::builder(url)
        .max_size(1)
        .create_timeout(Duration::from_secs(5))
        .application_name("botload")
        .build()
        .map_err(|e| format!("the database url: {e}"))?;
    if let Err(e) = admin.get().await {
        ensure_postgres(url, &e.to_string())?;
        drop(
            admin.get().await.map_err(|e| {
                format!("PostgreSQL at {url} does not answer after starting it: {e}")
            })?,
        );
    }
    Ok(admin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_elsewhere_is_not_started_here_and_the_message_says_what_to_do() {
        let error =
            ensure_postgres("postgres://u@db.example:5432/x", "connection refused").unwrap_err();
        assert!(
            error.contains("does not answer (connection refused)"),
            "{error}"
        );
        assert!(error.contains("ensure-postgres.sh"), "{error}");
    }
}
