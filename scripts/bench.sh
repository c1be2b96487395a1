#!/usr/bin/env bash
# Re-runs every benchmark of BENCHMARKS.md and prints criterion's throughput lines.
#
#   ./scripts/bench.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo bench -p bot-core --bench supervisor 2>&1 | tee /dev/stderr | grep -E '^(supervisor|memory_queue)/|thrpt' || true
# The PostgreSQL queue (needs the server of DATABASE_URL, default 127.0.0.1:5432).
cargo bench -p bot-core --features postgres --bench pg_queue 2>&1 | tee /dev/stderr | grep -E '^pg_|thrpt|p50' || true
