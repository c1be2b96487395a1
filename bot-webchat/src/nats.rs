//! [`NatsFanout`]: cross-node delivery over NATS publish/subscribe (feature `nats`), for sites
//! that already run NATS, or whose nodes outgrow one PostgreSQL's `NOTIFY`.
//!
//! Every node subscribes to one subject of the application's own (`webchat.fanout.<name>`) and
//! publishes there each send made on it; a node skips its own envelopes. Delivery is at most once
//! per node, as `NOTIFY`'s is: a node that is disconnected when a message is published misses it
//! for its live sockets, and its users get it from the history their client resumes with.
//! The client reconnects by itself and keeps its subscription across reconnections.
//! Presence stays in PostgreSQL ([`crate::pg::PgCluster`]) when both are used.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use bot_webchat::WebChat;
//! use bot_webchat::nats::NatsFanout;
//!
//! let fanout = NatsFanout::connect("nats://127.0.0.1:4222", "shop", "node-1").await?;
//! let webchat = WebChat::builder("a-secret-of-at-least-32-bytes-long!!")
//!     .fanout(Arc::new(fanout))
//!     .build()?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bot_core::nats::async_nats;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind};
use crate::fanout::{Envelope, Fanout, LocalDelivery, listen_until_shutdown};

/// The subject prefix every node of every application shares.
const SUBJECT_PREFIX: &str = "webchat.fanout.";
/// How long connecting may take before [`NatsFanout::connect`] gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Cross-node delivery over NATS: see the [module](self).
#[derive(Debug, Clone)]
pub struct NatsFanout {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: async_nats::Client,
    subject: String,
    node: String,
    /// Whether the subscription is in place on the server (for tests and readiness).
    listening: AtomicBool,
}

impl NatsFanout {
    /// Connects to the NATS server at `url` and makes node `node` of application `name` (the
    /// nodes that share `name` see each other's sends).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for a name or node that is not one NATS subject token (empty, or
    /// with whitespace, `.`, `*` or `>`); [`ErrorKind::Broker`] when the server cannot be
    /// reached.
    pub async fn connect(url: &str, name: &str, node: &str) -> Result<Self, Error> {
        check_token("application name", name)?;
        check_token("node", node)?;
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(CONNECT_TIMEOUT)
            .max_reconnects(None)
            .connect(url);
        let client = tokio::time::timeout(CONNECT_TIMEOUT, client)
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Broker,
                    format!("webchat: NATS at {url} did not answer in {CONNECT_TIMEOUT:?}"),
                )
            })?
            .map_err(|e| broker(&format!("connecting to NATS at {url}"), e))?;
        Self::new(client, name, node)
    }

    /// Uses a client the application connected itself (with its credentials and TLS), as
    /// node `node` of application `name`.
    ///
    /// # Errors
    ///
    /// As [`NatsFanout::connect`], without connecting.
    pub fn new(client: async_nats::Client, name: &str, node: &str) -> Result<Self, Error> {
        check_token("application name", name)?;
        check_token("node", node)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                subject: format!("{SUBJECT_PREFIX}{name}"),
                node: node.to_owned(),
                listening: AtomicBool::new(false),
            }),
        })
    }

    /// The subject the nodes publish on.
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// Whether this node's subscription is in place: other nodes' sends reach its sockets.
    pub fn is_listening(&self) -> bool {
        self.inner.listening.load(Ordering::Acquire)
    }

    /// One subscription's life; `Ok` at shutdown.
    async fn listen_once(
        &self,
        local: &LocalDelivery,
        shutdown: &CancellationToken,
    ) -> Result<(), Error> {
        let inner = &self.inner;
        let mut subscription = inner
            .client
            .subscribe(inner.subject.clone())
            .await
            .map_err(|e| broker("subscribing", e))?;
        // The server has the subscription once a flush returns: sends from then on arrive.
        inner
            .client
            .flush()
            .await
            .map_err(|e| broker("subscribing", e))?;
        inner.listening.store(true, Ordering::Release);
        loop {
            tokio::select! {
                message = subscription.next() => match message {
                    Some(message) => self.on_message(local, &message.payload),
                    None => {
                        return Err(Error::new(
                            ErrorKind::Broker,
                            "webchat: the NATS subscription ended",
                        ));
                    }
                },
                () = shutdown.cancelled() => {
                    // Best effort: the server drops it with the connection anyway.
                    let _ = subscription.unsubscribe().await;
                    return Ok(());
                }
            }
        }
    }

    fn on_message(&self, local: &LocalDelivery, payload: &[u8]) {
        match serde_json::from_slice::<Envelope>(payload) {
            Ok(envelope) if envelope.node != self.inner.node => {
                local.deliver(&envelope);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "webchat: a NATS message is not an envelope"),
        }
    }
}

#[async_trait]
impl Fanout for NatsFanout {
    fn node(&self) -> &str {
        &self.inner.node
    }

    fn is_listening(&self) -> bool {
        NatsFanout::is_listening(self)
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), Error> {
        let json = serde_json::to_vec(envelope).expect("envelopes serialise");
        let max = self.inner.client.server_info().max_payload;
        if max > 0 && json.len() > max {
            return Err(Error::invalid(format!(
                "webchat: a send of {} bytes is over the NATS server's max_payload ({max}); \
                 raise it or send less",
                json.len()
            )));
        }
        self.inner
            .client
            .publish(self.inner.subject.clone(), json.into())
            .await
            .map_err(|e| broker("publishing to the other nodes", e))
    }

    async fn run(&self, local: LocalDelivery, shutdown: CancellationToken) -> Result<(), Error> {
        let listening = &self.inner.listening;
        listen_until_shutdown("the NATS subscription", listening, &shutdown, || {
            self.listen_once(&local, &shutdown)
        })
        .await
    }
}

/// Refuses what is not one NATS subject token.
fn check_token(what: &str, token: &str) -> Result<(), Error> {
    let bad = token.is_empty()
        || token
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>'));
    if bad {
        return Err(Error::config(format!(
            "webchat: the NATS fan-out's {what} {token:?} must be one subject token (no \
             whitespace, '.', '*' or '>')"
        )));
    }
    Ok(())
}

fn broker(doing: &str, e: impl Into<bot_core::BoxError>) -> Error {
    Error::new(ErrorKind::Broker, format!("webchat: NATS failed {doing}")).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_nodes_are_one_subject_token() {
        for bad in ["", "a.b", "a b", "a*", ">", "tab\there"] {
            let e = check_token("node", bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{bad:?}");
            assert!(e.to_string().contains("one subject token"), "{e}");
        }
        check_token("node", "node-1_a").unwrap();
    }
}
