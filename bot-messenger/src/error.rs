//! The crate's error: the client core's, shared by every platform.
//!
//! [`Error::kind`] says what went wrong; a Graph API refusal keeps Meta's
//! [`GraphError`](crate::model::send::GraphError) as its details
//! (`error.details::<GraphError>()`), and its code and subcode as [`Error::code`] and
//! [`Error::subcode`]. Messenger's refusals are [`ErrorKind::Authentication`] (Graph code 190),
//! [`ErrorKind::UserNotFound`], [`ErrorKind::OutsideWindow`] and [`ErrorKind::UserUnavailable`].

pub use bot_core::api::{ApiError as Error, ApiErrorKind as ErrorKind};
