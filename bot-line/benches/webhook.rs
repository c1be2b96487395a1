//! CPU cost of a LINE webhook request before it reaches the queue: signature verification, and
//! parsing and mapping of its events.
//!
//! Run with: cargo bench -p bot-line --bench webhook

use bot_core::Secret;
use bot_line::event::{events_from_body, events_from_bytes};
use bot_line::testing::WebhookBuilder;
use bot_line::webhook::{sign, verify};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn webhook(c: &mut Criterion) {
    let secret = Secret::new("bench-secret");
    let mut builder = WebhookBuilder::new();
    for i in 0..10 {
        builder = builder.text(&format!("U{i:032x}"), "hello, bot");
    }
    let body = builder.body();
    let signature = sign(&secret, &body);

    let mut group = c.benchmark_group("line_webhook_10_events");
    group.throughput(Throughput::Elements(10));
    group.bench_function("verify", |b| {
        b.iter(|| verify(&secret, &body, signature.as_bytes()).expect("valid"));
    });
    group.bench_function("parse_and_map", |b| {
        b.iter(|| events_from_body(&body).expect("a webhook"));
    });
    // What the webhook does: the body as received, shared by the events, not copied.
    group.bench_function("parse_and_map_shared", |b| {
        b.iter(|| events_from_bytes(&body).expect("a webhook"));
    });
    // What the `ceiling` binary does with the same body: serde into owned typed structs.
    group.bench_function("ceiling_typed_parse", |b| {
        b.iter(|| serde_json::from_slice::<ceiling::LineBody>(&body).expect("a webhook"));
    });
    group.bench_function("verify_parse_and_map", |b| {
        b.iter(|| {
            verify(&secret, &body, signature.as_bytes()).expect("valid");
            events_from_body(&body).expect("a webhook")
        });
    });
    group.finish();
}

/// The `ceiling` binary's LINE types (`bench/src/bin/ceiling.rs`), for a side-by-side figure.
#[allow(dead_code)]
mod ceiling {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    pub(crate) struct LineBody {
        destination: String,
        events: Vec<LineEvent>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct LineEvent {
        #[serde(rename = "type")]
        kind: String,
        mode: Option<String>,
        timestamp: u64,
        source: Option<LineSource>,
        reply_token: Option<String>,
        webhook_event_id: String,
        delivery_context: LineDeliveryContext,
        message: Option<LineMessage>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct LineSource {
        #[serde(rename = "type")]
        kind: String,
        user_id: Option<String>,
        group_id: Option<String>,
        room_id: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct LineDeliveryContext {
        is_redelivery: bool,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct LineMessage {
        id: String,
        #[serde(rename = "type")]
        kind: String,
        text: Option<String>,
        quote_token: Option<String>,
    }
}

criterion_group!(benches, webhook);
criterion_main!(benches);
