//! Presence in PostgreSQL: the batched writer, this node's heartbeat, the dead-node sweeper,
//! and the queries (`who is online`, `how many on each node`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{PgCluster, db, sql};
use crate::error::Error;
use crate::hub::Hub;

/// One user's presence across nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Presence {
    /// The user id.
    pub user: String,
    /// Open sockets by node; empty when offline.
    pub nodes: BTreeMap<String, u32>,
    /// When the user last came online from offline.
    pub joined_at: Option<SystemTime>,
    /// When the user last went offline on every node.
    pub left_at: Option<SystemTime>,
}

impl Presence {
    /// Whether the user has a socket open on any node.
    pub fn is_online(&self) -> bool {
        !self.nodes.is_empty()
    }

    /// The user's open sockets on every node.
    pub fn sockets(&self) -> u32 {
        self.nodes.values().sum()
    }
}

/// Users and sockets on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeCount {
    /// The node.
    pub node: String,
    /// Users with a socket open there.
    pub users: u64,
    /// Sockets open there.
    pub sockets: u64,
}

impl PgCluster {
    /// The users online on any node, by user id, at most `limit`.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Database`] when PostgreSQL refuses or cannot be reached.
    pub async fn online_users(&self, limit: i64) -> Result<Vec<Presence>, Error> {
        let conn = self.conn().await?;
        let rows = conn
            .query(sql::ONLINE_USERS, &[&limit])
            .await
            .map_err(|e| db("reading who is online", e))?;
        Ok(rows
            .iter()
            .map(|row| Presence {
                user: row.get(0),
                nodes: nodes_of(row.get(1)),
                joined_at: row.get(2),
                left_at: None,
            })
            .collect())
    }

    /// One user's presence; `None` when the user was never seen.
    ///
    /// # Errors
    ///
    /// As [`PgCluster::online_users`].
    pub async fn presence_of(&self, user: &str) -> Result<Option<Presence>, Error> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(sql::PRESENCE_OF, &[&user])
            .await
            .map_err(|e| db("reading a user's presence", e))?;
        Ok(row.map(|row| Presence {
            user: row.get(0),
            nodes: nodes_of(row.get(1)),
            joined_at: row.get(2),
            left_at: row.get(3),
        }))
    }

    /// Users and sockets on each node that has any.
    ///
    /// # Errors
    ///
    /// As [`PgCluster::online_users`].
    pub async fn node_counts(&self) -> Result<Vec<NodeCount>, Error> {
        let conn = self.conn().await?;
        let rows = conn
            .query(sql::NODE_COUNTS, &[])
            .await
            .map_err(|e| db("counting users per node", e))?;
        Ok(rows
            .iter()
            .map(|row| NodeCount {
                node: row.get(0),
                users: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
                sockets: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
            })
            .collect())
    }

    /// Writes `hub`'s presence until `shutdown`, beats, and sweeps dead nodes; at shutdown
    /// removes this node's counts and row. Failed writes are tried again at the next flush.
    pub(crate) async fn run_presence(&self, hub: Arc<Hub>, shutdown: CancellationToken) {
        let config = &self.inner.config;
        hub.track_presence();
        // A node restarted under its name: the counts of its previous run are void.
        if let Err(e) = self.clear_node().await {
            tracing::warn!(error = %e, "webchat: cannot clear this node's old presence");
        }
        hub.mark_all_dirty();
        let mut flush = tokio::time::interval(config.presence_flush_interval);
        flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut next_beat = Instant::now();
        let mut next_sweep = Instant::now() + config.dead_node_sweep_interval;
        loop {
            tokio::select! {
                _ = flush.tick() => {}
                () = shutdown.cancelled() => break,
            }
            let now = Instant::now();
            if now >= next_beat {
                next_beat = now + config.node_heartbeat_interval;
                match self.beat().await {
                    // Declared dead while alive: its counts were removed, write them all again.
                    Ok(true) => hub.mark_all_dirty(),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "webchat: node heartbeat failed"),
                }
            }
            let dirty = hub.take_dirty();
            if !dirty.is_empty() {
                match self.write(&dirty).await {
                    // Their number rows may go at the next trim, if their history has too.
                    Ok(()) => self.went_offline().extend(
                        (dirty.into_iter()).filter_map(|(user, n)| (n == 0).then_some(user)),
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, users = dirty.len(), "webchat: presence write failed; retrying");
                        hub.mark_users_dirty(dirty.into_iter().map(|(user, _)| user));
                    }
                }
            }
            if now >= next_sweep {
                next_sweep = now + config.dead_node_sweep_interval;
                if let Err(e) = self.sweep_dead_nodes().await {
                    tracing::warn!(error = %e, "webchat: dead-node sweep failed");
                }
            }
        }
        // A clean stop: this node's users are no longer here.
        if let Err(e) = self.leave().await {
            tracing::warn!(error = %e, "webchat: cannot remove this node's presence");
        }
    }

    async fn write(&self, dirty: &[(String, usize)]) -> Result<(), Error> {
        let mut batch: Vec<&(String, usize)> = dirty.iter().collect();
        // One order for every node's batch: concurrent writers never deadlock.
        batch.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let users: Vec<&str> = batch.iter().map(|(u, _)| u.as_str()).collect();
        let counts: Vec<i32> = (batch.iter())
            .map(|(_, c)| i32::try_from(*c).unwrap_or(i32::MAX))
            .collect();
        let conn = self.conn().await?;
        conn.execute(sql::WRITE_PRESENCE, &[&self.inner.node, &users, &counts])
            .await
            .map_err(|e| db("writing presence", e))?;
        Ok(())
    }

    /// Beats; whether this node's row had to be made again.
    async fn beat(&self) -> Result<bool, Error> {
        let conn = self.conn().await?;
        let row = conn
            .query_one(sql::HEARTBEAT, &[&self.inner.node])
            .await
            .map_err(|e| db("beating", e))?;
        Ok(row.get(0))
    }

    /// Removes the counts of nodes whose heartbeat stopped; how many users it changed.
    pub(crate) async fn sweep_dead_nodes(&self) -> Result<u64, Error> {
        let after: f64 = self.inner.config.dead_node_after.as_secs_f64();
        let conn = self.conn().await?;
        let changed = conn
            .execute(sql::SWEEP_DEAD_NODES, &[&after])
            .await
            .map_err(|e| db("sweeping dead nodes", e))?;
        conn.execute(sql::PRUNE_ENVELOPES, &[])
            .await
            .map_err(|e| db("pruning stored envelopes", e))?;
        if changed > 0 {
            tracing::info!(
                users = changed,
                "webchat: removed the presence of dead nodes"
            );
        }
        Ok(changed)
    }

    async fn clear_node(&self) -> Result<(), Error> {
        let conn = self.conn().await?;
        conn.execute(sql::CLEAR_NODE, &[&self.inner.node])
            .await
            .map_err(|e| db("clearing this node's presence", e))?;
        Ok(())
    }

    async fn leave(&self) -> Result<(), Error> {
        self.clear_node().await?;
        let conn = self.conn().await?;
        conn.execute(sql::DELETE_NODE, &[&self.inner.node])
            .await
            .map_err(|e| db("removing this node", e))?;
        Ok(())
    }

    /// The dead-node time-out, for tests and operators.
    pub fn dead_node_after(&self) -> Duration {
        self.inner.config.dead_node_after
    }
}

fn nodes_of(value: serde_json::Value) -> BTreeMap<String, u32> {
    match value {
        serde_json::Value::Object(map) => map
            .into_iter()
            .filter_map(|(node, count)| Some((node, u32::try_from(count.as_u64()?).ok()?)))
            .collect(),
        _ => BTreeMap::new(),
    }
}
