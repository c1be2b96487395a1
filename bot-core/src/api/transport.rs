//! How [`ApiClient`](super::ApiClient) sends: its own lean HTTP/2 client, or a `reqwest::Client`.
//!
//! # Which transport, when
//!
//! | the client is given | base `https://` | base `http://` |
//! | --- | --- | --- |
//! | nothing | built-in HTTP/2 (ALPN `h2`, `http/1.1`); a server that picks HTTP/1.1 is served by a `reqwest` client built once for it | `reqwest`, HTTP/1.1 |
//! | [`http2_prior_knowledge`](super::ConfigureApi::http2_prior_knowledge) | built-in HTTP/2 | built-in HTTP/2 without TLS (h2c) |
//! | a [`reqwest::Client`] ([`http_client`](super::ConfigureApi::http_client)) | that client | that client |
//! | nothing, with a proxy variable for the base's scheme set | `reqwest` (`HTTPS_PROXY`, `https_proxy`, `ALL_PROXY`, `all_proxy`; `NO_PROXY` applied by it) | `reqwest` (`HTTP_PROXY`, `http_proxy`, `ALL_PROXY`, `all_proxy`) |
//!
//! The built-in transport speaks HTTP/2 with the `h2` crate directly: one connection per origin
//! (scheme, host and port) and client, opened on the first call and shared by every clone of the
//! client; concurrent first calls share one connect attempt; a connection that ended (the
//! server's GOAWAY, an error, the end of the stream) is replaced on the next call. So is one
//! that may be dead: an attempt that timed out without an answer's head after its request was
//! handed to the connection retires it, and so do 90 s without a call (a NAT may have forgotten
//! it); streams in flight on a retired connection still end. Its socket has TCP keepalive (60 s,
//! then every 15 s). A call is one
//! request built whole (method, URI from the base parsed once, the headers), one stream, its
//! answer read whole under the per-attempt time-out. There is no redirect layer (a platform API
//! never redirects: a 3xx is an answer), no retry layer (the client's own retry loop retries),
//! no pool checkout and no task per request; only one task per connection drives it.
//!
//! When the server's limit of concurrent streams is in use, further calls queue on the
//! connection (in `h2`) until a stream ends, rather than opening more connections: the
//! platforms' rate limits and the runtime's window bound the calls in flight far below the
//! limits platforms announce (100 and more), and one connection per client keeps the server's
//! view of the client simple. A sender that needs more connections uses more clients (the
//! `broadcast` example's lanes).
//!
//! A stream the server refused without processing it (`REFUSED_STREAM`, or a GOAWAY whose last
//! stream id is below it, whatever its error code) did not reach the platform: the attempt fails
//! with a retryable [`Transport`](super::ApiErrorKind::Transport) error that is not "maybe delivered",
//! and the retry loop sends it again, even a call that is not idempotent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use rustls::pki_types::ServerName;

use super::deadlines::{Deadline, Deadlines};
use super::tls::{Load, PlatformVerifier};
use crate::error::BoxError;

/// How an attempt failed before an answer's head arrived.
pub(super) struct SendFailure {
    /// The attempt's time-out passed.
    pub(super) timeout: bool,
    /// The request may have reached the server.
    pub(super) maybe_delivered: bool,
    pub(super) source: BoxError,
}

/// An answer's head, and its body or why it could not be read (a time-out when `true`).
pub(super) type Exchanged = (StatusCode, HeaderMap, Result<Bytes, (bool, BoxError)>);

/// What one attempt sends: everything but the URI is the same for every transport.
///
/// References only, held by every call in flight: the idempotency key is its header's name and
/// the key's text (checked as a header value when the call began), its value made when the
/// request is.
pub(super) struct Outgoing<'a> {
    pub(super) method: &'a Method,
    pub(super) authorization: &'a HeaderValue,
    pub(super) body: Option<&'a (Bytes, HeaderValue)>,
    pub(super) key: Option<(&'a HeaderName, &'a str)>,
}

impl Outgoing<'_> {
    /// The idempotency key's header, if the call has one.
    fn key_header(&self) -> Result<Option<(HeaderName, HeaderValue)>, BoxError> {
        self.key
            .map(|(name, key)| Ok((name.clone(), HeaderValue::from_str(key)?)))
            .transpose()
    }
}

/// Where one attempt goes.
#[derive(Clone, Copy)]
pub(super) enum Destination<'a> {
    /// A whole URL.
    Url(&'a reqwest::Url),
    /// The built-in transport's primary origin (the client's base, which has no path of its
    /// own), and this path and query after it, as the URL's parser would leave them
    /// ([`plain_path`]): a call to the base holds no URL of its own while it waits, and its
    /// request's path is made from the call's.
    Base(&'a str),
}

/// Whether `path` is an absolute path (and query) that a URL's parser leaves as it is: only
/// the characters it neither escapes nor reads otherwise (not `'`, which it escapes in a
/// query), no dot segments, no fragment.
pub(super) fn plain_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains("/.")
        // `%2e` is a dot to the parser's dot segments too.
        && !(path.as_bytes().windows(3)).any(|w| w[0] == b'%' && w[1] == b'2' && w[2] | 0x20 == b'e')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&()*+,;=:@/?%".contains(&b))
}

/// A client's transport.
pub(super) enum Transport {
    /// A `reqwest::Client`, the user's or the client's own.
    Reqwest(reqwest::Client),
    /// The built-in HTTP/2 client.
    H2(H2Transport),
}

/// The built-in HTTP/2 client: connections per origin, TLS settings, and the HTTP/1.1 fallback.
pub(super) struct H2Transport {
    /// The base URL's origin: every call but those with a base of their own.
    primary: Arc<Origin>,
    /// Other origins calls went to ([`super::Call::base`]), opened as they are first used.
    others: Mutex<HashMap<(bool, Authority), Arc<Origin>>>,
    /// TLS with ALPN `h2` and `http/1.1`, for `https://` origins.
    tls: Option<tokio_rustls::TlsConnector>,
    /// Whether `http://` origins speak HTTP/2 without TLS.
    prior_knowledge: bool,
    user_agent: &'static str,
    user_agent_value: HeaderValue,
    timeout: Duration,
    /// The roots (the platform's and the extra ones), shared with the fallback client.
    verifier: Arc<PlatformVerifier>,
    /// The client for origins that answered ALPN with HTTP/1.1, built on first need.
    fallback: OnceLock<reqwest::Client>,
    /// The attempts' time-outs, watched by a timer task per runtime the calls run on.
    deadlines: Deadlines,
}

/// One origin: where it is, and its connection.
struct Origin {
    https: bool,
    authority: Authority,
    /// The host without IPv6 brackets, for connecting and for TLS's server name.
    host: String,
    port: u16,
    /// The live connection, if any.
    live: Mutex<Option<Connection>>,
    /// Held while connecting, so that concurrent callers share one attempt.
    connecting: tokio::sync::Mutex<()>,
    /// The server answered ALPN with HTTP/1.1: calls go to the fallback client.
    http1: AtomicBool,
}

#[derive(Clone)]
struct Connection {
    send: h2::client::SendRequest<Bytes>,
    /// Set by the connection's task when the connection ends.
    closed: Arc<AtomicBool>,
    /// When a call last took the connection, in milliseconds since [`epoch`].
    used: Arc<AtomicU64>,
}

/// A connection no call took for this long is not used again: a NAT or a load balancer may have
/// forgotten it without a word. The next call connects anew; the old connection closes once its
/// last stream ends.
const IDLE: Duration = Duration::from_secs(90);

/// TCP keepalive on the transport's sockets: the first probe after this long without traffic,
/// then one every [`KEEPALIVE_INTERVAL`], so that the kernel notices a peer gone silently.
const KEEPALIVE_TIME: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// Milliseconds since the first call of the process that asked.
fn epoch() -> u64 {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Why a connection could not be had.
enum Connect {
    /// The server speaks only HTTP/1.1 (ALPN).
    Http1,
    Failed(BoxError),
}

impl Transport {
    /// The built-in transport for `base`, when the settings and the base call for it; `None`
    /// means a `reqwest` client of the client's own.
    pub(super) fn builtin(
        base: &reqwest::Url,
        prior_knowledge: bool,
        roots: &[Vec<u8>],
        user_agent: &'static str,
        timeout: Duration,
    ) -> Result<Option<H2Transport>, BoxError> {
        // Checked first: a user agent that is no header value is the spec's error, whichever
        // transport the client gets (`reqwest`'s builder refuses it too).
        let user_agent_value = HeaderValue::from_str(user_agent)
            .map_err(|_| format!("the user agent {user_agent:?} is not a valid header value"))?;
        let https = base.scheme() == "https";
        if !https && !prior_knowledge {
            return Ok(None);
        }
        // A proxy for the base's scheme is `reqwest`'s to honour (NO_PROXY included).
        if proxied(https, |name| std::env::var(name).ok()) {
            return Ok(None);
        }
        // An h2c base reads the platform's roots only if a call goes to an `https://` origin.
        // The provider `reqwest` would use (the process's default if one was installed), for
        // this transport and its HTTP/1.1 fallback alike.
        let provider = PlatformVerifier::default_provider();
        let verifier = PlatformVerifier::new(roots, Load::for_base(https), provider)?;
        let tls = verifier.client_config(&[b"h2", b"http/1.1"])?;
        let primary = Origin::of(base).ok_or("the base URL has no host")?;
        Ok(Some(H2Transport {
            primary: Arc::new(primary),
            others: Mutex::new(HashMap::new()),
            tls: Some(tokio_rustls::TlsConnector::from(Arc::new(tls))),
            prior_knowledge,
            user_agent,
            user_agent_value,
            timeout,
            verifier,
            fallback: OnceLock::new(),
            deadlines: Deadlines::default(),
        }))
    }
}

/// Whether a proxy variable that `reqwest` would apply to a base of this scheme is set (not
/// empty): `HTTPS_PROXY`, `https_proxy` for `https://`, `HTTP_PROXY`, `http_proxy` for
/// `http://`, and `ALL_PROXY`, `all_proxy` for both. Such a client sends through `reqwest`,
/// which honours them and `NO_PROXY`; the built-in transport connects only directly.
pub(super) fn proxied(https: bool, env: impl Fn(&str) -> Option<String>) -> bool {
    let names: &[&str] = if https {
        &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
    } else {
        &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
    };
    names
        .iter()
        .any(|name| env(name).is_some_and(|value| !value.trim().is_empty()))
}

/// A `reqwest` client as the client core builds its own: no redirects, its time-out, its
/// user agent, and TLS verified by `verifier` (the platform's roots and the extra ones), with
/// the configuration `reqwest` would build for them (ALPN `h2` and `http/1.1`, SNI).
pub(super) fn reqwest_client(
    user_agent: &'static str,
    timeout: Duration,
    verifier: &Arc<PlatformVerifier>,
) -> Result<reqwest::Client, BoxError> {
    let tls = verifier.client_config(&[b"h2", b"http/1.1"])?;
    // A platform API never redirects: a 3xx is an answer to read, not a hop to take with the
    // token.
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(user_agent)
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(tls)
        .build()?)
}

impl Origin {
    fn of(url: &reqwest::Url) -> Option<Self> {
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Some(Self {
            https: url.scheme() == "https",
            authority: Authority::try_from(authority).ok()?,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            live: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            http1: AtomicBool::new(false),
        })
    }

    /// The live connection, if it has not ended and was used within [`IDLE`].
    fn live(&self) -> Option<Connection> {
        let mut live = lock(&self.live);
        let connection = live.as_ref()?;
        let now = epoch();
        let idle = now.saturating_sub(connection.used.load(Ordering::Relaxed));
        if connection.closed.load(Ordering::Acquire) || idle > IDLE.as_millis() as u64 {
            if !connection.closed.load(Ordering::Acquire) {
                tracing::debug!(server = %self.authority, "http/2 connection idle; connecting anew");
            }
            *live = None;
            return None;
        }
        connection.used.store(now, Ordering::Relaxed);
        Some(connection.clone())
    }

    /// Forgets the connection of `closed` (its [`Connection::closed`]) if it is still the live
    /// one (it failed a call).
    fn retire(&self, closed: &Arc<AtomicBool>) {
        closed.store(true, Ordering::Release);
        let mut live = lock(&self.live);
        if live
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.closed, closed))
        {
            *live = None;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl H2Transport {
    /// The origin of `url`: the base's, or another one, kept for later calls.
    fn origin(&self, url: &reqwest::Url) -> Option<Arc<Origin>> {
        let https = url.scheme() == "https";
        let primary = &self.primary;
        let port = url.port_or_known_default();
        if primary.https == https
            && url.host_str() == Some(primary.authority.host())
            && port == Some(primary.port)
        {
            return Some(primary.clone());
        }
        let origin = Origin::of(url)?;
        let mut others = lock(&self.others);
        Some(
            others
                .entry((https, origin.authority.clone()))
                .or_insert_with(|| Arc::new(origin))
                .clone(),
        )
    }

    /// The origin of `destination`, and its URL when it has one.
    fn origin_of(&self, destination: Destination<'_>) -> Option<Arc<Origin>> {
        match destination {
            Destination::Url(url) => self.origin(url),
            Destination::Base(_) => Some(self.primary.clone()),
        }
    }

    /// The whole URL of `destination`, for the HTTP/1.1 fallback.
    fn url_of(&self, destination: Destination<'_>) -> Result<reqwest::Url, BoxError> {
        match destination {
            Destination::Url(url) => Ok(url.clone()),
            Destination::Base(path) => {
                let primary = &self.primary;
                let scheme = if primary.https { "https" } else { "http" };
                Ok(reqwest::Url::parse(&format!(
                    "{scheme}://{}{path}",
                    primary.authority
                ))?)
            }
        }
    }

    /// The HTTP/1.1 client for servers that do not speak HTTP/2.
    fn fallback(&self) -> Result<&reqwest::Client, BoxError> {
        if let Some(client) = self.fallback.get() {
            return Ok(client);
        }
        let client = reqwest_client(self.user_agent, self.timeout, &self.verifier)?;
        Ok(self.fallback.get_or_init(|| client))
    }

    /// Sends one request to `url` and reads its answer, within `timeout`.
    // Not an `async fn` (it would keep its arguments twice), and shaped for the seconds an
    // answer may take: opening the stream (the head, the connection, its readiness) runs in a
    // box of its own that is gone once the request is handed over, and each step's locals are
    // scoped to it, so that every call in flight holds only the answer's future, the time-out's
    // slot in the transport's deadlines, the connection it went out on and a few words.
    #[allow(clippy::manual_async_fn)] // see above: the `async fn` is what this avoids
    pub(super) fn exchange<'a>(
        &'a self,
        destination: Destination<'a>,
        request: Outgoing<'a>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Exchanged, SendFailure>> + Send + 'a {
        async move {
            let not_sent = |source: BoxError| SendFailure {
                timeout: false,
                maybe_delivered: false,
                source,
            };
            let origin = self
                .origin_of(destination)
                .ok_or_else(|| not_sent("the call's URL has no host".into()))?;
            // A call with a base of its own over http:// on an https client, or to a server
            // that speaks only HTTP/1.1. Boxed, as below: the fallback's state is not every
            // call's.
            if (!origin.https && !self.prior_knowledge) || origin.http1.load(Ordering::Acquire) {
                return self.over_http1(destination, request, timeout).await;
            }
            // One deadline for the whole attempt: the stream's opening, the head, the body; a
            // slot of the transport's deadlines, not a timer of its own.
            let expired = self.deadlines.set(at_or_far(timeout));
            // The connection the request was handed to (its flag, all that retiring it takes),
            // once it was.
            let written = OnceLock::new();
            let response = {
                let started = tokio::select! {
                    biased;
                    started = Box::pin(self.start(&origin, destination, &request, &written)) => Some(started),
                    () = expired.passed() => None,
                };
                match started {
                    Some(Ok(Some(response))) => response,
                    Some(Ok(None)) => {
                        // The server picked HTTP/1.1.
                        let left = expired
                            .at()
                            .saturating_duration_since(tokio::time::Instant::now());
                        drop(expired);
                        return self.over_http1(destination, request, left).await;
                    }
                    Some(Err(failure)) => return Err(failure),
                    None => return Err(Self::timed_out(&origin, written.get())),
                }
            };
            // The seconds the platform takes.
            let answer = {
                let response = tokio::select! {
                    biased;
                    response = response => response,
                    () = expired.passed() => return Err(Self::timed_out(&origin, written.get())),
                };
                match response {
                    // Boxed: the answer's head and the body's reading are a moment after the
                    // wait, and would otherwise enlarge every call while it waits.
                    Ok(response) => Box::pin(read_answer(response, &expired)),
                    Err(e) => {
                        if (e.is_go_away() || e.is_io())
                            && let Some(closed) = written.get()
                        {
                            origin.retire(closed);
                        }
                        return Err(stream_failure(e));
                    }
                }
            };
            Ok(answer.await)
        }
    }

    /// One attempt through the HTTP/1.1 fallback client, with the URL it needs made here.
    /// Boxed: its state (the URL, `reqwest`'s future) is not every call's.
    fn over_http1<'a>(
        &'a self,
        destination: Destination<'a>,
        request: Outgoing<'a>,
        timeout: Duration,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Exchanged, SendFailure>> + Send + 'a>> {
        Box::pin(async move {
            let not_sent = |source: BoxError| SendFailure {
                timeout: false,
                maybe_delivered: false,
                source,
            };
            let http = self.fallback().map_err(not_sent)?;
            let url = self.url_of(destination).map_err(not_sent)?;
            reqwest_exchange(http, &url, request, timeout).await
        })
    }

    /// No answer's head within the attempt's time-out, the request handed to `connection` or
    /// not yet.
    fn timed_out(origin: &Origin, connection: Option<&Arc<AtomicBool>>) -> SendFailure {
        // No answer's head in the whole attempt on a connection that had the request: the
        // connection may be dead (a peer gone without a FIN, a NAT that forgot it). The next
        // call opens a new one; streams in flight on this one may still end.
        if let Some(connection) = connection {
            tracing::debug!(
                server = %origin.authority,
                "no answer within the time-out; the next call opens a new connection"
            );
            origin.retire(connection);
        }
        SendFailure {
            timeout: true,
            // Still connecting, or not yet handed to the connection: nothing was sent.
            // Otherwise the request went out, or is queued on the connection for a free stream
            // (past the server's limit) and may have been written.
            maybe_delivered: connection.is_some(),
            source: "the attempt timed out".into(),
        }
    }

    /// Opens a stream on the origin's connection and hands it the request (the connection is
    /// then in `written`); returns the answer's future, or `None` when the origin speaks only
    /// HTTP/1.1.
    async fn start(
        &self,
        origin: &Origin,
        destination: Destination<'_>,
        request: &Outgoing<'_>,
        written: &OnceLock<Arc<AtomicBool>>,
    ) -> Result<Option<h2::client::ResponseFuture>, SendFailure> {
        let head = self
            .head(origin, destination, request)
            .map_err(|e| SendFailure {
                timeout: false,
                maybe_delivered: false,
                source: e,
            })?;
        // A connection that ended as it was handed out fails before the request is written:
        // once more on a new one.
        let mut tries = 0;
        loop {
            tries += 1;
            let connection = match self.connection(origin).await {
                Ok(connection) => connection,
                Err(Connect::Http1) => return Ok(None),
                Err(Connect::Failed(source)) => {
                    return Err(SendFailure {
                        timeout: false,
                        maybe_delivered: false,
                        source,
                    });
                }
            };
            // Fails at once on a connection that ended; a time-out before `send_request`
            // returned leaves nothing sent.
            let sent = match connection.send.clone().ready().await {
                Ok(mut send) => {
                    let end = request.body.is_none();
                    send.send_request(head.clone(), end)
                }
                Err(e) => Err(e),
            };
            match sent {
                Ok((response, mut stream)) => {
                    // The stream is open and its head queued: from here the request may reach
                    // the platform, whatever happens to this call.
                    super::dispatch::note_dispatched();
                    let _ = written.set(connection.closed.clone());
                    if let Some((body, _)) = request.body
                        && let Err(e) = stream.send_data(body.clone(), true)
                    {
                        origin.retire(&connection.closed);
                        return Err(stream_failure(e));
                    }
                    return Ok(Some(response));
                }
                // Refused before a byte of it was written: the connection is done.
                Err(e) if tries < 2 => {
                    tracing::debug!(error = %e, "http/2 connection ended; opening another");
                    origin.retire(&connection.closed);
                }
                Err(e) => {
                    origin.retire(&connection.closed);
                    return Err(SendFailure {
                        timeout: false,
                        maybe_delivered: false,
                        source: e.into(),
                    });
                }
            }
        }
    }

    /// The request's head: method, URI, headers.
    fn head(
        &self,
        origin: &Origin,
        destination: Destination<'_>,
        request: &Outgoing<'_>,
    ) -> Result<Request<()>, BoxError> {
        let path = match destination {
            Destination::Url(url) => match url.query() {
                Some(query) => PathAndQuery::try_from(format!("{}?{query}", url.path()))?,
                None => PathAndQuery::try_from(url.path())?,
            },
            Destination::Base(path) => PathAndQuery::try_from(path)?,
        };
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(if origin.https {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        });
        uri.authority = Some(origin.authority.clone());
        uri.path_and_query = Some(path);
        let mut head = Request::new(());
        *head.method_mut() = request.method.clone();
        *head.uri_mut() = Uri::from_parts(uri)?;
        let headers = head.headers_mut();
        headers.reserve(6);
        // Marked sensitive by the client: HPACK never indexes it.
        headers.insert(header::AUTHORIZATION, request.authorization.clone());
        headers.insert(header::USER_AGENT, self.user_agent_value.clone());
        // As `reqwest` sends it: some servers answer a request without it otherwise.
        headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        match request.body {
            Some((body, content_type)) => {
                headers.insert(header::CONTENT_TYPE, content_type.clone());
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            }
            // A method that carries a body says it has none, as `reqwest` (and curl) do: some
            // servers refuse a POST without a length (411).
            None if [Method::POST, Method::PUT, Method::PATCH].contains(request.method) => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            }
            None => {}
        }
        if let Some((name, value)) = request.key_header()? {
            headers.insert(name, value);
        }
        Ok(head)
    }

    /// The origin's live connection, or a new one; concurrent callers share one attempt.
    async fn connection(&self, origin: &Origin) -> Result<Connection, Connect> {
        if let Some(connection) = origin.live() {
            return Ok(connection);
        }
        let _connecting = origin.connecting.lock().await;
        if let Some(connection) = origin.live() {
            return Ok(connection);
        }
        if origin.http1.load(Ordering::Acquire) {
            return Err(Connect::Http1);
        }
        // Boxed: connecting (TCP, TLS, the HTTP/2 handshake) is rare, and its state would
        // otherwise enlarge every call in flight.
        let connection = Box::pin(self.connect(origin)).await?;
        *lock(&origin.live) = Some(connection.clone());
        Ok(connection)
    }

    async fn connect(&self, origin: &Origin) -> Result<Connection, Connect> {
        let failed = |e: BoxError| Connect::Failed(e);
        let tcp = tokio::net::TcpStream::connect((origin.host.as_str(), origin.port))
            .await
            .map_err(|e| failed(e.into()))?;
        let _ = tcp.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_TIME)
            .with_interval(KEEPALIVE_INTERVAL);
        if let Err(e) = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive) {
            tracing::debug!(server = %origin.authority, error = %e, "tcp keepalive not set");
        }
        let mut builder = h2::client::Builder::new();
        builder
            .enable_push(false)
            // Until the server's SETTINGS arrive: 100 is the least RFC 9113 recommends, and
            // what the platforms announce at least, rather than no limit at all.
            .initial_max_send_streams(100)
            .initial_window_size(1 << 20)
            .initial_connection_window_size(16 << 20)
            .max_header_list_size(256 << 10);
        if !origin.https {
            let pair = builder
                .handshake::<_, Bytes>(tcp)
                .await
                .map_err(|e| failed(e.into()))?;
            return Ok(drive(pair, &origin.authority));
        }
        let tls = self
            .tls
            .as_ref()
            .ok_or_else(|| failed("no tls configuration".into()))?;
        let name =
            ServerName::try_from(origin.host.clone()).map_err(|e| failed(Box::new(e) as _))?;
        let stream = tls.connect(name, tcp).await.map_err(|e| failed(e.into()))?;
        if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            tracing::debug!(
                server = %origin.authority,
                "the server does not speak http/2; calls to it go over http/1.1"
            );
            origin.http1.store(true, Ordering::Release);
            return Err(Connect::Http1);
        }
        let pair = builder
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(|e| failed(e.into()))?;
        Ok(drive(pair, &origin.authority))
    }
}

/// The time `timeout` from now, or one so far ahead that it never comes (as Tokio's `sleep`
/// does) when that is past what an instant can hold.
fn at_or_far(timeout: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

/// The answer's head, and its body read before `expired`.
async fn read_answer(
    response: http::Response<h2::RecvStream>,
    expired: &Deadline<'_>,
) -> Exchanged {
    let (parts, body) = response.into_parts();
    let body = tokio::select! {
        biased;
        read = read_body(body) => read.map_err(|e| (false, e)),
        () = expired.passed() => Err((true, "reading the answer timed out".into())),
    };
    (parts.status, parts.headers, body)
}

/// Drives `connection` on a task of its own until it ends, and marks it closed then.
fn drive<T>(
    (send, connection): (
        h2::client::SendRequest<Bytes>,
        h2::client::Connection<T, Bytes>,
    ),
    authority: &Authority,
) -> Connection
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let closed = Arc::new(AtomicBool::new(false));
    let ended = closed.clone();
    let server = authority.clone();
    // One task per connection, living as long as it: it reads and writes the frames of every
    // call on it.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(%server, error = %e, "http/2 connection ended");
        }
        ended.store(true, Ordering::Release);
    });
    Connection {
        send,
        closed,
        used: Arc::new(AtomicU64::new(epoch())),
    }
}

/// A stream's failure: one the server refused unprocessed (`REFUSED_STREAM`, or a GOAWAY whose
/// last stream id is below it) never reached the platform; anything else may have.
///
/// `h2` hands the server's GOAWAY, whatever its error code, only to the streams above its last
/// stream id, which the server says it did not process; the streams at or below it go on (and
/// end with a reset or the connection's error of their own). So a remote GOAWAY means "not
/// processed" even with an error code.
fn stream_failure(e: h2::Error) -> SendFailure {
    let refused =
        e.is_remote() && (e.is_go_away() || e.reason() == Some(h2::Reason::REFUSED_STREAM));
    SendFailure {
        timeout: false,
        maybe_delivered: !refused,
        source: e.into(),
    }
}

async fn read_body(mut body: h2::RecvStream) -> Result<Bytes, BoxError> {
    let mut first: Option<Bytes> = None;
    let mut more: Option<BytesMut> = None;
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        match (&mut first, &mut more) {
            (None, _) => first = Some(chunk),
            (Some(first), None) => {
                let mut all = BytesMut::with_capacity(first.len() + chunk.len());
                all.extend_from_slice(first);
                all.extend_from_slice(&chunk);
                more = Some(all);
            }
            (Some(_), Some(all)) => all.extend_from_slice(&chunk),
        }
    }
    Ok(match (first, more) {
        (_, Some(all)) => all.freeze(),
        (Some(first), None) => first,
        (None, None) => Bytes::new(),
    })
}

/// One attempt through `reqwest`.
pub(super) async fn reqwest_exchange(
    http: &reqwest::Client,
    url: &reqwest::Url,
    outgoing: Outgoing<'_>,
    timeout: Duration,
) -> Result<Exchanged, SendFailure> {
    // Built whole, without a builder's checks per header: the URL and every value are valid
    // already.
    let mut request = reqwest::Request::new(outgoing.method.clone(), url.clone());
    *request.timeout_mut() = Some(timeout);
    let headers = request.headers_mut();
    headers.insert(header::AUTHORIZATION, outgoing.authorization.clone());
    if let Some((body, content_type)) = outgoing.body {
        headers.insert(header::CONTENT_TYPE, content_type.clone());
        *request.body_mut() = Some(body.clone().into());
    }
    match outgoing.key_header() {
        Ok(Some((name, value))) => {
            request.headers_mut().insert(name, value);
        }
        Ok(None) => {}
        Err(source) => {
            return Err(SendFailure {
                timeout: false,
                maybe_delivered: false,
                source,
            });
        }
    }
    // From here the request may reach the platform, whatever happens to this call.
    super::dispatch::note_dispatched();
    let mut response = match http.execute(request).await {
        Ok(response) => response,
        Err(e) => {
            // A refused connection never carried the request; anything later may have.
            return Err(SendFailure {
                timeout: e.is_timeout(),
                maybe_delivered: !e.is_connect(),
                // The URL may name a user or hold a token; errors travel to logs.
                source: e.without_url().into(),
            });
        }
    };
    let status = response.status();
    // Taken, not copied: the body is read without them.
    let headers = std::mem::take(response.headers_mut());
    // Boxed: reading the body is a moment after the wait for the answer.
    let body = Box::pin(response.bytes())
        .await
        .map_err(|e| (e.is_timeout(), e.without_url().into()));
    Ok((status, headers, body))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Transport, plain_path, proxied};

    fn built(base: &str) -> super::H2Transport {
        let base = reqwest::Url::parse(base).unwrap();
        Transport::builtin(&base, true, &[], "test", Duration::from_secs(1))
            .unwrap()
            .expect("the built-in transport")
    }

    #[test]
    fn a_plain_path_goes_out_as_the_url_parser_would_write_it() {
        // Sent as it is by the built-in transport, without a URL: it must be what the URL's
        // path and query would be.
        let base = reqwest::Url::parse("https://api.example").unwrap();
        for path in [
            "/v2/bot/message/reply",
            "/a/b?c=d&e=%20f",
            "/x:y@z!$&()*+,;=~-_",
            "/q?a=1?b",
        ] {
            assert!(plain_path(path), "{path}");
            let (p, q) = match path.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (path, None),
            };
            let mut url = base.clone();
            url.set_path(p);
            url.set_query(q);
            let written = match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_owned(),
            };
            assert_eq!(written, path);
        }
        // Relative, dot segments, characters the parser escapes, a fragment: the URL's way.
        for path in [
            "v2/bot",
            "/a/../b",
            "/a/./b",
            "/a b",
            "/a#f",
            "/a?b='c'",
            "/é",
            "/{x}",
            "/a/%2e%2e/b",
            "/a/%2E/b",
        ] {
            assert!(!plain_path(path), "{path}");
        }
    }

    #[test]
    fn an_h2c_base_reads_the_platform_roots_only_when_needed_and_an_https_base_at_once() {
        assert!(!built("http://127.0.0.1:1").verifier.is_loaded());
        assert!(built("https://127.0.0.1:1").verifier.is_loaded());
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn a_proxy_for_the_base_scheme_selects_reqwest() {
        assert!(!proxied(true, env(&[])));
        assert!(!proxied(false, env(&[])));
        for name in ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
            assert!(proxied(true, env(&[(name, "http://proxy:3128")])), "{name}");
        }
        for name in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
            assert!(
                proxied(false, env(&[(name, "http://proxy:3128")])),
                "{name}"
            );
        }
        // A proxy for the other scheme does not apply.
        assert!(!proxied(true, env(&[("HTTP_PROXY", "http://proxy:3128")])));
        assert!(!proxied(
            false,
            env(&[("https_proxy", "http://proxy:3128")])
        ));
        // Set but empty is unset; NO_PROXY alone selects nothing.
        assert!(!proxied(
            true,
            env(&[("HTTPS_PROXY", ""), ("ALL_PROXY", " ")])
        ));
        assert!(!proxied(true, env(&[("NO_PROXY", "*")])));
    }
}
