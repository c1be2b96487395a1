//! The handler the outbox's senders run for each message: send it through its platform's client.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::message::Payload;
use super::metrics::Counts;
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
        let (target, messages) = Payload::of(event)?;
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
        client.send(&target, messages).await
    }
}
