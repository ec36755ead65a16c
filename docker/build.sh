#!/usr/bin/env bash
# Builds the kvnode image: a static binary (CGO_ENABLED=0) copied into an
# image FROM scratch. No registry is involved. Usage: docker/build.sh [TAG]
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-cairn/kvnode:dev}
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ctx/kvnode" ./cmd/kvnode
cp docker/Dockerfile "$ctx/"
docker build -q -t "$tag" "$ctx"
echo "built $tag"
