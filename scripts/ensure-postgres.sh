#!/usr/bin/env bash
# PostgreSQL on 127.0.0.1:5432: returns at once when it answers, otherwise starts the local cluster
# (installing PostgreSQL with apt-get first when it is absent) and waits up to 30 s for it.
# scripts/test.sh runs it for the `postgres` feature's tests; the PostgreSQL scenarios of botload
# (db-pool, queue-drain) run it when their database does not answer.
#
#   ./scripts/ensure-postgres.sh
set -euo pipefail
if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
    exit 0
fi
if ! command -v pg_ctlcluster >/dev/null; then
    echo "postgres: installing it with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
for waited in $(seq 1 30); do
    if pg_isready -q -h 127.0.0.1 -p 5432; then
        echo "postgres: ready after ${waited} s" >&2
        exit 0
    fi
    sleep 1
done
echo "postgres: nothing answers on 127.0.0.1:5432 after 30 s" >&2
exit 1
