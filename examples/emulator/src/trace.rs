//! [`TraceLayer`]: records each handler attempt (the runtime's `bot.event` span) with the log
//! lines and spans inside it, for the page's trace panel.

use std::fmt::{self, Write as _};
use std::time::Instant;

use bot_core::telemetry::SECRET_SAFE_CAPS;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::journal::Journal;

/// Crates whose DEBUG lines say nothing about the handler (connection pooling, TLS).
const QUIET_TARGETS: &[&str] = &["hyper", "hyper_util", "reqwest", "h2", "rustls", "tower"];

/// The span the runtime opens around each handler attempt.
pub const EVENT_SPAN: &str = "bot.event";

/// A `tracing` layer feeding a [`Journal`]; made by [`Journal::trace_layer`].
///
/// It records DEBUG and above, the HTTP and TLS stacks' chatter at INFO and above only, and
/// never what [`bot_core::telemetry::SECRET_SAFE_CAPS`] caps, whatever the rest of the
/// subscriber lets through.
#[derive(Debug)]
pub struct TraceLayer {
    journal: Journal,
    caps: Targets,
}

/// Kept in a `bot.event` span's extensions: its trace in the journal.
struct Traced {
    id: u64,
    started: Instant,
}

impl TraceLayer {
    pub(crate) fn new(journal: Journal) -> Self {
        Self {
            journal,
            caps: Targets::new()
                .with_default(LevelFilter::DEBUG)
                .with_targets(QUIET_TARGETS.iter().map(|t| (*t, LevelFilter::INFO)))
                .with_targets(SECRET_SAFE_CAPS.iter().copied()),
        }
    }

    fn records(&self, meta: &Metadata<'_>) -> bool {
        self.caps.would_enable(meta.target(), meta.level())
    }
}

/// Collects a span's or event's fields as `name = value` pairs.
#[derive(Default)]
struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl Fields {
    /// `message key=value ...`, the message first.
    fn line(self) -> String {
        let mut line = String::new();
        for (name, value) in &self.0 {
            if name == "message" {
                line.insert_str(0, value);
            }
        }
        for (name, value) in self.0 {
            if name != "message" {
                let _ = write!(line, " {name}={value}");
            }
        }
        line.trim_start().to_owned()
    }
}

impl<S> Layer<S> for TraceLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if attrs.metadata().name() == EVENT_SPAN {
            let trace = self.journal.open_trace(fields.0);
            span.extensions_mut().insert(Traced {
                id: trace,
                started: Instant::now(),
            });
            return;
        }
        // A span inside an attempt (an outbound call, the user's own) is a line of its trace.
        if !self.records(attrs.metadata()) {
            return;
        }
        let traced = span
            .scope()
            .skip(1)
            .find_map(|s| s.extensions().get::<Traced>().map(|t| t.id));
        if let Some(trace) = traced {
            let line = format!("span {} {}", attrs.metadata().name(), fields.line());
            self.journal.trace_line(trace, line.trim_end().to_owned());
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if !self.records(event.metadata()) {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        let traced = scope
            .into_iter()
            .find_map(|s| s.extensions().get::<Traced>().map(|t| t.id));
        if let Some(trace) = traced {
            let mut fields = Fields::default();
            event.record(&mut fields);
            let meta = event.metadata();
            let line = format!("{} {}: {}", meta.level(), meta.target(), fields.line());
            self.journal.trace_line(trace, line);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        if let Some(traced) = span.extensions().get::<Traced>() {
            self.journal
                .close_trace(traced.id, traced.started.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[test]
    fn an_attempt_is_recorded_with_its_lines_and_spans_and_nothing_outside_it() {
        let journal = Journal::new();
        let subscriber = tracing_subscriber::registry().with(journal.trace_layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside any attempt");
            let attempt =
                tracing::info_span!(EVENT_SPAN, messaging.message.id = "ev-1", bot.attempt = 1);
            attempt.in_scope(|| {
                tracing::info!(user = "U1", "looking the user up");
                tracing::trace!("too fine to keep");
                tracing::debug!(target: "hyper_util::client", "pooling idle connection");
                tracing::info_span!("outbound", endpoint = "reply").in_scope(|| {
                    tracing::warn!("slow answer");
                });
            });
        });
        let traces = journal.traces();
        assert_eq!(traces.len(), 1);
        let trace = &traces[0];
        assert!(
            trace
                .fields
                .contains(&("messaging.message.id".into(), "ev-1".into()))
        );
        assert_eq!(
            trace.lines,
            [
                "INFO emulator::trace::tests: looking the user up user=U1",
                "span outbound endpoint=reply",
                "WARN emulator::trace::tests: slow answer",
            ]
        );
        assert!(trace.duration_ms.is_some(), "closed with its duration");
    }
}
