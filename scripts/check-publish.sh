#!/usr/bin/env bash
# Ready to publish: `cargo package` of every library crate, each package then built from its
# tarball alone, with its default features, as a user gets it from crates.io (a warning there
# fails the check: the workspace's own builds turn on features that hide it), and the API docs
# with every warning an error (broken intra-doc links, missing docs).
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
# --allow-dirty: CI and local runs package the tree as it is, committed or not. The packages'
# builds share the workspace's target directory, so only what their features change is built.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! cargo package --allow-dirty "${args[@]}" >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
fi
if grep -q '^warning' "$log"; then
    grep -A12 '^warning' "$log" >&2
    echo "package: a package warns when built from its tarball with its default features" >&2
    exit 1
fi
echo "package: ${#LIBRARIES[@]} crates packaged, each built from its package"

RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -D warnings" cargo doc --quiet --workspace --all-features --no-deps
echo "doc: no warnings"
