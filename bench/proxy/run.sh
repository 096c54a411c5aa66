#!/usr/bin/env bash
# Proxy throughput: 1 GiB layer pushed and pulled directly against the
# embedded registry and through the proxy; ratio and peak RSS to
# bench/results/proxy-<date>.txt. Needs bin/tollgate (make build).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec go run ./bench/proxy -bin "${TOLLGATE_BIN:-bin/tollgate}" "$@"
