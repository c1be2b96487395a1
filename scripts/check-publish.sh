#!/usr/bin/env bash
# Ready to publish: `cargo package` of every library crate (packaging only: the workspace's own
# build and tests verify the code, and verifying each package would compile everything again)
# and the API docs with every warning an error (broken intra-doc links, missing docs).
#
#   ./scripts/check-publish.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The crates published to crates.io: every workspace member without `publish = false`.
LIBRARIES=(bot-core bot-line bot-messenger bot-discord bot-webchat)

args=()
for crate in "${LIBRARIES[@]}"; do
    args+=(-p "$crate")
done
# --allow-dirty: CI and local runs package the tree as it is, committed or not.
cargo package --quiet --no-verify --allow-dirty "${args[@]}"
echo "package: ${#LIBRARIES[@]} crates packaged"

RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -D warnings" cargo doc --quiet --workspace --all-features --no-deps
echo "doc: no warnings"
