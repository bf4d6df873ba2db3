#!/usr/bin/env bash
# Validates docs/openapi.json (openapi-spec-validator), then fuzzes the REST API with
# schemathesis against it: starts the local stack on free ports, mints a token, and runs every
# default check and phase (examples, coverage, fuzzing, stateful), so it fails on any 5xx, any
# response that does not match the document, any request the document allows that the server
# refuses (or the reverse), a deleted resource still readable, and an undeclared method not
# answered 405. Seeded, bounded in examples (25 per operation: about 15 s on two cores once
# built; the stateful phase and the rate limits still vary a little from run to run).
# Needs .venv from scripts/test.sh (or: pip install -r scripts/requirements-test.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
if [ ! -x "$venv/bin/schemathesis" ] || [ ! -x "$venv/bin/openapi-spec-validator" ]; then
    echo "schemathesis or openapi-spec-validator is missing: run scripts/test.sh, or $venv/bin/pip install -r scripts/requirements-test.txt" >&2
    exit 1
fi

# Before the stack starts: an invalid document fails here, with the validator's message.
"$venv/bin/openapi-spec-validator" docs/openapi.json >&2 || { echo "docs/openapi.json is not a valid OpenAPI document" >&2; exit 1; }

work=$(mktemp -d)
cleanup() {
    if [ -n "${stack_pid:-}" ]; then kill "$stack_pid" 2>/dev/null || true; wait "$stack_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

cargo build --quiet --locked -p session-local --bin session-local
target_dir=$(cargo metadata --format-version 1 --no-deps | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
RUST_LOG=warn "$target_dir/debug/session-local" --http-api 127.0.0.1:0 --ws-api 127.0.0.1:0 \
    --sse 127.0.0.1:0 --web 127.0.0.1:0 --simulator 127.0.0.1:0 --auth 127.0.0.1:0 \
    --endpoints-file "$work/endpoints.json" >"$work/stack.log" 2>&1 &
stack_pid=$!
for _ in $(seq 1 300); do
    [ -f "$work/endpoints.json" ] && break
    if ! kill -0 "$stack_pid" 2>/dev/null; then cat "$work/stack.log" >&2; echo "the local stack exited" >&2; exit 1; fi
    sleep 0.1
done
[ -f "$work/endpoints.json" ] || { cat "$work/stack.log" >&2; echo "the local stack did not start within 30 s" >&2; exit 1; }

read -r http_api token_url < <("$venv/bin/python" -c '
import json, sys
e = json.load(open(sys.argv[1]))
print(e["http_api"], e["token_url"])' "$work/endpoints.json")
token=$("$venv/bin/python" -c '
import json, sys, urllib.request
request = urllib.request.Request(sys.argv[1], data=b"{\"sub\": \"schemathesis\"}", headers={"content-type": "application/json"})
print(json.load(urllib.request.urlopen(request))["token"])' "$token_url")

timeout 900 "$venv/bin/schemathesis" run docs/openapi.json --url "$http_api" \
    -H "Authorization: Bearer $token" \
    --max-examples 25 --workers 1 --seed 1
# One worker: hypothesis parses lambdas' source with `ast.parse`, which CPython 3.11.7 cannot do
# from two threads at once ("AST constructor recursion depth mismatch", fixed in 3.11.8).
