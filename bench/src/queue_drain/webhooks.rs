//! `queue-drain --through-webhooks`: end to end, webhook to handler through the durable queue.
//! Instead of loading the events beforehand, botload posts them to the workers' `POST /events`
//! (a JSON webhook that answers 200 once its events are committed), spread over the workers
//! in turn, `--events-per-request` per request and `--connections` requests at a time, while
//! the same workers run them; the clock runs from the first request to the queue being empty
//! after the last one was answered.

use std::time::Duration;

use bot_core::Event;
use futures::{StreamExt as _, TryStreamExt as _};

use super::DEMO;

/// How long one request may take before the run fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The JSON bodies: `events` events over `conversations` conversations, `per_request` each.
pub(super) fn bodies(events: u64, conversations: u64, per_request: u64) -> Vec<Vec<u8>> {
    let per_request = per_request.max(1);
    (0..events.div_ceil(per_request))
        .map(|r| {
            let batch: Vec<Event> = (r * per_request..((r + 1) * per_request).min(events))
                .map(|i| {
                    Event::text(DEMO, format!("conv-{}", i % conversations), "hi")
                        .with_id(format!("drain-{i}"))
                })
                .collect();
            serde_json::to_vec(&batch).unwrap_or_default()
        })
        .collect()
}

/// Posts every body, to `bases` in turn, `connections` at a time; fails on anything but 200.
pub(super) async fn post_all(
    bases: &[String],
    bodies: Vec<Vec<u8>>,
    connections: usize,
) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| format!("the HTTP client: {e}"))?;
    futures::stream::iter(bodies.into_iter().enumerate())
        .map(|(i, body)| {
            let url = format!("{}/events", bases[i % bases.len()]);
            let client = client.clone();
            async move {
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| format!("POST {url}: {e}"))?;
                match response.status().as_u16() {
                    200 => Ok(()),
                    status => Err(format!("POST {url}: {status}")),
                }
            }
        })
        .buffer_unordered(connections.max(1))
        .try_collect::<()>()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_every_event_once() {
        let bodies = bodies(25, 4, 10);
        assert_eq!(bodies.len(), 3);
        let events: Vec<Event> = bodies
            .iter()
            .flat_map(|b| serde_json::from_slice::<Vec<Event>>(b).unwrap())
            .collect();
        assert_eq!(events.len(), 25);
        assert_eq!(events[24].id.as_str(), "drain-24");
        assert_eq!(events[5].conversation.as_str(), "conv-1");
    }
}
