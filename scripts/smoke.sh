#!/usr/bin/env bash
# A smoke test of a deployment: a frontend's whole path (token, session, simulator, SSE and
# WebSocket streams with every event id in sequence, stop and close) against the endpoints in
# ENDPOINTS_JSON, as `session-local --endpoints-file` writes them or as built from a
# deployment's outputs (README, "Smoke test"). Prints one line per step; exits 0 when every
# step passed, 1 when one failed (the last line names it), 2 for bad flags.
#
#   scripts/smoke.sh ENDPOINTS_JSON [--timeout SECS] [--events N] [--ca-file PEM] ...
#   SMOKE_TOKEN=... scripts/smoke.sh endpoints.json     # a token instead of minting one
#
# It builds the `smoke` binary (crate `smoke/`, dev profile: a few seconds once the workspace is
# built) unless SMOKE_BIN names one already built.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
    echo "usage: scripts/smoke.sh ENDPOINTS_JSON [FLAGS]   (scripts/smoke.sh x --help for the flags)" >&2
    exit 2
fi
if [ -n "${SMOKE_BIN:-}" ]; then
    exec "$SMOKE_BIN" "$@"
fi
exec cargo run --quiet --locked -p session-smoke --bin smoke -- "$@"
