//! Sending signed webhooks over `connections` connections, at a fixed rate or as fast as the
//! server answers, for a number of requests or a duration; latencies in an HDR histogram.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bot_core::Secret;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};

use crate::payload::{Platform, Signed, signed};

/// How long a run lasts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Length {
    /// This many requests.
    Requests(u64),
    /// This long.
    Duration(Duration),
}

/// What to send, where, how fast.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The webhook URL.
    pub(crate) url: String,
    /// The platform whose webhooks are sent.
    pub(crate) platform: Platform,
    /// The secret to sign with.
    pub(crate) secret: Secret,
    /// Events per request.
    pub(crate) events_per_request: usize,
    /// Conversations the events are spread over.
    pub(crate) conversations: u64,
    /// Connections, each sending one request at a time.
    pub(crate) connections: usize,
    /// Requests per second in all; `None`: as fast as answered.
    pub(crate) rate: Option<NonZeroU32>,
    /// How long.
    pub(crate) length: Length,
    /// Whether to draw a progress bar on stderr.
    pub(crate) progress: bool,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// Requests answered 2xx.
    pub(crate) ok: u64,
    /// Requests answered 503 (the bot's queue refused them).
    pub(crate) refused_503: u64,
    /// Of those, the ones that carried `Retry-After`.
    pub(crate) refused_503_with_retry_after: u64,
    /// Requests answered any other status.
    pub(crate) other_status: u64,
    /// Requests that failed to connect or send.
    pub(crate) errors: u64,
    /// Seconds from the first request to the last answer.
    pub(crate) seconds: f64,
    /// 2xx requests per second.
    pub(crate) requests_per_second: f64,
    /// Events per second in 2xx requests.
    pub(crate) events_per_second: f64,
    /// Latency of 2xx requests, microseconds.
    pub(crate) latency_us: Percentiles,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Percentiles {
    /// Median.
    pub(crate) p50: u64,
    /// 90th.
    pub(crate) p90: u64,
    /// 99th.
    pub(crate) p99: u64,
    /// 99.9th.
    pub(crate) p999: u64,
    /// Largest.
    pub(crate) max: u64,
}

#[derive(Default)]
struct Counts {
    next_request: AtomicU64,
    ok: AtomicU64,
    refused: AtomicU64,
    refused_with_retry_after: AtomicU64,
    other: AtomicU64,
    errors: AtomicU64,
}

/// `rate` per second with a burst of 10 ms worth, so a fixed rate is fixed from the first
/// second on (governor's default burst is a whole second's worth, sent at once).
fn steady(rate: NonZeroU32) -> Quota {
    let burst = NonZeroU32::new(rate.get().div_ceil(100)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

/// Runs `plan` and reports.
///
/// # Panics
///
/// When the HTTP client cannot be built.
pub(crate) async fn run(plan: Plan) -> Report {
    let plan = Arc::new(plan);
    let counts = Arc::new(Counts::default());
    let limiter: Option<Arc<DefaultDirectRateLimiter>> =
        plan.rate.map(|r| Arc::new(RateLimiter::direct(steady(r))));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.connections)
        .build()
        .expect("an http client");
    let bar = progress_bar(plan.length, plan.progress, "requests");
    let started = Instant::now();
    let deadline = match plan.length {
        Length::Duration(d) => Some(started + d),
        Length::Requests(_) => None,
    };
    let tasks: Vec<_> = (0..plan.connections)
        .map(|_| {
            let plan = plan.clone();
            let counts = counts.clone();
            let limiter = limiter.clone();
            let client = client.clone();
            let bar = bar.clone();
            // One long-lived task per load-generating connection.
            #[allow(clippy::disallowed_methods)]
            tokio::spawn(async move {
                connection(&plan, &counts, limiter.as_deref(), &client, &bar, deadline).await
            })
        })
        .collect();
    let mut latencies = histogram();
    for task in tasks {
        if let Ok(h) = task.await {
            let _ = latencies.add(h);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let ok = counts.ok.load(Ordering::Relaxed);
    Report {
        ok,
        refused_503: counts.refused.load(Ordering::Relaxed),
        refused_503_with_retry_after: counts.refused_with_retry_after.load(Ordering::Relaxed),
        other_status: counts.other.load(Ordering::Relaxed),
        errors: counts.errors.load(Ordering::Relaxed),
        seconds,
        requests_per_second: ok as f64 / seconds,
        events_per_second: (ok * plan.events_per_request as u64) as f64 / seconds,
        latency_us: Percentiles::of(&latencies),
    }
}

impl Percentiles {
    /// The percentiles of a histogram of microseconds.
    pub(crate) fn of(latencies: &Histogram<u64>) -> Self {
        let at = |q: f64| latencies.value_at_quantile(q);
        Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: latencies.max(),
        }
    }
}

/// A histogram of microseconds, 1 µs to 10 minutes, 3 significant digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// A load connection's histogram: 2 significant digits (1 %), an eighth of the memory of
/// [`histogram`]'s, so 512 connections do not make the generator's RSS a figure of its own.
fn connection_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 2).expect("valid histogram bounds")
}

/// The live progress bar of a run of `length` counting `unit`s on stderr; hidden unless `show`.
pub(crate) fn progress_bar(length: Length, show: bool, unit: &str) -> ProgressBar {
    let bar = match length {
        Length::Requests(n) => ProgressBar::new(n),
        Length::Duration(_) => ProgressBar::no_length(),
    };
    if show {
        bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{elapsed_precise}} [{{wide_bar}}] {{pos}} {unit}, {{per_sec}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

/// Where a load connection sends: its own HTTP/1.1 connection for `http://` (hyper, no pool:
/// the generator's cost per request stays small next to the server's), reqwest otherwise.
enum Sender {
    /// A plain HTTP/1.1 connection, opened on first use and again after it broke.
    Plain {
        uri: http::Uri,
        connection: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    },
    /// reqwest (https).
    Client(reqwest::Client),
}

impl Sender {
    fn new(url: &str, client: &reqwest::Client) -> Self {
        match url.parse::<http::Uri>() {
            Ok(uri) if uri.scheme_str() == Some("http") => Sender::Plain {
                uri,
                connection: None,
            },
            _ => Sender::Client(client.clone()),
        }
    }

    /// Posts `webhook` to `url`: the status and whether `Retry-After` came with it.
    async fn post(
        &mut self,
        url: &str,
        header: &'static str,
        webhook: Signed,
    ) -> Result<(u16, bool), String> {
        let answer = |status: http::StatusCode, headers: &http::HeaderMap| {
            (
                status.as_u16(),
                headers.contains_key(http::header::RETRY_AFTER),
            )
        };
        match self {
            Sender::Client(client) => client
                .post(url)
                .header(header, webhook.signature)
                .header("content-type", "application/json")
                .body(webhook.body)
                .send()
                .await
                .map(|r| answer(r.status(), r.headers()))
                .map_err(|e| e.to_string()),
            Sender::Plain { uri, connection } => {
                let usable = match connection {
                    Some(sender) => sender.ready().await.is_ok(),
                    None => false,
                };
                let sender = match connection {
                    Some(sender) if usable => sender,
                    _ => connection.insert(open(uri).await?),
                };
                let request = http::Request::post(uri.clone())
                    .header(
                        http::header::HOST,
                        uri.authority().map_or("", |a| a.as_str()),
                    )
                    .header(header, webhook.signature)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(webhook.body)))
                    .map_err(|e| e.to_string())?;
                let response = match sender.send_request(request).await {
                    Ok(response) => response,
                    Err(e) => {
                        *connection = None;
                        return Err(e.to_string());
                    }
                };
                let (parts, body) = response.into_parts();
                // Read to the end, so the connection can carry the next request.
                if body.collect().await.is_err() {
                    *connection = None;
                }
                Ok(answer(parts.status, &parts.headers))
            }
        }
    }
}

/// Opens an HTTP/1.1 connection to `uri`'s host.
async fn open(
    uri: &http::Uri,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let host = uri.host().ok_or("no host in the URL")?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    // The connection's own task, one per load connection, ends when the connection closes.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(connection);
    Ok(sender)
}

async fn connection(
    plan: &Plan,
    counts: &Counts,
    limiter: Option<&DefaultDirectRateLimiter>,
    client: &reqwest::Client,
    bar: &ProgressBar,
    deadline: Option<Instant>,
) -> Histogram<u64> {
    let mut latencies = connection_histogram();
    let mut sender = Sender::new(&plan.url, client);
    loop {
        let request = counts.next_request.fetch_add(1, Ordering::Relaxed);
        match plan.length {
            Length::Requests(n) if request >= n => break,
            Length::Duration(_) if deadline.is_some_and(|d| Instant::now() >= d) => break,
            _ => {}
        }
        if let Some(limiter) = limiter {
            limiter.until_ready().await;
        }
        let webhook = signed(
            plan.platform,
            &plan.secret,
            request,
            plan.events_per_request,
            plan.conversations,
        );
        let sent = Instant::now();
        let answer = sender
            .post(&plan.url, plan.platform.signature_header(), webhook)
            .await;
        match answer {
            Ok((200..=299, _)) => {
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                latencies.saturating_record(micros);
                counts.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok((503, retry_after)) => {
                counts.refused.fetch_add(1, Ordering::Relaxed);
                if retry_after {
                    counts
                        .refused_with_retry_after
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(_) => {
                counts.other.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                counts.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        bar.inc(1);
    }
    latencies
}

/// The report as a table.
pub(crate) fn table(title: &str, plan: &Plan, report: &Report) -> String {
    let l = &report.latency_us;
    let ms = |us: u64| us as f64 / 1000.0;
    format!(
        "{title}\n\
         | platform | events/request | connections | requests ok | 503 | other | errors | seconds | requests/s | events/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n\
         | {platform:?} | {events} | {connections} | {ok} | {refused} | {other} | {errors} | {seconds:.2} | {rps:.0} | {eps:.0} | {p50:.2} | {p90:.2} | {p99:.2} | {p999:.2} | {max:.2} |",
        platform = plan.platform,
        events = plan.events_per_request,
        connections = plan.connections,
        ok = report.ok,
        refused = report.refused_503,
        other = report.other_status,
        errors = report.errors,
        seconds = report.seconds,
        rps = report.requests_per_second,
        eps = report.events_per_second,
        p50 = ms(l.p50),
        p90 = ms(l.p90),
        p99 = ms(l.p99),
        p999 = ms(l.p999),
        max = ms(l.max),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::atomic::AtomicU64;

    /// Every request arrives signed and unique; 503s are told apart by `Retry-After`, as the
    /// past-saturation run needs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn statuses_and_retry_after_are_counted_over_kept_connections() {
        let seen = Arc::new(AtomicU64::new(0));
        let counter = seen.clone();
        let app = axum::Router::new().route(
            bot_line::webhook::DEFAULT_PATH,
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let counter = counter.clone();
                async move {
                    let signature = headers
                        .get(bot_line::webhook::SIGNATURE_HEADER)
                        .map(|v| v.as_bytes().to_vec())
                        .unwrap_or_default();
                    if bot_line::webhook::verify(&Secret::new("s"), &body, &signature).is_err() {
                        return (StatusCode::UNAUTHORIZED, HeaderMap::new());
                    }
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let mut headers = HeaderMap::new();
                    match n % 4 {
                        3 if n % 8 == 3 => {
                            headers.insert(http::header::RETRY_AFTER, "1".parse().unwrap());
                            (StatusCode::SERVICE_UNAVAILABLE, headers)
                        }
                        3 => (StatusCode::SERVICE_UNAVAILABLE, headers),
                        _ => (StatusCode::OK, headers),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move { axum::serve(listener, app).await });
        let report = run(Plan {
            url: format!("http://{addr}{}", bot_line::webhook::DEFAULT_PATH),
            platform: Platform::Line,
            secret: Secret::new("s"),
            events_per_request: 2,
            conversations: 10,
            connections: 4,
            rate: None,
            length: Length::Requests(80),
            progress: false,
        })
        .await;
        assert_eq!(seen.load(Ordering::Relaxed), 80);
        assert_eq!((report.ok, report.refused_503), (60, 20));
        assert_eq!(report.refused_503_with_retry_after, 10);
        assert_eq!((report.other_status, report.errors), (0, 0));
        // The connections' latencies reach the report.
        assert!(report.latency_us.p50 > 0 && report.latency_us.max >= report.latency_us.p50);
    }

    #[test]
    fn a_fixed_rate_bursts_at_most_10_ms_worth() {
        let limiter =
            governor::RateLimiter::direct(super::steady(std::num::NonZeroU32::new(3_000).unwrap()));
        let mut at_once = 0;
        while limiter.check().is_ok() {
            at_once += 1;
        }
        // 30 at once; one more only if the loop outlasted a cell (1/3,000 s).
        assert!((30..=31).contains(&at_once), "{at_once}");
    }
}
