//! Two nodes joined over NATS instead of PostgreSQL: a reply reaches a user's sockets on both,
//! and a node's proactive message reaches the other's; a node skips its own envelopes.
//!
//! Needs NATS at `NATS_URL` (default 127.0.0.1:4222, scripts/ensure-nats.sh); fails without it.

mod support;

use std::sync::Arc;

use bot_webchat::nats::NatsFanout;
use serde_json::json;
use support::{Harness, echo, eventually, next, next_of, send};

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A node of application `name`, failing loudly when NATS cannot be reached.
async fn node(name: &str, node: &str) -> NatsFanout {
    let url = nats_url();
    // ANCHOR: nats
    let fanout = NatsFanout::connect(&url, name, node).await;
    // ANCHOR_END: nats
    fanout.unwrap_or_else(|e| {
            panic!("NATS is not reachable at {url} ({e}); start it (scripts/ensure-nats.sh) or set NATS_URL")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_reaches_the_users_sockets_on_both_nodes_over_nats() {
    let name = format!("t{}_{:08x}", std::process::id(), fastrand_u32());
    let (a, b) = (node(&name, "node-a").await, node(&name, "node-b").await);
    let on_node_a = Harness::start_with(echo, |w| w.fanout(Arc::new(a.clone())), |b| b).await;
    let on_node_b = Harness::start_with(echo, |w| w.fanout(Arc::new(b.clone())), |b| b).await;
    eventually("both nodes subscribed", || async {
        (a.is_listening() && b.is_listening()).then_some(())
    })
    .await;
    let (mut tab_a, _) = on_node_a.join("alice", None).await;
    let (mut tab_b, _) = on_node_b.join("alice", None).await;

    // The handler runs on node A; the reply reaches the tab on node B too, and once on A.
    send(
        &mut tab_a,
        json!({"type": "message", "id": "c-1", "text": "to every node"}),
    )
    .await;
    assert_eq!(
        next_of(&mut tab_a, "message").await["message"]["text"],
        "to every node"
    );
    assert_eq!(
        next_of(&mut tab_b, "message").await["message"]["text"],
        "to every node"
    );

    // Node B's proactive message reaches node A's tab; node B's own tab gets it once (B skips
    // its own envelope: a second copy would come before the next message).
    on_node_b
        .webchat
        .client()
        .send_to("alice", &["from b".into()])
        .await
        .unwrap();
    assert_eq!(next(&mut tab_a).await["message"]["text"], "from b");
    assert_eq!(next(&mut tab_b).await["message"]["text"], "from b");
    on_node_b
        .webchat
        .client()
        .send_to("alice", &["again from b".into()])
        .await
        .unwrap();
    assert_eq!(next(&mut tab_b).await["message"]["text"], "again from b");
    assert_eq!(next(&mut tab_a).await["message"]["text"], "again from b");
}

#[tokio::test]
async fn a_server_that_does_not_answer_is_a_broker_error() {
    // A port nothing listens on: the error names NATS and the address.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let e = NatsFanout::connect(&format!("nats://127.0.0.1:{port}"), "app", "n1")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), bot_webchat::ErrorKind::Broker);
    assert!(e.to_string().contains(&port.to_string()), "{e}");
}

fn fastrand_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}
