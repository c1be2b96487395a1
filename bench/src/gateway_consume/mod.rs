//! `gateway-consume`: how fast one shard consumes MESSAGE_CREATE dispatches, botrt's (noop-bot
//! with one Discord shard and a no-op handler) against twilight-gateway 0.18's
//! (`twilight-consume`), each against the same fake gateway in the same run.
//!
//! The fake ([`fake_gateway::FastGateway`]) speaks just enough of the gateway protocol (HELLO, IDENTIFY,
//! READY, heartbeat ACKs) and then writes `--messages` dispatches of about 1 KB, uncompressed,
//! with increasing sequence numbers, as fast as the client reads them: TCP back-pressure alone
//! sets the pace. Frames are written from a template into a buffer, so the generator costs
//! little next to the client. A client has consumed a dispatch when it is handled: for noop-bot,
//! counted by its `/metrics` (`bot_events_processed_total`, polled); for twilight-consume, when
//! it says `consumed N` after parsing the N-th into twilight-model's `Event`.//!
//! The rooms: `fake_gateway.rs` ([`fake_gateway::FastGateway`]), `frames.rs` (the dispatches it writes),
//! `measure.rs` (the runs and the report).

mod fake_gateway;
mod frames;
mod measure;
#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::RecordArgs;

pub(crate) use fake_gateway::FastGateway;
pub(crate) use measure::{discord_only, gateway_consume, poll_processed};

/// The token the fakes accept.
const TOKEN: &str = crate::gateway::TOKEN;
/// The heartbeat interval HELLO asks for (Discord's usual one).
const HEARTBEAT_INTERVAL_MS: u64 = 41_250;
/// The guild every message is in.
const GUILD_ID: u64 = 1_100_000_000_000_000_001;
/// Frames written between flushes: fewer syscalls, and still a steady stream.
const FLUSH_EVERY: u64 = 32;
/// How long without progress ends a run as failed.
const STALL: Duration = Duration::from_secs(30);

/// `botload scenario gateway-consume`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConsumeArgs {
    /// MESSAGE_CREATE dispatches per run.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(super) messages: u64,
    /// Runs of each client, alternated (twilight, noop-bot, twilight, ...).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub(super) runs: u32,
    /// Channels the messages are spread over.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub(super) channels: u64,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(crate) record: RecordArgs,
}
