#![doc = include_str!("../README.md")]

mod error;
pub mod event;
pub mod gateway;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{Error, ErrorKind};

/// Discord's gateway URL, used until `GET /gateway/bot` or `DISCORD_GATEWAY_URL` says otherwise.
pub const DEFAULT_GATEWAY_URL: &str = "wss://gateway.discord.gg";
/// Discord's REST API base.
pub const DEFAULT_API_BASE: &str = "https://discord.com/api/v10";
