#!/usr/bin/env bash
# End-to-end measurement campaign behind Documentation/PERFORMANCE.md.
# Every scenario gets a fresh server (fresh data dir, --rate-limit 0) on 127.0.0.1,
# stopped by PID afterwards; every load run is bounded in time.
#
#   bash tests/perf_campaign.sh [OUTDIR]              # all scenarios (~11 minutes)
#   TESTS="ceiling batch" bash tests/perf_campaign.sh  # a subset
#
# Servers run --auth off (the figures recorded before accounts, comparable);
# AUTH=on serves with keys: the tools get the scenario's data dir and make their own
# accounts with its admin token (advanced_load_test.py --data-dir, LOAD_TESTING.md).
#
# Scenarios: rest500 rest1000 ceiling sweep batch ws md nofsync
# (sweep: the REST ceiling and its baselines at 8 to 128 connections)
set -u
cd "$(dirname "$0")/.."
PY=.venv/bin/python
LT=tests/advanced_load_test.py
out=${1:-/tmp/perf-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
port=${PORT:-5111}
U=http://127.0.0.1:$port
echo "results in $out"

run() { # name [server args] -- command
  local name=$1; shift
  local srv=(); while [ "$1" != "--" ]; do srv+=("$1"); shift; done; shift
  local data="$out/data-$name"; rm -rf "$data"
  $PY api/app.py --host 127.0.0.1 --port "$port" --data-dir "$data" --rate-limit 0 --auth "${AUTH:-off}" "${srv[@]}" \
      > "$out/server-$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do curl -sf "$U/health" >/dev/null && break; sleep 0.1; done
  echo "=== $name: $*" | tee -a "$out/all.txt"
  head -1 /proc/pressure/cpu >> "$out/all.txt" 2>/dev/null
  timeout 400 "$@" --data-dir "$data" >> "$out/all.txt" 2>&1; echo "exit $?" >> "$out/all.txt"
  kill "$pid"; wait "$pid" 2>/dev/null
}

for t in ${TESTS:-rest500 rest1000 ceiling sweep batch ws md nofsync}; do case $t in
  rest500) run rest500 -- $PY $LT --url $U --rate 500 --duration 60 --target-p99-ms 10 --no-progress \
             --json "$out/rest500.json" --plot "$out/rest500.png" ;;
  rest1000) run rest1000 -- $PY $LT --url $U --rate 1000 --duration 60 --target-rate 1000 --no-progress \
             --json "$out/rest1000.json" --plot "$out/rest1000.png" ;;
  ceiling) run ceiling -- $PY $LT --url $U --rate max --duration 20 --baseline --min-baseline-ratio 0.8 \
             --no-progress --json "$out/ceiling.json" --plot "$out/ceiling.png" ;;
  sweep) for c in 8 16 32 64 128; do
           run "sweep-$c" -- $PY $LT --url $U --rate max --duration 10 --connections "$c" --baseline \
             --no-progress --json "$out/sweep-$c.json"
         done ;;
  batch) run batchmax -- $PY $LT --url $U --mode batch --batch-size 100 --rate max --duration 20 \
             --no-progress --json "$out/batchmax.json" --plot "$out/batchmax.png" ;;
  ws) run ws1000 -- $PY $LT --url $U --mode ws --rate 1000 --duration 30 --target-rate 1000 --no-progress \
             --json "$out/ws1000.json" --plot "$out/ws1000.png"
      run wsmax -- $PY $LT --url $U --mode ws --ws-client raw --rate max --duration 15 --no-progress \
             --json "$out/wsmax.json" ;;
  md) run md -- $PY tests/md_latency.py --url $U --rate 500 --duration 20 --subscribers 1,50 \
             --target-p99-ms 50 --quiet --json "$out/md.json" --plot "$out/md.png" ;;
  nofsync) run ceiling-fsync-off --fsync off -- $PY $LT --url $U --rate max --duration 20 --baseline \
             --no-progress --json "$out/ceiling-fsync-off.json" ;;
esac; done
echo "done: $out/all.txt"
