#!/usr/bin/env bash
# Runs the three-node compose cluster of docker-compose.yml.
#   docker/cluster.sh up      build the image, start kv1..kv3, wait until ready
#   docker/cluster.sh down    stop and remove the containers and their volumes
#   docker/cluster.sh status  kvnode status as kv1 sees it
# Ports and image: see docker-compose.yml (KV1_HTTP, KV2_HTTP, KV3_HTTP,
# CAIRN_IMAGE); COMPOSE_PROJECT_NAME picks the project (default cairn).
set -euo pipefail
cd "$(dirname "$0")"
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-cairn}
compose() { docker-compose -f docker-compose.yml "$@"; }
case "${1:-up}" in
up)
	bash build.sh "${CAIRN_IMAGE:-cairn/kvnode:dev}"
	compose up -d
	for port in "${KV1_HTTP:-17070}" "${KV2_HTTP:-17080}" "${KV3_HTTP:-17090}"; do
		for _ in $(seq 1 120); do
			curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
			sleep 0.5
		done
		curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { echo "node on port $port not ready"; compose logs --tail 50; exit 1; }
	done
	echo "cluster ready: http://127.0.0.1:${KV1_HTTP:-17070} http://127.0.0.1:${KV2_HTTP:-17080} http://127.0.0.1:${KV3_HTTP:-17090}"
	;;
down) compose down -v ;;
status) (cd .. && go run ./cmd/kvnode status --addr "127.0.0.1:${KV1_HTTP:-17070}") ;;
*) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
