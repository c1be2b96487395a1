//! CPU cost of a Messenger webhook request before it reaches the queue: parsing and mapping of
//! its events, next to what the `ceiling` binary (`bench/src/bin/ceiling.rs`) does with the
//! same body, serde into owned typed structs.
//!
//! Run with: cargo bench -p bot-messenger --bench webhook

use std::fmt::Write as _;

use bot_messenger::event::parse_bytes;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A body as `botload` sends it: one page entry of ten text messages from ten users.
fn body() -> Bytes {
    let mut body = String::from(
        r#"{"object":"page","entry":[{"id":"100000000000001","time":1700000000000,"messaging":["#,
    );
    for n in 0..10u64 {
        if n > 0 {
            body.push(',');
        }
        let _ = write!(
            body,
            r#"{{"sender":{{"id":"{psid}"}},"recipient":{{"id":"100000000000001"}},"timestamp":{ts},"message":{{"mid":"m_load_{n}","text":"hello, bot"}}}}"#,
            psid = 2_000_000_000_000_000_u64 + n,
            ts = 1_700_000_000_000_u64 + n,
        );
    }
    body.push_str("]}]}");
    Bytes::from(body)
}

fn webhook(c: &mut Criterion) {
    let body = body();
    let mut group = c.benchmark_group("messenger_webhook_10_events");
    group.throughput(Throughput::Elements(10));
    group.bench_function("parse_and_map_shared", |b| {
        b.iter(|| parse_bytes(&body).expect("a webhook"));
    });
    group.bench_function("ceiling_typed_parse", |b| {
        b.iter(|| serde_json::from_slice::<ceiling::MessengerBody>(&body).expect("a webhook"));
    });
    group.finish();
}

/// The `ceiling` binary's own typed structs, for a side-by-side figure.
#[path = "../../bench/src/ceiling_types.rs"]
mod ceiling;

criterion_group!(benches, webhook);
criterion_main!(benches);
