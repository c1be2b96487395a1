//! The `slow-api` and `db-pool` scenarios: a bot whose every handler awaits a 2-3 s API call,
//! with tens of thousands of them in flight, and the same with one PostgreSQL query per event
//! through a pool far smaller than that.
//!
//! botload serves a fake LINE Reply API in its own process (HTTP/1.1 and h2c, answering after
//! the latency), starts `scenario-bot` as a child process pointed at it, posts signed webhooks at
//! a fixed rate, and reads the outcome from three places: the fake (which reply tokens came back,
//! when, twice or never), `/proc` (the bot's memory and CPU) and the bot's `/metrics` (queue
//! depth, handler outcomes, pool waits).
//!
//! The rooms: `args.rs` (the arguments), `webhooks.rs` (the load), `tally.rs` (what the fake
//! API saw), `outcome.rs` (the figures of a run), `run.rs` (a run, and `slow-api`), `db_pool.rs`
//! (`db-pool`).

mod args;
mod db_pool;
mod outcome;
mod run;
mod tally;
#[cfg(test)]
mod tests;
mod webhooks;

pub(crate) use args::{DbPoolArgs, SlowApiArgs};
pub(crate) use db_pool::db_pool;
pub(crate) use run::slow_api;

/// The Reply API's path.
const REPLY_PATH: &str = "/v2/bot/message/reply";
/// The database of `db-pool` when neither `--database-url` nor `DATABASE_URL` is given.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Seconds at the start of the load left out of the throughput: in-flight calls are still
/// filling up (the first answers come after the API's lowest latency).
const RAMP_UP_SECONDS: u64 = 3;
/// Event numbers in the reply tokens are `request * 1000 + event` (see `payload`).
const EVENTS_PER_REQUEST_STRIDE: u64 = 1000;

/// The `slow-api` goals.
const GOAL_EVENTS_PER_SECOND: f64 = 15_000.0;
const GOAL_KIB_PER_IN_FLIGHT: f64 = 4.0;
