#!/usr/bin/env bash
# Fuzzes the REST API with schemathesis against docs/openapi.json: starts the local stack on
# free ports, mints a token, and fails on any 5xx or any response that does not match the
# document (status code, content type, headers, body schema). Seeded, bounded in examples.
# Needs .venv from scripts/test.sh (or: pip install -r scripts/requirements-test.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
if [ ! -x "$venv/bin/schemathesis" ]; then
    echo "schemathesis is missing: run scripts/test.sh, or $venv/bin/pip install -r scripts/requirements-test.txt" >&2
    exit 1
fi

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
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples 50 --workers 1 --seed 1
# One worker: hypothesis parses lambdas' source with `ast.parse`, which CPython 3.11.7 cannot do
# from two threads at once ("AST constructor recursion depth mismatch", fixed in 3.11.8).
