#!/usr/bin/env bash
# mdBook for building the book (scripts/test.sh): returns at once when the pinned version is on
# the PATH, otherwise installs it from crates.io into ~/.cargo/bin, where it stays for later runs.
# Without the `serve` and `watch` features it builds in about 3 minutes of CPU (10 minutes of
# wall time on a busy 2-core machine).
#
#   ./scripts/ensure-mdbook.sh
set -euo pipefail
MDBOOK_VERSION=0.5.4
if command -v mdbook >/dev/null && [[ $(mdbook --version) == "mdbook v$MDBOOK_VERSION" ]]; then
    exit 0
fi
echo "mdbook: installing $MDBOOK_VERSION with cargo install" >&2
cargo install --locked --quiet mdbook --version "$MDBOOK_VERSION" \
    --no-default-features --features search
command -v mdbook >/dev/null
