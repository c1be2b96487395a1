#!/bin/bash
# usage: pair.sh <label> <n pairs>
n=${2:-1}
for i in $(seq 1 $n); do
for which in before after; do
  dir=/work/$which-dc
  echo "== $which $(date -u +%H:%M:%S) $(uptime | sed 's/.*load average/load/')"
  flock /work/bench.lock $dir/botload scenario gateway-consume --messages 600000 --runs 1 2>&1 | grep -v "^gateway-consume: run" | tail -12
  echo "-- end $(date -u +%H:%M:%S) $(uptime | sed 's/.*load average/load/')"
  pgrep -a noop-bot; pgrep -a perf
done
done
