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
    let cluster = PgCluster::builder(pool)
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

/// Two nodes on one schema: node A in the test's runtime (`local`), node B on a runtime of its
/// own (`remote`, killable).
struct TwoNodes {
    pool: PgPool,
    a: PgCluster,
    b: PgCluster,
    local: Harness,
    remote: Remote,
}

/// [`TwoNodes`] for `test` (its schema), node A's web chat serving the demo page when `demo`;
/// returns once both nodes listen when `listening`.
async fn two_nodes(test: &str, demo: bool, listening: bool) -> TwoNodes {
    let pool = fresh_pool(test).await;
    let (a, b) = (
        cluster(&pool, "node-a").await,
        cluster(&node_pool(test), "node-b").await,
    );
    let local = Harness::start_with(echo, |w| w.demo(demo).cluster(a.clone()), |b| b).await;
    let remote = Remote::start(b.clone());
    if listening {
        eventually("both nodes listening", || async {
            (a.is_listening() && b.is_listening()).then_some(())
        })
        .await;
    }
    TwoNodes {
        pool,
        a,
        b,
        local,
        remote,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_reaches_the_users_sockets_on_both_nodes_and_presence_counts_each() {
    let TwoNodes {
        pool: _pool,
        a,
        b: _b,
        local,
        remote,
    } = two_nodes("both_nodes", false, true).await;
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
    let TwoNodes {
        pool: _pool,
        a,
        b: _b,
        local,
        remote,
    } = two_nodes("dead_node", false, false).await;
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

/// A socket joined at `ws_url` as `user` with `token`, resuming after `last_seq` of `epoch`;
/// its welcome.
async fn join_at(
    ws_url: &str,
    token: String,
    resume: Option<(u64, &str)>,
) -> (support::Ws, serde_json::Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let mut join = json!({"type": "join", "v": 1, "token": token});
    if let Some((last_seq, epoch)) = resume {
        join["last_seq"] = json!(last_seq);
        join["epoch"] = json!(epoch);
    }
    send(&mut ws, join).await;
    let welcome = next(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (ws, welcome)
}

/// The next `count` bot messages on `ws`: (seq, text) each.
async fn messages(ws: &mut support::Ws, count: usize) -> Vec<(u64, String)> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        let frame = next_of(ws, "message").await;
        got.push((
            frame["seq"].as_u64().unwrap(),
            frame["message"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_resumes_on_another_node_with_each_missed_message_once_in_order() {
    let TwoNodes {
        pool: _pool,
        a: _a,
        b: _b,
        local,
        remote,
    } = two_nodes("resume_elsewhere", false, true).await;

    // A tab on node A sees the first reply, then goes away.
    let (mut tab_a, welcome_a) = join_at(&local.ws_url, local.token("erin"), None).await;
    let epoch = welcome_a["epoch"].as_str().unwrap().to_owned();
    assert!(epoch.starts_with("pg-"), "the schema's epoch: {epoch}");
    send(
        &mut tab_a,
        json!({"type": "message", "id": "c-1", "text": "first"}),
    )
    .await;
    let seen = messages(&mut tab_a, 1).await;
    assert_eq!(seen, [(1, "first".to_owned())]);
    drop(tab_a);

    // Meanwhile: a tab on node B talks to node B's handler, and the backend API of node A sends.
    let (mut tab_b, welcome_b) = join_at(&remote.ws_url, local.token("erin"), None).await;
    assert_eq!(
        welcome_b["epoch"],
        epoch.as_str(),
        "one epoch on every node"
    );
    assert_eq!(welcome_b["seq"], 1);
    send(
        &mut tab_b,
        json!({"type": "message", "id": "c-2", "text": "second"}),
    )
    .await;
    send(
        &mut tab_b,
        json!({"type": "message", "id": "c-3", "text": "third"}),
    )
    .await;
    assert_eq!(
        messages(&mut tab_b, 2).await,
        [(2, "second".to_owned()), (3, "third".to_owned())]
    );
    let api: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/webchat/api/messages", local.base))
        .bearer_auth(support::SECRET)
        .json(&json!({"user": "erin", "messages": [{"text": "fourth"}, {"text": "fifth"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api["seqs"], json!([4, 5]), "{api}");
    assert_eq!(
        messages(&mut tab_b, 2).await,
        [(4, "fourth".to_owned()), (5, "fifth".to_owned())]
    );

    // The browser of the first tab comes back on node B with what it saw.
    let (mut back, welcome) = join_at(
        &remote.ws_url,
        local.token("erin"),
        Some((1, epoch.as_str())),
    )
    .await;
    assert_eq!(welcome["epoch"], epoch.as_str());
    assert_eq!(welcome["seq"], 5);
    assert_eq!(welcome["resumed"], 4);
    assert_eq!(welcome["gap"], false);
    let resumed = messages(&mut back, 4).await;
    assert_eq!(
        resumed,
        [
            (2, "second".to_owned()),
            (3, "third".to_owned()),
            (4, "fourth".to_owned()),
            (5, "fifth".to_owned())
        ]
    );
    // Once: the next frame is the next message, on both of the user's tabs.
    local
        .webchat
        .client()
        .send_to("erin", &["sixth".into()])
        .await
        .unwrap();
    assert_eq!(messages(&mut back, 1).await, [(6, "sixth".to_owned())]);
    assert_eq!(messages(&mut tab_b, 1).await, [(6, "sixth".to_owned())]);

    // The same numbers on node A for a browser that saw everything up to 3.
    let (mut again, welcome) = join_at(
        &local.ws_url,
        local.token("erin"),
        Some((3, epoch.as_str())),
    )
    .await;
    assert_eq!(
        (welcome["seq"].as_u64(), welcome["gap"].as_bool()),
        (Some(6), Some(false))
    );
    let texts: Vec<u64> = messages(&mut again, 3)
        .await
        .into_iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(texts, [4, 5, 6]);

    // Another numbering's `last_seq` means nothing here: a gap, nothing resumed.
    let (_, welcome) = join_at(&local.ws_url, local.token("erin"), Some((2, "node-x-1"))).await;
    assert_eq!(
        (welcome["resumed"].as_u64(), welcome["gap"].as_bool()),
        (Some(0), Some(true))
    );
    assert_eq!(local.webchat.stats().history_errors, 0);
    remote.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sending_to_one_user_at_once_number_without_gaps_in_commit_order() {
    const EACH: usize = 40;
    let TwoNodes {
        pool: _pool,
        a,
        b: _b,
        local,
        remote,
    } = two_nodes("concurrent", false, true).await;
    // Live tabs on both nodes see every message once, in order, whichever node sent it.
    let (mut tab_a, _) = join_at(&local.ws_url, local.token("frank"), None).await;
    let (mut tab_b, _) = join_at(&remote.ws_url, local.token("frank"), None).await;

    let sender = |client: bot_webchat::WebChatClient, node: &'static str| async move {
        let mut seqs = Vec::new();
        for i in 0..EACH {
            let text = format!("{node}-{i}");
            let delivery = client
                .send_to("frank", &[text.as_str().into()])
                .await
                .unwrap();
            seqs.extend(delivery.seqs);
        }
        seqs
    };
    let (from_a, from_b) = tokio::join!(
        sender(local.webchat.client().clone(), "a"),
        sender(remote.webchat.client().clone(), "b")
    );
    // Each node's own sends are numbered in the order it made them.
    assert!(from_a.windows(2).all(|w| w[0] < w[1]), "{from_a:?}");
    assert!(from_b.windows(2).all(|w| w[0] < w[1]), "{from_b:?}");
    let mut all: Vec<u64> = from_a.iter().chain(&from_b).copied().collect();
    all.sort_unstable();
    let expected: Vec<u64> = (1..=2 * EACH as u64).collect();
    assert_eq!(all, expected, "every number once");

    for tab in [&mut tab_a, &mut tab_b] {
        let live = messages(tab, 2 * EACH).await;
        let seqs: Vec<u64> = live.iter().map(|m| m.0).collect();
        assert_eq!(seqs, expected, "live, in order, once");
    }
    // A resume from 0 on either node: the same gapless sequence, the same texts.
    for ws_url in [&local.ws_url, &remote.ws_url] {
        let epoch = a.epoch().await.unwrap().to_owned();
        let (mut ws, welcome) = join_at(ws_url, local.token("frank"), Some((0, &epoch))).await;
        assert_eq!(welcome["resumed"], 2 * EACH as u64);
        assert_eq!(welcome["gap"], false);
        let resumed = messages(&mut ws, 2 * EACH).await;
        assert_eq!(resumed.iter().map(|m| m.0).collect::<Vec<_>>(), expected);
        for (node, seqs) in [("a", &from_a), ("b", &from_b)] {
            for (i, seq) in seqs.iter().enumerate() {
                assert_eq!(resumed[(*seq - 1) as usize].1, format!("{node}-{i}"));
            }
        }
    }
    remote.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_trims_the_history_and_a_resume_past_it_says_gap() {
    let pool = fresh_pool("retention").await;
    let a = cluster(&pool, "node-a").await;
    let config = bot_webchat::WebChatConfig {
        history_messages: 3,
        // Three short messages fit; two of 60 bytes do not.
        history_bytes: 100,
        ..bot_webchat::WebChatConfig::default()
    };
    let local = Harness::start_with(echo, |w| w.config(config).cluster(a.clone()), |b| b).await;
    for i in 1..=5 {
        let text = format!("m{i}");
        local
            .webchat
            .client()
            .send_to("gina", &[text.as_str().into()])
            .await
            .unwrap();
    }
    // Each store keeps the table to the newest three of the user.
    let conn = pool.get().await.unwrap();
    eventually("the history trimmed", || async {
        let row = conn
            .query_one(
                "SELECT count(*), min(seq) FROM webchat_history WHERE user_id = 'gina'",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0) == 3).then(|| row.get::<_, i64>(1))
    })
    .await;
    let epoch = a.epoch().await.unwrap().to_owned();
    let (mut ws, welcome) = join_at(&local.ws_url, local.token("gina"), Some((1, &epoch))).await;
    assert_eq!(welcome["gap"], true, "2 is gone: {welcome}");
    assert_eq!(welcome["resumed"], 3);
    let got: Vec<u64> = messages(&mut ws, 3)
        .await
        .into_iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(got, [3, 4, 5]);
    // A browser that saw 2 misses nothing kept.
    let (_, welcome) = join_at(&local.ws_url, local.token("gina"), Some((2, &epoch))).await;
    assert_eq!(
        (welcome["resumed"].as_u64(), welcome["gap"].as_bool()),
        (Some(3), Some(false))
    );

    // The byte bound: of two long messages the sweep keeps the newer.
    let long = "z".repeat(50);
    for _ in 0..2 {
        (local.webchat.client())
            .send_to("hal", &[long.as_str().into()])
            .await
            .unwrap();
    }
    eventually("the history trimmed to its bytes", || async {
        let row = conn
            .query_one(
                "SELECT count(*), min(seq) FROM webchat_history WHERE user_id = 'hal'",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0) == 1).then(|| row.get::<_, i64>(1))
    })
    .await;
    let (mut ws, welcome) = join_at(&local.ws_url, local.token("hal"), Some((0, &epoch))).await;
    assert_eq!(
        (welcome["resumed"].as_u64(), welcome["gap"].as_bool()),
        (Some(1), Some(true))
    );
    assert_eq!(messages(&mut ws, 1).await[0].0, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_handler_send_is_stored_and_shown_once() {
    use bot_core::Outbound as _;
    use bot_core::outbound::Target;
    let pool = fresh_pool("retried").await;
    let a = cluster(&pool, "node-a").await;
    let local = Harness::start_with(echo, |w| w.cluster(a.clone()), |b| b).await;
    let (mut tab, _) = join_at(&local.ws_url, local.token("hana"), None).await;
    let mut target = Target::conversation("hana");
    target.origin = Some(bot_core::EventId::new("event-1"));
    let client = local.webchat.client();
    for _ in 0..2 {
        client
            .send(&target, vec!["one".into(), "two".into()])
            .await
            .unwrap();
    }
    client.send_to("hana", &["three".into()]).await.unwrap();
    assert_shown_and_stored_once(&mut tab, &pool, "hana", &["one", "two", "three"]).await;
}

/// `user`'s tab gets `texts`, numbered from 1, once each, and the table holds one row each.
async fn assert_shown_and_stored_once(
    tab: &mut support::Ws,
    pool: &PgPool,
    user: &str,
    texts: &[&str],
) {
    let expected: Vec<(u64, String)> = (1..).zip(texts.iter().map(|t| (*t).to_owned())).collect();
    assert_eq!(messages(tab, texts.len()).await, expected);
    let conn = pool.get().await.unwrap();
    let row = conn
        .query_one(
            "SELECT count(*) FROM webchat_history WHERE user_id = $1",
            &[&user],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        texts.len() as i64,
        "each part stored once"
    );
}

/// Two attempts of one handler's send in flight at once (the second queued while the first
/// waited on a slow database) are stored once; a retry that says more stores only what is new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_at_once_and_a_longer_retry_store_each_part_once() {
    use bot_core::Outbound as _;
    use bot_core::outbound::Target;
    let pool = fresh_pool("retried_at_once").await;
    let a = cluster(&pool, "node-a").await;
    let local = Harness::start_with(echo, |w| w.cluster(a.clone()), |b| b).await;
    let (mut tab, _) = join_at(&local.ws_url, local.token("jun"), None).await;
    let mut target = Target::conversation("jun");
    target.origin = Some(bot_core::EventId::new("event-2"));
    let client = local.webchat.client();
    let (first, second) = tokio::join!(
        client.send(&target, vec!["one".into(), "two".into()]),
        client.send(&target, vec!["one".into(), "two".into()]),
    );
    first.unwrap();
    second.unwrap();
    client
        .send(&target, vec!["one".into(), "two".into(), "three".into()])
        .await
        .unwrap();
    assert_shown_and_stored_once(&mut tab, &pool, "jun", &["one", "two", "three"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgresql_unreachable_a_send_fails_and_is_counted_and_the_node_lives() {
    // Nothing listens on port 1: every connection is refused at once.
    let url = "postgres://postgres@127.0.0.1:1/postgres";
    let pool = PgPool::builder(url).build().unwrap();
    let cluster = PgCluster::builder(&pool)
        .node("node-down")
        .history_write_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let local = Harness::start_with(echo, |w| w.cluster(cluster), |b| b).await;
    let e = local
        .webchat
        .client()
        .send_to("ivan", &["lost".into()])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), bot_webchat::ErrorKind::Database, "{e}");
    assert_eq!(local.webchat.stats().history_errors, 1);
    // A join cannot read the history: the socket is told to go away (and come back later).
    let mut ws = local.connect().await;
    send(
        &mut ws,
        json!({"type": "join", "v": 1, "token": local.token("ivan")}),
    )
    .await;
    assert_eq!(support::close_code(&mut ws).await, 1001);
    assert_eq!(local.webchat.stats().history_errors, 2);
    assert_eq!(
        support::sample(&local.metrics(), "bot_webchat_history_errors_total"),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_resumes_on_another_node_without_losing_or_repeating_a_message() {
    let TwoNodes {
        pool: _pool,
        a,
        b: _b,
        local,
        remote,
    } = two_nodes("widget", true, true).await;
    let browser = headless_chromium::Browser::start().await;
    let mut page = browser.open(&format!("{}/webchat/demo", local.base)).await;
    page.wait_for("document.querySelector('.wc') && document.querySelector('.wc').dataset.state === 'connected'")
        .await;
    let user = page
        .eval("document.getElementById('user').textContent")
        .await;
    let user = user.as_str().unwrap().to_owned();
    let last_text_is = |text: &str| {
        format!(
            "(() => {{ const all = document.querySelectorAll('.wc-bot .wc-text'); \
             return all.length && all[all.length - 1].textContent === {}; }})()",
            serde_json::to_string(text).unwrap()
        )
    };
    page.eval("__webchat.sendText('on node a')").await;
    page.wait_for(&last_text_is("on node a")).await;

    // The widget's next connection goes to node B (as a balancer may send it); while it is
    // away, both nodes send.
    let to_b = serde_json::to_string(&remote.ws_url).unwrap();
    page.eval(&format!("__webchat.url = {to_b}; __webchat.drop()"))
        .await;
    page.wait_for("document.querySelector('.wc').dataset.state === 'disconnected'")
        .await;
    (remote.webchat.client())
        .send_to(&user, &["away from b".into()])
        .await
        .unwrap();
    (local.webchat.client())
        .send_to(&user, &["away from a".into()])
        .await
        .unwrap();
    page.wait_for(&last_text_is("away from a")).await;
    page.eval("__webchat.sendText('on node b')").await;
    page.wait_for(&last_text_is("on node b")).await;

    let value = page
        .eval(
            "Array.from(document.querySelectorAll('.wc-bot')).map(b => \
             [Number(b.dataset.seq), (b.querySelector('.wc-text') || {}).textContent || ''])",
        )
        .await;
    let shown: Vec<(u64, String)> = serde_json::from_value(value).unwrap();
    assert_eq!(
        shown,
        [
            (1, "on node a".to_owned()),
            (2, "away from b".to_owned()),
            (3, "away from a".to_owned()),
            (4, "on node b".to_owned())
        ],
        "each message once, in order, across nodes"
    );
    assert!(
        remote.webchat.stats().joined >= 1,
        "the widget joined node B"
    );
    let epoch = page.eval("__webchat.epoch").await;
    assert_eq!(epoch.as_str(), Some(a.epoch().await.unwrap()));
    remote.kill();
}

/// The `LISTEN` connection, outside the pool, takes the pool's settings and TLS: with
/// `sslmode=require` it is encrypted (it was opened from the URL in clear text, which a server
/// that requires TLS refuses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listen_connection_uses_the_pools_tls_settings() {
    drop(fresh_pool("tls_listen").await);
    let pool = PgPool::builder(database_url())
        .schema("t_webchat_tls_listen")
        .ssl_mode(bot_core::pg::SslMode::Require)
        .application_name("botrt-webchat-tls")
        .build()
        .unwrap();
    let a = cluster(&pool, "node-a").await;
    let local = Harness::start_with(echo, |w| w.cluster(a.clone()), |b| b).await;
    eventually("listening", || async { a.is_listening().then_some(()) }).await;
    let conn = pool.get().await.unwrap();
    let rows = conn
        .query(
            "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name LIKE 'botrt-webchat-tls%' AND a.query LIKE 'LISTEN%'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one LISTEN connection");
    assert!(
        rows[0].get::<_, bool>(0),
        "the LISTEN connection is encrypted"
    );
    drop(local);
}

/// The fan-out delivers at most once: a message another node stored but whose publish was lost
/// (here stored without one) still reaches this node's sockets, though no later message shows
/// the hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_message_whose_publish_was_lost_still_reaches_the_sockets() {
    let pool = fresh_pool("lost_publish").await;
    let a = PgCluster::builder(&pool)
        .node("node-a")
        .history_catch_up_interval(Duration::from_millis(300))
        .build()
        .unwrap();
    a.migrate().await.unwrap();
    let local = Harness::start_with(echo, |w| w.cluster(a.clone()), |b| b).await;
    let (mut tab, _) = join_at(&local.ws_url, local.token("kim"), None).await;
    // The catch-up of the fan-out's first listening is behind us (two more began since it
    // listened, so one ended): what follows is the periodic one's alone.
    eventually("listening", || async { a.is_listening().then_some(()) }).await;
    let since = local.webchat.stats().history_catch_ups;
    eventually("two catch-ups", || async {
        (local.webchat.stats().history_catch_ups >= since + 2).then_some(())
    })
    .await;
    (local.webchat.client())
        .send_to("kim", &["first".into()])
        .await
        .unwrap();
    assert_eq!(messages(&mut tab, 1).await, [(1, "first".to_owned())]);
    // What another node's writer stores for kim, its NOTIFY lost.
    let conn = pool.get().await.unwrap();
    conn.batch_execute(
        "BEGIN;
         UPDATE webchat_seqs SET seq = seq + 1 WHERE user_id = 'kim';
         INSERT INTO webchat_history (user_id, seq, message, msg_id, at_ms)
             VALUES ('kim', 2, '{\"type\":\"text\",\"text\":\"second\"}', 'lost-1', 0);
         COMMIT;",
    )
    .await
    .unwrap();
    assert_eq!(messages(&mut tab, 1).await, [(2, "second".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_listen_connection_dropped_delivers_what_was_sent_meanwhile() {
    let TwoNodes {
        pool,
        a,
        b: _b,
        local,
        remote,
    } = two_nodes("relisten", false, true).await;
    let (mut tab, _) = join_at(&local.ws_url, local.token("jack"), None).await;
    // Node A's LISTEN connection is cut (a restart of PostgreSQL, a network blip).
    let conn = pool.get().await.unwrap();
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query = 'LISTEN t_webchat_relisten_webchat' AND pid <> pg_backend_pid()",
        &[],
    )
    .await
    .unwrap();
    eventually("node A not listening", || async {
        (!a.is_listening()).then_some(())
    })
    .await;
    (remote.webchat.client())
        .send_to("jack", &["while a was deaf".into()])
        .await
        .unwrap();
    // No later message shows the hole: node A reads it when it listens again.
    assert_eq!(
        messages(&mut tab, 1).await,
        [(1, "while a was deaf".to_owned())]
    );
    assert!(a.is_listening());
    remote.kill();
}

/// How many backends wait, directly or in a queue behind one that does, on backend `$1`.
const WAITING_ON: &str = "
    WITH RECURSIVE w(pid) AS (
        SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))
        UNION
        SELECT a.pid FROM pg_stat_activity a JOIN w ON w.pid = ANY(pg_blocking_pids(a.pid))
    )
    SELECT count(*) FROM w";

/// Two attempts of one handler's send on two nodes, whose statements start at the same moment
/// (both wait on the user's number row, each with a snapshot that does not see the other's
/// rows): stored once, shown once, and no number used up by the one that lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_send_stored_by_two_statements_at_the_same_moment_is_stored_once() {
    use bot_core::Outbound as _;
    use bot_core::outbound::Target;
    let TwoNodes {
        pool,
        a: _a,
        b: _b,
        local,
        remote,
    } = two_nodes("origin_race", false, true).await;
    let (mut tab, _) = join_at(&local.ws_url, local.token("kim"), None).await;
    // The test holds the user's number row: both nodes' statements start and wait on it.
    let mut holder = pool.get().await.unwrap();
    holder
        .batch_execute("INSERT INTO webchat_seqs (user_id, seq) VALUES ('kim', 0)")
        .await
        .unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM webchat_seqs WHERE user_id = 'kim' FOR UPDATE",
        &[],
    )
    .await
    .unwrap();
    let holder_pid: i32 = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let mut target = Target::conversation("kim");
    target.origin = Some(bot_core::EventId::new("event-3"));
    let (on_a, on_b) = (local.webchat.client(), remote.webchat.client());
    let watcher = pool.get().await.unwrap();
    let release = async {
        eventually("both nodes' statements waiting", || async {
            let row = watcher.query_one(WAITING_ON, &[&holder_pid]).await.unwrap();
            (row.get::<_, i64>(0) >= 2).then_some(())
        })
        .await;
        tx.commit().await.unwrap();
    };
    let (sent_a, sent_b, ()) = tokio::join!(
        on_a.send(&target, vec!["once".into()]),
        on_b.send(&target, vec!["once".into()]),
        release,
    );
    sent_a.unwrap();
    sent_b.unwrap();
    assert_shown_and_stored_once(&mut tab, &pool, "kim", &["once"]).await;
    let conn = pool.get().await.unwrap();
    let row = conn
        .query_one("SELECT seq FROM webchat_seqs WHERE user_id = 'kim'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1, "no number used up");
    assert!(
        local.webchat.stats().history_retries + remote.webchat.stats().history_retries >= 1,
        "the later statement ran again"
    );
    remote.kill();
}

/// A deadlock, then a serialization failure, then success: the batch is stored once and the
/// two runs again are counted. Past the bound of runs, the send fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_in_a_row_are_run_again_with_back_off_and_counted() {
    let pool = fresh_pool("conflicts").await;
    let a = cluster(&pool, "node-a").await;
    let local = Harness::start_with(echo, |w| w.cluster(a.clone()), |b| b).await;
    let conn = pool.get().await.unwrap();
    // PostgreSQL's own errors, from a trigger on the insert, while the statements counted by
    // a sequence (which a failed statement does not roll back) are at most `failures_wanted`.
    conn.batch_execute(
        "CREATE TABLE failures_wanted (n int8 NOT NULL);
         INSERT INTO failures_wanted VALUES (2);
         CREATE SEQUENCE statements_made;
         CREATE FUNCTION inject_failure() RETURNS trigger LANGUAGE plpgsql AS $$
         DECLARE made int8 := nextval('statements_made');
         BEGIN
             IF made <= (SELECT n FROM failures_wanted) THEN
                 IF made % 2 = 1 THEN
                     RAISE EXCEPTION 'injected deadlock' USING ERRCODE = 'deadlock_detected';
                 END IF;
                 RAISE EXCEPTION 'injected conflict' USING ERRCODE = 'serialization_failure';
             END IF;
             RETURN NULL;
         END $$;
         CREATE TRIGGER inject_failure BEFORE INSERT ON webchat_history
             FOR EACH STATEMENT EXECUTE FUNCTION inject_failure();",
    )
    .await
    .unwrap();
    let (mut tab, _) = join_at(&local.ws_url, local.token("ola"), None).await;
    let delivery = local
        .webchat
        .client()
        .send_to("ola", &["after two".into()])
        .await
        .unwrap();
    assert_eq!(delivery.seqs, [1]);
    assert_eq!(local.webchat.stats().history_retries, 2);
    assert_shown_and_stored_once(&mut tab, &pool, "ola", &["after two"]).await;
    let made = || async {
        (conn
            .query_one("SELECT last_value FROM statements_made", &[])
            .await)
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(made().await, 3, "two refused, the third stored");

    // Conflicts that do not end: the batch runs five times in all, then the send fails.
    conn.batch_execute("UPDATE failures_wanted SET n = 1000000")
        .await
        .unwrap();
    let e = local
        .webchat
        .client()
        .send_to("ola", &["never".into()])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), bot_webchat::ErrorKind::Database);
    assert_eq!(made().await, 3 + 5);
    let stats = local.webchat.stats();
    assert_eq!((stats.history_retries, stats.history_errors), (2 + 4, 1));
}

/// A user whose history expired and who has no socket loses the number row; the next send
/// still gets a number above every one the browser saw, and a resume from there shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_whose_history_expired_loses_the_number_row_and_counts_on_above_it() {
    let pool = fresh_pool("prune").await;
    let a = cluster(&pool, "node-a").await;
    let config = bot_webchat::WebChatConfig {
        resume_window: Duration::from_millis(300),
        ..bot_webchat::WebChatConfig::default()
    };
    let local = Harness::start_with(echo, |w| w.config(config).cluster(a.clone()), |b| b).await;
    let epoch = a.epoch().await.unwrap().to_owned();
    let client = local.webchat.client();
    let (mut tab, _) = join_at(&local.ws_url, local.token("max"), None).await;
    for text in ["one", "two", "three"] {
        client.send_to("max", &[text.into()]).await.unwrap();
    }
    assert_eq!(messages(&mut tab, 3).await[2].0, 3);
    let conn = pool.get().await.unwrap();
    let rows = |table: &'static str| {
        let conn = &conn;
        async move {
            let sql = format!("SELECT count(*) FROM {table} WHERE user_id = 'max'");
            conn.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0)
        }
    };
    eventually("the history expired", || async {
        (rows("webchat_history").await == 0).then_some(())
    })
    .await;
    // The tab leaves: nobody has a socket, nothing is kept, the row goes.
    drop(tab);
    eventually("the number row pruned", || async {
        (rows("webchat_seqs").await == 0).then_some(())
    })
    .await;
    assert_eq!(local.webchat.stats().seqs_pruned, 1);
    let floor: String = conn
        .query_one(
            "SELECT value FROM webchat_meta WHERE key = 'seq_floor'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(floor, "3");

    // The browser comes back with the last number it saw: the welcome counts from the floor.
    let (mut tab, welcome) = join_at(&local.ws_url, local.token("max"), Some((3, &epoch))).await;
    assert_eq!(welcome["seq"], 3, "{welcome}");
    let delivery = client.send_to("max", &["four".into()]).await.unwrap();
    assert_eq!(delivery.seqs, [4]);
    assert_eq!(messages(&mut tab, 1).await, [(4, "four".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_joins_reads_the_history_through_a_few_connections() {
    let pool = fresh_pool("join_reads").await;
    let cluster = PgCluster::builder(&pool)
        .node("node-a")
        .max_join_reads(2)
        .build()
        .unwrap();
    cluster.migrate().await.unwrap();
    let local = Harness::start_with(echo, |w| w.cluster(cluster.clone()), |b| b).await;
    let joins = (0..40).map(|n| {
        let (url, token) = (local.ws_url.clone(), local.token(&format!("storm-{n}")));
        async move { join_at(&url, token, None).await }
    });
    // Every join is answered, though at most two read at once.
    let sockets = futures::future::join_all(joins).await;
    assert_eq!(sockets.len(), 40);
    // Two join reads, the presence and history writers and the catch-up: far from the pool's
    // 16, which 40 joins at once took without the bound.
    let open = pool.stats().size;
    assert!(open <= 8, "{open} connections open");
    assert!(PgCluster::builder(&pool).max_join_reads(0).build().is_err());
}
