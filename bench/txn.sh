#!/bin/bash
# `kvnode bench` modes side by side on a 3-node loopback cluster (by
# default puts, one-shard and cross-shard two-key transactions) at each
# client count, RUNS rounds on fresh clusters, then medians.
#
#   bash bench/txn.sh                      # kvnode built from this tree
#   bash bench/txn.sh /tmp/old /tmp/new    # several binaries, interleaved round by round
#
# Settings: CLIENTS (default "1 16 64"), MODES ("put one-shard cross-shard";
# also "get": linearizable gets of preloaded keys, and "insert": document
# inserts into a collection with two indexes),
# DURATION (10s), RUNS (3), OUT (a temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-1 16 64}
MODES=${MODES:-put one-shard cross-shard}
DURATION=${DURATION:-10s}
RUNS=${RUNS:-3}
OUT=${OUT:-$(mktemp -d /tmp/cairn-txn-bench.XXXXXX)}
bins=("$@")
if [ ${#bins[@]} -eq 0 ]; then
  CGO_ENABLED=0 go build -o "$OUT/kvnode" ./cmd/kvnode
  bins=("$OUT/kvnode")
fi
addr=127.0.0.1:21070,127.0.0.1:22070,127.0.0.1:23070

run_cluster() { # binary round
  local bin=$1 round=$2 data="$OUT/data" pids=()
  rm -rf "$data"
  for i in 1 2 3; do
    "$bin" --name n$i --data-dir "$data/n$i" --http-addr 127.0.0.1:2${i}070 --raft-addr 127.0.0.1:2${i}071 \
      --gossip-addr 127.0.0.1:2${i}072 --join 127.0.0.1:21072,127.0.0.1:22072,127.0.0.1:23072 \
      --bootstrap-expect 3 --gossip-local --log-level warn >"$OUT/n$i.log" 2>&1 &
    pids+=($!)
  done
  trap 'kill ${pids[*]} 2>/dev/null' EXIT
  for _ in $(seq 120); do
    ready=0
    for i in 1 2 3; do curl -sf 127.0.0.1:2${i}070/readyz >/dev/null && ready=$((ready + 1)); done
    [ $ready -eq 3 ] && break
    sleep 0.5
  done
  for c in $CLIENTS; do
    for mode in $MODES; do
      case $mode in
        put) args=(--read-ratio 0) ;;
        get) args=(--read-ratio 1 --preload) ;;
        insert) args=(--docs insert) ;;
        *) args=(--txn "$mode") ;;
      esac
      line=$("$bin" bench --addr "$addr" --clients "$c" --duration "$DURATION" "${args[@]}" 2>/dev/null | awk '$1 == "all" {print $3, $4, $5}')
      echo "$bin $round $c $mode $line" | tee -a "$OUT/results.txt"
    done
  done
  kill "${pids[@]}"
  wait "${pids[@]}" 2>/dev/null || true
  trap - EXIT
}

for round in $(seq "$RUNS"); do
  for bin in "${bins[@]}"; do run_cluster "$bin" "$round"; done
done

echo
echo "medians over $RUNS runs (ops/s, p50, p99): $OUT/results.txt"
sort -k1,1 -k3,3n -k4,4 -k5,5n "$OUT/results.txt" | awk '
  { key = $1 " " $3 " " $4; n[key]++; v[key, n[key]] = $5 " " $6 " " $7; order[key] = NR }
  END { for (k in n) { m = int((n[k] + 1) / 2); print k, v[k, m] } }' | sort -k1,1 -k2,2n -k3,3
