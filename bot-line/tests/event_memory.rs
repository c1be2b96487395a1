//! What one LINE text event costs in memory: the size of [`Event`] (a handle of three words) and
//! of its [`EventData`] in the block the body's events share, and the heap allocations and bytes
//! of parsing and mapping a webhook body of 10 text events (a counting allocator, dhat).
//!
//! Run with: cargo test -p bot-line --test event_memory

use bot_core::{Event, EventData};
use bot_line::event::{events_from_body, events_from_bytes};
use bot_line::testing::WebhookBuilder;
use bytes::Bytes;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn body(events: usize) -> Bytes {
    let mut builder = WebhookBuilder::new();
    for i in 0..events {
        builder = builder.text(&format!("U{i:032x}"), "hello, bot");
    }
    builder.body()
}

/// Allocations, bytes allocated and bytes still held after `parse`.
fn measure(parse: impl FnOnce() -> Vec<Event>) -> (u64, u64, usize, Vec<Event>) {
    let before = dhat::HeapStats::get();
    let events = parse();
    let after = dhat::HeapStats::get();
    (
        after.total_blocks - before.total_blocks,
        after.total_bytes - before.total_bytes,
        after.curr_bytes - before.curr_bytes,
        events,
    )
}

fn main() {
    let _profiler = dhat::Profiler::builder()
        .testing()
        .file_name(concat!(env!("CARGO_TARGET_TMPDIR"), "/dhat-heap.json"))
        .build();
    let body = body(10);
    // An event is a handle: moving it moves three words (its block and its index in it),
    // whatever its data.
    assert_eq!(
        std::mem::size_of::<Event>(),
        3 * std::mem::size_of::<usize>()
    );
    // The events of one body share one block: their data and the block's two counts, allocated
    // once per body and shared by every clone (queue, retry, handler).
    let data = std::mem::size_of::<EventData>();
    let block = 2 * std::mem::size_of::<usize>() + 10 * data;
    println!(
        "size_of::<Event>() = {} bytes, the block of 10 events {block} bytes (size_of::<EventData>() = {data})",
        std::mem::size_of::<Event>(),
    );

    let (blocks, bytes, held, events) = measure(|| events_from_body(&body).expect("a webhook"));
    assert!(events.iter().all(|e| e.shares_block_with(&events[0])));
    println!(
        "events_from_body, 10 text events, {} bytes: {blocks} allocations, {bytes} bytes \
         allocated, {held} bytes held (the events' Vec of {} bytes, a copy of the body, the texts)",
        body.len(),
        events.capacity() * std::mem::size_of::<Event>(),
    );
    drop(events);

    let (blocks, bytes, held, events) = measure(|| events_from_bytes(&body).expect("a webhook"));
    assert_eq!(events.len(), 10);
    assert!(
        events.iter().all(|e| e.shares_block_with(&events[0])),
        "the body's events are not in one block"
    );
    let vec = events.capacity() * std::mem::size_of::<Event>();
    println!(
        "events_from_bytes (the webhook's path), 10 text events: {blocks} allocations, {bytes} \
         bytes allocated, {held} bytes held, {} per event beyond the Vec and the shared body",
        (held - vec) / 10
    );
    // The data mapped (a `Vec`, freed), the block they are moved into, the `Vec` of the events,
    // and per event its text: no copy of the payload, no id allocated, no block per event.
    dhat::assert!(blocks <= 3 + 10, "{blocks} allocations");
    dhat::assert!(held - vec <= block + 10 * 32, "{held} bytes held");
}
