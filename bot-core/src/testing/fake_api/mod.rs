//! A fake platform API on 127.0.0.1 that records every call and can inject latency and failures.
//!
//! Each adapter's `testing` feature builds its platform's fake on [`FakeApi`]: the adapter supplies
//! a responder (what the platform would answer), and tests read what the bot sent with
//! [`FakeApi::calls`] or [`FakeApi::wait_for_calls`], slow the API down with
//! [`FakeApi::set_latency`] and make it fail with [`FakeApi::inject`].
//!
//! # Examples
//!
//! ```
//! use bot_core::testing::fake_api::{FakeApi, FakeResponse, Fault};
//! use http::StatusCode;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let api = FakeApi::start(|_request| {
//!     FakeResponse::json(StatusCode::OK, &serde_json::json!({}))
//! })
//! .await?;
//! // The next request to /v2/ answers 429; later ones get the responder's answer.
//! api.inject(Fault::status(StatusCode::TOO_MANY_REQUESTS).on_path("/v2/"));
//! let base_url = api.url(); // give it to the client under test
//! # let _ = base_url;
//! assert_eq!(api.call_count(), 0);
//! # Ok(()) }
//! ```

mod clock;
mod handle;
mod request;
mod response;
mod server;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use handle::{FakeApi, FakeApiBuilder};
pub use request::{Call, FakeRequest};
pub use response::{FakeResponse, Fault, Latency};

/// How long [`FakeApi::wait_for_calls`] waits by default before it gives up.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(20);
/// How many calls a fake keeps by default (the count goes on past it).
pub const DEFAULT_RECORD_LIMIT: usize = 100_000;
