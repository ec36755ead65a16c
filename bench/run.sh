#!/usr/bin/env bash
# Side-by-side benchmark of Cairn (kvnode) against etcd 3.4 on this machine.
# See bench/README.md. Short run while developing:
#   CLIENTS="1 16" DURATION=3s RUNS=1 WORKLOADS="put get" bash bench/run.sh
set -euo pipefail

CLIENTS=${CLIENTS:-"1 16 64 256"}
DURATION=${DURATION:-10s}
RUNS=${RUNS:-3}
WORKLOADS=${WORKLOADS:-"put get stale-get mix scan txn doc-insert doc-find"}
SYSTEMS=${SYSTEMS:-"cairn etcd"}
KEYS=${KEYS:-10000}
VALUE_SIZE=${VALUE_SIZE:-256}
SHARDS=${SHARDS:-4}                 # Cairn data shards (kvnode demo's default)
KVNODE_FLAGS=${KVNODE_FLAGS:-}      # more kvnode flags, split on spaces (e.g. "--value-threshold 128B")
SPREAD=${SPREAD:-all}               # all: clients over the 3 nodes of each system; one: Cairn n1 / etcd's leader only
ROUTING=${ROUTING:-0}               # 1: Cairn clients send each key to its shard's leader (client.WithRouting)
BATCH=${BATCH:-0}                   # >0: each Cairn client keeps at most this many get requests in flight per node, the gets beyond them going together in one POST /v1/batch (client.WithBatching)
ETCD_CONNS=${ETCD_CONNS:-0}         # gRPC connections in all (0: two per endpoint used)
RATE=${RATE:-0}                     # open loop: ops/s in total (0: closed loop)
PRELOAD_CLIENTS=${PRELOAD_CLIENTS:-64}
LOAD_KEYS=${LOAD_KEYS:-1000000}     # workload "load": keys written (by PRELOAD_CLIENTS clients) before memory is sampled
SETTLE=${SETTLE:-10s}               # workload "load": how long after the load the servers' RSS is sampled
BASE_PORT=${BASE_PORT:-27000}       # below the ephemeral range (32768+), where a client connection could take a port a restarted server needs. Cairn n$i: BASE+60+10i (+1 raft, +2 gossip); etcd m$i: BASE+360+10i (+1 peer)
KEEP_DATA=${KEEP_DATA:-0}           # 1: keep the data directories of each cluster
SERVER_CPU=${SERVER_CPU:-0}         # >0: each server process gets at most this many CPUs (a cgroup CPU quota of its own), as if every node had cores to itself; needs root
SERVER_MEM=${SERVER_MEM:-0}         # e.g. 256M: each server process gets at most this much memory, page cache of its files included (a cgroup memory limit of its own); the kernel kills a server it cannot keep under it; needs root

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
DATE=$(date -u +%F)
OUT=${OUT:-$BENCH/results/$DATE}
WORK_CREATED=""
if [[ -z ${WORK:-} ]]; then WORK=$(mktemp -d "${TMPDIR:-/tmp}/sidebyside.XXXXXX"); WORK_CREATED=1; fi
BIN=$WORK/bin

PIDS=()            # every server process this script started and has not reaped
CGROUPS=()         # the cgroups make_cgroups made for the current cluster
LOAD_PID=""        # the sidebyside process running, if any
POLICY_CREATED=""  # the policy-rc.d this script wrote while installing etcd
FAILED=0

log() { printf '%s %s\n' "$(date -u +%T)" "$*" >&2; }

# stop_pids stops the given processes: SIGTERM, then SIGKILL after
# STOP_GRACE seconds (their data is thrown away; three etcd members stopped
# together wait for each other for several seconds).
stop_pids() {
	local pid deadline=$((SECONDS + ${STOP_GRACE:-5}))
	[[ $# -gt 0 ]] || return 0
	kill -TERM "$@" 2>/dev/null || true
	for pid in "$@"; do
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $LOAD_PID ]]; then stop_pids "$LOAD_PID"; fi
	if [[ ${#PIDS[@]} -gt 0 ]]; then
		log "stopping servers: ${PIDS[*]}"
		stop_pids "${PIDS[@]}"
		PIDS=()
	fi
	remove_cgroups
	if [[ -n $POLICY_CREATED ]]; then rm -f "$POLICY_CREATED"; fi
	if [[ ($rc == 0 || $rc == 130 || $rc == 143) && $KEEP_DATA != 1 && $FAILED == 0 ]]; then
		if [[ -n $WORK_CREATED ]]; then rm -rf "$WORK"; else rm -rf "$WORK"/data-*; fi
	else
		log "binaries, server logs and kept data are in $WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# ensure_etcd installs Debian's etcd-server (3.4) when etcd is missing, with
# the package's own service kept from starting (it would serve on 2379).
ensure_etcd() {
	if ! command -v etcd >/dev/null; then
		[[ $(id -u) == 0 ]] || { log "etcd is not installed; run as root or: apt-get install -y etcd-server"; exit 1; }
		log "installing etcd-server"
		if [[ ! -e /usr/sbin/policy-rc.d ]]; then
			POLICY_CREATED=/usr/sbin/policy-rc.d
			printf '#!/bin/sh\nexit 101\n' >"$POLICY_CREATED"
			chmod 755 "$POLICY_CREATED"
		fi
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
		if [[ -n $POLICY_CREATED ]]; then rm -f "$POLICY_CREATED"; POLICY_CREATED=""; fi
		if [[ -d /run/systemd/system ]]; then
			systemctl disable --now etcd 2>/dev/null || true
		elif [[ -x /etc/init.d/etcd ]]; then
			/etc/init.d/etcd stop >/dev/null 2>&1 || true
			update-rc.d etcd disable >/dev/null 2>&1 || true
		fi
	fi
	local other
	other=$(pgrep -u etcd -x etcd 2>/dev/null || true)
	if [[ -n $other ]]; then
		log "warning: the etcd package's own service is running (pid $other); it uses other ports but competes for CPU:" \
			"stop it with 'systemctl disable --now etcd' or '/etc/init.d/etcd stop'"
	fi
}

# run_load runs sidebyside in the background and waits for it, so that a
# signal to this script is handled at once (the trap stops it).
run_load() {
	local rc=0
	"$BIN/sidebyside" "$@" &
	LOAD_PID=$!
	wait "$LOAD_PID" || rc=$?
	LOAD_PID=""
	return "$rc"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_ports() {
	local p
	for p in "$@"; do
		port_free "$p" || { log "port $p is in use (another benchmark?); set BASE_PORT"; exit 1; }
	done
}

cairn_http() { echo $((BASE_PORT + 60 + 10 * $1)); }
etcd_client() { echo $((BASE_PORT + 360 + 10 * $1)); }

# start_cairn DIR: three kvnode processes forming one cluster.
start_cairn() {
	local dir=$1 i seeds="" p
	for i in 1 2 3; do seeds+="${seeds:+,}127.0.0.1:$(($(cairn_http $i) + 2))"; done
	for i in 1 2 3; do
		p=$(cairn_http $i)
		check_ports "$p" $((p + 1)) $((p + 2))
		start_server "n$i" "$dir/n$i.log" "$BIN/kvnode" --name "n$i" --data-dir "$dir/n$i" --http-addr "127.0.0.1:$p" \
			--raft-addr "127.0.0.1:$((p + 1))" --gossip-addr "127.0.0.1:$((p + 2))" \
			--join "$seeds" --bootstrap-expect 3 --shards "$SHARDS" --gossip-local \
			--shutdown-timeout 2s $KVNODE_FLAGS
		DATA_DIRS+=("$dir/n$i")
		ADDRS+=("127.0.0.1:$p")
	done
}

# start_etcd DIR: a three-member etcd cluster, default settings (WAL fsynced).
start_etcd() {
	local dir=$1 i cluster="" c
	for i in 1 2 3; do cluster+="${cluster:+,}m$i=http://127.0.0.1:$(($(etcd_client $i) + 1))"; done
	for i in 1 2 3; do
		c=$(etcd_client $i)
		check_ports "$c" $((c + 1))
		start_server "m$i" "$dir/m$i.log" etcd --name "m$i" --data-dir "$dir/m$i" --logger zap \
			--listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
			--listen-peer-urls "http://127.0.0.1:$((c + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((c + 1))" \
			--initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "sidebyside-$$"
		DATA_DIRS+=("$dir/m$i")
		ADDRS+=("127.0.0.1:$c")
	done
}

# bench_cluster SYSTEM WORKLOAD RUN: a fresh cluster, preload, every client
# count; for the workload "load", the measured load of LOAD_KEYS keys only.
bench_cluster() {
	local sys=$1 wl=$2 run=$3 dir c addrs load_addrs rc=0 keep=$KEEP_DATA
	dir="$WORK/data-$sys-$wl-$run"
	rm -rf "$dir"
	mkdir -p "$dir"
	SERVER_PIDS=() DATA_DIRS=() ADDRS=()
	"start_$sys" "$dir"
	addrs=$(IFS=,; echo "${ADDRS[*]}")
	if ! run_load wait --system "$sys" --addrs "$addrs" --timeout 120s; then
		log "$sys did not become ready; logs in $dir"
		FAILED=1
		stop_cluster
		return
	fi
	load_addrs=$addrs
	if [[ $SPREAD == one ]]; then
		if [[ $sys == etcd ]]; then load_addrs=$("$BIN/sidebyside" leader --system etcd --addrs "$addrs"); else load_addrs=${ADDRS[0]}; fi
	fi
	local common=(--system "$sys" --addrs "$load_addrs" --etcd-conns "$ETCD_CONNS" --value-size "$VALUE_SIZE")
	if [[ $ROUTING == 1 ]]; then common+=(--cairn-routing); fi
	if [[ $BATCH != 0 ]]; then common+=(--cairn-batch "$BATCH"); fi
	local pids dirs
	pids=$(IFS=,; echo "${SERVER_PIDS[*]}")
	dirs=$(IFS=,; echo "${DATA_DIRS[*]}")
	if [[ $wl == load ]]; then
		# Memory after the same load: LOAD_KEYS keys, then SETTLE idle.
		run_load "${common[@]}" --workload put --keys "$LOAD_KEYS" --clients "$PRELOAD_CLIENTS" --preload --duration 0 \
			--settle "$SETTLE" --run "$run" --pids "$pids" --data-dirs "$dirs" \
			>>"$OUT/results.jsonl" 2> >(sed 's/^/  /' | tee -a "$OUT/run.log" >&2) || rc=$?
		((rc == 0)) || { log "$sys load failed (exit $rc); logs in $dir"; FAILED=1; keep=1; }
		stop_cluster
		if [[ $keep != 1 ]]; then rm -rf "$dir"; fi
		return
	fi
	common+=(--workload "$wl" --keys "$KEYS")
	if [[ $wl != put && $wl != txn && $wl != doc-insert ]]; then
		run_load "${common[@]}" --clients "$PRELOAD_CLIENTS" --preload --duration 0 > >(sed 's/^/  /' >&2) 2>&1 || rc=$?
		((rc == 0)) || { log "$sys $wl: preload failed (exit $rc); logs in $dir"; FAILED=1; keep=1; }
	fi
	for c in $CLIENTS; do
		((rc == 0)) || break
		run_load "${common[@]}" --clients "$c" --duration "$DURATION" --rate "$RATE" --run "$run" \
			--pids "$pids" --data-dirs "$dirs" >>"$OUT/results.jsonl" 2> >(sed 's/^/  /' | tee -a "$OUT/run.log" >&2) || rc=$?
		((rc == 0)) || { log "$sys $wl $c clients failed (exit $rc); logs in $dir"; FAILED=1; keep=1; }
	done
	stop_cluster
	if [[ $keep != 1 ]]; then rm -rf "$dir"; fi
}

# start_server NAME LOG COMMAND...: starts a server process in the
# background, its output in LOG. With SERVER_CPU or SERVER_MEM set it starts
# inside cgroups of its own (made by make_cgroups), as a container would, so
# that it can see its limits from the start.
start_server() {
	local name=$1 logf=$2 d
	shift 2
	make_cgroups "$name"
	(
		for d in "${NEW_CGROUPS[@]}"; do echo "$BASHPID" >"$d/cgroup.procs"; done
		exec "$@"
	) >"$logf" 2>&1 &
	PIDS+=($!)
	SERVER_PIDS+=($!)
}

# make_cgroups NAME: with SERVER_CPU or SERVER_MEM set, makes the cgroups of
# one server, with a CPU quota of SERVER_CPU CPUs and a memory limit of
# SERVER_MEM, and lists them in NEW_CGROUPS (and CGROUPS).
make_cgroups() {
	local name=sidebyside-$$-$1 dir quota=""
	NEW_CGROUPS=()
	[[ $SERVER_CPU != 0 || $SERVER_MEM != 0 ]] || return 0
	if [[ $SERVER_CPU != 0 ]]; then quota=$(awk -v c="$SERVER_CPU" 'BEGIN { printf "%d", c * 100000 }'); fi
	if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then # cgroup v2: one group, both controllers
		dir=/sys/fs/cgroup/$name
		if [[ -n $quota ]]; then grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu >/sys/fs/cgroup/cgroup.subtree_control; fi
		if [[ $SERVER_MEM != 0 ]]; then grep -qw memory /sys/fs/cgroup/cgroup.subtree_control || echo +memory >/sys/fs/cgroup/cgroup.subtree_control; fi
		mkdir -p "$dir"
		NEW_CGROUPS+=("$dir")
		if [[ -n $quota ]]; then echo "$quota 100000" >"$dir/cpu.max"; fi
		if [[ $SERVER_MEM != 0 ]]; then
			echo "$SERVER_MEM" >"$dir/memory.max"
			if [[ -f $dir/memory.swap.max ]]; then echo 0 >"$dir/memory.swap.max"; fi
		fi
	else # cgroup v1: a group in each controller's hierarchy
		if [[ -n $quota ]]; then
			dir=/sys/fs/cgroup/cpu/$name
			mkdir -p "$dir"
			NEW_CGROUPS+=("$dir")
			echo 100000 >"$dir/cpu.cfs_period_us"
			echo "$quota" >"$dir/cpu.cfs_quota_us"
		fi
		if [[ $SERVER_MEM != 0 ]]; then
			dir=/sys/fs/cgroup/memory/$name
			mkdir -p "$dir"
			NEW_CGROUPS+=("$dir")
			echo "$SERVER_MEM" >"$dir/memory.limit_in_bytes"
			if [[ -f $dir/memory.memsw.limit_in_bytes ]]; then echo "$SERVER_MEM" >"$dir/memory.memsw.limit_in_bytes"; fi
		fi
	fi
	CGROUPS+=("${NEW_CGROUPS[@]}")
}

# report_memory_cgroups logs, for each server's memory cgroup, the most it
# held (page cache included) and how many processes the kernel killed in it.
report_memory_cgroups() {
	local d peak kills
	[[ $SERVER_MEM != 0 ]] || return 0 # a CPU-only cgroup under cgroup v2 has memory files too, but no limit
	for d in "${CGROUPS[@]}"; do
		if [[ -f $d/memory.max_usage_in_bytes ]]; then # v1
			peak=$(cat "$d/memory.max_usage_in_bytes")
			kills=$(awk '$1 == "oom_kill" {print $2}' "$d/memory.oom_control")
		elif [[ -f $d/memory.events ]]; then # v2
			peak=$(cat "$d/memory.peak" 2>/dev/null || echo 0)
			kills=$(awk '$1 == "oom_kill" {print $2}' "$d/memory.events")
		else
			continue
		fi
		log "memory cgroup ${d##*/sidebyside-$$-}: peak $((peak >> 20)) MiB of $SERVER_MEM, ${kills:-0} processes killed for memory" 2>&1 | tee -a "$OUT/run.log" >&2
	done
}

remove_cgroups() {
	local d
	for d in "${CGROUPS[@]}"; do rmdir "$d" 2>/dev/null || log "could not remove cgroup $d"; done
	CGROUPS=()
}

# stop_cluster stops the current cluster's processes and forgets them.
stop_cluster() {
	local pid keep=()
	stop_pids "${SERVER_PIDS[@]}"
	report_memory_cgroups
	remove_cgroups
	for pid in "${PIDS[@]}"; do
		[[ " ${SERVER_PIDS[*]} " == *" $pid "* ]] || keep+=("$pid")
	done
	PIDS=("${keep[@]}")
	SERVER_PIDS=()
}

main() {
	local start=$SECONDS sys wl run
	if [[ ($SERVER_CPU != 0 || $SERVER_MEM != 0) && $(id -u) != 0 ]]; then log "SERVER_CPU and SERVER_MEM need root (they make cgroups)"; exit 1; fi
	if [[ $SERVER_MEM != 0 && ! $SERVER_MEM =~ ^[0-9]+[KMG]?$ ]]; then log "SERVER_MEM=$SERVER_MEM: want a size such as 256M"; exit 1; fi
	if [[ $SYSTEMS == *etcd* ]]; then ensure_etcd; fi
	mkdir -p "$BIN" "$OUT"
	log "building kvnode, sidebyside and plot into $BIN"
	(cd "$REPO" && go build -o "$BIN/kvnode" ./cmd/kvnode)
	(cd "$BENCH" && go build -o "$BIN/" ./cmd/sidebyside ./cmd/plot)
	if [[ -s $OUT/results.jsonl ]]; then
		local old
		old="$OUT/results-$(date -u +%H%M%S).jsonl.old"
		mv "$OUT/results.jsonl" "$old"
		log "kept the previous results of today as $old"
	fi
	: >"$OUT/results.jsonl"
	: >"$OUT/run.log"
	{
		echo "started $(date -u +%FT%TZ) on $(uname -srm), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
		echo "cairn $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet HEAD 2>/dev/null || echo ' (modified)'), $(go version | cut -d' ' -f3)"
		if [[ $SYSTEMS == *etcd* ]]; then etcd --version | sed -n 1p; fi
		echo "CLIENTS='$CLIENTS' DURATION=$DURATION RUNS=$RUNS WORKLOADS='$WORKLOADS' SYSTEMS='$SYSTEMS' KEYS=$KEYS VALUE_SIZE=$VALUE_SIZE SHARDS=$SHARDS KVNODE_FLAGS='$KVNODE_FLAGS' SPREAD=$SPREAD ROUTING=$ROUTING BATCH=$BATCH ETCD_CONNS=$ETCD_CONNS RATE=$RATE PRELOAD_CLIENTS=$PRELOAD_CLIENTS LOAD_KEYS=$LOAD_KEYS SETTLE=$SETTLE SERVER_CPU=$SERVER_CPU SERVER_MEM=$SERVER_MEM"
	} >"$OUT/env.txt"
	for run in $(seq 1 "$RUNS"); do
		for wl in $WORKLOADS; do
			for sys in $SYSTEMS; do
				log "run $run/$RUNS: $sys $wl (clients: $CLIENTS; $DURATION each)"
				bench_cluster "$sys" "$wl" "$run"
			done
		done
	done
	"$BIN/plot" --in "$OUT/results.jsonl" --out "$OUT" >/dev/null
	log "done in $(((SECONDS - start) / 60))m$(((SECONDS - start) % 60))s: $OUT/table.md and $(ls "$OUT"/*.png | wc -l) plots"
	cat "$OUT/table.md"
	return "$FAILED"
}

main "$@"
