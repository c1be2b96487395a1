//! graphile-worker's batched drain on the same database, in the same run as ours
//! (`--graphile-worker`): the bar the issue measures `PgQueue` against.
//!
//! `bench/graphile-worker/` holds a `package.json` (graphile-worker at a fixed version) and
//! `drain.js`; the first run installs the packages there with `npm ci`. `drain.js load N`
//! installs graphile-worker's schema afresh and adds N no-op jobs; then `drain.js work` runs in
//! as many processes as ours did (24 concurrent jobs each, a local queue of 500, completions
//! batched), timed by the same clock from their start to an empty jobs table.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use super::clock::{Timed, until_empty};
use super::workers::stop_with;
use crate::scenario::Started;

/// graphile-worker's jobs table (its schema is its own, `graphile_worker`).
const JOBS: &str = "graphile_worker._private_jobs";

/// The folder with `package.json` and `drain.js`.
fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("graphile-worker")
}

/// Installs graphile-worker with npm unless it is there; returns the path of `drain.js`.
pub(super) fn install() -> Result<PathBuf, String> {
    let dir = folder();
    if !dir
        .join("node_modules/graphile-worker/package.json")
        .exists()
    {
        eprintln!(
            "queue-drain: installing graphile-worker (npm ci in {})",
            dir.display()
        );
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .map_err(|e| {
                format!("cannot run npm (Node.js is needed for --graphile-worker): {e}")
            })?;
        if !status.success() {
            return Err(format!("npm ci in {} failed: {status}", dir.display()));
        }
    }
    Ok(dir.join("drain.js"))
}

/// Loads `events` jobs and drains them with `processes` graphile-worker processes.
pub(super) async fn drain(
    conn: &bot_core::pg::tokio_postgres::Client,
    script: &Path,
    url: &str,
    events: u64,
    processes: u16,
    timeout: Duration,
) -> Result<Timed, String> {
    let node = |mode: &str| {
        let mut command = Command::new("node");
        command
            .arg(script)
            .arg(mode)
            .env(bot_core::pg::DATABASE_URL_ENV, url)
            .stdin(Stdio::null());
        command
    };
    let loaded = node("load")
        .arg(events.to_string())
        .status()
        .map_err(|e| format!("cannot run node: {e}"))?;
    if !loaded.success() {
        return Err(format!("loading graphile-worker's jobs failed: {loaded}"));
    }
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..processes {
        let child = node("work")
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start a graphile-worker process: {e}"))?;
        workers.push(Started(child));
    }
    let timed = until_empty(
        conn,
        JOBS,
        events,
        started,
        timeout,
        &ProgressBar::hidden(),
        &mut workers,
    )
    .await;
    // graphile-worker exits on SIGTERM once its running jobs are done; what it printed is not
    // needed (its jobs table being empty is the count).
    for mut w in workers {
        stop_with(&mut w, "graphile-worker").await?;
    }
    let dropped = conn
        .batch_execute("DROP SCHEMA IF EXISTS graphile_worker CASCADE")
        .await;
    if let Err(e) = dropped {
        eprintln!("queue-drain: dropping graphile-worker's schema: {e}");
    }
    timed
}
