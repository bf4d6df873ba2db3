#!/usr/bin/env bash
# Holds every AWS call the test suite made against the IAM role of the component that made it,
# in the SAM template as CloudFormation translates it (infra/checks/permissions.py says how).
#
#   scripts/permissions-check.sh CALL_LOG
#
# CALL_LOG is what the tests wrote with AWS_CALL_LOG set (scripts/test.sh sets it for its
# `cargo test`; moto's wrapper and the WebSocket emulator record each call with its caller).
# A denied call fails the check, naming the component, the action and the resource; grants no
# call used are listed. Then the check proves it can fail: with the streamer's GSI1 grant
# removed, with rest-api's grant of the table's key through DynamoDB removed, with rest-api's
# grant of the ticket signing key's secret removed, with rest-api's AppConfig reads removed, with
# the migrations function's table grant removed, with the restore drill's grants on its new table
# removed (when the log holds the drill's restore), with the recovery role's failover grant
# removed (when the log holds the failover's writes), and (when the log holds rest-api's Cloud Map
# DiscoverInstances, the discovery tests' calls) with rest-api's discovery grant removed, it must
# report exactly those denials.
#
# Needs Python 3 and Node.js with npm: installs the template translator into .venv/infra
# (infra/checks/requirements.txt) and the IAM policy simulator (@cloud-copilot/iam-simulate,
# pinned by infra/checks/iam-simulate/package-lock.json) into infra/checks/iam-simulate/node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/venv.sh
. scripts/lib/venv.sh

calls=${1:?usage: scripts/permissions-check.sh CALL_LOG (the file the tests wrote with AWS_CALL_LOG set)}
if [ ! -s "$calls" ]; then
    echo "permissions-check: $calls is missing or empty: run the tests with AWS_CALL_LOG=$calls (scripts/test.sh does)" >&2
    exit 1
fi
for tool in node npm; do
    command -v "$tool" >/dev/null || {
        echo "permissions-check: $tool is needed (the IAM policy simulator is a Node package): apt-get install nodejs npm" >&2
        exit 1
    }
done

echo "==> tools"
ensure_venv .venv/infra infra/checks/requirements.txt
simulator=infra/checks/iam-simulate
lock_hash=$(sha256sum "$simulator/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$simulator/node_modules/.lock.sha256" 2>/dev/null || true)" != "$lock_hash" ]; then
    (cd "$simulator" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_hash" >"$simulator/node_modules/.lock.sha256"
fi
echo "    iam-simulate $(node -p "require('./$simulator/node_modules/@cloud-copilot/iam-simulate/package.json').version")"

check() { .venv/infra/bin/python infra/checks/permissions.py "$calls" infra/template.yaml "$@"; }

echo "==> every recorded call against its component's role (infra/template.yaml)"
check

echo "==> the check fails when a grant the code needs is missing"
check --mutation streamer-without-index \
    --expect-denied "streamer (role StreamerRole): dynamodb:Query on arn:aws:dynamodb:eu-west-1:123456789012:table/session-service-prod-sessions/index/GSI1"
check --mutation rest-api-without-table-key \
    --expect-denied "rest-api (role RestApiRole): kms:Decrypt on arn:aws:kms:" \
    --expect-denied "rest-api (role RestApiRole): kms:GenerateDataKey on arn:aws:kms:"
check --mutation rest-api-without-appconfig \
    --expect-denied "rest-api (role RestApiRole): appconfig:StartConfigurationSession on arn:aws:appconfig:eu-west-1:123456789012:application/appconfigapplication0001/environment/appconfigenvironment0001/configuration/flagsprofile0001"
check --mutation admin-without-table \
    --expect-denied "admin (role MigrationsRole): dynamodb:Scan on arn:aws:dynamodb:eu-west-1:123456789012:table/session-service-prod-sessions"
# Only a run of the restore drill's tests (tests/tests/store/restore.rs) records its calls.
if grep -q '"component": "recovery", "service": "dynamodb", "operation": "RestoreTableToPointInTime"' "$calls"; then
    check --mutation recovery-without-restored-table \
        --expect-denied "recovery (role TableRecoveryRole): dynamodb:PutItem on arn:aws:dynamodb:eu-west-1:123456789012:table/session-service-prod-sessions-restored" \
        --expect-denied "recovery (role TableRecoveryRole): dynamodb:DescribeTable on arn:aws:dynamodb:eu-west-1:123456789012:table/session-service-prod-sessions-restored"
else
    echo "    (no recovery RestoreTableToPointInTime in $calls: the restore drill's mutation is not checked)"
fi
# Only a run of the region failover's tests (tests/tests/store/failover.rs) records its writes.
if grep -q '"component": "recovery", "service": "dynamodb", "operation": "UpdateItem"' "$calls"; then
    check --mutation recovery-without-failover \
        --expect-denied "recovery (role TableRecoveryRole): dynamodb:UpdateItem on arn:aws:dynamodb:eu-west-1:123456789012:table/session-service-prod-sessions"
else
    echo "    (no recovery UpdateItem in $calls: the region failover's mutation is not checked)"
fi
check --mutation rest-api-without-ticket-signing-key \
    --expect-denied "rest-api (role RestApiRole): secretsmanager:GetSecretValue on arn:aws:secretsmanager:eu-west-1:123456789012:secret:session-service/ticket-signing-key-AbCdEf"
# Only a run of the discovery tests (cloudmap mode against moto) records rest-api's lookups.
if grep -q '"component": "rest-api", "service": "route53autonaming_v20170314"' "$calls"; then
    check --mutation rest-api-without-discovery \
        --expect-denied "rest-api (role RestApiRole): servicediscovery:DiscoverInstances on * {'servicediscovery:NamespaceName': 'session.internal', 'servicediscovery:ServiceName': 'simulator'}"
else
    echo "    (no rest-api DiscoverInstances in $calls: the discovery mutation is not checked)"
fi
echo "permissions-check: ok"
