#!/usr/bin/env bash
# Runs every test of the project. Needs only the Rust toolchain and Python 3 on the machine:
# it installs what the tests need (moto's DynamoDB-API server and schemathesis, in .venv under
# the repo), then checks formatting and lints, runs every test of the workspace, and fuzzes the
# REST API against its OpenAPI document, and validates the infrastructure code offline.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating $venv"
    python3 -m venv "$venv"
fi
echo "==> installing test tools into $venv (scripts/requirements-test.txt)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> cargo test"
cargo test --workspace --locked

echo "==> schemathesis against the local stack (scripts/api-fuzz.sh)"
scripts/api-fuzz.sh

echo "==> infrastructure as code: cfn-lint, kubernetes schemas, checkov (scripts/infra-check.sh)"
scripts/infra-check.sh
