//! A table booking: "book", a party size from quick replies, a time from buttons, a
//! confirmation; "cancel", "help" and "status" at any step. One handler for every platform
//! and the console; `main.rs` serves it, `tests/` walks every path on each platform.
//!
//! Written twice: with dialogs ([`handler`], the one `main.rs` serves) and by hand
//! ([`handmade::handler`]), as a bot without dialogs would be; the same tests walk both, and
//! `tests/lines.rs` counts the lines of each.

pub mod handmade;
mod with_dialogs;

pub use with_dialogs::{Booking, booking, handler};
