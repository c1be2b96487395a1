#!/usr/bin/env bash
# Re-runs every benchmark of BENCHMARKS.md and prints their figures.
#
#   ./scripts/bench.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

criterion_lines() { grep -E '^[a-z_]+/|time:|thrpt:' || true; }

echo "== bot-core: supervisor (criterion)"
cargo bench -p bot-core --bench supervisor 2>&1 | criterion_lines
echo "== bot-core: shared rate limits, acquire with a warm token cache (criterion)"
cargo bench -p bot-core --bench ratelimit 2>&1 | grep -E '^ratelimit_|time:|thrpt:|reservations' || true
echo "== bot-core: the PostgreSQL queue (needs the server of DATABASE_URL, default 127.0.0.1:5432)"
cargo bench -p bot-core --features postgres --bench pg_queue 2>&1 | grep -E '^pg_|time:|thrpt:|p50' || true
echo "== bot-line: webhook verification and parsing (criterion)"
cargo bench -p bot-line --bench webhook 2>&1 | criterion_lines
echo "== bot-line: the echo path over HTTP, Reply API limit lifted"
cargo bench -p bot-line --bench echo_load 2>&1 | grep -v '^ *Compiling\|Finished\|Running'
echo "== bot-line: the echo path with LINE's own 2,000 replies/s"
cargo bench -p bot-line --bench echo_load -- --reply-per-second 2000 --webhooks 3000 2>&1 | grep -v '^ *Compiling\|Finished\|Running'
echo "== bot-discord: gateway dispatches and idle shards"
cargo bench -p bot-discord --bench gateway 2>&1 | grep -v '^ *Compiling\|Finished\|Running'
echo "== webhook-noop: noop-bot side by side with the hand-written ceiling, LINE then Messenger (records their rows)"
cargo build --release -q -p noop-bot -p bench
target/release/botload scenario webhook-noop --no-progress --against ceiling --record BENCHMARKS.md
target/release/botload scenario webhook-noop --no-progress --against ceiling --platform messenger --record BENCHMARKS.md
echo "== gateway-consume: one shard, 200,000 MESSAGE_CREATE, noop-bot against twilight-gateway 0.18 (records its row)"
target/release/botload scenario gateway-consume --record BENCHMARKS.md
echo "== slow-api: handlers awaiting a 2-3 s API call, 50,000 in flight (records its row)"
cargo build --release -q -p bench
target/release/botload scenario slow-api --record BENCHMARKS.md 2>&1 | grep -v ' WARN \| ERROR '
echo "== db-pool: the same plus a query per event through a pool of 16 (needs PostgreSQL at DATABASE_URL)"
target/release/botload scenario db-pool --record BENCHMARKS.md 2>&1 | grep -v ' WARN \| ERROR '
echo "== queue-drain: queue-worker processes drain the PostgreSQL queue (needs the server of DATABASE_URL)"
cargo build --release -q -p queue-worker -p echo-bot -p bench
target/release/botload scenario queue-drain --no-progress --record BENCHMARKS.md
echo "== gateway-echo: Discord dispatches through the fake gateway to echo-bot"
target/release/botload scenario gateway-echo --no-progress --record BENCHMARKS.md
echo "== push-burst: botload's fake LINE API, pushes from the broadcast example"
cargo build --release -q -p broadcast -p bench
target/release/botload scenario push-burst --record BENCHMARKS.md
echo "== ws-idle: 19,000 idle web chat sockets on echo-bot, 30 s heartbeats (records its row)"
cargo build --release -q -p echo-bot -p bench
target/release/botload scenario ws-idle --record BENCHMARKS.md
echo "== ws-chat: messages echoed through echo-bot's handler over web chat sockets (records its row)"
target/release/botload scenario ws-chat --record BENCHMARKS.md
if command -v wrk >/dev/null; then
  echo "== noop-bot under wrk (signed bodies from botload bodies; see BENCHMARKS.md)"
  cargo build --release -q -p noop-bot -p bench
  target/release/botload bodies --secret botload-secret --out "${TMPDIR:-/tmp}/botload-bodies.txt"
  BOT_ADDR=127.0.0.1:18080 RUST_LOG=warn LINE_CHANNEL_SECRET=botload-secret \
    LINE_CHANNEL_ACCESS_TOKEN=botload-token LINE_API_BASE=http://127.0.0.1:9 target/release/noop-bot &
  bot=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/readyz >/dev/null && break; sleep 0.1; done
  BODIES="${TMPDIR:-/tmp}/botload-bodies.txt" wrk -t1 -c64 -d15s -s bench/wrk/webhook.lua http://127.0.0.1:18080
  kill "$bot"; wait "$bot" 2>/dev/null || true
else
  echo "== wrk not installed (apt-get install wrk): the wrk run of noop-bot is skipped"
fi
