//! A part of a handler's send made at most once where Discord offers no idempotency key.
//!
//! Not Discord's own: any client that remembers its sends in [`SentKeys`] by (event, send
//! index, part) needs this rule (Messenger's per-part loop has it too); it belongs in bot-core.

use std::future::Future;

use bot_core::api::{ApiError, SentKeys};
use bot_core::outbound::PartKey;

/// Makes `call`, part `part` of a send, once: skipped when `key` is remembered in `sent`;
/// remembered once sent, or once it may have been (then the error stays retryable, a retried
/// handler skipping this part). Without a key, a part after the first that fails makes the error
/// permanent: a retry would send the first parts twice.
///
/// # Errors
///
/// The call's error, for the runtime.
pub(crate) async fn send_once(
    sent: &SentKeys<PartKey>,
    key: Option<PartKey>,
    part: usize,
    call: impl Future<Output = Result<(), ApiError>>,
) -> Result<(), bot_core::Error> {
    if let Some(key) = &key
        && sent.contains(key)
    {
        tracing::debug!(event = %key.0, send_index = key.1, part, "part already sent; skipped on this retry");
        return Ok(());
    }
    match call.await {
        Ok(()) => {
            if let Some(key) = key {
                sent.insert(key);
            }
            Ok(())
        }
        Err(e) if e.maybe_delivered() => {
            let recorded = key.is_some();
            if let Some(key) = key {
                sent.insert(key);
            }
            Err(e.into_core(recorded))
        }
        Err(e) if key.is_none() && part > 0 && e.is_retryable() => {
            Err(bot_core::Error::from(e).permanent())
        }
        Err(e) => Err(e.into()),
    }
}
