//! The ceiling of `botload scenario webhook-noop`: the hand-written axum server a team would
//! write instead of using botrt (run by hand with
//! `cargo run --release -p bench --bin ceiling`; botload starts it beside noop-bot).
//!
//! It does only what a webhook endpoint must: verify the platform's HMAC-SHA256 over the raw
//! body in constant time, deserialize the body into typed structs, count the events and answer
//! 200. No queue, no handler, no telemetry: whatever noop-bot costs beyond this is the runtime's.
//!
//! Configured as noop-bot is: `BOT_ADDR` (default `127.0.0.1:8080`), `LINE_CHANNEL_SECRET` for
//! `POST /line/webhook` (`x-line-signature`, base64), `MESSENGER_APP_SECRET` for
//! `POST /messenger/webhook` (`x-hub-signature-256`, `sha256=` hex); `GET /readyz` answers 200
//! and `GET /metrics` the count of events accepted (`ceiling_events_total`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// botload's webhook bodies, to check that the ceiling accepts what a run sends.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../payload.rs"]
mod payload;

/// The largest body accepted, as botrt's default.
const MAX_BODY: usize = 1024 * 1024;

/// The secrets and the count.
#[derive(Debug, Default)]
struct Ceiling {
    line_secret: Option<Vec<u8>>,
    messenger_secret: Option<Vec<u8>>,
    events: AtomicU64,
}

/// The typed structs of the bodies, shared with the adapters' parse benchmarks.
#[path = "../ceiling_types.rs"]
mod ceiling_types;

use ceiling_types::{LineBody, MessengerBody};

/// HMAC-SHA256 of `body` under `secret`, compared with `expected` in constant time.
fn mac_matches(secret: &[u8], body: &[u8], expected: &[u8]) -> bool {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(expected).is_ok()
}

async fn line_webhook(
    State(ceiling): State<Arc<Ceiling>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Some(secret) = &ceiling.line_secret else {
        return StatusCode::NOT_FOUND;
    };
    let signature = headers.get("x-line-signature").and_then(|v| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_bytes())
            .ok()
    });
    match signature {
        Some(signature) if mac_matches(secret, &body, &signature) => {}
        _ => return StatusCode::UNAUTHORIZED,
    }
    match serde_json::from_slice::<LineBody>(&body) {
        Ok(parsed) => {
            ceiling
                .events
                .fetch_add(parsed.events.len() as u64, Ordering::Relaxed);
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

async fn messenger_webhook(
    State(ceiling): State<Arc<Ceiling>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Some(secret) = &ceiling.messenger_secret else {
        return StatusCode::NOT_FOUND;
    };
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.as_bytes().strip_prefix(b"sha256="))
        .and_then(|hex_digits| hex::decode(hex_digits).ok());
    match signature {
        Some(signature) if mac_matches(secret, &body, &signature) => {}
        _ => return StatusCode::UNAUTHORIZED,
    }
    match serde_json::from_slice::<MessengerBody>(&body) {
        Ok(parsed) if parsed.object == "page" => {
            let events: usize = parsed.entry.iter().map(|e| e.messaging.len()).sum();
            ceiling.events.fetch_add(events as u64, Ordering::Relaxed);
            StatusCode::OK
        }
        Ok(_) => StatusCode::NOT_FOUND,
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

async fn metrics(State(ceiling): State<Arc<Ceiling>>) -> String {
    format!(
        "# TYPE ceiling_events_total counter\nceiling_events_total {}\n",
        ceiling.events.load(Ordering::Relaxed)
    )
}

fn app(ceiling: Arc<Ceiling>) -> Router {
    Router::new()
        .route("/line/webhook", post(line_webhook))
        .route("/messenger/webhook", post(messenger_webhook))
        .route("/healthz", get(|| async { StatusCode::OK }))
        .route("/readyz", get(|| async { StatusCode::OK }))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ceiling)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let addr: SocketAddr = var("BOT_ADDR")
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned())
        .parse()?;
    let ceiling = Ceiling {
        line_secret: var("LINE_CHANNEL_SECRET").map(String::into_bytes),
        messenger_secret: var("MESSENGER_APP_SECRET").map(String::into_bytes),
        events: AtomicU64::new(0),
    };
    if ceiling.line_secret.is_none() && ceiling.messenger_secret.is_none() {
        return Err("ceiling: set LINE_CHANNEL_SECRET or MESSENGER_APP_SECRET".into());
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app(Arc::new(ceiling))).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use bot_core::Secret;
    use tower::ServiceExt as _;

    const SECRET: &str = "ceiling-secret";

    fn ceiling() -> Arc<Ceiling> {
        Arc::new(Ceiling {
            line_secret: Some(SECRET.as_bytes().to_vec()),
            messenger_secret: Some(SECRET.as_bytes().to_vec()),
            events: AtomicU64::new(0),
        })
    }

    async fn post(
        ceiling: &Arc<Ceiling>,
        path: &str,
        header: &str,
        signature: &str,
        body: &str,
    ) -> StatusCode {
        let request = Request::post(path)
            .header(header, signature)
            .body(Body::from(body.to_owned()))
            .unwrap();
        app(ceiling.clone())
            .oneshot(request)
            .await
            .unwrap()
            .status()
    }

    const LINE_BODY: &str = r#"{"destination":"U1","events":[{"type":"message","mode":"active","timestamp":1,"source":{"type":"user","userId":"U2"},"webhookEventId":"01A","deliveryContext":{"isRedelivery":false},"replyToken":"r","message":{"type":"text","id":"1","quoteToken":"q","text":"hi"}},{"type":"follow","timestamp":2,"source":{"type":"user","userId":"U3"},"webhookEventId":"01B","deliveryContext":{"isRedelivery":true},"replyToken":"s"}]}"#;
    const MESSENGER_BODY: &str = r#"{"object":"page","entry":[{"id":"1","time":1,"messaging":[{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1,"message":{"mid":"m1","text":"hi"}}]}]}"#;

    /// Signed as the platforms (and botrt's adapters) sign: accepted and counted; any other
    /// signature, or none, is refused with 401 and counts nothing.
    #[tokio::test]
    async fn line_webhooks_are_verified_then_counted() {
        let ceiling = ceiling();
        let good = bot_line::webhook::sign(&Secret::new(SECRET), LINE_BODY.as_bytes());
        let bad = bot_line::webhook::sign(&Secret::new("other"), LINE_BODY.as_bytes());
        let header = "x-line-signature";
        assert_eq!(
            post(&ceiling, "/line/webhook", header, &bad, LINE_BODY).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            post(&ceiling, "/line/webhook", header, "not base64!", LINE_BODY).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            post(&ceiling, "/line/webhook", "x-other", &good, LINE_BODY).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(ceiling.events.load(Ordering::Relaxed), 0);
        assert_eq!(
            post(&ceiling, "/line/webhook", header, &good, LINE_BODY).await,
            StatusCode::OK
        );
        assert_eq!(ceiling.events.load(Ordering::Relaxed), 2);
        let not_json = "{\"destination\":";
        let signed = bot_line::webhook::sign(&Secret::new(SECRET), not_json.as_bytes());
        assert_eq!(
            post(&ceiling, "/line/webhook", header, &signed, not_json).await,
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn messenger_webhooks_are_verified_then_counted() {
        let ceiling = ceiling();
        let good = bot_messenger::webhook::sign(&Secret::new(SECRET), MESSENGER_BODY.as_bytes());
        let bad = bot_messenger::webhook::sign(&Secret::new("other"), MESSENGER_BODY.as_bytes());
        let header = "x-hub-signature-256";
        assert!(good.starts_with("sha256="));
        assert_eq!(
            post(&ceiling, "/messenger/webhook", header, &bad, MESSENGER_BODY).await,
            StatusCode::UNAUTHORIZED
        );
        let bare = good.trim_start_matches("sha256=");
        assert_eq!(
            post(&ceiling, "/messenger/webhook", header, bare, MESSENGER_BODY).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(ceiling.events.load(Ordering::Relaxed), 0);
        assert_eq!(
            post(
                &ceiling,
                "/messenger/webhook",
                header,
                &good,
                MESSENGER_BODY
            )
            .await,
            StatusCode::OK
        );
        assert_eq!(ceiling.events.load(Ordering::Relaxed), 1);
    }

    /// The load generator's bodies (LINE and Messenger) are accepted and every event counted,
    /// so a run measures 200s.
    #[tokio::test]
    async fn the_load_generators_bodies_are_accepted() {
        use super::payload::{Platform, signed};
        let ceiling = ceiling();
        let secret = Secret::new(SECRET);
        for (n, platform) in [Platform::Line, Platform::Messenger]
            .into_iter()
            .enumerate()
        {
            let webhook = signed(platform, &secret, n as u64, 10, 100);
            let status = post(
                &ceiling,
                platform.path(),
                platform.signature_header(),
                &webhook.signature,
                &webhook.body,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{platform:?}");
        }
        assert_eq!(ceiling.events.load(Ordering::Relaxed), 20);
    }
}
