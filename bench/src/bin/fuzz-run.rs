//! fuzz-run: the property tests of every parser and signature check that takes bytes from the
//! network, millions of cases at a time, in-process.
//!
//! Run with: `cargo run --release -p bench --bin fuzz-run -- --cases 500000 --seed 1`
//!
//! It includes the very strategies and checks of the adapters' `tests/props.rs` (the files
//! `bot-core/tests/support/fuzzing.rs` and `bot-*/tests/props_cases/mod.rs`), draws inputs from
//! proptest's ChaCha generator seeded by `--seed` (the same seed draws the same cases), and
//! prints, per target, the cases run, cases per second and failures. A failure prints the case's
//! input and the message; the exit status is 1 when any case failed.

#[path = "../../../bot-core/tests/support/fuzzing.rs"]
mod fuzzing;

#[path = "../../../bot-line/tests/props_cases/mod.rs"]
mod line;

#[path = "../../../bot-messenger/tests/props_cases/mod.rs"]
mod messenger;

#[path = "../../../bot-discord/tests/props_cases/mod.rs"]
mod discord;

use std::fmt::Debug;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bot_discord::gateway::fuzz::FrameReader;
use clap::Parser;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree as _;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

use crate::fuzzing::Harness;

/// Runs the property tests' checks on millions of generated cases.
#[derive(Debug, Parser)]
#[command(name = "fuzz-run", about)]
struct Cli {
    /// Cases per target, scaled by the target's weight (see --list): about its cases per second
    /// over 5,000, so that each target takes a similar time.
    #[arg(long, default_value_t = 100_000)]
    cases: u64,
    /// The seed of the case generator: the same seed runs the same cases.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runs only the targets whose name contains this text.
    #[arg(long)]
    only: Option<String>,
    /// Lists the targets and their weights, and runs nothing.
    #[arg(long)]
    list: bool,
    /// Stops a target at its first failure.
    #[arg(long)]
    fail_fast: bool,
}

/// What one target did.
#[derive(Debug, Default)]
struct Outcome {
    cases: u64,
    rejected: u64,
    failures: u64,
    elapsed: Duration,
}

/// Runs `cases` cases of `strategy` through `check`, with a generator seeded from `seed` and the
/// target's name, so that targets draw different cases and each is reproducible alone.
fn run<S, C>(
    name: &str,
    seed: u64,
    cases: u64,
    fail_fast: bool,
    strategy: S,
    mut check: C,
) -> Outcome
where
    S: Strategy,
    S::Value: Debug,
    C: FnMut(&S::Value) -> Result<(), TestCaseError>,
{
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    for (i, byte) in name.bytes().enumerate() {
        key[8 + i % 24] ^= byte.rotate_left(i as u32 % 8);
    }
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &key);
    // Filters' rejections count over the runner's life; many millions of cases must not run out.
    let config = Config {
        max_local_rejects: u32::MAX,
        max_global_rejects: u32::MAX,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng);
    let mut outcome = Outcome::default();
    let started = Instant::now();
    for case in 0..cases {
        let value = match strategy.new_tree(&mut runner) {
            Ok(tree) => tree.current(),
            Err(_) => {
                outcome.rejected += 1;
                continue;
            }
        };
        outcome.cases += 1;
        let result = catch_unwind(AssertUnwindSafe(|| check(&value)));
        let failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(TestCaseError::Reject(_))) => {
                outcome.rejected += 1;
                None
            }
            Ok(Err(TestCaseError::Fail(reason))) => Some(reason.message().to_owned()),
            Err(panic) => Some(format!(
                "panicked: {}",
                panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)")
            )),
        };
        if let Some(reason) = failure {
            outcome.failures += 1;
            if outcome.failures <= 3 {
                let mut input = format!("{value:?}");
                if input.len() > 4000 {
                    let mut cut = 4000;
                    while !input.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    input.truncate(cut);
                    input.push_str(" ...");
                }
                eprintln!("FAIL {name} case {case} (seed {seed}): {reason}\n  input: {input}");
            }
            if fail_fast {
                break;
            }
        }
    }
    outcome.elapsed = started.elapsed();
    outcome
}

/// One target: a name, its weight, and how to run it.
struct Target {
    name: &'static str,
    weight: f64,
    run: fn(&str, u64, u64, bool) -> Outcome,
}

/// A harness that is rebuilt after a panic (its runtime may be left mid-request).
struct Fresh {
    make: fn() -> Harness,
    harness: Option<Harness>,
}

impl Fresh {
    fn new(make: fn() -> Harness) -> Self {
        Self {
            make,
            harness: None,
        }
    }

    fn check(
        &mut self,
        check: impl FnOnce(&Harness) -> Result<(), TestCaseError>,
    ) -> Result<(), TestCaseError> {
        let harness = self.harness.take().unwrap_or_else(self.make);
        let result = check(&harness);
        // Only reached when `check` did not panic.
        self.harness = Some(harness);
        result
    }
}

macro_rules! webhook_target {
    ($name:literal, $weight:expr, $make:path, $strategy:expr, |$h:ident, $v:pat_param| $check:expr) => {
        Target {
            name: $name,
            weight: $weight,
            run: |name, seed, cases, fail_fast| {
                let mut fresh = Fresh::new($make);
                run(name, seed, cases, fail_fast, $strategy, |value| {
                    let $v = value;
                    fresh.check(|$h| $check)
                })
            },
        }
    };
}

macro_rules! plain_target {
    ($name:literal, $weight:expr, $strategy:expr, |$v:pat_param| $check:expr) => {
        Target {
            name: $name,
            weight: $weight,
            run: |name, seed, cases, fail_fast| {
                run(name, seed, cases, fail_fast, $strategy, |value| {
                    let $v = value;
                    $check
                })
            },
        }
    };
}

fn targets() -> Vec<Target> {
    vec![
        webhook_target!(
            "line/round-trip",
            0.6,
            line::harness,
            line::line_events(),
            |h, events| line::check_round_trip(h, events)
        ),
        webhook_target!(
            "line/signed-mutations",
            0.3,
            line::harness,
            (line::line_events(), fuzzing::mutations()),
            |h, (events, mutations)| line::check_signed_mutation(h, events, mutations)
        ),
        webhook_target!(
            "line/signed-arbitrary",
            2.5,
            line::harness,
            fuzzing::arbitrary_body(),
            |h, body| line::check_signed_body(h, body)
        ),
        webhook_target!(
            "line/unsigned-arbitrary",
            2.0,
            line::harness,
            (
                fuzzing::arbitrary_body(),
                prop::option::of(fuzzing::arbitrary_header_value())
            ),
            |h, (body, signature)| line::check_unsigned(h, body, signature.as_deref())
        ),
        webhook_target!(
            "line/tampered-signatures",
            1.0,
            line::harness,
            (line::line_events(), line::tamper()),
            |h, (events, tamper)| line::check_tamper(h, events, tamper)
        ),
        webhook_target!(
            "messenger/round-trip",
            1.0,
            messenger::harness,
            messenger::entries(),
            |h, entries| messenger::check_round_trip(h, entries)
        ),
        webhook_target!(
            "messenger/signed-mutations",
            0.4,
            messenger::harness,
            (messenger::entries(), fuzzing::mutations()),
            |h, (entries, mutations)| messenger::check_signed_mutation(h, entries, mutations)
        ),
        webhook_target!(
            "messenger/signed-arbitrary",
            3.0,
            messenger::harness,
            fuzzing::arbitrary_body(),
            |h, body| messenger::check_signed_body(h, body)
        ),
        webhook_target!(
            "messenger/unsigned-arbitrary",
            3.0,
            messenger::harness,
            (
                fuzzing::arbitrary_body(),
                prop::option::of(fuzzing::arbitrary_header_value())
            ),
            |h, (body, signature)| messenger::check_unsigned(h, body, signature.as_deref())
        ),
        webhook_target!(
            "messenger/tampered-signatures",
            2.0,
            messenger::harness,
            (messenger::entries(), messenger::tamper()),
            |h, (entries, tamper)| messenger::check_tamper(h, entries, tamper)
        ),
        webhook_target!(
            "messenger/handshake",
            4.0,
            messenger::harness,
            messenger::subscription(),
            |h, params| messenger::check_subscription(h, params)
        ),
        webhook_target!(
            "messenger/handshake-arbitrary",
            4.0,
            messenger::harness,
            messenger::raw_query(),
            |h, query| messenger::check_raw_subscription(h, query)
        ),
        webhook_target!(
            "discord/interactions-round-trip",
            0.5,
            discord::harness,
            discord::interaction(),
            |h, interaction| discord::check_interaction_round_trip(h, interaction)
        ),
        webhook_target!(
            "discord/interactions-signed-mutations",
            0.3,
            discord::harness,
            (discord::interaction(), fuzzing::mutations()),
            |h, (interaction, mutations)| discord::check_interaction_mutation(
                h,
                interaction,
                mutations
            )
        ),
        webhook_target!(
            "discord/interactions-signed-arbitrary",
            0.5,
            discord::harness,
            fuzzing::arbitrary_body(),
            |h, body| discord::check_signed_interaction(h, body)
        ),
        webhook_target!(
            "discord/interactions-unsigned-arbitrary",
            1.5,
            discord::harness,
            (
                fuzzing::arbitrary_body(),
                prop::option::of(fuzzing::arbitrary_header_value()),
                prop::option::of(fuzzing::arbitrary_header_value()),
            ),
            |h, (body, signature, timestamp)| discord::check_interaction_unsigned(
                h,
                body,
                signature.as_deref(),
                timestamp.as_deref()
            )
        ),
        webhook_target!(
            "discord/interactions-tampered-signatures",
            0.4,
            discord::harness,
            (discord::interaction(), discord::tamper()),
            |h, (interaction, tamper)| discord::check_interaction_tamper(h, interaction, tamper)
        ),
        plain_target!(
            "discord/gateway-round-trip",
            2.0,
            discord::gateway_frames(),
            |frames| discord::check_frames_round_trip(frames)
        ),
        plain_target!(
            "discord/gateway-mutations",
            1.0,
            (discord::gateway_frame(), fuzzing::mutations()),
            |(frame, mutations)| discord::check_frame_mutation(frame, mutations)
        ),
        plain_target!(
            "discord/gateway-arbitrary",
            3.0,
            fuzzing::arbitrary_body(),
            |body| discord::check_frame_bytes(&mut FrameReader::default(), body)
        ),
        plain_target!(
            "discord/zlib-splits",
            1.0,
            (discord::zlib_messages(), discord::splits()),
            |(messages, splits)| discord::check_zlib_split(messages, splits)
        ),
        plain_target!(
            "discord/zlib-corrupt",
            1.0,
            (
                discord::zlib_messages(),
                prop::collection::vec(fuzzing::byte_mutation(), 1..4),
                prop::collection::vec(fuzzing::arbitrary_body(), 0..3),
            ),
            |(messages, mutations, garbage)| discord::check_zlib_corrupt(
                messages, mutations, garbage
            )
        ),
        plain_target!(
            "discord/zlib-truncated",
            0.8,
            (discord::zlib_messages(), any::<Index>()),
            |(messages, cut)| discord::check_zlib_truncated(messages, *cut)
        ),
        plain_target!(
            "discord/zlib-limit",
            0.25,
            discord::limit_case(),
            |(len, limit)| discord::check_zlib_limit(*len, *limit)
        ),
    ]
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let targets: Vec<Target> = targets()
        .into_iter()
        .filter(|t| cli.only.as_deref().is_none_or(|only| t.name.contains(only)))
        .collect();
    if cli.list {
        for target in &targets {
            println!("{:<44} weight {}", target.name, target.weight);
        }
        return ExitCode::SUCCESS;
    }
    // The checks report failures themselves; a panic's default report would repeat each.
    std::panic::set_hook(Box::new(|_| {}));
    println!(
        "{:<44} {:>11} {:>10} {:>9} {:>9} {:>9}",
        "target", "cases", "cases/s", "seconds", "rejected", "failures"
    );
    let started = Instant::now();
    let mut total = Outcome::default();
    for target in &targets {
        let cases = ((cli.cases as f64) * target.weight).ceil() as u64;
        let outcome = (target.run)(target.name, cli.seed, cases, cli.fail_fast);
        let seconds = outcome.elapsed.as_secs_f64();
        println!(
            "{:<44} {:>11} {:>10.0} {:>9.1} {:>9} {:>9}",
            target.name,
            outcome.cases,
            outcome.cases as f64 / seconds.max(1e-9),
            seconds,
            outcome.rejected,
            outcome.failures
        );
        total.cases += outcome.cases;
        total.rejected += outcome.rejected;
        total.failures += outcome.failures;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{:<44} {:>11} {:>10.0} {:>9.1} {:>9} {:>9}",
        "total",
        total.cases,
        total.cases as f64 / seconds.max(1e-9),
        seconds,
        total.rejected,
        total.failures
    );
    if total.failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
