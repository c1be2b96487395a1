//! The load: signed webhooks posted at a fixed rate, an open loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bot_core::Secret;
use hdrhistogram::Histogram;

use super::args::LoadArgs;
use super::tally::{Tally, micros};
use crate::load::histogram;
use crate::payload::{Platform, signed};
use crate::scenario::SECRET;

/// What the webhooks got.
#[derive(Default)]
pub(super) struct Sent {
    pub(super) next: AtomicU64,
    pub(super) ok: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) other: AtomicU64,
    pub(super) errors: AtomicU64,
}

/// Posts `args.rate` signed webhooks per second to `url` for `args.duration`, each at its own
/// time whatever the answers take (an open loop, as a platform delivers), and returns the
/// webhooks' latencies.
pub(super) async fn send(
    args: &LoadArgs,
    url: &str,
    tally: &Arc<Tally>,
    sent: &Arc<Sent>,
) -> Histogram<u64> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::from(args.connections))
        .build()
        .expect("an http client");
    let total = args.requests();
    let start = Instant::now();
    tally
        .load_started
        .store(tally.since_epoch(start), Ordering::Relaxed);
    let tasks: Vec<_> = (0..args.connections)
        .map(|_| {
            let (client, tally, sent, url) =
                (client.clone(), tally.clone(), sent.clone(), url.to_owned());
            let (rate, epr, conversations) = (
                f64::from(args.rate),
                usize::from(args.events_per_request),
                args.conversations,
            );
            // One long-lived task per load-generating connection.
            #[allow(clippy::disallowed_methods)]
            tokio::spawn(async move {
                let secret = Secret::new(SECRET);
                let mut latencies = histogram();
                loop {
                    let r = sent.next.fetch_add(1, Ordering::Relaxed);
                    if r >= total {
                        break;
                    }
                    let due = start + Duration::from_secs_f64(r as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                    let webhook = signed(Platform::Line, &secret, r, epr, conversations);
                    let at = Instant::now();
                    tally.sent_at[r as usize].store(tally.since_epoch(at) + 1, Ordering::Relaxed);
                    let response = client
                        .post(&url)
                        .header(Platform::Line.signature_header(), webhook.signature)
                        .header("content-type", "application/json")
                        .body(webhook.body)
                        .send()
                        .await;
                    let counter = match response.map(|r| r.status().as_u16()) {
                        Ok(200..=299) => {
                            latencies.saturating_record(micros(at.elapsed()).max(1));
                            &sent.ok
                        }
                        Ok(503) => &sent.refused,
                        Ok(_) => &sent.other,
                        Err(_) => &sent.errors,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                latencies
            })
        })
        .collect();
    let mut latencies = histogram();
    for task in tasks {
        if let Ok(h) = task.await {
            let _ = latencies.add(h);
        }
    }
    latencies
}
