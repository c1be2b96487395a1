//! NATS JetStream for tests: each test gets streams and a bucket of its own (a queue name
//! unique to the test and the run) on the server of `NATS_URL` (default
//! `nats://127.0.0.1:4222`), so tests run in parallel; [`Cleanup`] deletes them.
//!
//! These tests never skip: when NATS cannot be reached, or runs without JetStream, they fail,
//! saying so (scripts/test.sh starts it with scripts/ensure-nats.sh).

use std::time::Duration;

use bot_core::nats::{JetStreamQueue, JetStreamQueueBuilder, async_nats};

/// The server the tests use.
pub(crate) fn nats_url() -> String {
    std::env::var(bot_core::nats::NATS_URL_ENV)
        .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A connection to `url`, checked to have JetStream.
///
/// # Panics
///
/// When nothing answers or JetStream is off: a test that needs it must fail without it.
pub(crate) async fn connect_to(url: &str) -> async_nats::Client {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .unwrap_or_else(|e| {
            panic!("NATS is not reachable at {url} ({e}); start it (scripts/ensure-nats.sh) or set NATS_URL")
        });
    // The account information request answers only where JetStream is on (read as text: the
    // server's version decides which fields it has).
    let info = client
        .request("$JS.API.INFO", "".into())
        .await
        .unwrap_or_else(|e| {
            panic!("NATS at {url} answers without JetStream ({e}); run nats-server -js")
        });
    let text = String::from_utf8_lossy(&info.payload);
    assert!(
        text.contains("account_info_response") && !text.contains("\"error\""),
        "NATS at {url} has no JetStream for this account: {text}"
    );
    client
}

/// A connection to the shared test server.
pub(crate) async fn connect() -> async_nats::Client {
    connect_to(&nats_url()).await
}

/// A queue name of `test`'s own for this run.
pub(crate) fn unique_name(test: &str) -> String {
    format!("t_{test}_{}_{:08x}", std::process::id(), fastrand::u32(..))
}

/// A builder with quick timings for tests: ownership expires after 2 s, 4 partitions.
pub(crate) fn queue_builder(client: async_nats::Client, name: &str) -> JetStreamQueueBuilder {
    JetStreamQueue::builder(client)
        .name(name)
        .partitions(4)
        .ownership_lease(Duration::from_secs(2))
}

/// Deletes a test's streams and bucket when dropped (on a runtime of its own: the test's may
/// be gone by then).
pub(crate) struct Cleanup {
    pub(crate) url: String,
    pub(crate) name: String,
}

impl Cleanup {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            url: nats_url(),
            name: name.to_owned(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(client) = async_nats::connect(&url).await else {
                    return;
                };
                let js = async_nats::jetstream::new(client);
                // Every partition's stream, whatever the test's partitions were.
                let listed: Result<serde_json::Value, _> = js
                    .request(
                        "STREAM.NAMES",
                        &serde_json::json!({ "subject": format!("{name}.p.*") }),
                    )
                    .await;
                let partitions = listed
                    .ok()
                    .and_then(|v| v.get("streams").cloned())
                    .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
                    .unwrap_or_default();
                for stream in partitions {
                    let _ = js.delete_stream(&stream).await;
                }
                let _ = js.delete_stream(&name).await;
                let _ = js.delete_stream(format!("{name}_dead")).await;
                let _ = js.delete_key_value(format!("{name}_owners")).await;
            });
        })
        .join();
    }
}
