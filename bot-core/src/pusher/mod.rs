//! Bulk outbound sending: campaigns and notifications to many users outside a conversation.
//!
//! A [`Pusher`] holds a bounded buffer of pushes and `k` lanes. Each lane owns one sender (for
//! example one [`bot_line::LineClient`](https://docs.rs/bot-line) on its own HTTP/2 connection)
//! and keeps at most `window` sends of it in flight, so the pusher sends at most
//! `k · window / latency` a second and never holds more than `capacity` pushes in memory. When
//! producers offer more than that, the [`Overflow`] policy decides: refuse with a clear error
//! ([`Overflow::Reject`], the default), make the producer wait ([`Overflow::Wait`]), or shed load
//! ([`Overflow::DropOldest`], [`Overflow::DropNewest`]). Every push ends in exactly one count of
//! the [`PushReport`] (sent, failed, dropped by reason) and of the `bot.push.*` metrics.
//!
//! - **Lanes** are tasks, one per sender; a lane runs its sends as futures inside its own task,
//!   so a million pushes never spawn more than `k` tasks.
//! - **Retries** are the sender's business: the platform clients already retry 429, 5xx and
//!   time-outs with their [`crate::RetryPolicy`] (LINE with an `X-Line-Retry-Key`, so a retry
//!   never delivers twice). What still fails is counted as failed, and logged.
//! - **Closing** ([`Pusher::close`]) refuses new pushes and waits until the buffer is drained and
//!   every send answered; [`Pusher::shutdown`] waits at most a time-out, then cancels what is left
//!   and counts it (`unsent`, `cancelled`).
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use bot_core::Overflow;
//! use bot_core::pusher::Pusher;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), bot_core::Error> {
//! // Two lanes; a lane's sender here is just its number.
//! let pusher = Pusher::builder()
//!     .window(10)
//!     .capacity(1_000)
//!     .overflow(Overflow::Wait)
//!     .start(vec![0_u32, 1], |_lane: u32, user: String| async move {
//!         // Send to `user` here; an `Err` is counted as failed.
//!         Ok::<(), bot_core::Error>(())
//!     })?;
//! for n in 0..100 {
//!     pusher.push(format!("U{n}")).await?;
//! }
//! let report = pusher.close().await;
//! assert_eq!(report.sent, 100);
//! assert!(report.is_balanced());
//! # Ok(()) }
//! ```
//!
//! [`Overflow`]: crate::Overflow
//! [`Overflow::Reject`]: crate::Overflow::Reject
//! [`Overflow::Wait`]: crate::Overflow::Wait
//! [`Overflow::DropOldest`]: crate::Overflow::DropOldest
//! [`Overflow::DropNewest`]: crate::Overflow::DropNewest

mod buffer;
mod builder;
mod error;
mod handle;
mod lane;
mod push;
mod report;
#[cfg(test)]
mod tests;

pub use builder::PusherBuilder;
pub use error::{PushError, PushErrorKind};
pub use handle::{Pushed, Pusher};
pub use push::Push;
pub use report::PushReport;

/// Sends in flight per lane by default, the stream limit most HTTP/2 servers announce.
pub const DEFAULT_WINDOW: usize = 100;
/// Pushes buffered by default.
pub const DEFAULT_CAPACITY: usize = 10_000;
