//! [`Fanout`] over PostgreSQL `LISTEN/NOTIFY`: one dedicated `LISTEN` connection per node; an
//! envelope over `NOTIFY`'s payload limit is stored in `webchat_fanout` and sent by reference.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use futures::StreamExt as _;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use super::{PgCluster, db, sql};
use crate::error::{Error, ErrorKind};
use crate::fanout::{Envelope, Fanout, LocalDelivery, listen_until_shutdown};

/// The largest payload sent inline: `NOTIFY` takes under 8000 bytes.
const MAX_INLINE_PAYLOAD: usize = 7900;
/// The prefix of a payload that names a stored envelope: `r:<id>:<node>`.
const BY_REFERENCE: &str = "r:";

#[async_trait]
impl Fanout for PgCluster {
    fn node(&self) -> &str {
        &self.inner.node
    }

    fn is_listening(&self) -> bool {
        PgCluster::is_listening(self)
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), Error> {
        let json = serde_json::to_string(envelope).expect("envelopes serialise");
        let conn = self.conn().await?;
        let payload = if json.len() <= MAX_INLINE_PAYLOAD {
            json
        } else {
            let row = conn
                .query_one(sql::STORE_ENVELOPE, &[&json])
                .await
                .map_err(|e| db("storing a large envelope", e))?;
            format!("{BY_REFERENCE}{}:{}", row.get::<_, i64>(0), self.inner.node)
        };
        conn.execute(sql::NOTIFY, &[&self.inner.channel, &payload])
            .await
            .map_err(|e| db("notifying the other nodes", e))?;
        Ok(())
    }

    /// Every envelope in one statement (notifications of one transaction arrive in order),
    /// after storing the ones too large to send inline.
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Result<(), Error> {
        let conn = self.conn().await?;
        let mut payloads = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let json = serde_json::to_string(envelope).expect("envelopes serialise");
            payloads.push(if json.len() <= MAX_INLINE_PAYLOAD {
                json
            } else {
                let row = conn
                    .query_one(sql::STORE_ENVELOPE, &[&json])
                    .await
                    .map_err(|e| db("storing a large envelope", e))?;
                format!("{BY_REFERENCE}{}:{}", row.get::<_, i64>(0), self.inner.node)
            });
        }
        let statement = (conn.prepare_cached(sql::NOTIFY_ALL).await)
            .map_err(|e| db("preparing to notify the other nodes", e))?;
        conn.execute(&statement, &[&self.inner.channel, &payloads])
            .await
            .map_err(|e| db("notifying the other nodes", e))?;
        Ok(())
    }

    async fn run(&self, local: LocalDelivery, shutdown: CancellationToken) -> Result<(), Error> {
        let listening = &self.inner.listening;
        listen_until_shutdown("the LISTEN connection", listening, &shutdown, || {
            self.listen_once(&local, &shutdown)
        })
        .await
    }
}

impl PgCluster {
    /// One `LISTEN` connection's life; `Ok` at shutdown.
    async fn listen_once(
        &self,
        local: &LocalDelivery,
        shutdown: &CancellationToken,
    ) -> Result<(), Error> {
        // Outside the pool, with its settings and TLS.
        let connect = self.inner.pool.connect_dedicated();
        let (client, mut messages) = tokio::select! {
            c = connect => c.map_err(|e| db("opening the LISTEN connection", e))?,
            () = shutdown.cancelled() => return Ok(()),
        };
        // The connection delivers notifications only while `messages` is polled: driven here.
        // The channel is made of a checked schema name: no quoting needed.
        let statement = format!("LISTEN {}", self.inner.channel);
        let listen = client.batch_execute(&statement);
        tokio::pin!(listen);
        let mut listening = false;
        loop {
            tokio::select! {
                r = &mut listen, if !listening => {
                    r.map_err(|e| db("listening", e))?;
                    listening = true;
                    self.inner.listening.store(true, Ordering::Release);
                }
                m = messages.next() => match m {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        self.on_notification(local, n.payload()).await;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(db("listening", e)),
                    None => {
                        return Err(Error::new(
                            ErrorKind::Database,
                            "webchat: the server closed the LISTEN connection",
                        ));
                    }
                },
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    async fn on_notification(&self, local: &LocalDelivery, payload: &str) {
        let json = match payload.strip_prefix(BY_REFERENCE) {
            Some(reference) => {
                let Some((id, node)) = reference.split_once(':') else {
                    return;
                };
                if node == self.inner.node {
                    return;
                }
                match self.load(id).await {
                    Ok(json) => json,
                    Err(e) => {
                        tracing::warn!(error = %e, "webchat: cannot read a stored envelope");
                        return;
                    }
                }
            }
            None => payload.to_owned(),
        };
        match serde_json::from_str::<Envelope>(&json) {
            Ok(envelope) if envelope.node != self.inner.node => {
                local.deliver(&envelope);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "webchat: a notification is not an envelope"),
        }
    }

    async fn load(&self, id: &str) -> Result<String, Error> {
        let id: i64 = id
            .parse()
            .map_err(|_| Error::invalid("webchat: a stored envelope's id is not a number"))?;
        let conn = self.conn().await?;
        let row = conn
            .query_one(sql::LOAD_ENVELOPE, &[&id])
            .await
            .map_err(|e| db("reading a stored envelope", e))?;
        Ok(row.get(0))
    }
}
