//! The HTTP server: adapters' webhooks plus `/healthz`, `/readyz` and `/metrics`, on axum.

use std::future::Future;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use tokio::net::{TcpListener, ToSocketAddrs};
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::bot::Bot;
use crate::error::Error;
use crate::runtime::ShutdownReport;

impl Bot {
    /// The adapters' webhook routes, with the body-size limit, for mounting in your own axum app.
    ///
    /// Call [`Bot::start`] to run the supervisor and [`Bot::shutdown`] to drain it.
    pub fn webhooks(&self) -> Router {
        let mut router = Router::new();
        for adapter in &self.inner.adapters {
            if let Some(routes) = adapter.routes(self.inner.ingress.clone()) {
                router = router.merge(routes);
            }
        }
        router
            .layer(DefaultBodyLimit::max(self.inner.max_body_bytes))
            .layer(RequestBodyLimitLayer::new(self.inner.max_body_bytes))
    }

    /// The operational routes: `/healthz` (alive), `/readyz` (accepting events) and `/metrics`.
    pub fn ops_routes(&self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .with_state(self.clone())
    }

    /// Everything [`Bot::serve`] serves: webhooks, operational routes, request time-out and tracing.
    pub fn router(&self) -> Router {
        self.webhooks()
            .merge(self.ops_routes())
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                self.inner.request_timeout,
            ))
            .layer(TraceLayer::new_for_http().on_failure(on_failure))
    }

    /// Serves on `addr` until SIGTERM, ctrl-c or [`Bot::request_shutdown`], then shuts down
    /// gracefully (see [`Bot::shutdown`]) and returns the report.
    ///
    /// # Errors
    ///
    /// Fails when the address cannot be bound.
    pub async fn serve(self, addr: impl ToSocketAddrs) -> Result<ShutdownReport, Error> {
        let listener = TcpListener::bind(addr).await?;
        let requested = self.inner.shutdown_requested.clone();
        self.serve_with_shutdown(listener, async move {
            tokio::select! {
                () = termination_signal() => {}
                () = requested.cancelled() => {}
            }
        })
        .await
    }

    /// Serves on `listener` until `signal` completes or [`Bot::request_shutdown`] is called.
    ///
    /// While the supervisor drains, the server keeps answering: `/readyz` says 503 so load
    /// balancers stop sending, and webhooks answer 503 with `Retry-After` so platforms redeliver
    /// later. The listener closes once the drain is over.
    ///
    /// # Errors
    ///
    /// Fails when the server cannot run.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<ShutdownReport, Error> {
        let addr = listener.local_addr()?;
        self.start();
        let app = self.router();
        let server_stop = tokio_util::sync::CancellationToken::new();
        let stop = server_stop.clone();
        // The HTTP server itself: one long-lived task.
        #[allow(clippy::disallowed_methods)]
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        tracing::info!(%addr, "bot listening");
        let requested = self.inner.shutdown_requested.clone();
        tokio::select! {
            () = signal => {}
            () = requested.cancelled() => {}
        }
        tracing::info!("shutdown requested");
        let report = self.shutdown().await;
        server_stop.cancel();
        match server.await {
            Ok(Ok(())) => Ok(report),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(Error::new(crate::ErrorKind::Other, "server task failed").with_source(e)),
        }
    }
}

async fn readyz(State(bot): State<Bot>) -> Response {
    if bot.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        // Names the components that are stuck (a Discord shard whose queue refuses events).
        let components: String = (bot.ingress().readiness().not_ready().iter())
            .map(|(component, reason)| format!("\n{component}: {reason}"))
            .collect();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready{components}"),
        )
            .into_response()
    }
}

async fn metrics(State(bot): State<Bot>) -> Response {
    #[cfg(feature = "prometheus")]
    {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            bot.telemetry().render_prometheus(),
        )
            .into_response()
    }
    #[cfg(not(feature = "prometheus"))]
    {
        let _ = bot;
        (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain")],
            "the prometheus feature is off",
        )
            .into_response()
    }
}

/// Completes on SIGTERM or ctrl-c.
async fn termination_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Logs a failed request: an error, except a 503 (a full queue or a stopping bot answers it by
/// design, with `Retry-After`, and counts it in `bot.webhook.rejected`), logged at debug so that
/// an overloaded bot does not spend its time logging each refusal.
fn on_failure(
    class: ServerErrorsFailureClass,
    latency: std::time::Duration,
    _span: &tracing::Span,
) {
    match class {
        ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::debug!(?latency, "request refused with 503");
        }
        class => tracing::error!(classification = %class, ?latency, "request failed"),
    }
}
