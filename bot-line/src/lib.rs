//! The LINE Messaging API adapter for bot-core.
//!
//! This crate is being built: the adapter (webhook verification and parsing, event mapping, the
//! rate-limited API client and a fake of the platform for tests) lands with its own issue. It
//! re-exports nothing yet so that nothing half-done can be depended on.
