#!/usr/bin/env bash
# Redis on 127.0.0.1:6379 (or $REDIS_PORT): returns at once when it answers, otherwise starts
# `redis-server` without persistence (installing the Debian package `redis-server` with apt-get
# first when it is absent) and waits up to 30 s. scripts/test.sh runs it for the `redis`
# feature's tests, which also start private servers of their own from the same binary (to stop
# one mid-run); they fail, never skip, without it.
#
#   ./scripts/ensure-redis.sh
set -euo pipefail
port=${REDIS_PORT:-6379}
answers() {
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}
if ! command -v redis-server >/dev/null; then
    echo "redis: installing redis-server with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
if ! command -v redis-server >/dev/null; then
    echo "redis: redis-server is still not on the PATH after installing it" >&2
    exit 1
fi
if answers; then
    exit 0
fi
# --daemonize: the server outlives this script and the shell that ran it.
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --logfile "${REDIS_LOG:-/var/log/redis-botrt.log}" >/dev/null
for waited in $(seq 1 30); do
    if answers; then
        echo "redis: ready after ${waited} s" >&2
        exit 0
    fi
    sleep 1
done
echo "redis: nothing answers on 127.0.0.1:$port after 30 s" >&2
exit 1
