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

/// The `ceiling` binary's own typed structs, for a side-by-side figure.
#[path = "../../bench/src/ceiling_types.rs"]
mod ceiling;

criterion_group!(benches, webhook);
criterion_main!(benches);
