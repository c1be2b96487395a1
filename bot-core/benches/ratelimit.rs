//! The cost of `SharedLimit::acquire` with a warm token cache: the store (in memory here) is
//! asked once per batch, every other call takes a token from the cache.
//!
//! Run with: cargo bench -p bot-core --bench ratelimit
//!
//! Time is paused (tokio's test clock): a call that waits for its slot costs no wall-clock time,
//! so the figure is the limiter's own CPU per call, its share of the reservations included, at
//! LINE's 2,000 calls a second (19 tokens a reservation) and at 100,000 (970), by one caller
//! and by 64 at once.

use bot_core::ratelimit::{MemoryRateStore, SharedLimits};
use criterion::{Criterion, Throughput, criterion_group};

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("ratelimit_acquire");
    group.throughput(Throughput::Elements(1));
    for per_second in [2_000, 100_000] {
        // Made on the runtime, so that the store's clock is its paused one.
        let limits = runtime.block_on(async { SharedLimits::new(MemoryRateStore::new()) });
        let limit = limits
            .limit("bench:channel:push", per_second)
            .expect("valid limit");
        group.bench_function(format!("{per_second}_per_second"), |b| {
            b.to_async(&runtime).iter(|| limit.acquire());
        });
        let stats = limits.stats();
        println!(
            "{per_second}/s: {} calls, {} reservations ({:.1} calls each)",
            stats.acquired,
            stats.reservations,
            stats.acquired as f64 / stats.reservations.max(1) as f64
        );
    }
    // 64 callers at once, as the senders of an outbox wait: most of them wait in line for the
    // next batch, each served in turn.
    group.throughput(Throughput::Elements(64));
    for per_second in [2_000, 100_000] {
        let limits = runtime.block_on(async { SharedLimits::new(MemoryRateStore::new()) });
        let limit = limits
            .limit("bench:channel:push", per_second)
            .expect("valid limit");
        group.bench_function(format!("{per_second}_per_second_64_callers"), |b| {
            b.to_async(&runtime)
                .iter(|| futures::future::join_all((0..64).map(|_| limit.acquire())));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
