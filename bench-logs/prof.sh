#!/bin/bash
# usage: prof.sh <dir> <out>
dir=$1; out=$2
$dir/botload scenario gateway-consume --messages 3000000 --runs 1 > /tmp/dc-prof-botload.txt 2>&1 &
bl=$!
# wait for noop-bot to appear and dispatches to start (twilight runs first)
for i in $(seq 1 600); do p=$(pgrep -n -x noop-bot); [ -n "$p" ] && break; sleep 0.1; done
sleep 2.5
perf record -F 499 --call-graph dwarf,16384 -p $p -o $out -- sleep 4 2>&1 | tail -1
wait $bl
tail -3 /tmp/dc-prof-botload.txt
