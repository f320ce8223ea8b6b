#!/usr/bin/env bash
# Builds static release binaries with their version and commit, and a
# SHA256SUMS file: scripts/release.sh [VERSION] [PLATFORM…]
# PLATFORMs default to linux/amd64 linux/arm64; output goes to dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
shift || true
platforms=("$@")
[ ${#platforms[@]} -gt 0 ] || platforms=(linux/amd64 linux/arm64)
commit="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
out="${DIST:-dist}"
mkdir -p "$out"
for p in "${platforms[@]}"; do
  os="${p%/*}" arch="${p#*/}"
  bin="$out/trailkeeper-$version-$os-$arch"
  CGO_ENABLED=0 GOOS="$os" GOARCH="$arch" go build -trimpath \
    -ldflags "-s -w -X main.version=$version -X main.commit=$commit" \
    -o "$bin" ./cmd/trailkeeper
  echo "$bin"
done
(cd "$out" && sha256sum trailkeeper-"$version"-* > SHA256SUMS)
echo "$out/SHA256SUMS"
