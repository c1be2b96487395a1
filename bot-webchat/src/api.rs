//! The backend API: what the site's server calls, authorised by the adapter's secret
//! (`Authorization: Bearer <WEBCHAT_SECRET>`).
//!
//! - `POST {path}/api/tokens` with `{"user":"u1","ttl_secs":3600}` answers
//!   `{"token":"v1...","expires_at":1733360000}`; `ttl_secs` is optional (one hour) and capped
//!   by [`crate::WebChatConfig::max_token_ttl`].
//! - `POST {path}/api/messages` with `{"user":"u1","messages":[...]}` (each an
//!   [`bot_core::OutgoingMessage`] in its JSON form, such as `{"text":"hello"}`) sends a
//!   proactive message and answers `{"seqs":[15],"sockets":2}`.
//!
//! A wrong or missing secret is 401, a body that is not this JSON 400, a user id or message
//! that web chat cannot take 422.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bot_core::outbound::OutgoingMessage;
use bot_core::{Ingress, Secret};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use crate::client::WebChatClient;
use crate::render::PLATFORM;
use crate::token;

/// The lifetime of a token when the request names none.
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// What the API handlers share.
#[derive(Debug)]
pub(crate) struct Api {
    pub(crate) secret: Secret,
    pub(crate) ingress: Ingress,
    pub(crate) client: WebChatClient,
    pub(crate) max_token_ttl: Duration,
}

#[derive(Deserialize)]
struct TokenRequest {
    user: String,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

#[derive(Deserialize)]
struct MessageRequest {
    user: String,
    messages: Vec<OutgoingMessage>,
}

/// `POST {path}/api/tokens`.
pub(crate) async fn issue_token(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: TokenRequest = match api.authorised_json(&headers, &body) {
        Ok(request) => request,
        Err(refusal) => return api.refuse(&refusal, body.len()),
    };
    let ttl = (request.ttl_secs)
        .map_or(DEFAULT_TOKEN_TTL, Duration::from_secs)
        .min(api.max_token_ttl);
    let expires_at = token::unix_now().saturating_add(ttl.as_secs());
    match token::issue_until(&api.secret, &request.user, expires_at) {
        Ok(token) => Json(json!({"token": token, "expires_at": expires_at})).into_response(),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response(),
    }
}

/// `POST {path}/api/messages`.
pub(crate) async fn send_message(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: MessageRequest = match api.authorised_json(&headers, &body) {
        Ok(request) => request,
        Err(refusal) => return api.refuse(&refusal, body.len()),
    };
    match api.client.send_to(&request.user, &request.messages).await {
        Ok(delivery) => {
            Json(json!({"seqs": delivery.seqs, "sockets": delivery.sockets})).into_response()
        }
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response(),
    }
}

/// Why a backend request was refused.
enum Refusal {
    Unauthorized,
    Malformed(serde_json::Error),
}

impl Api {
    /// The body as `T` once the secret is checked (in constant time, before the body is read).
    fn authorised_json<T: serde::de::DeserializeOwned>(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<T, Refusal> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        if !presented.is_some_and(|p| self.secret.matches(p)) {
            return Err(Refusal::Unauthorized);
        }
        serde_json::from_slice(body).map_err(Refusal::Malformed)
    }

    /// The answer to a refused request: 401 or 400, counted as `bot.webhook.rejected`.
    fn refuse(&self, refusal: &Refusal, body_len: usize) -> Response {
        match refusal {
            Refusal::Unauthorized => {
                (self.ingress).refuse(&PLATFORM, StatusCode::UNAUTHORIZED, "bad_api_secret")
            }
            Refusal::Malformed(e) => self.ingress.refuse_malformed(&PLATFORM, e, body_len),
        }
    }
}
