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
    let script = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .into_iter()
        .chain(std::env::current_dir().ok())
        .map(|root| root.join("scripts/ensure-postgres.sh"))
        .find(|path| path.exists())
        .ok_or_else(|| {
            format!("PostgreSQL at {url} does not answer ({error}) and scripts/ensure-postgres.sh is not found; {advice}")
        })?;
    eprintln!(
        "PostgreSQL at {url} does not answer ({error}): starting it with {}",
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
            "{} could not start PostgreSQL ({status}); {advice}",
            script.display()
        ))
    }
}

/// `webhook-noop`: noop-bot (the memory queue, a no-op handler) in its own process, loaded
/// with signed webhooks by this one.
pub(crate) async fn webhook_noop(platform: Platform, shape: &Shape) -> Result<Row, String> {
    let binary = sibling_binary("noop-bot")?;
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
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let bot = Started(child);
    wait_ready(&base).await?;
    let pid = bot.0.id();
    let before = usage(pid);
    let own_before = usage(std::process::id());
    let plan: Plan = shape.plan(
        format!("{base}{}", platform.path()),
        platform,
        Secret::new(SECRET),
    );
    let report = load::run(plan.clone()).await;
    let after = usage(pid);
    let own_after = usage(std::process::id());
    drop(bot);

    let cpu = |a: &Option<Usage>, b: &Option<Usage>| match (a, b) {
        (Some(a), Some(b)) => b.cpu_seconds - a.cpu_seconds,
        _ => f64::NAN,
    };
    let bot_cpu = cpu(&before, &after);
    let load_cpu = cpu(&own_before, &own_after);
    let peak = after.as_ref().map_or(0, |u| u.peak_rss_kib);
    if shape.json {
        let json = serde_json::json!({
            "scenario": "webhook-noop",
            "report": report,
            "bot_peak_rss_kib": peak,
            "bot_cpu_seconds": bot_cpu,
            "load_generator_cpu_seconds": load_cpu,
        });
        crate::print_json(&json);
    } else {
        println!(
            "{}",
            load::table("webhook-noop (noop-bot, memory queue)", &plan, &report)
        );
        println!(
            "bot: peak RSS {:.1} MiB, CPU {bot_cpu:.1} s ({:.0} % of one core); load generator: CPU {load_cpu:.1} s",
            peak as f64 / 1024.0,
            100.0 * bot_cpu / report.seconds,
        );
    }
    if report.ok == 0 {
        return Err("no request was accepted".to_owned());
    }
    let goal = 300_000.0;
    Ok(Row {
        name: format!(
            "webhook-noop ({platform:?}, {} connections)",
            plan.connections
        ),
        result: format!(
            "{} events/s accepted; {} refused 503; p50 {:.1} ms, p99 {:.1} ms; bot {:.0} MiB peak, {:.0} % CPU",
            thousands(report.events_per_second),
            report.refused_503,
            report.latency_us.p50 as f64 / 1000.0,
            report.latency_us.p99 as f64 / 1000.0,
            peak as f64 / 1024.0,
            100.0 * bot_cpu / report.seconds,
        ),
        goal: "≥ 300,000 events/s".to_owned(),
        verdict: if report.events_per_second >= goal {
            Verdict::Met
        } else {
            Verdict::Missed
        },
    })
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
