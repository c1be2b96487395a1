//! `botload startup-order`: the functions a bot runs from its start to its idle point, recorded
//! under valgrind's callgrind and written as a linker symbol-ordering file.
//!
//! Why: an idle bot's resident memory is mostly its binary's code, not its heap. The kernel maps
//! the file's pages around each page first touched (64 KiB by default), and the functions that
//! start-up runs are spread over the whole text, so some 100 windows of code stay resident after
//! start for a few hundred KiB actually run (BENCHMARKS.md, "Discord idle RSS"). Linked with
//! these functions first (`-Wl,--symbol-ordering-file=FILE`, lld, Rust's default linker on
//! x86_64 Linux), start-up touches a few contiguous windows instead.
//!
//! The file names symbols as the build that was recorded names them: record a release build, then
//! relink that same build (same command, same features) with the file; a symbol the relinked
//! binary lacks is skipped by the linker, so a stale file costs memory, never correctness.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bot_discord::testing::FakeDiscordApi;

use crate::gateway::TOKEN as GATEWAY_TOKEN;
use crate::gateway_consume::{FastGateway, discord_only};
use crate::scenario::{free_port, sibling_binary};

/// How long a recorded bot gets to stop after SIGTERM before it is killed (and the recording
/// fails): under callgrind a graceful shutdown is some 50 times slower than natively.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// `botload startup-order`.
#[derive(Debug, clap::Args)]
pub(crate) struct StartupOrderArgs {
    /// Where to write the ordering file (one symbol per line).
    #[arg(long)]
    out: PathBuf,
    /// The bot to record, run with this environment and stopped with SIGTERM after `--seconds`.
    /// Without it: noop-bot next to botload, with one Discord shard against botload's fake
    /// gateway and REST API, stopped one second after READY (the idle point `gateway-consume`
    /// measures).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// With `--binary`: seconds it runs (its start and its idle) before SIGTERM.
    #[arg(long, default_value_t = 10, requires = "binary")]
    seconds: u64,
    /// With `--binary`: its arguments (after `--`).
    #[arg(last = true, requires = "binary")]
    args: Vec<String>,
}

/// Runs `botload startup-order`.
pub(crate) async fn startup_order(args: &StartupOrderArgs) -> Result<(), String> {
    let version = Command::new("valgrind")
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run valgrind ({e}); install it: apt-get install valgrind"))?;
    if !version.status.success() {
        return Err("valgrind --version failed; install valgrind".into());
    }
    let dir = std::env::temp_dir().join(format!("botload-startup-order-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let result = record(args, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let (binary, symbols) = result?;
    if symbols.is_empty() {
        return Err(format!(
            "callgrind recorded no function of {}: was it built with its symbols (not stripped)?",
            binary.display()
        ));
    }
    let mut text = symbols.join("\n");
    text.push('\n');
    std::fs::write(&args.out, text)
        .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
    println!(
        "startup-order: {} functions of {} ran from its start to its idle point; written to {}",
        symbols.len(),
        binary.display(),
        args.out.display()
    );
    println!(
        "relink the same build with them first: -C link-arg=-Wl,--symbol-ordering-file={} \
         (noop-bot: BOT_SYMBOL_ORDERING_FILE=<that file> and the same cargo build command)",
        args.out.display()
    );
    Ok(())
}

/// Runs the bot under callgrind until its idle point, stops it, and returns its binary and the
/// functions of that binary it ran.
async fn record(args: &StartupOrderArgs, dir: &Path) -> Result<(PathBuf, Vec<String>), String> {
    let output = dir.join("callgrind.out");
    let binary = match &args.binary {
        Some(binary) => binary.clone(),
        None => sibling_binary("noop-bot")?,
    };
    let binary = binary
        .canonicalize()
        .map_err(|e| format!("cannot find {}: {e}", binary.display()))?;
    let mut command = Command::new("valgrind");
    command
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", output.display()))
        .args([
            "--dump-instr=no",
            "--compress-strings=no",
            "--compress-pos=no",
            "--demangle=no",
            "-q",
        ])
        .arg(&binary)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut bot = match &args.binary {
        Some(_) => {
            let mut bot = Running::spawn(command.args(&args.args), &binary)?;
            tokio::time::sleep(Duration::from_secs(args.seconds)).await;
            bot.check_alive()?;
            bot
        }
        None => {
            let gateway = FastGateway::start(1, 1).await?;
            let api = FakeDiscordApi::start(GATEWAY_TOKEN, gateway.url(), 1, 1)
                .await
                .map_err(|e| format!("cannot start the fake REST API: {e}"))?;
            discord_only(&mut command, gateway.url(), &api.url(), free_port()?);
            let mut bot = Running::spawn(&mut command, &binary)?;
            gateway.wait_for_ready(|| bot.check_alive()).await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            bot.check_alive()?;
            // Stopped before the fakes go, so that its shutdown is the clean one.
            bot.stop().await?;
            drop(api);
            bot
        }
    };
    bot.stop().await?;
    let text = std::fs::read_to_string(&output).map_err(|e| {
        format!(
            "callgrind wrote no profile ({}: {e}); did the bot stop by itself on SIGTERM?",
            output.display()
        )
    })?;
    Ok((binary.clone(), executed_functions(&text, &binary)))
}

/// The bot under callgrind; killed if dropped while running.
struct Running {
    child: Option<Child>,
    name: String,
}

impl Running {
    fn spawn(command: &mut Command, binary: &Path) -> Result<Self, String> {
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start valgrind: {e}"))?;
        Ok(Self {
            child: Some(child),
            name: binary.display().to_string(),
        })
    }

    /// An error if the bot has already stopped.
    fn check_alive(&mut self) -> Result<(), String> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) | None => Ok(()),
            Some(Ok(Some(status))) => Err(format!("{} stopped early: {status}", self.name)),
            Some(Err(e)) => Err(format!("cannot watch {}: {e}", self.name)),
        }
    }

    /// Sends SIGTERM and waits for the bot to end, so that callgrind writes its profile; a
    /// second call does nothing.
    async fn stop(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        if !sent.is_ok_and(|status| status.success()) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("cannot send SIGTERM to {}", self.name));
        }
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{} did not stop within {STOP_GRACE:?} of SIGTERM",
                        self.name
                    ));
                }
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The functions of `binary` that a callgrind profile says ran, in the order the profile first
/// names them, each once.
///
/// Reads the callgrind format's `ob=` (the object the next functions are in) and `fn=` (a
/// function with costs of its own: every function that ran has some) lines, with or without
/// string compression (`(id) name` the first time, `(id)` after).
pub(crate) fn executed_functions(profile: &str, binary: &Path) -> Vec<String> {
    let wanted = |object: &str| {
        let object = Path::new(object);
        object == binary
            || object.canonicalize().is_ok_and(|o| o == binary)
            || (object.is_relative() && object.file_name() == binary.file_name())
    };
    let mut objects: HashMap<String, bool> = HashMap::new();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut in_binary = false;
    let mut seen = HashSet::new();
    let mut functions = Vec::new();
    for line in profile.lines() {
        if let Some(spec) = line.strip_prefix("ob=") {
            let object = resolve(spec, &mut names, "ob");
            in_binary = *objects
                .entry(object.clone())
                .or_insert_with(|| wanted(&object));
        } else if let Some(spec) = line.strip_prefix("fn=") {
            let function = resolve(spec, &mut names, "fn");
            if in_binary && !function.is_empty() && seen.insert(function.clone()) {
                functions.push(function);
            }
        } else if let Some(spec) = line
            .strip_prefix("cob=")
            .map(|s| ("ob", s))
            .or_else(|| line.strip_prefix("cfn=").map(|s| ("fn", s)))
        {
            // Only to learn compressed names defined on call lines.
            resolve(spec.1, &mut names, spec.0);
        }
    }
    functions
}

/// A name spec of the callgrind format: `name`, `(id) name` (defines id) or `(id)` (refers to
/// it); ids are per kind (`ob`, `fn`).
fn resolve(spec: &str, names: &mut HashMap<String, String>, kind: &str) -> String {
    let spec = spec.trim();
    let Some(rest) = spec.strip_prefix('(') else {
        return spec.to_owned();
    };
    let Some((id, name)) = rest.split_once(')') else {
        return spec.to_owned();
    };
    let key = format!("{kind}{id}");
    let name = name.trim();
    if name.is_empty() {
        names.get(&key).cloned().unwrap_or_default()
    } else {
        names.insert(key, name.to_owned());
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_binarys_functions_are_kept_once_each_in_first_seen_order() {
        let profile = "\
version: 1
creator: callgrind-3.19.0
cmd: /opt/bot/my-bot
events: Ir
ob=/usr/lib/x86_64-linux-gnu/libc.so.6
fn=malloc
1 20
ob=/opt/bot/my-bot
fn=_ZN4main17h0123456789abcdefE
1 5
cob=/usr/lib/x86_64-linux-gnu/libc.so.6
cfn=malloc
calls=1 0
1 20
fn=_ZN3bot5start17hfedcba9876543210E
1 7
ob=/usr/lib/x86_64-linux-gnu/libc.so.6
fn=free
1 3
ob=/opt/bot/my-bot
fn=_ZN4main17h0123456789abcdefE
1 1
";
        assert_eq!(
            executed_functions(profile, Path::new("/opt/bot/my-bot")),
            [
                "_ZN4main17h0123456789abcdefE",
                "_ZN3bot5start17hfedcba9876543210E"
            ]
        );
        assert!(executed_functions(profile, Path::new("/opt/bot/other")).is_empty());
    }

    #[test]
    fn compressed_names_are_resolved_per_kind() {
        let profile = "\
ob=(1) /opt/bot/my-bot
fn=(1) _ZN4main17h0123456789abcdefE
1 5
cob=(2) /usr/lib/x86_64-linux-gnu/libc.so.6
cfn=(2) malloc
calls=1 0
1 20
fn=(3) _ZN3bot4idle17h0000000000000001E
1 2
ob=(2)
fn=(2)
1 20
ob=(1)
fn=(1)
1 1
fn=(3)
1 1
";
        assert_eq!(
            executed_functions(profile, Path::new("/opt/bot/my-bot")),
            [
                "_ZN4main17h0123456789abcdefE",
                "_ZN3bot4idle17h0000000000000001E"
            ]
        );
    }
}
