//! The worker's settings, read from the environment and checked once at start-up: a value that
//! does not parse stops the worker with a message naming the variable, instead of a silent
//! default (`tests/config_errors.rs`).

use std::num::NonZeroUsize;
use std::time::Duration;

use bot_core::env::{invalid, parse, parse_or, var};
use bot_core::{Error, Ordering};

const WHOLE_NUMBER: &str = "a whole number";
const ABOVE_ZERO: &str = "a whole number above zero";
const MILLISECONDS: &str = "a whole number of milliseconds";

/// Which queue the worker runs on (`QUEUE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Postgres,
    JetStream,
}

/// How long the simulated call takes: for every event, and for events whose text is `long`.
/// The handlers find it in the bot's app state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Work {
    pub(crate) normal: Duration,
    pub(crate) long: Duration,
}

/// Everything the worker reads from the environment but the database and NATS URLs (the crate
/// docs list the variables).
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) backend: Backend,
    pub(crate) addr: String,
    pub(crate) schema: String,
    pub(crate) work: Work,
    pub(crate) max_in_flight: usize,
    pub(crate) ordering: Ordering,
    pub(crate) noop_handler: bool,
    pub(crate) prefetch: Option<usize>,
    pub(crate) lease: Option<Duration>,
    pub(crate) pool_size: usize,
    pub(crate) worker_processes: usize,
    pub(crate) partitions: u32,
    pub(crate) partition_in_flight: usize,
    pub(crate) queue_capacity: Option<usize>,
}

impl Settings {
    /// Reads and checks every variable.
    pub(crate) fn from_env() -> Result<Self, Error> {
        let backend = one_of(
            "QUEUE",
            &[
                ("postgres", Backend::Postgres),
                ("jetstream", Backend::JetStream),
            ],
        )?;
        let ordering = one_of(
            "ORDERING",
            &[
                ("per-conversation", Ordering::PerConversation),
                ("unordered", Ordering::Unordered),
            ],
        )?;
        let normal = Duration::from_millis(parse_or("WORK_MS", MILLISECONDS, || 2000)?);
        let long = parse("LONG_MS", MILLISECONDS)?.map_or(normal, Duration::from_millis);
        let above_zero = |name: &str, default: NonZeroUsize| -> Result<usize, Error> {
            Ok(parse_or(name, ABOVE_ZERO, || default)?.get())
        };
        let addr: std::net::SocketAddr = parse_or(
            bot_core::env::ADDR_ENV,
            "an address such as 127.0.0.1:8080",
            || ([127, 0, 0, 1], 8080).into(),
        )?;
        Ok(Self {
            backend,
            addr: addr.to_string(),
            schema: var("BOT_SCHEMA").unwrap_or_else(|| "public".to_owned()),
            work: Work { normal, long },
            max_in_flight: above_zero("MAX_IN_FLIGHT", NonZeroUsize::new(256).expect("256"))?,
            ordering,
            noop_handler: one_of("HANDLER", &[("work", false), ("noop", true)])?,
            prefetch: parse("PREFETCH", WHOLE_NUMBER)?,
            lease: parse("LEASE_MS", MILLISECONDS)?.map(Duration::from_millis),
            pool_size: above_zero("POOL_SIZE", NonZeroUsize::new(16).expect("16"))?,
            worker_processes: above_zero("WORKER_PROCESSES", NonZeroUsize::new(2).expect("2"))?,
            partitions: parse_or("PARTITIONS", WHOLE_NUMBER, || 16)?,
            partition_in_flight: above_zero(
                "PARTITION_IN_FLIGHT",
                NonZeroUsize::new(512).expect("512"),
            )?,
            queue_capacity: parse("QUEUE_CAPACITY", WHOLE_NUMBER)?,
        })
    }
}

/// The value of `name` among `choices`, ignoring case; the first choice when it is unset.
fn one_of<T: Copy>(name: &str, choices: &[(&str, T)]) -> Result<T, Error> {
    let Some(value) = var(name) else {
        return Ok(choices[0].1);
    };
    let chosen = choices
        .iter()
        .find(|(choice, _)| value.eq_ignore_ascii_case(choice));
    match chosen {
        Some((_, chosen)) => Ok(*chosen),
        None => {
            let names: Vec<&str> = choices.iter().map(|(choice, _)| *choice).collect();
            let expected = format!("one of {}", names.join(", "));
            Err(invalid(name, &expected, &value))
        }
    }
}
