//! Sending messages back to a platform.
//!
//! Each adapter's API client implements [`Outbound`]; [`crate::Context::reply`] picks the one of the
//! event's platform. [`OutgoingMessage`] is the platform-neutral message that adapters map to their
//! own formats (LINE messages and Flex, Messenger templates, Discord embeds and components):
//!
//! - text, an [`Image`], [`QuickReply`]s and [`Button`]s;
//! - a [`Rich`] part: a [`Card`], a carousel of cards, a [`File`], a typing indicator, or a
//!   [`PlatformMessage`] — one platform's own message JSON, for what no neutral kind expresses
//!   (sent with [`crate::Context::reply_with`]).
//!
//! The book's "Messages" chapter shows how each kind renders on each platform, and the fallbacks.

mod channels;
mod client;
mod message;
mod platform;
mod rate_limit;
mod rendered;
mod rich;
mod sent_parts;
mod target;

pub use channels::{Channels, Instrumented, NumberedVars, numbered_vars};
pub use client::Outbound;
pub use message::{Action, Button, Image, OutgoingMessage, QuickReply};
pub use platform::{PlatformMessage, Rendering};
pub use rate_limit::RateLimit;
pub use rendered::{Rendered, at_most, chars_at_most, collect_into, messages_of, render_send};
pub use rich::{Card, File, Rich};
pub use sent_parts::{MAX_SENT_PARTS, PartKey, SENT_PARTS_TTL, SentParts};
pub use target::Target;
