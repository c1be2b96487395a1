//! The worker processes' side of `queue-drain`: stopping them and reading what they counted,
//! and the CPU the database server spent meanwhile.

use std::collections::HashMap;
use std::io::Read as _;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::scenario::Started;

#[derive(Debug, Default)]
pub(super) struct WorkerCounts {
    pub(super) handled: u64,
    pub(super) claims: u64,
    pub(super) stale: u64,
}

impl WorkerCounts {
    pub(super) fn add(&mut self, line: &HashMap<String, u64>) {
        let get = |k: &str| line.get(k).copied().unwrap_or(0);
        self.handled += get("handled");
        self.claims += get("claims");
        self.stale += get("stale");
    }
}

/// Stops a worker with SIGTERM and reads its `handled=… claims=…` line.
pub(super) async fn stop(worker: &mut Started) -> Result<HashMap<String, u64>, String> {
    let pid = worker.0.id();
    let (status, out) = stop_with(worker, "worker").await?;
    parse_counts(&out).ok_or_else(|| {
        format!("worker {pid} ({status}) printed no handled= line; its output: {out}")
    })
}

/// Stops a process (a `what`) with SIGTERM, waits up to 30 s for it to exit, and returns how it
/// ended and what it printed.
pub(super) async fn stop_with(
    worker: &mut Started,
    what: &str,
) -> Result<(std::process::ExitStatus, String), String> {
    let pid = worker.0.id();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Ok(Some(status)) = worker.0.try_wait() {
            break status;
        }
        if Instant::now() > deadline {
            return Err(format!("{what} {pid} did not stop within 30 s of SIGTERM"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut out = String::new();
    if let Some(mut stdout) = worker.0.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    Ok((status, out))
}

pub(super) fn parse_counts(output: &str) -> Option<HashMap<String, u64>> {
    let line = output.lines().rev().find(|l| l.starts_with("handled="))?;
    line.split_whitespace()
        .map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// CPU ticks of every process named `name` (`postgres`, `nats-server`) by pid.
pub(super) fn server_cpu(name: &str) -> Option<HashMap<u32, u64>> {
    let mut ticks = HashMap::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head.ends_with(&format!("({name}")) {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        if let (Some(user), Some(system)) = (field(11), field(12)) {
            ticks.insert(pid, user + system);
        }
    }
    (!ticks.is_empty()).then_some(ticks)
}

/// CPU seconds the postgres processes used between two readings (a process new in the second
/// counts whole).
pub(super) fn cpu_between(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> f64 {
    let ticks: u64 = after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum();
    ticks as f64 / ticks_per_second() as f64
}

fn ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}
