//! The WebSocket endpoint: the HTTP upgrade, and the one task that serves each socket.
//!
//! The upgrade is answered here (hyper's upgrade, `Sec-WebSocket-Accept` from tungstenite), and
//! the socket runs tokio-tungstenite with a small read buffer. Each socket has exactly one task;
//! it reads frames, and writes what the hub queued for it when woken. Handling a frame is boxed,
//! so an idle socket's task holds only its waiting state, not the largest of its futures.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bot_core::{ErrorKind, Ingress, Secret};
use futures::{SinkExt as _, StreamExt as _};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use crate::config::WebChatConfig;
use crate::event;
use crate::hub::{Conn, Hub, Resume};
use crate::metrics::Ended;
use crate::protocol::{CloseReason, Inbound, Outbound, VERSION};
use crate::render::PLATFORM;
use crate::token::{self, TokenError};

/// How long closing a socket may take (sending the close frame, reading the browser's answer).
/// Only a closing socket has this timer.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// What every socket task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) hub: Arc<Hub>,
    pub(crate) ingress: Ingress,
    pub(crate) secret: Secret,
    /// The cluster that keeps the history, when it is in PostgreSQL.
    #[cfg(feature = "postgres")]
    pub(crate) history: Option<crate::pg::PgCluster>,
}

/// `GET {path}/ws`: answers the upgrade and starts the socket's task.
pub(crate) async fn upgrade(State(shared): State<Arc<Shared>>, mut request: Request) -> Response {
    let key = match check_upgrade(request.headers()) {
        Ok(key) => key,
        Err(refusal) => return refusal.into_response(),
    };
    if shared.hub.open_sockets() >= shared.hub.config.max_sockets {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many web chat sockets").into_response();
    }
    let on_upgrade = hyper::upgrade::on(&mut request);
    // The socket's one task, for as long as the socket lives; the hub bounds the work it does.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(serve(shared, on_upgrade));
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&key).expect("base64 is a header value"),
    );
    response
}

/// Why an upgrade request was refused.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    NotAnUpgrade,
    Version,
    NoKey,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NotAnUpgrade => {
                (StatusCode::BAD_REQUEST, "expected a WebSocket upgrade").into_response()
            }
            Refusal::NoKey => (StatusCode::BAD_REQUEST, "no Sec-WebSocket-Key").into_response(),
            Refusal::Version => {
                let mut refusal =
                    (StatusCode::UPGRADE_REQUIRED, "WebSocket version 13 only").into_response();
                refusal.headers_mut().insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
                refusal
            }
        }
    }
}

/// The `Sec-WebSocket-Accept` value of a valid upgrade request.
fn check_upgrade(headers: &HeaderMap) -> Result<String, Refusal> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
        return Err(Refusal::NotAnUpgrade);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(Refusal::Version);
    }
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key) => Ok(derive_accept_key(key.as_bytes())),
        None => Err(Refusal::NoKey),
    }
}

/// A socket's place in the hub, given back however its task ends (a panic included).
struct Registered {
    hub: Arc<Hub>,
    conn: Arc<Conn>,
    user: Option<String>,
    /// Whether the server closed it (counted when decided, before the close handshake).
    closed_by_server: bool,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.hub.remove(&self.conn, self.user.as_deref());
        if !self.closed_by_server {
            self.hub.counters.ended(Ended::Client);
        }
    }
}

/// tungstenite's settings for a socket of this hub.
fn socket_config(config: &WebChatConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(config.read_buffer_bytes)
        // Frames go out as they are written; the hub bounds what waits.
        .write_buffer_size(0)
        .max_message_size(Some(config.max_frame_bytes))
        .max_frame_size(Some(config.max_frame_bytes))
}

/// Serves one socket, from the upgrade until it closes.
///
/// This future is the idle socket's task, so it keeps little besides the socket: everything
/// rare runs in a boxed future of its own (the upgrade, writing, closing, handling a text frame),
/// and nothing else lives across an await. A value moved into an awaited future keeps its place
/// in this one as well (rustc does not overlap the two), so the socket is made by a boxed future
/// and returned, not passed down.
async fn serve(shared: Arc<Shared>, on_upgrade: hyper::upgrade::OnUpgrade) {
    let Some(mut socket) = Box::pin(open(&shared, on_upgrade)).await else {
        return;
    };
    let conn = shared.hub.accept();
    let mut registered = Registered {
        hub: shared.hub.clone(),
        conn: conn.clone(),
        user: None,
        closed_by_server: false,
    };
    loop {
        if conn.has_work() {
            match Box::pin(write_queued(&mut socket, &conn)).await {
                Written::Failed => break,
                Written::Close(reason) => {
                    registered.closed_by_server = true;
                    shared.hub.counters.ended(Ended::Server(reason));
                    Box::pin(close_socket(&mut socket, reason)).await;
                    break;
                }
                // Frames may have come while writing: take them before waiting.
                Written::Frames => continue,
                Written::Nothing => {}
            }
        }
        let step = tokio::select! {
            () = conn.woken() => Step::Again,
            frame = socket.next() => received(&shared, &conn, frame),
        };
        match &step {
            Step::Again => {}
            Step::Text(text) => {
                Box::pin(on_text(&shared, &conn, &mut registered.user, text)).await;
            }
            Step::Close => {
                // tungstenite answers the close; send that answer, then stop.
                let _ = Box::pin(tokio::time::timeout(CLOSE_TIMEOUT, socket.flush())).await;
                break;
            }
            Step::Ended => break,
        }
    }
}

/// Waits for the upgrade and makes the socket; `None` when the upgrade failed.
async fn open(shared: &Shared, on_upgrade: hyper::upgrade::OnUpgrade) -> Option<Socket> {
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            tracing::debug!(error = %e, "web chat upgrade failed");
            return None;
        }
    };
    let config = socket_config(&shared.hub.config);
    Some(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await)
}

/// What [`write_queued`] did.
enum Written {
    /// Nothing was queued.
    Nothing,
    /// Frames were written.
    Frames,
    /// Writing failed: the connection is gone.
    Failed,
    /// The socket is to close with this reason (after what was queued before it).
    Close(CloseReason),
}

/// Writes what the hub queued for the socket.
async fn write_queued(socket: &mut Socket, conn: &Conn) -> Written {
    let (frames, close) = conn.take();
    let wrote = !frames.is_empty();
    if wrote {
        let write = async {
            for frame in frames {
                socket.feed(Message::Text(frame)).await?;
            }
            socket.flush().await
        };
        tokio::select! {
            written = write => if written.is_err() { return Written::Failed },
            // A slow reader stuck in a write: stop writing, close.
            () = conn.close_requested() => {}
        }
    }
    match close.or_else(|| conn.closing()) {
        Some(reason) => Written::Close(reason),
        None if wrote => Written::Frames,
        None => Written::Nothing,
    }
}

/// What the socket's task does after a wake-up.
enum Step {
    /// Look at the queue again and wait.
    Again,
    /// Handle a text frame of the browser.
    Text(Utf8Bytes),
    /// The browser closed: send tungstenite's answer and stop.
    Close,
    /// The connection is gone.
    Ended,
}

/// Counts what the socket read; closes it (through the hub) on a frame it must not send.
fn received(shared: &Shared, conn: &Conn, frame: Option<Result<Message, WsError>>) -> Step {
    match frame {
        Some(Ok(message)) => {
            conn.touch(shared.hub.now_ms());
            shared.hub.counters.frame_in();
            match message {
                Message::Text(text) => Step::Text(text),
                Message::Binary(_) => {
                    conn.close(CloseReason::MalformedFrame);
                    Step::Again
                }
                Message::Close(_) => Step::Close,
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Step::Again,
            }
        }
        Some(Err(WsError::Capacity(_))) => {
            conn.close(CloseReason::FrameTooLarge);
            Step::Again
        }
        Some(Err(WsError::Protocol(_) | WsError::Utf8(_))) => {
            conn.close(CloseReason::MalformedFrame);
            Step::Again
        }
        Some(Err(_)) | None => Step::Ended,
    }
}

/// Handles one text frame of the browser.
async fn on_text(shared: &Shared, conn: &Arc<Conn>, user: &mut Option<String>, text: &str) {
    let max = shared.hub.config.max_outbound_bytes;
    let inbound = match Inbound::parse(text) {
        Ok(inbound) => inbound,
        Err(_) => {
            conn.close(CloseReason::MalformedFrame);
            return;
        }
    };
    let Some(joined_as) = user.as_deref() else {
        join(shared, conn, user, inbound).await;
        return;
    };
    match inbound {
        Inbound::Join { .. } => {
            conn.close(CloseReason::MalformedFrame);
        }
        Inbound::Heartbeat => {
            conn.push(Utf8Bytes::from(Outbound::Heartbeat.to_json()), max);
        }
        inbound => {
            let deliver_typing = shared.hub.config.deliver_typing;
            let Some(mapped) = event::map(joined_as, text, inbound, deliver_typing) else {
                shared.ingress.skipped(&PLATFORM, "typing", 1);
                return;
            };
            let answer = match (shared.ingress.submit(vec![mapped.event]).await, &mapped.ack) {
                (_, None) => return,
                (Ok(_), Some(id)) => Outbound::Ack { id }.to_json(),
                (Err(e), Some(id)) => {
                    let code = match e.kind() {
                        ErrorKind::QueueFull => "busy",
                        _ => "unavailable",
                    };
                    let retry = e.retry_after().unwrap_or(Duration::from_secs(1));
                    Outbound::Error {
                        id,
                        code,
                        retry_after_ms: retry.as_millis() as u64,
                    }
                    .to_json()
                }
            };
            conn.push(Utf8Bytes::from(answer), max);
            shared.hub.counters.frames_out(1);
        }
    }
}

/// Handles the first frame: a join with a valid token, or the socket closes.
async fn join(shared: &Shared, conn: &Arc<Conn>, user: &mut Option<String>, inbound: Inbound) {
    let Inbound::Join {
        version,
        token,
        last_seq,
        epoch,
    } = inbound
    else {
        conn.close(CloseReason::JoinRequired);
        return;
    };
    if version != VERSION {
        conn.close(CloseReason::UnsupportedVersion);
        return;
    }
    match token::verify(&shared.secret, &token) {
        Ok(claims) => {
            let resume = last_seq.map(|last_seq| Resume {
                last_seq,
                epoch: epoch.as_deref(),
            });
            #[cfg(feature = "postgres")]
            if let Some(cluster) = &shared.history {
                if join_from_history(shared, cluster, conn, &claims.user, resume).await {
                    *user = Some(claims.user);
                }
                return;
            }
            shared.hub.join(conn, &claims.user, resume);
            *user = Some(claims.user);
        }
        Err(TokenError::Expired) => {
            conn.close(CloseReason::TokenExpired);
        }
        Err(_) => {
            conn.close(CloseReason::BadToken);
        }
    }
}

/// Joins `user` with what the cluster's history keeps; false when it cannot be read (the socket
/// is closed with 1001, going away, and the widget reconnects with back-off).
#[cfg(feature = "postgres")]
async fn join_from_history(
    shared: &Shared,
    cluster: &crate::pg::PgCluster,
    conn: &Arc<Conn>,
    user: &str,
    resume: Option<Resume<'_>>,
) -> bool {
    // The join is given up if this future is dropped mid-read (the socket's task ends: shutdown,
    // the connection dropped), so that the user's entry does not wait for it for ever.
    let mut pending = shared.hub.pending_join(user);
    let read = async {
        // A few joins read at once: a storm of joins must not take every pooled connection.
        let _turn = cluster.join_read_turn().await;
        let epoch = cluster.epoch().await?;
        // Numbers of another numbering: nothing to read after them.
        let last_seq = resume
            .filter(|r| r.epoch.is_none_or(|e| e == epoch))
            .map(|r| r.last_seq);
        let mut stored = cluster.stored(user, last_seq, &shared.hub.config).await?;
        // Another join of the user may move this node's count past this read meanwhile: read
        // what lies between (a few times at most: then a gap is reported instead).
        let mut reads = 1;
        loop {
            let may_read_more = reads < JOIN_READS;
            match (shared.hub).join_numbered(conn, user, resume, &stored, epoch, may_read_more) {
                Ok(_) => return Ok::<_, crate::Error>(()),
                Err(behind) => {
                    let more = cluster
                        .between(user, behind.after, behind.through + 1)
                        .await?;
                    stored.gap |= more.first().is_none_or(|(seq, _)| *seq != behind.after + 1);
                    stored.latest = behind.through;
                    stored.rows.extend(more);
                    reads += 1;
                }
            }
        }
    };
    match read.await {
        Ok(()) => {
            // Finished: no longer the guard's to abandon.
            pending.settled();
            true
        }
        Err(e) => {
            // The guard abandons the join.
            drop(pending);
            cluster.count_history_error();
            tracing::warn!(error = %e, "webchat: a join cannot read the history");
            conn.close(CloseReason::GoingAway);
            false
        }
    }
}

/// How many times a join reads the history at most (see [`join_from_history`]).
#[cfg(feature = "postgres")]
const JOIN_READS: u32 = 3;

/// Sends the close frame and waits (bounded) for the browser's answer, so that the close code
/// reaches it before the connection drops.
async fn close_socket(socket: &mut Socket, reason: CloseReason) {
    let frame = CloseFrame {
        code: CloseCode::from(reason.code()),
        reason: Utf8Bytes::from_static(reason.as_str()),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        socket.close(Some(frame)).await?;
        while let Some(Ok(_)) = socket.next().await {}
        Ok::<_, WsError>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, F>(_f: impl Fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn an_idle_socket_task_holds_its_socket_once() {
        let socket = std::mem::size_of::<Socket>();
        let task = future_size(serve);
        eprintln!("socket {socket} bytes, task future {task} bytes");
        // The socket, the hub's handles and the waiting select (568 bytes in a debug build);
        // a socket also moved into an awaited future, or a frame kept across an await, would
        // pass this (the socket's task was 1,056 bytes, plus a second socket, before).
        assert!(
            task < socket + 300,
            "task future {task} bytes, socket {socket}"
        );
    }
}
