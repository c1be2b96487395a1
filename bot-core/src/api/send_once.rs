//! [`send_once`]: one part of a send, made at most once where the platform has no idempotency key.

use std::time::Instant;

use super::dispatch::Dispatch;
use super::error::ApiError;
use super::sent::SentKeys;

/// Makes `call`, part `part` of a handler's send, at most once where the platform offers no
/// idempotency key: skipped when `key` is remembered in `sent`. The key is held in flight for the
/// time of the call ([`Mark`](crate::api::Mark)): a send cut off after its request was written
/// (the handler timed out, the process is stopping) counts as made, one cut off before does not;
/// a call that failed without reaching the platform is forgotten. A part that may have gone out
/// keeps its key, and its error stays retryable: a retried handler skips it and sends the parts
/// after it. Without a key, a part after the first that fails makes the error permanent: a retry
/// would send the first parts twice.
///
/// A part another attempt of the same handler is sending now (a redelivery while the first
/// attempt still runs) is neither skipped nor sent twice: this waits for that attempt's outcome
/// until `deadline` ([`SentKeys::claim`]), then skips the part if it was made and sends it if it
/// was not. Skipping at once would report the part as sent although the first attempt may still
/// fail without sending it; sending at once could show it twice.
///
/// # Errors
///
/// The call's error, for the runtime; a retryable time-out when the other attempt still sends
/// the part at `deadline`.
pub async fn send_once(
    sent: &SentKeys<crate::outbound::PartKey>,
    key: Option<crate::outbound::PartKey>,
    part: usize,
    deadline: Instant,
    call: impl std::future::Future<Output = Result<(), ApiError>>,
) -> Result<(), crate::Error> {
    let dispatch = Dispatch::new();
    let mark = match key {
        Some(key) => {
            let (event, send_index) = (key.0.clone(), key.1);
            match sent.claim(key, &dispatch, deadline).await {
                Ok(Some(mark)) => Some(mark),
                Ok(None) => {
                    tracing::debug!(
                        event = %event, send_index, part,
                        "part already sent; skipped on this retry"
                    );
                    return Ok(());
                }
                Err(e) => return Err(e.into_core(true)),
            }
        }
        None => None,
    };
    let keyed = mark.is_some();
    match dispatch.scope(call).await {
        Ok(()) => {
            if let Some(mark) = mark {
                mark.keep();
            }
            Ok(())
        }
        Err(e) if e.maybe_delivered() && dispatch.happened() => {
            if let Some(mark) = mark {
                mark.keep();
            }
            Err(e.into_core(keyed))
        }
        Err(e) => {
            if let Some(mark) = mark {
                mark.forget();
            }
            if !keyed && part > 0 && e.is_retryable() {
                return Err(crate::Error::from(e).permanent());
            }
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::api::ApiErrorKind;
    use crate::api::client::now;
    use crate::api::dispatch::note_dispatched;
    use crate::api::sent::KeyState;

    #[tokio::test]
    async fn a_part_is_remembered_before_its_call_and_forgotten_only_when_it_was_not_made() {
        let sent = SentKeys::new(Duration::from_secs(60), 10);
        let key = || Some((crate::EventId::new("e"), 0, 0));
        // Cut off before its request was written: forgotten, the retried handler sends it.
        let waiting = send_once(&sent, key(), 0, far(), std::future::pending());
        assert!(
            tokio::time::timeout(Duration::from_millis(10), waiting)
                .await
                .is_err()
        );
        assert!(!sent.contains(&key().unwrap()));
        // Cut off after: remembered, so a retried handler skips it.
        let written = send_once(&sent, key(), 0, far(), async {
            note_dispatched();
            std::future::pending().await
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(10), written)
                .await
                .is_err()
        );
        assert!(sent.contains(&key().unwrap()));
        assert!(
            send_once(&sent, key(), 0, far(), async { panic!("sent twice") })
                .await
                .is_ok()
        );
        // Refused before reaching the platform: forgotten, the retry sends it.
        let other = || Some((crate::EventId::new("f"), 0, 0));
        let refused = ApiError::new(ApiErrorKind::RateLimited, "r");
        assert!(
            send_once(&sent, other(), 0, far(), async { Err(refused) })
                .await
                .is_err()
        );
        assert!(!sent.contains(&other().unwrap()));
        // May have been delivered: kept, and retryable for the runtime since it is remembered.
        let maybe = ApiError::new(ApiErrorKind::Timeout, "t").with_maybe_delivered(true);
        let error = send_once(&sent, other(), 0, far(), async {
            note_dispatched();
            Err(maybe)
        })
        .await
        .unwrap_err();
        assert!(error.is_retryable());
        assert!(sent.contains(&other().unwrap()));
    }

    /// A deadline no test reaches.
    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    /// Two attempts of one handler send the same part at once: the first holds it in flight
    /// until `outcome` is released, then ends with it. Returns both results and whether the
    /// second attempt's call ran.
    async fn concurrent(
        outcome: Result<(), ApiError>,
        release: bool,
    ) -> (Result<(), crate::Error>, Result<(), crate::Error>, bool) {
        let sent = SentKeys::new(Duration::from_secs(60), 10);
        let key = || Some((crate::EventId::new("e"), 0, 0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut first = std::pin::pin!(send_once(&sent, key(), 0, far(), async {
            note_dispatched();
            let _ = rx.await;
            outcome
        }));
        assert!(futures::poll!(first.as_mut()).is_pending());
        assert_eq!(sent.state(&key().unwrap()), KeyState::InFlight);
        let called = AtomicBool::new(false);
        let deadline = now() + Duration::from_secs(20);
        let mut second = std::pin::pin!(send_once(&sent, key(), 0, deadline, async {
            called.store(true, Ordering::SeqCst);
            Ok(())
        }));
        assert!(
            futures::poll!(second.as_mut()).is_pending(),
            "the second attempt neither skips nor sends a part in flight"
        );
        assert!(!called.load(Ordering::SeqCst));
        if release {
            tx.send(()).unwrap();
            let first = first.await;
            (first, second.await, called.load(Ordering::SeqCst))
        } else {
            let second = second.await;
            drop(tx);
            (first.await, second, called.load(Ordering::SeqCst))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_concurrent_attempt_skips_a_part_only_once_the_first_made_it() {
        let (first, second, called) = concurrent(Ok(()), true).await;
        assert!(first.is_ok() && second.is_ok());
        assert!(!called, "made by the first attempt: not sent twice");
    }

    #[tokio::test(start_paused = true)]
    async fn a_concurrent_attempt_sends_a_part_the_first_failed_to_make() {
        // A 503 after the request was written: refused, so not made.
        let refused = ApiError::new(ApiErrorKind::Server, "busy");
        let (first, second, called) = concurrent(Err(refused), true).await;
        assert!(first.is_err());
        assert!(second.is_ok());
        assert!(
            called,
            "the first attempt did not make it: the second sends it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_concurrent_attempt_gives_up_at_its_deadline_with_a_retryable_error() {
        let started = tokio::time::Instant::now();
        let (_, second, called) = concurrent(Ok(()), false).await;
        let error = second.unwrap_err();
        assert!(error.is_retryable(), "{error}");
        assert!(!called);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(19) && waited <= Duration::from_secs(21),
            "waited {waited:?}"
        );
    }
}
