//! The crate's error: the client core's [`bot_core::api::ApiError`], one shape for every platform.
//!
//! LINE's own error body is kept typed: read it with
//! `error.details::<bot_line::model::send::ApiError>()`; `X-Line-Request-Id` with
//! [`Error::request_id`].

pub use bot_core::api::{ApiError as Error, ApiErrorKind as ErrorKind};
