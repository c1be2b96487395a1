//! Telemetry: OpenTelemetry metrics with a Prometheus text endpoint and OTLP export.
//!
//! Every bot owns a meter provider of its own (not the global one), so that several bots in one
//! process, and tests running in parallel, never mix their figures. The names follow DESIGN.md
//! section 7; Prometheus renders `bot.events.received` as `bot_events_received_total`.

mod logging;
mod metrics;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;

use crate::error::{Error, ErrorKind};
use crate::event::Platform;
use crate::queue::Queue;

pub use logging::{
    LOG_FORMAT_ENV, Logging, LoggingGuard, NODE_ID_ENV, RateLimitedLog, SECRET_SAFE_CAPS,
    init_logging, node_id, secret_safe_caps,
};
pub(crate) use metrics::Metrics;
pub use metrics::{DropReason, Outcome};

/// One platform API request, as [`Telemetry::outbound_call`] records it.
#[derive(Debug, Clone, Copy)]
pub struct OutboundCall<'a> {
    /// The platform.
    pub platform: &'a Platform,
    /// The endpoint's name (`push`, `send`, a Discord route), never the path.
    pub endpoint: &'static str,
    /// The HTTP method.
    pub method: &'a str,
    /// The API's host.
    pub server_address: &'a str,
    /// The status answered, if any.
    pub status: Option<u16>,
    /// `timeout`, `transport`, or the status of a refusal (OpenTelemetry's `error.type`).
    pub error_type: Option<&'a str>,
    /// The channel label of the client, if set.
    pub channel: Option<&'a str>,
    /// How long the request took.
    pub duration: Duration,
}

/// The environment variable that turns on OTLP export.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// A bot's telemetry: its meter, its Prometheus registry and the instruments adapters record into.
///
/// Cloning is cheap. Adapters get it from [`crate::Ingress::telemetry`].
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

struct Inner {
    provider: SdkMeterProvider,
    meter: Meter,
    metrics: Metrics,
    #[cfg(feature = "prometheus")]
    registry: prometheus::Registry,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Sets up the meter provider with a Prometheus reader and, when [`OTLP_ENDPOINT_ENV`] is set,
    /// an OTLP/HTTP periodic exporter.
    pub(crate) fn new(queue: Arc<dyn Queue>) -> Result<Self, Error> {
        Self::build(queue, true)
    }

    /// Telemetry of a bot inside another (an outbox's senders): its figures are kept and
    /// rendered on demand, but never pushed to OTLP, where they would be a second stream of the
    /// same metric names beside the process's bot's.
    pub(crate) fn unexported(queue: Arc<dyn Queue>) -> Result<Self, Error> {
        Self::build(queue, false)
    }

    #[cfg_attr(not(feature = "otlp"), allow(unused_variables))]
    fn build(queue: Arc<dyn Queue>, export: bool) -> Result<Self, Error> {
        let builder = SdkMeterProvider::builder();
        #[cfg(feature = "prometheus")]
        let registry = prometheus::Registry::new();
        #[cfg(feature = "prometheus")]
        let builder = {
            let exporter = opentelemetry_prometheus::exporter()
                .with_registry(registry.clone())
                .without_target_info()
                .scope_info_enabled(false)
                .build()
                .map_err(|e| {
                    Error::new(ErrorKind::Config, "cannot set up the prometheus exporter")
                        .with_source(e.to_string())
                })?;
            builder.with_reader(exporter)
        };
        #[cfg(feature = "otlp")]
        let builder = match std::env::var(OTLP_ENDPOINT_ENV) {
            Ok(endpoint) if export && !endpoint.trim().is_empty() => {
                let exporter = opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .build()
                    .map_err(|e| {
                        Error::new(ErrorKind::Config, "cannot set up the otlp metric exporter")
                            .with_source(e.to_string())
                    })?;
                builder.with_reader(
                    opentelemetry_sdk::metrics::PeriodicReader::builder(exporter).build(),
                )
            }
            _ => builder,
        };
        let provider = builder.build();
        let meter = provider.meter("bot-core");
        let metrics = Metrics::new(&meter, queue);
        Ok(Self {
            inner: Arc::new(Inner {
                provider,
                meter,
                metrics,
                #[cfg(feature = "prometheus")]
                registry,
            }),
        })
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The meter, for instruments of your own.
    pub fn meter(&self) -> &Meter {
        &self.inner.meter
    }

    /// The current figures in the Prometheus text exposition format.
    #[cfg(feature = "prometheus")]
    #[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
    pub fn render_prometheus(&self) -> String {
        use prometheus::Encoder as _;
        let families = self.inner.registry.gather();
        let mut out = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Counts one platform API request with its HTTP status (or `error` for a transport failure).
    pub fn outbound_request(&self, platform: &Platform, status: &str) {
        self.inner.metrics.outbound_requests.add(
            1,
            &[
                KeyValue::new("platform", platform.as_str().to_owned()),
                KeyValue::new("status", status.to_owned()),
            ],
        );
    }

    /// Records how long an outbound call waited for its rate limiter.
    pub fn outbound_ratelimit_wait(&self, platform: &Platform, waited: Duration) {
        self.inner.metrics.outbound_ratelimit_wait.record(
            waited.as_secs_f64(),
            &[KeyValue::new("platform", platform.as_str().to_owned())],
        );
    }

    /// Records one platform API request's duration as `http.client.request.duration`, with
    /// OpenTelemetry's HTTP client attribute names.
    pub fn outbound_call(&self, call: &OutboundCall<'_>) {
        let mut attributes = Vec::with_capacity(7);
        attributes.push(KeyValue::new("http.request.method", call.method.to_owned()));
        attributes.push(KeyValue::new(
            "server.address",
            call.server_address.to_owned(),
        ));
        attributes.push(KeyValue::new("platform", call.platform.as_str().to_owned()));
        attributes.push(KeyValue::new("bot.endpoint", call.endpoint));
        if let Some(status) = call.status {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if let Some(error) = call.error_type {
            attributes.push(KeyValue::new("error.type", error.to_owned()));
        }
        if let Some(channel) = call.channel {
            attributes.push(KeyValue::new("bot.channel", channel.to_owned()));
        }
        self.inner
            .metrics
            .http_client_duration
            .record(call.duration.as_secs_f64(), &attributes);
    }

    /// Records how long a task waited for a database connection.
    pub fn db_pool_wait(&self, waited: Duration) {
        self.inner
            .metrics
            .db_pool_wait
            .record(waited.as_secs_f64(), &[]);
    }

    /// Counts a gateway reconnection.
    pub fn gateway_reconnect(&self, platform: &Platform, reason: &str) {
        self.inner.metrics.gateway_reconnects.add(
            1,
            &[
                KeyValue::new("platform", platform.as_str().to_owned()),
                KeyValue::new("reason", reason.to_owned()),
            ],
        );
    }

    /// Counts a set-up call an adapter made at start-up (`step`, such as Discord's
    /// `guild_commands`), as `bot.setup.steps{platform, step, outcome}` with outcome `ok` or
    /// `failed`: a failure that does not stop the bot still shows.
    pub fn setup_step(&self, platform: &Platform, step: &'static str, succeeded: bool) {
        self.inner.metrics.setup_steps.add(
            1,
            &[
                KeyValue::new("platform", platform.as_str().to_owned()),
                KeyValue::new("step", step),
                KeyValue::new("outcome", if succeeded { "ok" } else { "failed" }),
            ],
        );
    }

    /// Counts a webhook request refused before its events reached the queue.
    pub fn webhook_rejected(&self, platform: &Platform, reason: &'static str) {
        self.inner.metrics.rejected(platform, reason);
    }

    /// Pushes the current figures to push exporters (OTLP). The provider itself stops when the
    /// last clone is dropped, so `/metrics` keeps answering after a shutdown.
    pub(crate) fn flush(&self) {
        if let Err(e) = self.inner.provider.force_flush() {
            tracing::debug!(error = %e, "meter provider flush");
        }
    }
}
