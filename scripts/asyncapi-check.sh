#!/usr/bin/env bash
# Validates docs/asyncapi.json with the AsyncAPI Initiative's own parser (the specification's
# JSON Schema and its rules: references resolve, operations name their channel's messages, …).
# The Rust test `cargo test -p session-tests --test asyncapi` checks the file is what the code
# generates; this checks that what it generates is valid AsyncAPI 3.0.
#
#   scripts/asyncapi-check.sh
#
# Needs Node.js with npm: installs @asyncapi/parser (pinned by
# tests/asyncapi-check/package-lock.json) into tests/asyncapi-check/node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in node npm; do
    command -v "$tool" >/dev/null || {
        echo "asyncapi-check: $tool is needed (the AsyncAPI parser is a Node package): apt-get install nodejs npm" >&2
        exit 1
    }
done
checker=tests/asyncapi-check
lock_hash=$(sha256sum "$checker/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$checker/node_modules/.lock.sha256" 2>/dev/null || true)" != "$lock_hash" ]; then
    (cd "$checker" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_hash" >"$checker/node_modules/.lock.sha256"
fi
echo "==> docs/asyncapi.json with @asyncapi/parser $(node -p "require('./$checker/node_modules/@asyncapi/parser/package.json').version")"
node "$checker/validate.mjs" docs/asyncapi.json
