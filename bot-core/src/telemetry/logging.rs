//! Logging for binaries: levels from `RUST_LOG`, a non-blocking writer, the node id on every
//! line, and OpenTelemetry traces over OTLP when configured.
//!
//! [`init_logging`] is what a server wants (stdout, `info`); [`Logging`] changes the stream and
//! the default level, for a console bot whose stdout is the chat. `BOT_LOG_FORMAT=json` writes
//! one JSON object per line instead of text, for log pipelines.
//!
//! A slow log sink must never slow event handling down, so lines go through
//! `tracing_appender::non_blocking` to a writer thread. Many workers of one container log to the
//! same stream, so every line names its node and process.

use std::fmt;
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::error::{Error, ErrorKind};

/// Lines waiting for the writer thread, at most. The channel allocates and touches every place
/// up front (32 bytes each): `tracing_appender`'s default of 128,000 held 4 MiB of every idle
/// process. A sink that falls this far behind drops lines (counted by the writer) rather than
/// slowing handlers down, as before.
const BUFFERED_LINES: usize = 8_192;

fn non_blocking<W: std::io::Write + Send + 'static>(
    sink: W,
) -> (tracing_appender::non_blocking::NonBlocking, WorkerGuard) {
    tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .lossy(true)
        .finish(sink)
}

/// The environment variable naming this node in logs and traces; defaults to the host name, or
/// `pid-<process id>` when the host name is unknown.
pub const NODE_ID_ENV: &str = "BOT_NODE_ID";

/// The environment variable choosing the line format: `text` (the default) or `json` (one JSON
/// object per line, with `node` and `pid` fields, for log pipelines).
pub const LOG_FORMAT_ENV: &str = "BOT_LOG_FORMAT";

/// The level used when `RUST_LOG` is unset, unless [`Logging::default_level`] says otherwise.
const DEFAULT_LEVEL: LevelFilter = LevelFilter::INFO;

/// Longest node id kept; longer ones are cut.
const MAX_NODE_ID_LEN: usize = 64;

/// Set once a global subscriber is installed by this module, so that a second call fails early
/// without building exporters it would have to throw away.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Keeps logging alive: flushes buffered lines and exported spans when dropped.
///
/// Hold it until `main` returns; dropping it early loses the lines still buffered.
#[must_use = "logs are flushed when the guard drops; keep it until main returns"]
pub struct LoggingGuard {
    node_id: String,
    #[cfg(feature = "otlp")]
    tracer_provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    worker: Option<WorkerGuard>,
}

impl LoggingGuard {
    /// The node id every line carries.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Whether spans are exported over OTLP.
    pub fn exports_traces(&self) -> bool {
        #[cfg(feature = "otlp")]
        {
            self.tracer_provider.is_some()
        }
        #[cfg(not(feature = "otlp"))]
        {
            false
        }
    }
}

impl fmt::Debug for LoggingGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoggingGuard")
            .field("node_id", &self.node_id)
            .field("exports_traces", &self.exports_traces())
            .finish_non_exhaustive()
    }
}

impl Drop for LoggingGuard {
    fn drop(&mut self) {
        // Spans first, while the log writer can still report a failed export.
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.tracer_provider.take()
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "cannot flush the trace exporter");
        }
        drop(self.worker.take());
    }
}

/// Installs the process-wide logging of a bot binary: `Logging::new().init()`.
///
/// - levels from `RUST_LOG` (default `info`; invalid directives are ignored);
/// - lines written to stdout by a background thread, so logging never blocks a handler;
/// - every line tagged `node=<id> pid=<pid>` after its timestamp (see [`NODE_ID_ENV`]); lines
///   logged inside an event's span also carry the event id;
/// - with `BOT_LOG_FORMAT=json` ([`LOG_FORMAT_ENV`]), one JSON object per line instead, with
///   `timestamp`, `level`, `target`, the event's fields, the current span's fields under `span`,
///   and `node` and `pid`;
/// - with the `otlp` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans exported over
///   OTLP/HTTP by a batch exporter, tagged `service.instance.id = <node id>`.
///
/// Libraries and tests should not call it: it sets the global subscriber. [`Logging`] writes to
/// stderr or defaults to another level instead.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), bot_core::Error> {
/// let _logging = bot_core::telemetry::init_logging()?;
/// tracing::info!("starting");
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`ErrorKind::Config`] when a global subscriber is already installed (a second call),
/// `BOT_LOG_FORMAT` is neither `text` nor `json`, or the OTLP exporter cannot be built.
pub fn init_logging() -> Result<LoggingGuard, Error> {
    Logging::new().init()
}

/// The stream log lines go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Stdout,
    Stderr,
}

/// How a line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// The `tracing` text line, with the node tag after the timestamp.
    Text,
    /// One JSON object per line.
    Json,
}

impl Format {
    /// The format `BOT_LOG_FORMAT` names; text when it is unset or blank.
    fn from_env_value(value: Option<&str>) -> Result<Self, Error> {
        match value.map(str::trim) {
            None | Some("") => Ok(Self::Text),
            Some(v) if v.eq_ignore_ascii_case("text") => Ok(Self::Text),
            Some(v) if v.eq_ignore_ascii_case("json") => Ok(Self::Json),
            Some(other) => Err(Error::new(
                ErrorKind::Config,
                format!("{LOG_FORMAT_ENV} must be text or json, not {other:?}"),
            )),
        }
    }
}

/// Sets up the process-wide logging of a bot binary like [`init_logging`], with another stream or
/// default level.
///
/// Everything else is the same: `RUST_LOG` wins over the default level, lines go through a
/// non-blocking writer and carry the node tag, and spans are exported over OTLP when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
///
/// # Examples
///
/// A console bot keeps stdout for the chat and logs only what goes wrong:
///
/// ```no_run
/// # fn main() -> Result<(), bot_core::Error> {
/// use bot_core::telemetry::Logging;
///
/// let _logging = Logging::new().stderr().default_level("warn").init()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Logging {
    output: Output,
    default_level: String,
}

impl Default for Logging {
    fn default() -> Self {
        Self::new()
    }
}

impl Logging {
    /// Stdout at level `info`, as [`init_logging`].
    pub fn new() -> Self {
        Self {
            output: Output::Stdout,
            default_level: DEFAULT_LEVEL.to_string(),
        }
    }

    /// Writes to stdout (the default).
    pub fn stdout(mut self) -> Self {
        self.output = Output::Stdout;
        self
    }

    /// Writes to stderr.
    pub fn stderr(mut self) -> Self {
        self.output = Output::Stderr;
        self
    }

    /// The level used when `RUST_LOG` is unset or empty: `off`, `error`, `warn`, `info` (the
    /// default), `debug` or `trace`.
    pub fn default_level(mut self, level: impl Into<String>) -> Self {
        self.default_level = level.into();
        self
    }

    /// Installs the global subscriber.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when the default level is not a level, `BOT_LOG_FORMAT` is neither
    /// `text` nor `json`, a global subscriber is already installed, or the OTLP exporter cannot
    /// be built.
    pub fn init(self) -> Result<LoggingGuard, Error> {
        let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
        let format = std::env::var(LOG_FORMAT_ENV).ok();
        install(self.settings(rust_log.as_deref(), format.as_deref())?)
    }

    /// What [`install`] sets up, with `RUST_LOG` given as `rust_log` and `BOT_LOG_FORMAT` as
    /// `format`.
    fn settings(&self, rust_log: Option<&str>, format: Option<&str>) -> Result<Settings, Error> {
        let default_level: LevelFilter = self.default_level.trim().parse().map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("logging: {:?} is not a level", self.default_level),
            )
            .with_source(e)
        })?;
        Ok(Settings {
            filter: EnvFilter::builder()
                .with_default_directive(default_level.into())
                .parse_lossy(rust_log.unwrap_or_default()),
            output: self.output,
            format: Format::from_env_value(format)?,
            node_id: node_id(),
            otlp: std::env::var(super::OTLP_ENDPOINT_ENV).is_ok_and(|v| !v.trim().is_empty()),
        })
    }
}

/// Targets that print secrets at their most verbose levels, and the most each may log whatever
/// `RUST_LOG` says: tungstenite logs whole WebSocket frames at TRACE (Discord's identify carries
/// the bot token), tokio_postgres logs statement parameters at DEBUG (event payloads carry reply
/// tokens).
pub const SECRET_SAFE_CAPS: &[(&str, LevelFilter)] = &[
    ("tungstenite", LevelFilter::DEBUG),
    ("tokio_tungstenite", LevelFilter::DEBUG),
    ("tokio_postgres::query", LevelFilter::INFO),
];

/// A filter layer that caps the targets of [`SECRET_SAFE_CAPS`] and lets everything else
/// through; [`Logging`] installs it beside the `RUST_LOG` filter, so that even `RUST_LOG=trace`
/// logs no secret. It only ever lowers levels: add it to a subscriber of your own with `.with(..)`.
pub fn secret_safe_caps() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(SECRET_SAFE_CAPS.iter().copied())
}

/// [`secret_safe_caps`] letting nothing above `most` through (`RUST_LOG`'s most verbose level),
/// so that the subscriber's level hint stays `most`: `log` records above it (tungstenite's
/// TRACE lines, several per WebSocket frame) are then dropped by `log`'s own level check, not
/// each handed to the subscriber to be refused there.
fn secret_safe_caps_up_to(most: LevelFilter) -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new()
        .with_default(most)
        .with_targets(
            SECRET_SAFE_CAPS
                .iter()
                .map(|&(target, cap)| (target, cap.min(most))),
        )
}

/// This node's id: [`NODE_ID_ENV`] if set, else the host name, else `pid-<process id>`.
pub fn node_id() -> String {
    node_id_from(
        std::env::var(NODE_ID_ENV).ok(),
        hostname(),
        std::process::id(),
    )
}

/// What [`install`] sets up; read from the environment by [`Logging::init`].
struct Settings {
    filter: EnvFilter,
    output: Output,
    format: Format,
    node_id: String,
    /// Whether to export spans; the exporter reads its endpoint from the standard variables.
    otlp: bool,
}

fn install(settings: Settings) -> Result<LoggingGuard, Error> {
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return Err(already_installed());
    }
    let Settings {
        filter,
        output,
        format,
        node_id,
        otlp,
    } = settings;

    #[cfg(feature = "otlp")]
    let tracer_provider = if otlp {
        match tracer_provider(&node_id, None) {
            Ok(provider) => Some(provider),
            Err(e) => {
                INSTALLED.store(false, Ordering::Release);
                return Err(e);
            }
        }
    } else {
        None
    };
    #[cfg(not(feature = "otlp"))]
    if otlp {
        eprintln!("OTEL_EXPORTER_OTLP_ENDPOINT is set but bot-core was built without `otlp`");
    }

    let ((writer, worker), ansi) = match output {
        Output::Stdout => (
            non_blocking(std::io::stdout()),
            std::io::stdout().is_terminal(),
        ),
        Output::Stderr => (
            non_blocking(std::io::stderr()),
            std::io::stderr().is_terminal(),
        ),
    };
    let most = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(secret_safe_caps_up_to(most))
        .with(match format {
            Format::Text => fmt_layer(&node_id, writer, ansi).boxed(),
            Format::Json => json_layer(&node_id, writer).boxed(),
        });
    #[cfg(feature = "otlp")]
    let registry = registry.with(tracer_provider.as_ref().map(|provider| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer().with_tracer(provider.tracer("bot-core"))
    }));

    if let Err(e) = registry.try_init() {
        #[cfg(feature = "otlp")]
        if let Some(provider) = &tracer_provider {
            let _ = provider.shutdown();
        }
        return Err(already_installed().with_source(e));
    }
    Ok(LoggingGuard {
        node_id,
        #[cfg(feature = "otlp")]
        tracer_provider,
        worker: Some(worker),
    })
}

fn already_installed() -> Error {
    Error::new(
        ErrorKind::Config,
        "logging: a global subscriber is already installed",
    )
}

/// The fmt layer: the usual line, with the node tag after the timestamp.
fn fmt_layer<S, W>(node_id: &str, writer: W, ansi: bool) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_timer(NodeTagged {
            time: SystemTime,
            tag: format!("node={node_id} pid={}", std::process::id()),
        })
        .with_ansi(ansi)
        .with_writer(writer)
}

/// The JSON layer: one object per line, the event's fields at the top level beside `node` and
/// `pid`, the current span's fields (the event id) under `span`.
fn json_layer<S, W>(node_id: &str, writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // serde_json quotes the node id as a JSON string (it may hold any character).
    let node = serde_json::Value::from(node_id);
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(NodeFields {
            inner: writer,
            fields: format!("{{\"node\":{node},\"pid\":{},", std::process::id()).into(),
        })
}

/// Puts the node's fields first in every JSON line: the formatter writes each line with one
/// `write_all` of a fresh writer, so the line's opening brace is the first byte that writer sees.
struct NodeFields<W> {
    inner: W,
    /// `{"node":"<id>","pid":<pid>,`: the line's opening brace with the fields.
    fields: std::sync::Arc<str>,
}

impl<'w, W: MakeWriter<'w>> MakeWriter<'w> for NodeFields<W> {
    type Writer = NodeFieldsWriter<W::Writer>;

    fn make_writer(&'w self) -> Self::Writer {
        NodeFieldsWriter {
            inner: self.inner.make_writer(),
            fields: Some(self.fields.clone()),
        }
    }
}

/// One line's writer of [`NodeFields`].
struct NodeFieldsWriter<W> {
    inner: W,
    /// Until the first write.
    fields: Option<std::sync::Arc<str>>,
}

impl<W: std::io::Write> std::io::Write for NodeFieldsWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match (self.fields.take(), buf.split_first()) {
            (Some(fields), Some((b'{', rest))) => {
                let mut line = Vec::with_capacity(fields.len() + rest.len());
                line.extend_from_slice(fields.as_bytes());
                line.extend_from_slice(rest);
                self.inner.write_all(&line)?;
                Ok(buf.len())
            }
            _ => self.inner.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The timestamp followed by the node tag: the timer is the one part of the default format that
/// every line has, so the tag rides on it.
#[derive(Debug)]
struct NodeTagged {
    time: SystemTime,
    tag: String,
}

impl FormatTime for NodeTagged {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        self.time.format_time(w)?;
        write!(w, " {}", self.tag)
    }
}

/// A tracer provider exporting over OTLP/HTTP in batches from a thread of its own. The exporter
/// reads `OTEL_EXPORTER_OTLP_ENDPOINT` (and the other standard variables) unless `endpoint` is
/// given.
#[cfg(feature = "otlp")]
fn tracer_provider(
    node_id: &str,
    endpoint: Option<&str>,
) -> Result<opentelemetry_sdk::trace::SdkTracerProvider, Error> {
    use opentelemetry_otlp::WithExportConfig as _;

    let builder = opentelemetry_otlp::SpanExporter::builder().with_http();
    let builder = match endpoint {
        Some(endpoint) => builder.with_endpoint(endpoint),
        None => builder,
    };
    // The blocking client must not wait forever on an unreachable collector at shutdown.
    let exporter = builder
        .with_timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::Config,
                "logging: cannot set up the otlp span exporter",
            )
            .with_source(e.to_string())
        })?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            node_id.to_owned(),
        ))
        .build();
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The node id from its sources, cleaned so that it is one token on a log line.
fn node_id_from(explicit: Option<String>, hostname: Option<String>, pid: u32) -> String {
    [explicit, hostname]
        .into_iter()
        .flatten()
        .map(|raw| sanitise(&raw))
        .find(|id| !id.is_empty())
        .unwrap_or_else(|| format!("pid-{pid}"))
}

fn sanitise(raw: &str) -> String {
    raw.trim()
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() || c == '"' || c == '=' {
                '_'
            } else {
                c
            }
        })
        .take(MAX_NODE_ID_LEN)
        .collect()
}

/// The host name, from `HOSTNAME` or the kernel, without a dependency.
fn hostname() -> Option<String> {
    if let Ok(name) = std::env::var("HOSTNAME")
        && !name.trim().is_empty()
    {
        return Some(name);
    }
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .filter(|name| !name.trim().is_empty())
}

/// Lets a recurring log line through at most once per interval and counts the ones it held back,
/// so that requests anyone can send (bad signatures, oversized bodies, refused connections)
/// cannot flood the logs. Metrics still count every occurrence.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bot_core::telemetry::RateLimitedLog;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let log = RateLimitedLog::new(Duration::from_secs(10));
/// assert_eq!(log.check(), Some(0)); // the first line goes out
/// assert_eq!(log.check(), None); // held back and counted
/// # }
/// ```
pub struct RateLimitedLog {
    interval: std::time::Duration,
    state: std::sync::Mutex<LimiterState>,
}

#[derive(Default)]
struct LimiterState {
    next_at: Option<tokio::time::Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// A limiter letting one line through per `interval`.
    pub fn new(interval: std::time::Duration) -> Self {
        Self {
            interval,
            state: std::sync::Mutex::new(LimiterState::default()),
        }
    }

    /// `Some(held_back)` when this occurrence should be logged, with the number of occurrences
    /// held back since the last line that went out (log it with the line); `None` when it is
    /// held back.
    pub fn check(&self) -> Option<u64> {
        let now = tokio::time::Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.next_at {
            Some(next) if now < next => {
                state.suppressed = state.suppressed.saturating_add(1);
                None
            }
            _ => {
                state.next_at = Some(now + self.interval);
                Some(std::mem::take(&mut state.suppressed))
            }
        }
    }

    /// The interval between two lines.
    pub fn interval(&self) -> std::time::Duration {
        self.interval
    }
}

impl fmt::Debug for RateLimitedLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitedLog")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn node_id_prefers_the_variable_then_the_host_then_the_pid() {
        assert_eq!(
            node_id_from(Some("worker-3".into()), Some("host".into()), 7),
            "worker-3"
        );
        assert_eq!(node_id_from(None, Some("host\n".into()), 7), "host");
        assert_eq!(
            node_id_from(Some("  ".into()), Some("host".into()), 7),
            "host",
            "a blank variable falls back"
        );
        assert_eq!(node_id_from(None, None, 7), "pid-7");
        assert_eq!(node_id_from(None, Some(String::new()), 7), "pid-7");
        assert!(!node_id().is_empty());
    }

    #[test]
    fn node_id_is_one_token() {
        assert_eq!(
            node_id_from(Some("a b\tc=\"d\"".into()), None, 1),
            "a_b_c__d_"
        );
        assert_eq!(
            node_id_from(Some("x".repeat(200)), None, 1).len(),
            MAX_NODE_ID_LEN
        );
    }

    #[test]
    fn the_caps_keep_the_filter_level_hint_and_still_cap() {
        use tracing::Subscriber as _;
        let hint = |rust_log: &str| {
            let filter = EnvFilter::new(rust_log);
            let most = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
            tracing_subscriber::registry()
                .with(filter)
                .with(secret_safe_caps_up_to(most))
                .max_level_hint()
        };
        // With the caps that let everything else through, `log`'s level would be TRACE.
        let wide = tracing_subscriber::registry()
            .with(EnvFilter::new("warn"))
            .with(secret_safe_caps());
        assert_eq!(wide.max_level_hint(), Some(LevelFilter::TRACE));
        assert_eq!(hint("warn"), Some(LevelFilter::WARN));
        assert_eq!(hint("warn,bot_discord=debug"), Some(LevelFilter::DEBUG));
        // RUST_LOG=trace: the secret-bearing targets still stop at their caps.
        let caps = secret_safe_caps_up_to(LevelFilter::TRACE);
        assert!(!caps.would_enable("tungstenite::protocol", &tracing::Level::TRACE));
        assert!(caps.would_enable("tungstenite::protocol", &tracing::Level::DEBUG));
        assert!(caps.would_enable("bot_core", &tracing::Level::TRACE));
        let caps = secret_safe_caps_up_to(LevelFilter::WARN);
        assert!(!caps.would_enable("tungstenite", &tracing::Level::INFO));
        assert!(!caps.would_enable("bot_core", &tracing::Level::INFO));
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn every_line_carries_the_node_tag_and_the_span_fields() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new("info"))
            .with(fmt_layer("node-a", buffer.clone(), false));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside any span");
            let span = tracing::info_span!("bot.event", messaging.message.id = "ev-42");
            span.in_scope(|| tracing::warn!(attempt = 2, "inside"));
            tracing::debug!("filtered out");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let tag = format!(" node=node-a pid={} ", std::process::id());
        for line in &lines {
            assert!(line.contains(&tag), "no node tag in {line:?}");
        }
        assert!(
            lines[1].contains("messaging.message.id=\"ev-42\""),
            "{text}"
        );
        assert!(lines[1].contains("attempt=2"), "{text}");
    }

    #[test]
    fn json_lines_are_objects_with_the_node_the_fields_and_the_span() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry()
            .with(EnvFilter::new("info"))
            .with(json_layer("node \"a\"", buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside any span");
            let span = tracing::info_span!("bot.event", messaging.message.id = "ev-42");
            span.in_scope(|| tracing::warn!(attempt = 2, "inside"));
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        for line in &lines {
            assert_eq!(line["node"], "node \"a\"", "{line}");
            assert_eq!(line["pid"], std::process::id(), "{line}");
            assert!(line["timestamp"].is_string(), "{line}");
        }
        assert_eq!(lines[0]["message"], "outside any span");
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["attempt"], 2);
        assert_eq!(lines[1]["span"]["messaging.message.id"], "ev-42");
    }

    #[test]
    fn bot_log_format_takes_text_or_json_and_names_itself_otherwise() {
        let format = |value| Logging::new().settings(None, value).map(|s| s.format);
        assert_eq!(format(None).unwrap(), Format::Text);
        assert_eq!(format(Some("")).unwrap(), Format::Text);
        assert_eq!(format(Some("text")).unwrap(), Format::Text);
        assert_eq!(format(Some(" JSON\n")).unwrap(), Format::Json);
        let error = format(Some("logfmt")).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        assert_eq!(
            error.to_string(),
            "BOT_LOG_FORMAT must be text or json, not \"logfmt\""
        );
    }

    #[test]
    fn builder_defaults_to_stdout_at_info() {
        let settings = Logging::new().settings(None, None).unwrap();
        assert_eq!(settings.output, Output::Stdout);
        assert_eq!(settings.filter.max_level_hint(), Some(LevelFilter::INFO));
        assert_eq!(settings.node_id, node_id());
        let settings = Logging::default().settings(None, None).unwrap();
        assert_eq!(settings.output, Output::Stdout);
    }

    #[test]
    fn builder_sets_the_stream_and_the_default_level() {
        let logging = Logging::new().stderr().default_level("warn");
        let settings = logging.settings(None, None).unwrap();
        assert_eq!(settings.output, Output::Stderr);
        assert_eq!(settings.filter.max_level_hint(), Some(LevelFilter::WARN));
        let settings = logging.clone().stdout().settings(Some(""), None).unwrap();
        assert_eq!(settings.output, Output::Stdout);
        assert_eq!(
            settings.filter.max_level_hint(),
            Some(LevelFilter::WARN),
            "an empty RUST_LOG is unset"
        );
        let settings = Logging::new()
            .default_level(" Debug ")
            .settings(None, None)
            .unwrap();
        assert_eq!(settings.filter.max_level_hint(), Some(LevelFilter::DEBUG));
    }

    #[test]
    fn rust_log_wins_over_the_default_level() {
        let settings = Logging::new()
            .default_level("warn")
            .settings(Some("debug"), None)
            .unwrap();
        assert_eq!(settings.filter.max_level_hint(), Some(LevelFilter::DEBUG));
    }

    #[test]
    fn the_default_level_filters_the_lines() {
        let settings = Logging::new()
            .default_level("warn")
            .settings(None, None)
            .unwrap();
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry()
            .with(settings.filter)
            .with(fmt_layer("node-a", buffer.clone(), false));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("chatty");
            tracing::warn!("worth saying");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("worth saying"), "{text}");
    }

    #[test]
    fn a_default_level_that_is_not_a_level_is_an_error() {
        let error = Logging::new()
            .default_level("verbose")
            .settings(None, None)
            .err()
            .expect("not a level");
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.to_string().contains("verbose"), "{error}");
    }

    #[cfg(feature = "otlp")]
    #[tokio::test]
    async fn otlp_provider_builds_and_shuts_down_offline() {
        use opentelemetry::trace::TracerProvider as _;
        // Nothing listens on the discard port: the export fails, quickly and without a panic.
        let provider = tracer_provider("node-a", Some("http://127.0.0.1:9/v1/traces")).unwrap();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!("bot.event").in_scope(|| tracing::info!("exported"));
        });
        let _ = provider.shutdown();
    }

    #[test]
    fn installing_twice_is_an_error_not_a_panic() {
        let settings = || Settings {
            // Silent: this installs the global subscriber of the whole test binary.
            filter: EnvFilter::new("off"),
            output: Output::Stdout,
            format: Format::Text,
            node_id: "test-node".into(),
            otlp: false,
        };
        let first = install(settings()).expect("first install without otlp works");
        assert_eq!(first.node_id(), "test-node");
        assert!(!first.exports_traces());
        let second = install(settings()).expect_err("second install fails");
        assert_eq!(second.kind(), ErrorKind::Config);
        assert!(init_logging().is_err(), "the public entry point too");
        drop(first);
    }
}
