//! `botload startup-order`: the functions a bot runs from its start to its idle point (and, for
//! noop-bot, then while it handles a few messages), recorded under valgrind's callgrind and
//! written as a linker symbol-ordering file.
//!
//! Why: an idle bot's resident memory is mostly its binary's code, not its heap. The kernel maps
//! the file's pages around each page first touched (64 KiB by default), and the functions that
//! start-up runs are spread over the whole text, so some 100 windows of code stay resident after
//! start for about 2 MB of code that ran (BENCHMARKS.md, "Discord idle RSS"). Linked with these
//! functions first (`-Wl,--symbol-ordering-file=FILE`: lld, Rust's default linker on
//! x86_64-unknown-linux-gnu since Rust 1.90), start-up touches a few contiguous windows instead.
//!
//! The file names symbols as the build that was recorded names them: record a release build, then
//! relink that same build (same command, same features) with the file; a symbol the relinked
//! binary lacks is skipped by the linker, so a stale file costs memory, never correctness.
//! Callgrind's CPU has no AVX-512: a crate that picks its code by the CPU's features runs the
//! paths of the CPU callgrind emulates, so those of the real one may be missing from the file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bot_discord::testing::FakeDiscordApi;

use crate::gateway::TOKEN as GATEWAY_TOKEN;
use crate::gateway_consume::{FastGateway, discord_only, poll_processed};
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
    /// The bot to record, run with this environment for `--seconds` (its start and its idle),
    /// then stopped with SIGTERM. Without it: noop-bot next to botload, with one Discord shard
    /// against botload's fake gateway and REST API, recorded to one second after READY (the idle
    /// point `gateway-consume` measures), then through `--dispatches` handled messages if any.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// With `--binary`: seconds it runs before it is stopped.
    #[arg(long, default_value_t = 10, requires = "binary")]
    seconds: u64,
    /// Without `--binary`: MESSAGE_CREATE dispatches noop-bot handles after its idle point, so
    /// that the code of a handled message follows the start-up's in the file. A bot that has
    /// handled messages then keeps fewer pages of code; one that has not, slightly more
    /// (BENCHMARKS.md, "Idle RSS: start-up code linked together").
    #[arg(long, default_value_t = 0, conflicts_with = "binary")]
    dispatches: u64,
    /// With `--binary`: its arguments (after `--`).
    #[arg(last = true, requires = "binary")]
    args: Vec<String>,
}

/// Runs `botload startup-order`.
pub(crate) async fn startup_order(args: &StartupOrderArgs) -> Result<(), String> {
    for tool in ["valgrind", "callgrind_control"] {
        let version = Command::new(tool).arg("--version").output().map_err(|e| {
            format!("cannot run {tool} ({e}); install valgrind: apt-get install valgrind")
        })?;
        if !version.status.success() {
            return Err(format!("{tool} --version failed; install valgrind"));
        }
    }
    let dir = std::env::temp_dir().join(format!("botload-startup-order-{}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
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
        "startup-order: {} functions of {} (those its start ran first); written to {}",
        symbols.len(),
        binary.display(),
        args.out.display()
    );
    println!(
        "relink the same build with them first: -C link-arg=-Wl,--symbol-ordering-file={} \
         (noop-bot: BOT_SYMBOL_ORDERING_FILE=<that file's absolute path> and the same cargo \
         build command)",
        args.out.display()
    );
    Ok(())
}

/// Runs the bot under callgrind, dumps the profile at its idle point, lets noop-bot handle
/// `--dispatches` messages, stops collecting and then stops the bot; returns its binary and the
/// functions of that binary that ran: those of the start first, then those of the messages.
/// The shutdown that SIGTERM starts is not recorded.
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
            // A recursion's inner calls are not written as `name'2`, which no symbol is called.
            "--separate-recs=1",
            "--demangle=no",
            "-q",
        ])
        .arg(&binary)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut bot;
    // The fakes noop-bot talks to; they go after it has stopped, so that its shutdown is clean.
    let _fakes;
    match &args.binary {
        Some(_) => {
            bot = Running::spawn(command.args(&args.args), &binary)?;
            tokio::time::sleep(Duration::from_secs(args.seconds)).await;
            bot.check_alive()?;
            bot.control(&["--dump"])?;
        }
        None => {
            let gateway = FastGateway::start(args.dispatches.max(1), 1).await?;
            let api = FakeDiscordApi::start(GATEWAY_TOKEN, gateway.url(), 1, 1)
                .await
                .map_err(|e| format!("cannot start the fake REST API: {e}"))?;
            let port = free_port()?;
            discord_only(&mut command, gateway.url(), &api.url(), port);
            bot = Running::spawn(&mut command, &binary)?;
            gateway
                .wait_for_ready_within(READY_UNDER_CALLGRIND, || bot.check_alive())
                .await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            bot.check_alive()?;
            bot.control(&["--dump"])?;
            if args.dispatches > 0 {
                gateway.go();
                let url = format!("http://127.0.0.1:{port}/metrics");
                poll_processed(&url, args.dispatches, &gateway).await?;
            }
            _fakes = (gateway, api);
        }
    }
    bot.control(&["--instr=off"])?;
    bot.stop().await?;
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| {
            format!(
                "callgrind wrote no profile ({}: {e}); did the bot stop by itself on SIGTERM?",
                path.display()
            )
        })
    };
    // `--dump` writes `<file>.1`; the profile written at the exit holds what ran after it.
    let mut functions = executed_functions(&read(&dir.join("callgrind.out.1"))?, &binary);
    if args.binary.is_none() && args.dispatches > 0 {
        let mut seen: HashSet<String> = functions.iter().cloned().collect();
        for function in executed_functions(&read(&output)?, &binary) {
            if seen.insert(function.clone()) {
                functions.push(function);
            }
        }
    }
    Ok((binary, functions))
}

/// How long noop-bot gets to identify under callgrind, which runs it some 50 times slower.
const READY_UNDER_CALLGRIND: Duration = Duration::from_secs(120);

/// The bot under callgrind; killed if dropped while running.
struct Running {
    child: Option<Child>,
    name: String,
}

impl Running {
    /// Starts `command` (valgrind running `binary`).
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

    /// Tells the running bot's callgrind `options` (`--dump`, `--instr=off`) and waits until it
    /// has done it; nothing once the bot is stopped.
    fn control(&mut self, options: &[&str]) -> Result<(), String> {
        let Some(child) = &self.child else {
            return Ok(());
        };
        let done = Command::new("callgrind_control")
            .args(options)
            .arg(child.id().to_string())
            .output()
            .map_err(|e| format!("cannot run callgrind_control: {e}"))?;
        if done.status.success() {
            Ok(())
        } else {
            Err(format!(
                "callgrind_control {options:?} failed for {}: {}{}",
                self.name,
                String::from_utf8_lossy(&done.stdout).trim(),
                String::from_utf8_lossy(&done.stderr).trim()
            ))
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
            // A function without a symbol is named by its address, which no linker can place.
            let symbol = !function.is_empty() && !function.starts_with("0x");
            if in_binary && symbol && seen.insert(function.clone()) {
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
    let Some(rest) = spec
        .strip_prefix('(')
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    else {
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
    fn compressed_names_are_resolved_with_call_lines_sharing_the_ids() {
        // `cob=`/`cfn=` define ids that `ob=`/`fn=` use later (one space per kind, as in
        // callgrind's format): `(4)` is defined on a call line only; `ob` and `fn` ids are
        // separate spaces, so `fn=(2)` under `ob=(2)` (libc) is not the binary's, and `fn=(6)`
        // back under `ob=(1)` is.
        let profile = "\
ob=(1) /opt/bot/my-bot
fn=(1) _ZN4main17h0123456789abcdefE
1 5
cob=(2) /usr/lib/x86_64-linux-gnu/libc.so.6
cfn=(2) malloc
calls=1 0
1 20
cob=(1)
cfn=(4) _ZN3bot6callee17h0000000000000004E
calls=1 0
1 3
fn=(3) _ZN3bot4idle17h0000000000000001E
1 2
fn=(4)
1 3
ob=(2)
fn=(2)
1 20
fn=(5) free
1 4
ob=(1)
fn=(6) _ZN3bot4tick17h0000000000000006E
1 1
fn=(1)
1 1
fn=(3)
1 1
fn=(7) 0x000000000001f2a0
1 1
fn=(8) (below main)
1 1
";
        assert_eq!(
            executed_functions(profile, Path::new("/opt/bot/my-bot")),
            [
                "_ZN4main17h0123456789abcdefE",
                "_ZN3bot4idle17h0000000000000001E",
                "_ZN3bot6callee17h0000000000000004E",
                "_ZN3bot4tick17h0000000000000006E",
                "(below main)",
            ]
        );
    }
}
