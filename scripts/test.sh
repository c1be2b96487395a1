#!/usr/bin/env bash
# The project's one test command: every test and doc test of the workspace, the book (its code
# includes and links checked, then built with mdBook), the metric names of the code, the book and
# deploy/'s dashboard and alerts checked against each other, the templates (generated, tested and run)
# and the library crates' packaging and docs.
#
#   ./scripts/test.sh
#
# It builds once (the dev profile, which tests, doc tests and `cargo clippy` share) and needs no
# network besides crates.io and no configuration.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Every `{{#include path:anchor}}` in the book must name an existing file that has the anchor, so
# that the book's code keeps coming from files the build compiles.
check_book_includes() {
    local failures=0 includes=0 hit file rest line spec path anchor target
    while IFS= read -r hit; do
        file=${hit%%:*}
        rest=${hit#*:}
        line=${rest%%:*}
        spec=${rest#*:}
        spec=${spec#\{\{#*include }
        spec=${spec%\}\}}
        spec=${spec//[[:space:]]/}
        path=${spec%%:*}
        anchor=""
        if [[ $spec == *:* ]]; then
            anchor=${spec#*:}
        fi
        target="$(dirname "$file")/$path"
        includes=$((includes + 1))
        if [[ ! -f $target ]]; then
            echo "book: $file:$line: $path does not exist" >&2
            failures=$((failures + 1))
        elif [[ -n $anchor && ! $anchor =~ ^[0-9:]*$ ]]; then
            # mdBook matches `ANCHOR: name` and `ANCHOR_END: name` as whole words.
            if ! grep -Eq "ANCHOR:[[:space:]]*${anchor}([^A-Za-z0-9_-]|$)" "$target"; then
                echo "book: $file:$line: $path has no 'ANCHOR: $anchor'" >&2
                failures=$((failures + 1))
            elif ! grep -Eq "ANCHOR_END:[[:space:]]*${anchor}([^A-Za-z0-9_-]|$)" "$target"; then
                echo "book: $file:$line: $path has no 'ANCHOR_END: $anchor'" >&2
                failures=$((failures + 1))
            fi
        fi
    done < <(grep -rnoE '\{\{#(rustdoc_)?include [^}]+\}\}' book/src --include='*.md' || true)
    if ((failures > 0)); then
        echo "book: $failures of $includes includes do not resolve" >&2
        return 1
    fi
    echo "book: all $includes includes resolve"
}

# PostgreSQL on 127.0.0.1:5432, started (or installed) when absent, by scripts/ensure-postgres.sh.
# The `postgres` feature's tests (PgQueue, PgStateStore) need it: .ci/needs-postgres turns this on;
# BOT_TEST_POSTGRES=1 turns it on for one run. Those tests fail, never skip, when the database
# cannot be reached.
ensure_postgres() {
    "$(dirname "${BASH_SOURCE[0]}")/ensure-postgres.sh"
}

# NATS with JetStream on 127.0.0.1:4222, started (or installed) when absent, by
# scripts/ensure-nats.sh. The `nats` feature's tests (JetStreamQueue) need it: .ci/needs-nats
# turns this on; BOT_TEST_NATS=1 turns it on for one run. Those tests fail, never skip, when the
# server cannot be reached. (The restart test runs a private nats-server of its own.)
ensure_nats() {
    "$(dirname "${BASH_SOURCE[0]}")/ensure-nats.sh"
}

# Redis on 127.0.0.1:6379, started (or installed) when absent, by scripts/ensure-redis.sh. The
# `redis` feature's tests (shared rate limits) need its binary: they start private servers of
# their own, to stop one mid-run. .ci/needs-redis turns this on; BOT_TEST_REDIS=1 turns it on for
# one run. Those tests fail, never skip, without it.
ensure_redis() {
    "$(dirname "${BASH_SOURCE[0]}")/ensure-redis.sh"
}

check_book_includes
# Every relative link of the book points at a page, and every #anchor at one of its headings.
"$(dirname "${BASH_SOURCE[0]}")/check-book-links.sh"
# Metric names agree between the code, the book, and the dashboard and alerts in deploy/.
python3 "$(dirname "${BASH_SOURCE[0]}")/check-metric-names.py"
# The book builds with the pinned mdBook (installed into ~/.cargo/bin when missing).
"$(dirname "${BASH_SOURCE[0]}")/ensure-mdbook.sh"
mdbook build book   # into book/book, which git ignores

if [[ ${BOT_TEST_POSTGRES:-0} == 1 || -e .ci/needs-postgres ]]; then
    ensure_postgres
    export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
fi

if [[ ${BOT_TEST_NATS:-0} == 1 || -e .ci/needs-nats ]]; then
    ensure_nats
    export NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
fi

if [[ ${BOT_TEST_REDIS:-0} == 1 || -e .ci/needs-redis ]]; then
    ensure_redis
fi

# Headless Chromium for the web chat widget's browser test (bot-webchat/tests/browser.rs), which
# fails, never skips, without it: .ci/needs-chromium or BOT_TEST_BROWSER=1 installs it when absent.
if [[ ${BOT_TEST_BROWSER:-0} == 1 || -e .ci/needs-chromium ]]; then
    "$(dirname "${BASH_SOURCE[0]}")/ensure-chromium.sh"
fi

# cargo prints one "test result" line per test binary; the last one may well be a crate without
# doc tests, so close with the sum of them all.
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Every feature, so that the PostgreSQL backend and its tests are built and run too.
cargo test --workspace --all-targets --all-features --no-run
cargo test --workspace --all-targets --all-features 2>&1 | tee -a "$log"
cargo test --workspace --doc --all-features 2>&1 | tee -a "$log"

# Each template generated, tested and run against the workspace's crates, in the same target
# directory; then `cargo package` and `cargo doc -D warnings` of the library crates.
"$(dirname "${BASH_SOURCE[0]}")/test-templates.sh" 2>&1 | tee -a "$log"
"$(dirname "${BASH_SOURCE[0]}")/check-publish.sh"

total() {
    sed -nE "s/^test result: .* ([0-9]+) $1;.*/\1/p" "$log" | awk '{ sum += $1 } END { print sum + 0 }'
}
passed=$(total passed)
failed=$(total failed)
if ((passed == 0)); then
    echo "no test ran" >&2
    exit 1
fi
echo "$passed passed, $failed failed"
