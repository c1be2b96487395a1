//! The page's HTTP side: the page itself (plain HTML, CSS and JS, no build step) and the small
//! JSON API it calls.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::emulator::{Emulator, Refused, Tap};

const INDEX_HTML: &str = include_str!("page/index.html");
const EMULATOR_JS: &str = include_str!("page/emulator.js");
const EMULATOR_CSS: &str = include_str!("page/emulator.css");

/// How long a state request waits for something new before answering with fresh figures.
const STATE_WAIT: Duration = Duration::from_secs(1);
/// The longest text the page may send.
const MAX_TEXT: usize = 5000;

/// The page and its API, to serve on a development address.
pub fn router(emulator: Emulator) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/emulator.js",
            get(|| async { page("text/javascript; charset=utf-8", EMULATOR_JS) }),
        )
        .route(
            "/emulator.css",
            get(|| async { page("text/css; charset=utf-8", EMULATOR_CSS) }),
        )
        .route("/api/state", get(state))
        .route("/api/send", post(send))
        .route("/api/tap", post(tap))
        .with_state(emulator)
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct StateQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    version: Option<u64>,
}

async fn state(State(emulator): State<Emulator>, Query(query): Query<StateQuery>) -> Response {
    // No version yet: answer at once.
    let (seen, wait) = match query.version {
        Some(version) => (version, STATE_WAIT),
        None => (u64::MAX, Duration::ZERO),
    };
    let snapshot = emulator.journal().snapshot(query.after, seen, wait).await;
    Json(json!({
        "version": snapshot.version,
        "items": snapshot.items,
        "traces": snapshot.traces,
        "figures": emulator.figures(),
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct Send {
    platform: String,
    text: String,
}

async fn send(State(emulator): State<Emulator>, Json(send): Json<Send>) -> Response {
    if send.text.len() > MAX_TEXT {
        return refused(&format!("at most {MAX_TEXT} bytes at a time"));
    }
    answer(emulator.send_text(&send.platform, &send.text).await)
}

async fn tap(State(emulator): State<Emulator>, Json(tap): Json<Tap>) -> Response {
    answer(emulator.tap(&tap).await)
}

fn refused(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response()
}

fn answer(result: Result<(), crate::emulator::Error>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) if error.is::<Refused>() => refused(&error.to_string()),
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({"error": format!("the bot could not be reached: {error}")})),
        )
            .into_response(),
    }
}
