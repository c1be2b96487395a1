#!/usr/bin/env bash
# NATS with JetStream on 127.0.0.1:4222 (or $NATS_PORT): returns at once when it answers, otherwise starts
# `nats-server -js` (installing the Debian package `nats-server` with apt-get first when it is
# absent) with its store in /var/lib/nats-server (or $NATS_STORE_DIR) and waits up to 30 s.
# scripts/test.sh runs it for the `nats` feature's tests; `botload scenario queue-drain
# --backend jetstream` needs it too.
#
#   ./scripts/ensure-nats.sh
set -euo pipefail
port=${NATS_PORT:-4222}
answers() {
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}
if answers; then
    exit 0
fi
if ! command -v nats-server >/dev/null && [[ ! -x /usr/sbin/nats-server ]]; then
    echo "nats: installing nats-server with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
fi
bin=$(command -v nats-server || echo /usr/sbin/nats-server)
store=${NATS_STORE_DIR:-/var/lib/nats-server}
log=${NATS_LOG:-/var/log/nats-server.log}
mkdir -p "$store"
# setsid: the server outlives this script and the shell that ran it.
setsid "$bin" -a 127.0.0.1 -p "$port" -js -sd "$store" -l "$log" </dev/null >/dev/null 2>&1 &
for waited in $(seq 1 30); do
    if answers; then
        echo "nats: ready after ${waited} s" >&2
        exit 0
    fi
    sleep 1
done
echo "nats: nothing answers on 127.0.0.1:$port after 30 s (log: $log)" >&2
exit 1
