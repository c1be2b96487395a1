//! The chat widget (`{path}/widget.js`) and, when enabled, the demo page (`{path}/demo`).
//!
//! The widget is one plain JavaScript file, embedded in the crate: a site adds it with one
//! script tag, no build step. The demo page signs a token for a fresh demo user on every load,
//! so it is off unless asked for ([`crate::WebChatBuilder::demo`]): anyone who can open it can
//! chat.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use bot_core::Secret;
use http::{HeaderValue, StatusCode, header};

use crate::token;

/// The widget's source.
pub const WIDGET_JS: &str = include_str!("../assets/webchat.js");
/// The demo page, with `{{USER}}` and `{{TOKEN}}` to fill in.
const DEMO_HTML: &str = include_str!("../assets/demo.html");
/// How long a demo token lives.
const DEMO_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// `GET {path}/widget.js`.
pub(crate) async fn widget() -> Response {
    let mut response = WIDGET_JS.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// `GET {path}/demo`: the page, with a token for a new demo user.
pub(crate) async fn demo(State(secret): State<Arc<Secret>>) -> Response {
    let user = format!("demo-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    match token::issue(&secret, &user, DEMO_TOKEN_TTL) {
        Ok(token) => {
            let page = DEMO_HTML
                .replace("{{USER}}", &user)
                .replace("{{TOKEN}}", &token);
            let mut response = Html(page).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
