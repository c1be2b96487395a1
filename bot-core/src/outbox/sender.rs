//! The handler the outbox's senders run for each message: send it through its platform's client.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::message::Payload;
use super::metrics::Counts;
use crate::api::{ApiError, ApiErrorKind, Dispatch};
use crate::context::Context;
use crate::error::{BoxError, Error, ErrorKind};
use crate::event::{Event, Platform};
use crate::handler::Handler;
use crate::outbound::Outbound;

/// Sends one outbox message per call; an error fails the attempt (retried by the runtime, or a
/// dead letter at once when the error is permanent, as a platform's refusal is).
pub(super) struct SendHandler {
    outbounds: HashMap<Platform, Arc<dyn Outbound>>,
    counts: Arc<Counts>,
}

impl SendHandler {
    pub(super) fn new(
        outbounds: HashMap<Platform, Arc<dyn Outbound>>,
        counts: Arc<Counts>,
    ) -> Self {
        Self { outbounds, counts }
    }
}

#[async_trait]
impl Handler for SendHandler {
    async fn call(&self, _cx: Context, event: Event) -> Result<(), BoxError> {
        let result = self.send(&event).await;
        Counts::add(
            if result.is_ok() {
                &self.counts.sent
            } else {
                &self.counts.failed
            },
            1,
        );
        result.map_err(Into::into)
    }
}

impl SendHandler {
    async fn send(&self, event: &Event) -> Result<(), Error> {
        let (mut target, mut messages) = Payload::of(event)?;
        let Some(client) = self.outbounds.get(&event.platform) else {
            return Err(Error::new(
                ErrorKind::NoOutbound,
                format!(
                    "outbox: this process has no client for {}; give its senders one",
                    event.platform
                ),
            )
            .permanent());
        };
        loop {
            let dispatch = Dispatch::new();
            match dispatch.scope(client.send(&target, messages)).await {
                // Only when the whole send wrote no request: a message of several pushes whose
                // first went out fails this attempt as any other failure does (its retry skips
                // or deduplicates what went out), rather than push its first part again and
                // again while the later ones wait.
                Err(e) if e.is_retryable() && !dispatch.happened() && unsent(&e) => {
                    // It waited its turn under the client's rate limits until the call's
                    // deadline, or the limits said it cannot go out before it: nothing went
                    // out, so it is not an attempt. It waits again (the senders' lease on it is
                    // kept while it does): a campaign under a low limit takes as long as the
                    // limit requires, and no message becomes a dead letter for waiting its turn.
                    Counts::add(&self.counts.waited, 1);
                    tracing::debug!(
                        platform = %event.platform, error = %e,
                        "outbox: a send waited for the rate limits past its deadline; waiting again"
                    );
                    if let Some(after) = e.retry_after() {
                        tokio::time::sleep(after.min(MAX_LIMIT_WAIT)).await;
                    }
                    (target, messages) = Payload::of(event)?;
                }
                result => return result,
            }
        }
    }
}

/// The longest a send sleeps on a rate limit's hint before it asks the limits again.
const MAX_LIMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether `error` is an API call's that sent no request: its deadline passed while it waited
/// to be admitted by the rate limits, or the limits said it could not go out before it.
fn unsent(error: &Error) -> bool {
    let Some(api) = std::error::Error::source(error).and_then(|s| s.downcast_ref::<ApiError>())
    else {
        return false;
    };
    api.attempts() == 0
        && matches!(
            api.kind(),
            ApiErrorKind::Timeout | ApiErrorKind::RateLimited
        )
}
