#!/usr/bin/env bash
# Runs every test of the project. Needs only the Rust toolchain and Python 3 on the machine (no
# pip, no python3-venv, no kubectl: see scripts/lib/venv.sh): it installs what the tests need
# (moto's DynamoDB-API server and schemathesis, in .venv under the repo; headless Chromium and
# chromedriver, Node.js for the IAM policy simulator, and redis-server for the cache tests, from
# Debian's packages, as root;
# kubectl with the infrastructure checks' tools), then checks formatting and lints, runs every
# test of the workspace recording every AWS call they make, holds each call against its
# component's IAM role in the SAM template, fuzzes the REST API against its OpenAPI document, and
# validates the infrastructure code offline.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/venv.sh
. scripts/lib/venv.sh
echo "==> test tools in .venv (scripts/requirements-test.txt)"
ensure_venv .venv scripts/requirements-test.txt

# The web page's test (tests/tests/web.rs) drives headless Chromium through chromedriver.
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    echo "==> chromium and chromedriver: installed"
else
    echo "==> installing chromium and chromium-driver (Debian packages) for the web page test"
    export DEBIAN_FRONTEND=noninteractive
    browser=(chromium chromium-driver)
    # The package lists may be missing or stale on a fresh machine: update only if needed.
    if ! apt-get install -y --no-install-recommends "${browser[@]}"; then
        apt-get update
        apt-get install -y --no-install-recommends "${browser[@]}"
    fi
fi

# The permission check (scripts/permissions-check.sh) runs an IAM policy simulator on Node.js.
if command -v node >/dev/null && command -v npm >/dev/null; then
    echo "==> node $(node --version) and npm: installed"
else
    echo "==> installing nodejs and npm (Debian packages) for the permission check"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends nodejs npm; then
        apt-get update
        apt-get install -y --no-install-recommends nodejs npm
    fi
fi

# The cache layer's tests (tests/tests/store/cache.rs) start a real redis-server.
if [ -x /usr/bin/redis-server ]; then
    echo "==> redis-server: installed"
else
    echo "==> installing redis-server (Debian package) for the cache tests"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends redis-server; then
        apt-get update
        apt-get install -y --no-install-recommends redis-server
    fi
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> cargo test"
# Every AWS call the tests make is recorded with the component that made it (moto's wrapper and
# the WebSocket emulator append to this file), for the permission check below.
AWS_CALL_LOG="$(mktemp -d)/aws-calls.jsonl"
export AWS_CALL_LOG
cargo test --workspace --locked

echo "==> every recorded AWS call against its component's IAM role (scripts/permissions-check.sh)"
scripts/permissions-check.sh "$AWS_CALL_LOG"

echo "==> docs/asyncapi.json with the AsyncAPI parser (scripts/asyncapi-check.sh)"
scripts/asyncapi-check.sh

echo "==> schemathesis against the local stack (scripts/api-fuzz.sh)"
scripts/api-fuzz.sh

echo "==> infrastructure as code: cfn-lint, kubernetes schemas, checkov (scripts/infra-check.sh)"
scripts/infra-check.sh
