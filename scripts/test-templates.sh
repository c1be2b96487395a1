#!/usr/bin/env bash
# Every template in templates/ generated, built and tested as a user would: the generated
# README's two commands, `cargo test` and `cargo run`, offline against this workspace's crates.
#
#   ./scripts/test-templates.sh
#
# Each project comes from `cargo generate` when it is installed, from
# scripts/generate-template.sh otherwise. The generated projects depend on the crates by
# version; a `[patch.crates-io]` points those at the workspace. The three are built as one
# workspace, in this repository's target directory, with its Cargo.lock and profiles, so that
# the dependencies the workspace's tests built are reused rather than compiled again.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

TEMPLATES=(line-bot discord-bot multi-platform)
CRATES=(bot-core bot-line bot-messenger bot-discord)

work=$(mktemp -d)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

version=$(sed -nE '/^\[workspace.package\]/,/^\[/ s/^version = "(.*)"/\1/p' Cargo.toml)
members=()
for template in "${TEMPLATES[@]}"; do
    name="my-$template"
    if command -v cargo-generate >/dev/null; then
        cargo generate --path "templates/$template" --name "$name" --destination "$work" \
            --vcs none --silent >/dev/null
    else
        scripts/generate-template.sh "$template" "$name" "$work" >/dev/null
    fi
    # The crates by the workspace's version, so that the project builds against what is
    # published with it.
    while IFS= read -r line; do
        if [[ $line != *"\"$version\""* ]]; then
            echo "templates/$template/Cargo.toml: $line: not version $version" >&2
            exit 1
        fi
    done < <(grep -E '^bot-[a-z]+ = ' "$work/$name/Cargo.toml")
    members+=("\"$name\"")
done
# The features the workspace's build gives every shared package (scripts/lib/align-features.py).
mkdir -p "$work/feature-alignment"
echo '//! Only its dependencies matter: the features they are built with.' >"$work/feature-alignment/lib.rs"
printf '[package]\nname = "feature-alignment"\nversion = "0.0.0"\nedition = "2024"\n[lib]\npath = "lib.rs"\n' \
    >"$work/feature-alignment/Cargo.toml"
members+=('"feature-alignment"')

{
    echo '[workspace]'
    echo 'resolver = "3"'
    echo "members = [$(IFS=,; echo "${members[*]}")]"
    echo
    echo '[patch.crates-io]'
    for crate in "${CRATES[@]}"; do
        echo "$crate = { path = \"$root/$crate\" }"
    done
    echo
    # The workspace's profiles: a different profile would build every dependency again.
    sed -n '/^\[profile/,$p' Cargo.toml
} >"$work/Cargo.toml"
cp Cargo.lock "$work/Cargo.lock"
python3 scripts/lib/align-features.py "$root" "$work"

export CARGO_TARGET_DIR="$root/target"
# The README's test command, for the three at once; the generated code formatted and free of
# clippy's warnings, as a user's CI would check it.
(cd "$work" && cargo test --offline --workspace)
# The multi-platform project's test of the durable queue, which its README runs with a database.
(cd "$work" && DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}" \
    cargo test --offline -p my-multi-platform -- --ignored)
(cd "$work" && cargo fmt --all --check)
(cd "$work" && cargo clippy --offline --workspace --all-targets --quiet -- -D warnings)

# The README's run command: each bot starts with its platform configured (against an address
# where nothing listens: nothing is sent), answers /readyz, and stops cleanly on SIGTERM.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
run_check() {
    local name=$1 port status
    shift
    port=$(free_port)
    env -i PATH="$PATH" BOT_ADDR="127.0.0.1:$port" RUST_LOG=warn "$@" \
        "$CARGO_TARGET_DIR/debug/$name" &
    pids+=($!)
    local pid=$! deadline=$((SECONDS + 60))
    until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" || true
            echo "$name: exited before it was ready" >&2
            return 1
        fi
        if ((SECONDS > deadline)); then
            echo "$name: not ready within 60 s" >&2
            return 1
        fi
        sleep 0.1
    done
    kill -TERM "$pid"
    status=0
    wait "$pid" || status=$?
    if ((status != 0)); then
        echo "$name: exited with $status after SIGTERM" >&2
        return 1
    fi
    echo "templates: $name ran, was ready and stopped cleanly"
}
nowhere=http://127.0.0.1:9
run_check my-line-bot LINE_CHANNEL_SECRET=s LINE_CHANNEL_ACCESS_TOKEN=t LINE_API_BASE=$nowhere
# Interactions only: the gateway would need Discord.
run_check my-discord-bot DISCORD_TOKEN=t DISCORD_APPLICATION_ID=1 DISCORD_API_BASE=$nowhere \
    DISCORD_PUBLIC_KEY=d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a \
    DISCORD_GATEWAY_URL=ws://127.0.0.1:9 DISCORD_DEV_GUILD_ID=2
run_check my-multi-platform LINE_CHANNEL_SECRET=s LINE_CHANNEL_ACCESS_TOKEN=t \
    LINE_API_BASE=$nowhere DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
echo "templates: ${#TEMPLATES[@]} generated, tested and run"
