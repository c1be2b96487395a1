//! [`assert_refused_before_sending`]: what an adapter must refuse before it calls its platform.

use crate::Outbound;
use crate::api::{ApiError, ApiErrorKind};
use crate::outbound::{OutgoingMessage, Target};

/// Sends each of `messages` alone through `outbound` to `target` and checks that each is refused
/// as [`ApiErrorKind::InvalidRequest`] (a platform limit, a kind the platform cannot show),
/// permanent for the runtime. Check the platform's fake afterwards for the "before sending".
///
/// # Panics
///
/// When a message is sent, or refused for another reason.
pub async fn assert_refused_before_sending<O: Outbound + ?Sized>(
    outbound: &O,
    target: &Target,
    messages: impl IntoIterator<Item = OutgoingMessage>,
) {
    for message in messages {
        let shown = format!("{message:?}");
        let Err(error) = outbound.send(target, vec![message]).await else {
            panic!("sent, not refused: {shown}");
        };
        assert!(!error.is_retryable(), "{error}");
        let kind = std::error::Error::source(&error)
            .and_then(|e| e.downcast_ref::<ApiError>())
            .map(ApiError::kind);
        assert_eq!(kind, Some(ApiErrorKind::InvalidRequest), "{error}");
    }
}
