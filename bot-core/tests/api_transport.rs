//! The client core's built-in HTTP/2 transport against servers that misbehave on purpose: a
//! connection that ends, a GOAWAY, a refused stream, TLS with a test CA, a server that speaks only
//! HTTP/1.1, and what reaches the logs. The behaviours every transport shares are in
//! `api_client.rs`, run over both.

// The test servers' accept loops and connections are tasks of their own.
#![allow(clippy::disallowed_methods)]

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bot_core::api::{
    Answer, ApiClient, ApiConfig, ApiError, ApiErrorKind, ApiSpec, Call, ConfigureApi,
};
use bot_core::{Platform, RetryPolicy};
use bytes::Bytes;
use http::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The test platform, with the user agent it announces.
#[derive(Debug)]
struct TestSpec(&'static str);

/// The spec of most tests here.
const SPEC: TestSpec = TestSpec("api-transport-test");

impl ApiSpec for TestSpec {
    type Permit = ();

    fn platform(&self) -> Platform {
        Platform::TEST
    }

    fn user_agent(&self) -> &'static str {
        self.0
    }

    async fn admit(&self, _call: &Call, _deadline: std::time::Instant) -> Result<(), ApiError> {
        Ok(())
    }

    fn refusal(&self, _call: &Call, answer: &Answer) -> ApiError {
        ApiError::new(ApiErrorKind::Api, "test: refused").with_status(answer.status)
    }
}

fn retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        multiplier: 2.0,
        jitter: 0.0,
    }
}

fn send() -> Call {
    Call::post("send", "/send")
        .json(&serde_json::json!({"text": "hi"}))
        .unwrap()
}

/// What the test server does with a request.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Answers 200 with the request's body.
    Answer,
    /// Refuses the first stream of all with `REFUSED_STREAM`, answers the others.
    RefuseFirst,
    /// Sends GOAWAY (last stream 0) on the first connection before reading anything.
    GoAwayFirst,
    /// Sends GOAWAY (last stream 0) with `INTERNAL_ERROR` on the first connection.
    GoAwayErrorFirst,
    /// Answers one request per connection, then closes it and says so.
    OnePerConnection,
    /// Never answers.
    Silent,
}

/// An HTTP/2 server (h2c, or over `tls`), counting connections and requests.
struct Server {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    closed: mpsc::Receiver<()>,
    seen: Arc<Mutex<Vec<http::request::Parts>>>,
}

async fn server(behaviour: Behaviour, tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (closed_tx, closed) = mpsc::channel(16);
    let state = (connections.clone(), requests.clone(), seen.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (connections, requests, seen) = state.clone();
            let closed_tx = closed_tx.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let n = connections.fetch_add(1, Ordering::SeqCst);
                match tls {
                    Some(tls) => {
                        let Ok(stream) = tls.accept(tcp).await else {
                            return;
                        };
                        serve_h2(stream, behaviour, n, requests, seen).await;
                    }
                    None => serve_h2(tcp, behaviour, n, requests, seen).await,
                }
                let _ = closed_tx.send(()).await;
            });
        }
    });
    Server {
        addr,
        connections,
        requests,
        closed,
        seen,
    }
}

async fn serve_h2<T>(
    io: T,
    behaviour: Behaviour,
    connection_index: usize,
    requests: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<http::request::Parts>>>,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(mut connection) = h2::server::handshake(io).await else {
        return;
    };
    if matches!(
        behaviour,
        Behaviour::GoAwayFirst | Behaviour::GoAwayErrorFirst
    ) && connection_index == 0
    {
        connection.abrupt_shutdown(if behaviour == Behaviour::GoAwayFirst {
            h2::Reason::NO_ERROR
        } else {
            h2::Reason::INTERNAL_ERROR
        });
        while let Some(request) = connection.accept().await {
            assert!(request.is_err(), "a stream after the GOAWAY was accepted");
        }
        return;
    }
    let mut unanswered = Vec::new();
    while let Some(Ok((request, mut respond))) = connection.accept().await {
        let index = requests.fetch_add(1, Ordering::SeqCst);
        let (parts, mut body) = request.into_parts();
        seen.lock().unwrap().push(parts);
        if behaviour == Behaviour::RefuseFirst && index == 0 {
            respond.send_reset(h2::Reason::REFUSED_STREAM);
            continue;
        }
        if behaviour == Behaviour::Silent {
            unanswered.push(respond);
            continue;
        }
        let mut received = Vec::new();
        while let Some(Ok(chunk)) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk.len());
            received.extend_from_slice(&chunk);
        }
        let response = http::Response::builder()
            .status(StatusCode::OK)
            .body(())
            .unwrap();
        let mut stream = respond.send_response(response, false).unwrap();
        stream.send_data(Bytes::from(received), true).unwrap();
        if behaviour == Behaviour::OnePerConnection {
            connection.graceful_shutdown();
        }
    }
}

fn h2c_client(server: &Server, max_attempts: u32) -> ApiClient<TestSpec> {
    let config = ApiConfig::new(format!("http://{}", server.addr), "token-1")
        .retry(retries(max_attempts))
        .http2_prior_knowledge();
    ApiClient::new(SPEC, config).unwrap()
}

#[tokio::test]
async fn calls_share_one_connection_and_carry_the_token_the_key_and_the_body() {
    let server = server(Behaviour::Answer, None).await;
    let client = h2c_client(&server, 1);
    let calls = (0..20).map(|_| {
        let client = client.clone();
        async move { client.call(send()).await }
    });
    for answer in futures::future::join_all(calls).await {
        let answer = answer.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(&answer.body[..], br#"{"text":"hi"}"#);
    }
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        1,
        "one connection shared by concurrent first calls"
    );
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.len(), 20);
    let first = &seen[0];
    assert_eq!(first.method, http::Method::POST);
    assert_eq!(first.uri.path(), "/send");
    assert_eq!(
        first.headers.get("authorization").unwrap(),
        "Bearer token-1"
    );
    assert_eq!(
        first.headers.get("content-type").unwrap(),
        "application/json"
    );
    assert_eq!(
        first.headers.get("user-agent").unwrap(),
        "api-transport-test"
    );
    assert_eq!(first.headers.get("accept").unwrap(), "*/*");
    assert_eq!(first.headers.get("content-length").unwrap(), "13");
}

#[tokio::test]
async fn a_post_without_a_body_says_its_length_is_zero_and_a_get_says_nothing() {
    let server = server(Behaviour::Answer, None).await;
    let client = h2c_client(&server, 1);
    client.call(Call::post("leave", "/leave")).await.unwrap();
    client.call(Call::get("read", "/read")).await.unwrap();
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen[0].method, http::Method::POST);
    assert_eq!(seen[0].headers.get("content-length").unwrap(), "0");
    assert_eq!(seen[0].headers.get("accept").unwrap(), "*/*");
    assert_eq!(seen[1].method, http::Method::GET);
    assert!(seen[1].headers.get("content-length").is_none());
    assert_eq!(seen[1].headers.get("accept").unwrap(), "*/*");
}

#[tokio::test]
async fn a_connection_the_server_closed_is_replaced_on_the_next_call() {
    let mut server = server(Behaviour::OnePerConnection, None).await;
    let client = h2c_client(&server, 3);
    client.call(Call::get("read", "/a")).await.unwrap();
    // The server has closed the first connection.
    server.closed.recv().await.unwrap();
    client.call(Call::get("read", "/b")).await.unwrap();
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_send_the_server_sent_goaway_before_processing_is_sent_again_on_a_new_connection() {
    let server = server(Behaviour::GoAwayFirst, None).await;
    let client = h2c_client(&server, 3);
    let answer = client.call(send()).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        1,
        "processed once, on the second connection"
    );
}

#[tokio::test]
async fn a_send_above_the_last_stream_of_a_goaway_with_an_error_is_sent_again() {
    // h2 hands a GOAWAY's error only to the streams above its last stream id: the server did
    // not process them, whatever the code.
    let server = server(Behaviour::GoAwayErrorFirst, None).await;
    let client = h2c_client(&server, 3);
    let answer = client.call(send()).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_refused_stream_was_not_delivered_and_even_a_send_is_retried() {
    let server = server(Behaviour::RefuseFirst, None).await;
    // With one attempt, the refusal is the answer: not delivered, retryable.
    let e = h2c_client(&server, 1).call(send()).await.unwrap_err();
    assert_eq!(e.kind(), ApiErrorKind::Transport, "{e:?}");
    assert!(!e.maybe_delivered(), "{e:?}");
    assert!(e.is_retryable());
    assert!(bot_core::Error::from(e).is_retryable());
    // The retry loop sends the (not idempotent) call again.
    let server = self::server(Behaviour::RefuseFirst, None).await;
    h2c_client(&server, 2).call(send()).await.unwrap();
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refused_connection_is_not_maybe_delivered_and_a_time_out_is() {
    let base = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let config = ApiConfig::new(base, "t")
        .retry(retries(2))
        .http2_prior_knowledge();
    let e = ApiClient::new(SPEC, config)
        .unwrap()
        .call(send())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ApiErrorKind::Transport);
    assert_eq!(e.attempts(), 2, "retried: {e:?}");
    assert!(!e.maybe_delivered());

    let server = server(Behaviour::Silent, None).await;
    let config = ApiConfig::new(format!("http://{}", server.addr), "t")
        .retry(retries(3))
        .timeout(Duration::from_millis(100))
        .http2_prior_knowledge();
    let e = ApiClient::new(SPEC, config)
        .unwrap()
        .call(send())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ApiErrorKind::Timeout);
    assert!(e.maybe_delivered());
    assert_eq!(e.attempts(), 1, "not sent again");
}

/// A certificate for `localhost` that is its own authority, and a TLS acceptor offering `alpn`.
fn tls(alpn: &[&[u8]]) -> (Vec<u8>, tokio_rustls::TlsAcceptor) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = cert.der().to_vec();
    let key = rustls::pki_types::PrivateKeyDer::try_from(signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (der, tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[tokio::test]
async fn https_speaks_http2_trusting_a_test_ca_and_refuses_an_unknown_one() {
    let (ca, acceptor) = tls(&[b"h2"]);
    let server = server(Behaviour::Answer, Some(acceptor)).await;
    let base = format!("https://localhost:{}", server.addr.port());
    let client = ApiClient::new(
        SPEC,
        ApiConfig::new(base.clone(), "token-1")
            .retry(retries(1))
            .add_root_certificate(ca),
    )
    .unwrap();
    client.call(send()).await.unwrap();
    client.call(send()).await.unwrap();
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
    assert_eq!(
        server.seen.lock().unwrap()[0].version,
        http::Version::HTTP_2
    );

    // Without the CA the handshake fails: nothing was sent.
    let e = ApiClient::new(SPEC, ApiConfig::new(base, "token-1").retry(retries(1)))
        .unwrap()
        .call(send())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ApiErrorKind::Transport, "{e:?}");
    assert!(!e.maybe_delivered(), "{e:?}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_https_server_that_speaks_only_http1_is_served_over_http1() {
    let (ca, acceptor) = tls(&[b"http/1.1"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let versions = Arc::new(Mutex::new(Vec::new()));
    let seen = versions.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |request: http::Request<_>| {
                    seen.lock().unwrap().push((
                        request.version(),
                        request
                            .headers()
                            .get("authorization")
                            .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned()),
                    ));
                    async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(Bytes::from_static(b"{}")),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let client = ApiClient::new(
        SPEC,
        ApiConfig::new(format!("https://localhost:{port}"), "token-1")
            .retry(retries(1))
            .add_root_certificate(ca),
    )
    .unwrap();
    for _ in 0..3 {
        let answer = client.call(send()).await.unwrap();
        assert_eq!(&answer.body[..], b"{}");
    }
    let versions = versions.lock().unwrap();
    assert_eq!(versions.len(), 3);
    for (version, authorization) in versions.iter() {
        assert_eq!(*version, http::Version::HTTP_11);
        assert_eq!(authorization.as_deref(), Some("Bearer token-1"));
    }
}

/// Everything logged, at every level.
#[derive(Clone, Default)]
struct Logged(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_token_is_never_logged_even_at_trace_level() {
    let logged = Logged::default();
    let writer = logged.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // A current-thread runtime: every task of the test (the connection's too) logs here.
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = server(Behaviour::RefuseFirst, None).await;
    let client = ApiClient::new(
        SPEC,
        ApiConfig::new(format!("http://{}", server.addr), "secret-token-4711")
            .retry(retries(2))
            .http2_prior_knowledge(),
    )
    .unwrap();
    client.call(send()).await.unwrap();
    let mut out = logged.clone();
    out.flush().unwrap();
    let text = String::from_utf8_lossy(&logged.0.lock().unwrap()).into_owned();
    assert!(
        text.contains("TRACE") || text.contains("DEBUG"),
        "the subscriber saw the client's logs: {text}"
    );
    assert!(!text.contains("secret-token-4711"), "{text}");
}

#[tokio::test]
async fn a_connection_that_never_answers_is_retired_after_a_time_out() {
    // The server accepts the connection and the streams but never answers: a dead peer as the
    // client sees it.
    let server = server(Behaviour::Silent, None).await;
    let config = ApiConfig::new(format!("http://{}", server.addr), "t")
        .retry(retries(1))
        .timeout(Duration::from_millis(100))
        .http2_prior_knowledge();
    let client = ApiClient::new(SPEC, config).unwrap();
    let e = client.call(send()).await.unwrap_err();
    assert_eq!(e.kind(), ApiErrorKind::Timeout, "{e:?}");
    assert!(e.maybe_delivered());
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    let e = client.call(Call::get("read", "/a")).await.unwrap_err();
    assert_eq!(e.kind(), ApiErrorKind::Timeout, "{e:?}");
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        2,
        "the call after the time-out opened a new connection"
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}

#[test]
fn a_user_agent_that_is_no_header_value_is_a_config_error_not_a_panic() {
    for (base, h2c) in [
        ("https://example.invalid", false),
        ("http://127.0.0.1:1", true),
        ("http://127.0.0.1:1", false),
    ] {
        let mut config = ApiConfig::new(base, "t");
        if h2c {
            config = config.http2_prior_knowledge();
        }
        let e = ApiClient::new(TestSpec("bad\nagent"), config).unwrap_err();
        assert_eq!(e.kind(), ApiErrorKind::Config, "{base}: {e:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_times_out_at_its_own_deadline_when_the_timer_waits_for_a_later_one() {
    // The attempts' time-outs are slots of one timer per transport: a call that comes later
    // with an earlier deadline must move it forward, not wait for the first call's.
    let server = server(Behaviour::Silent, None).await;
    let config = ApiConfig::new(format!("http://{}", server.addr), "t")
        .retry(retries(1))
        .timeout(Duration::from_secs(10))
        .http2_prior_knowledge();
    let client = ApiClient::new(SPEC, config).unwrap();
    let t0 = tokio::time::Instant::now();
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.call(send()).await }
    });
    // The first call's attempt arms the timer for its 10 s (bounded: a request that never
    // comes fails the test instead of hanging it).
    let mut turns = 0;
    while server.requests.load(Ordering::SeqCst) < 1 {
        turns += 1;
        assert!(
            turns < 100_000,
            "the first call's request never reached the server"
        );
        tokio::task::yield_now().await;
    }
    let deadline = tokio::time::Instant::now().into_std() + Duration::from_secs(1);
    let e = client
        .call(Call::get("read", "/a").deadline(deadline))
        .await
        .unwrap_err();
    let late = tokio::time::Instant::now()
        .into_std()
        .saturating_duration_since(deadline);
    assert_eq!(e.kind(), ApiErrorKind::Timeout, "{e:?}");
    assert!(
        late <= Duration::from_millis(50),
        "timed out {late:?} after its deadline"
    );
    assert!(!first.is_finished(), "the first call's deadline is later");
    let e = first.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ApiErrorKind::Timeout, "{e:?}");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(10) && took <= Duration::from_millis(10_050),
        "the first call timed out after {took:?}"
    );
}

#[test]
fn a_call_times_out_while_another_runtime_of_its_client_is_idle() {
    // A client shared by two runtimes: a timer task starts on the first, whose `block_on` then
    // returns, so that it stays alive but is not driven while a call on the second waits for an
    // answer that never comes. The call must time out by a timer of its own runtime.
    let second = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = second.block_on(server(Behaviour::Silent, None));
    let config = ApiConfig::new(format!("http://{}", server.addr), "t")
        .retry(retries(1))
        .timeout(Duration::from_millis(300))
        .http2_prior_knowledge();
    let client = ApiClient::new(SPEC, config).unwrap();
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The first call starts a timer on the first runtime, and times out (its connection, which
    // has no answer, is retired: the next call connects from the second runtime).
    let e = first.block_on(client.call(send())).unwrap_err();
    assert_eq!(e.kind(), ApiErrorKind::Timeout, "{e:?}");
    let before = server.requests.load(Ordering::SeqCst);
    let started = std::time::Instant::now();
    let waiting = second.spawn({
        let client = client.clone();
        async move { client.call(Call::get("read", "/a")).await }
    });
    // The second call's request reached the server (bounded, so that a failure cannot hang).
    while server.requests.load(Ordering::SeqCst) <= before {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the second call's request never reached the server"
        );
        std::thread::yield_now();
    }
    let e = second
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), waiting).await })
        .expect("the call never timed out: it waited on the idle runtime's timer")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), ApiErrorKind::Timeout, "{e:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "timed out after {took:?}"
    );
    drop(first);
}
