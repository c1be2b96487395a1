//! [`Fanout`]: how a message for a user reaches the user's sockets on other nodes.
//!
//! Each node delivers to its own sockets, then publishes an [`Envelope`]; every other node hands
//! it to its hub, which delivers it to the user's sockets there (and to nobody when the user has
//! none there). The default engine is PostgreSQL `LISTEN/NOTIFY` (`pg::PgCluster`,
//! feature `postgres`); another engine (NATS) implements this trait.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::hub::Hub;

/// One send, as it travels between nodes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// The node that sent it (which ignores its own envelopes).
    #[serde(rename = "n")]
    pub node: String,
    /// The user it is for.
    #[serde(rename = "u")]
    pub user: String,
    /// The messages, each a [`crate::WireMessage`]'s JSON.
    #[serde(rename = "m", default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<Box<RawValue>>,
    /// Whether it shows the typing indicator.
    #[serde(rename = "t", default, skip_serializing_if = "std::ops::Not::not")]
    pub typing: bool,
    /// The handler send it came from (event id, send index), so that a retried handler's send
    /// is shown once on every node.
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<(String, u32)>,
    /// The messages' numbers, when the cluster numbers them (the history is in PostgreSQL):
    /// every node delivers them under these numbers, each once and in order.
    #[serde(rename = "s", default, skip_serializing_if = "Vec::is_empty")]
    pub seqs: Vec<u64>,
    /// The messages' ids, with `seqs`.
    #[serde(rename = "i", default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    /// When the messages were sent (Unix milliseconds), with `seqs`.
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
}

/// Where a [`Fanout`] hands the envelopes of other nodes: this node's sockets.
#[derive(Debug, Clone)]
pub struct LocalDelivery {
    hub: Arc<Hub>,
}

impl LocalDelivery {
    pub(crate) fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// Delivers `envelope` to the user's sockets on this node, if any; how many.
    pub fn deliver(&self, envelope: &Envelope) -> usize {
        if envelope.typing {
            self.hub.typing(&envelope.user);
        }
        if envelope.messages.is_empty() {
            return self.hub.sockets_of(&envelope.user);
        }
        if self.hub.is_cluster_numbered() {
            if envelope.seqs.len() != envelope.messages.len()
                || envelope.ids.len() != envelope.messages.len()
            {
                // Another node without the cluster's numbering: nothing to number it with.
                tracing::warn!(
                    node = envelope.node,
                    "webchat: an envelope without numbers on a cluster-numbered node"
                );
                return 0;
            }
            let at = envelope.at.unwrap_or(0);
            let frames = (envelope.seqs.iter().zip(&envelope.ids))
                .zip(&envelope.messages)
                .map(|((seq, id), m)| (*seq, crate::hub::message_frame(*seq, id, at, m.get())))
                .collect();
            return self.hub.deliver_numbered(&envelope.user, frames);
        }
        let messages: Vec<&str> = envelope.messages.iter().map(|m| m.get()).collect();
        let origin =
            (envelope.origin.as_ref()).map(|(id, index)| (bot_core::EventId::new(id), *index));
        self.hub
            .deliver_if_present(&envelope.user, &messages, origin)
            .sockets
    }
}

/// A cross-node delivery engine.
#[async_trait]
pub trait Fanout: Send + Sync + fmt::Debug + 'static {
    /// This node's name, as envelopes carry it.
    fn node(&self) -> &str;

    /// Sends `envelope` to the other nodes.
    ///
    /// # Errors
    ///
    /// When the engine refuses it or cannot be reached.
    async fn publish(&self, envelope: &Envelope) -> Result<(), Error>;

    /// Sends `envelopes` to the other nodes, in order (a batch of the history writer). The
    /// default publishes them one by one.
    ///
    /// # Errors
    ///
    /// As [`Fanout::publish`], at the first that fails.
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Result<(), Error> {
        for envelope in envelopes {
            self.publish(envelope).await?;
        }
        Ok(())
    }

    /// Whether other nodes' envelopes reach this node now (the subscription is up). A node
    /// whose numbers are the cluster's reads what it missed meanwhile when this turns true.
    fn is_listening(&self) -> bool {
        true
    }

    /// Receives the other nodes' envelopes and hands them to `local` until `shutdown`;
    /// reconnects by itself when the engine's connection drops.
    ///
    /// # Errors
    ///
    /// Only when it cannot go on at all; the adapter logs it.
    async fn run(&self, local: LocalDelivery, shutdown: CancellationToken) -> Result<(), Error>;
}

/// Runs `listen_once` (one connection's or subscription's life, `Ok` at shutdown) again after
/// each failure, with a back-off from 400 ms to 6.4 s, until `shutdown`; `listening` is false
/// between lives. `engine` names the connection in the warning.
#[cfg_attr(not(any(feature = "postgres", feature = "nats")), allow(dead_code))]
pub(crate) async fn listen_until_shutdown<F, Fut>(
    engine: &str,
    listening: &AtomicBool,
    shutdown: &CancellationToken,
    mut listen_once: F,
) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let mut failures = 0u32;
    loop {
        let outcome = listen_once().await;
        listening.store(false, Ordering::Release);
        match outcome {
            Ok(()) => return Ok(()),
            Err(e) => {
                failures = failures.saturating_add(1);
                let pause = Duration::from_millis(200 << failures.min(5));
                tracing::warn!(
                    error = %e,
                    retry_in = ?pause,
                    "webchat: {engine} failed; other nodes' messages wait for it"
                );
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
            }
        }
    }
}
