//! Two nodes on one PostgreSQL: replies reach a user's sockets on both, presence counts each
//! node, and a node that dies (its heartbeat stops) has its users shown offline by the other.
//!
//! Needs PostgreSQL at `DATABASE_URL` (default 127.0.0.1:5432, user postgres); fails without it.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bot_core::pg::PgPool;
use bot_webchat::WebChat;
use bot_webchat::pg::PgCluster;
use serde_json::json;
use support::{Harness, echo, eventually, next, next_of, send};
use tokio::time::Instant;

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh schema named after `test`, with the web chat tables.
async fn fresh_pool(test: &str) -> PgPool {
    let url = database_url();
    let schema = format!("t_webchat_{test}");
    let admin = PgPool::builder(&url).max_size(1).build().unwrap();
    let conn = admin.get().await.unwrap_or_else(|e| {
        panic!("PostgreSQL is not reachable at {url} ({e}); start it or set DATABASE_URL")
    });
    conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .unwrap();
    node_pool(test)
}

/// A pool of its own on `test`'s schema, for each node: a node killed with its runtime takes its
/// connections with it, as a killed process does, and must not take the survivor's.
fn node_pool(test: &str) -> PgPool {
    let schema = format!("t_webchat_{test}");
    PgPool::builder(database_url())
        .schema(&schema)
        .build()
        .unwrap()
}

/// A node's cluster with quick timings.
// ANCHOR: cluster
async fn cluster(pool: &PgPool, node: &str) -> PgCluster {
    let cluster = PgCluster::builder(pool, database_url())
        .node(node)
        .presence_flush_interval(Duration::from_millis(50))
        .node_heartbeat_interval(Duration::from_millis(100))
        .dead_node(Duration::from_millis(600), Duration::from_millis(100))
        .build()
        .unwrap();
    cluster.migrate().await.unwrap();
    cluster
}
// ANCHOR_END: cluster

/// A node on a runtime of its own, so that the test can kill it the way `kill -9` does: every
/// task stops at once, nothing cleans up, its heartbeat just stops.
struct Remote {
    ws_url: String,
    webchat: WebChat,
    kill: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Remote {
    fn start(cluster: PgCluster) -> Self {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (kill, killed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let harness =
                runtime.block_on(Harness::start_with(echo, |w| w.cluster(cluster), |b| b));
            ready_tx
                .send((harness.ws_url.clone(), harness.webchat.clone()))
                .unwrap();
            let _ = killed.recv();
            runtime.shutdown_background();
            drop(harness);
        });
        let (ws_url, webchat) = ready_rx.recv().unwrap();
        Self {
            ws_url,
            webchat,
            kill,
            thread,
        }
    }

    async fn join(&self, local: &Harness, user: &str) -> support::Ws {
        let (mut ws, _) = tokio_tungstenite::connect_async(self.ws_url.as_str())
            .await
            .unwrap();
        send(&mut ws, json!({"type": "join", "token": local.token(user)})).await;
        assert_eq!(next(&mut ws).await["type"], "welcome");
        ws
    }

    fn kill(self) {
        self.kill.send(()).unwrap();
        self.thread.join().unwrap();
    }
}

fn counts(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_reaches_the_users_sockets_on_both_nodes_and_presence_counts_each() {
    let pool = fresh_pool("both_nodes").await;
    let (a, b) = (
        cluster(&pool, "node-a").await,
        cluster(&node_pool("both_nodes"), "node-b").await,
    );
    let local = Harness::start_with(echo, |w| w.cluster(a.clone()), |b| b).await;
    let remote = Remote::start(b.clone());
    eventually("both nodes listening", || async {
        (a.is_listening() && b.is_listening()).then_some(())
    })
    .await;
    let (mut on_a, _) = local.join("alice", None).await;
    let mut on_b = remote.join(&local, "alice").await;
    let presence = eventually("alice on both nodes", || async {
        let p = a.presence_of("alice").await.unwrap()?;
        (p.nodes == counts(&[("node-a", 1), ("node-b", 1)])).then_some(p)
    })
    .await;
    assert!(presence.is_online() && presence.joined_at.is_some());
    assert_eq!(presence.sockets(), 2);
    let online = a.online_users(10).await.unwrap();
    assert_eq!(
        online.iter().map(|p| p.user.as_str()).collect::<Vec<_>>(),
        ["alice"]
    );
    let per_node = a.node_counts().await.unwrap();
    assert_eq!(
        per_node
            .iter()
            .map(|n| (n.node.as_str(), n.users, n.sockets))
            .collect::<Vec<_>>(),
        [("node-a", 1, 1), ("node-b", 1, 1)]
    );

    // The handler runs on node A; the reply reaches the tab on node B too.
    send(
        &mut on_a,
        json!({"type": "message", "id": "c-1", "text": "to every node"}),
    )
    .await;
    assert_eq!(
        next_of(&mut on_a, "message").await["message"]["text"],
        "to every node"
    );
    assert_eq!(
        next_of(&mut on_b, "message").await["message"]["text"],
        "to every node"
    );

    // Over NOTIFY's 8000 bytes: sent by reference, read from the table by node B.
    let long = "y".repeat(12_000);
    local
        .webchat
        .client()
        .send_to("alice", &[long.as_str().into()])
        .await
        .unwrap();
    assert_eq!(next(&mut on_a).await["message"]["text"], long.as_str());
    assert_eq!(next(&mut on_b).await["message"]["text"], long.as_str());

    // Node B's proactive message reaches node A's tab.
    remote
        .webchat
        .client()
        .send_to("alice", &["from b".into()])
        .await
        .unwrap();
    assert_eq!(next(&mut on_a).await["message"]["text"], "from b");
    assert_eq!(next(&mut on_b).await["message"]["text"], "from b");
    remote.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_users_are_shown_offline_by_the_survivor() {
    let pool = fresh_pool("dead_node").await;
    let (a, b) = (
        cluster(&pool, "node-a").await,
        cluster(&node_pool("dead_node"), "node-b").await,
    );
    let local = Harness::start_with(echo, |w| w.cluster(a.clone()), |b| b).await;
    let remote = Remote::start(b.clone());
    let _bob = remote.join(&local, "bob").await;
    let _carol_b = remote.join(&local, "carol").await;
    let (_carol_a, _) = local.join("carol", None).await;
    eventually("bob and carol present", || async {
        let bob = a.presence_of("bob").await.unwrap()?;
        let carol = a.presence_of("carol").await.unwrap()?;
        (bob.nodes == counts(&[("node-b", 1)])
            && carol.nodes == counts(&[("node-a", 1), ("node-b", 1)]))
        .then_some(())
    })
    .await;

    let killed_at = Instant::now();
    remote.kill();
    eventually("node B's users corrected", || async {
        let bob = a.presence_of("bob").await.unwrap()?;
        let carol = a.presence_of("carol").await.unwrap()?;
        (!bob.is_online() && carol.nodes == counts(&[("node-a", 1)])).then_some(())
    })
    .await;
    // Within the dead-node time-out and one sweep, with room for a loaded machine.
    assert!(
        killed_at.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed_at.elapsed()
    );
    let bob = a.presence_of("bob").await.unwrap().unwrap();
    assert!(bob.left_at.is_some());
    let per_node = a.node_counts().await.unwrap();
    assert_eq!(
        per_node.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(),
        ["node-a"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_removes_the_nodes_presence_at_once() {
    let pool = fresh_pool("clean_stop").await;
    let a = cluster(&pool, "node-a").await;
    let local = Harness::start_with(echo, |w| w.cluster(a.clone()), |b| b).await;
    let (_ws, _) = local.join("dave", None).await;
    eventually("dave present", || async {
        a.presence_of("dave")
            .await
            .unwrap()?
            .is_online()
            .then_some(())
    })
    .await;
    local.stop().await;
    let dave = a.presence_of("dave").await.unwrap().unwrap();
    assert!(!dave.is_online(), "{dave:?}");
}
