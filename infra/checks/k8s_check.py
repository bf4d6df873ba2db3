"""Validates one rendered Kustomize folder (the output of `kubectl kustomize`), offline.

Usage: python k8s_check.py [--require-digest] [--backends | --collector] RENDERED.yaml

- Built-in kinds: against the Kubernetes OpenAPI schemas that kubernetes-validate ships, in
  strict mode (unknown fields are errors), for the oldest and the newest Kubernetes versions the
  manifests target.
- Prometheus Operator kinds (ServiceMonitor, PrometheusRule): kubernetes-validate has no schema
  for custom resources. They are validated against the schemas below, which transcribe the
  operator's CRDs for the fields these manifests use and refuse any other field (a typo is an
  error, not a silently ignored key), and every rule expression is parsed as PromQL.
- Gateway API (Gateway, HTTPRoute), NGINX Gateway Fabric kinds (UpstreamSettingsPolicy,
  ProxySettingsPolicy, NginxProxy) and External Secrets Operator kinds (SecretStore,
  ExternalSecret): against the schemas in crds/, transcribed from the released
  CRDs (each file names the release and the source files), strictly, plus the CRDs' CEL rules on
  those fields (CEL_RULES below). No registry package ships these CRDs, so they are transcribed
  rather than installed.
- Any other kind is an error: nothing leaves this check unvalidated.
- Cross-object consistency that no schema sees: selectors and port names that must match, the
  config map the pods read, backend TLS files that a mounted Secret provides (with https://
  backend URLs), the shutdown budget (terminationGracePeriodSeconds covers the preStop sleep
  plus the streamer's drain deadline plus a margin), and the SSE edge: the HTTPRoute, its
  Gateway and the SSE URL agree on the host, only /v1/sessions is routed, the upstream hashes
  consistently on $uri, buffering is off and the read timeout outlasts the heartbeats, and the
  NetworkPolicy admits the Gateway's nginx pods; the ticket keys: public keys only, a file from
  a Secret that an ExternalSecret fills through a SecretStore acting as the pod's ServiceAccount.
  One region throughout: AWS_REGION's @connections endpoint and SecretStore, and with
  SESSION_REGIONS__THIS (overlays/prod-<region>) the same region, named in regions.apis.
  The AppConfig agent: a native sidecar on localhost at the port of SESSION_APPCONFIG__BASE_URL,
  for the streamer's application and environment, pinned to an exact release, locked down. The
  streamer's SESSION_DISCOVERY__MODE is static, cloudmap or dns, and in dns mode names the
  headless Services of infra/k8s/backends (headless.yaml) with their ports.
- --require-digest (prod): the streamer's image must be pinned by digest (name@sha256:...).
- --backends: the render of infra/k8s/backends: internal NLBs of the AWS Load Balancer Controller
  with private DNS names for ExternalDNS, a headless twin of each (the streamer's `dns`
  discovery), and the simulators' Cloud Map registration: their IRSA ServiceAccount, the
  ConfigMap naming the service on the port they serve and, with the simulators' Deployment and
  components/simulator-registration, their pods' name, address and zone from the downward API.
- --collector: the render of infra/k8s/observability (the OpenTelemetry collector): the Service
  selects the pods and is what the streamer's OTEL_EXPORTER_OTLP_ENDPOINT names
  (infra/k8s/base/streamer.env), the receivers listen on the Service's target ports, the
  collector configuration's pipelines use only components it defines with memory_limiter
  first, the probes hit the health_check port, the pods run as the ServiceAccount, and only the
  streamer's namespace may send.
"""

import argparse
import re
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import promql_parser
import yaml

KUBERNETES_VERSIONS = ["1.31.0", "1.37.0"]
EXIT_MARGIN_SECS = 5

# Prometheus Operator duration: 1h30m, 15s, 500ms (monitoring.coreos.com/v1 Duration).
DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
    "additionalProperties": False,
}
LABEL_SELECTOR = {
    "type": "object",
    "properties": {
        "matchLabels": STRING_MAP,
        "matchExpressions": {"type": "array"},
    },
    "additionalProperties": False,
}


def custom_resource(spec: dict, api_version: str = "monitoring.coreos.com/v1", kind: str | None = None) -> dict:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind} if kind else {"type": "string"},
            "metadata": METADATA,
            "spec": spec,
        },
        "additionalProperties": False,
    }


SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): custom_resource(
        {
            "type": "object",
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": LABEL_SELECTOR,
                "namespaceSelector": {"type": "object"},
                "jobLabel": {"type": "string"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": DURATION,
                            "scrapeTimeout": DURATION,
                            "honorLabels": {"type": "boolean"},
                        },
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
        }
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): custom_resource(
        {
            "type": "object",
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": DURATION,
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "oneOf": [
                                        {"required": ["alert"]},
                                        {"required": ["record"]},
                                    ],
                                    "properties": {
                                        "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                        "record": {"type": "string"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": DURATION,
                                        "keep_firing_for": DURATION,
                                        "labels": STRING_MAP,
                                        "annotations": STRING_MAP,
                                    },
                                    "additionalProperties": False,
                                },
                            },
                        },
                        "additionalProperties": False,
                    },
                },
            },
            "additionalProperties": False,
        }
    ),
}


# Gateway API and NGINX Gateway Fabric kinds: schemas transcribed from the released CRDs, one
# file per project and release in crds/ (its header names the source files and the licence).
CRD_DIR = Path(__file__).resolve().parent / "crds"
TRANSCRIBED: dict[tuple[str, str], str] = {}


def load_transcribed() -> None:
    for path in sorted(CRD_DIR.glob("*.yaml")):
        with open(path, encoding="utf-8") as f:
            document = yaml.safe_load(f)
        origin = f"{document['project']} {document['release']} ({path.name})"
        for entry in document["kinds"]:
            key = (entry["apiVersion"], entry["kind"])
            SCHEMAS[key] = custom_resource(entry["spec"], *key)
            TRANSCRIBED[key] = origin


load_transcribed()


def listeners_unique(spec: dict) -> bool:
    seen = [(listener["port"], listener["protocol"], listener.get("hostname")) for listener in spec["listeners"]]
    return len(seen) == len(set(seen))


def key_prefixes_short(spec: dict) -> bool:
    infrastructure = spec.get("infrastructure", {})
    keys = [*infrastructure.get("labels", {}), *infrastructure.get("annotations", {})]
    return all(len(key.split("/")[0]) < 253 for key in keys)


# Gateway API's path rules for Exact and PathPrefix matches (HTTPPathMatch).
PATH_CHARS = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$")


def path_valid(path: dict) -> bool:
    if path.get("type", "PathPrefix") not in ("Exact", "PathPrefix"):
        return True
    value = path.get("value", "/")
    return (
        value.startswith("/")
        and not any(bad in value for bad in ("//", "/./", "/../", "%2f", "%2F", "#"))
        and not value.endswith(("/..", "/."))
        and PATH_CHARS.match(value) is not None
    )


def parent_key(ref: dict, with_section: bool) -> tuple:
    key = (
        ref.get("group", "gateway.networking.k8s.io"),
        ref.get("kind", "Gateway"),
        ref["name"],
        ref.get("namespace", ""),
    )
    return key + (ref.get("sectionName", ""),) if with_section else key


def parent_refs_sectioned(spec: dict) -> bool:
    refs = spec.get("parentRefs", [])
    full = [parent_key(r, True) for r in refs]
    if len(full) != len(set(full)):
        return False
    parents = [parent_key(r, False) for r in refs]
    return all(r.get("sectionName") for r in refs if parents.count(parent_key(r, False)) > 1)


def refs_unique(refs: list[dict], fields: tuple[str, ...]) -> bool:
    keys = [tuple(r.get(f) for f in fields) for r in refs]
    return len(keys) == len(set(keys))


# The CRDs' CEL rules (x-kubernetes-validations) on the transcribed fields, which no JSON Schema
# validator evaluates: (the CRD's message, a Python rendering of its rule over `spec`).
CEL_RULES: dict[str, list[tuple[str, object]]] = {
    "Gateway": [
        (
            "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']",
            lambda s: all(
                "tls" not in listener for listener in s["listeners"] if listener["protocol"] in ("HTTP", "TCP", "UDP")
            ),
        ),
        (
            "tls mode must be Terminate for protocol HTTPS",
            lambda s: all(
                listener["tls"].get("mode", "Terminate") == "Terminate"
                for listener in s["listeners"]
                if listener["protocol"] == "HTTPS" and "tls" in listener
            ),
        ),
        (
            "tls mode must be set for protocol TLS",
            lambda s: all(
                listener.get("tls", {}).get("mode") for listener in s["listeners"] if listener["protocol"] == "TLS"
            ),
        ),
        (
            "certificateRefs or options must be specified when mode is Terminate",
            lambda s: all(
                listener["tls"].get("certificateRefs")
                for listener in s["listeners"]
                if "tls" in listener and listener["tls"].get("mode", "Terminate") == "Terminate"
            ),
        ),
        (
            "hostname must not be specified for protocols ['TCP', 'UDP']",
            lambda s: all(
                not listener.get("hostname") for listener in s["listeners"] if listener["protocol"] in ("TCP", "UDP")
            ),
        ),
        (
            "Listener name must be unique within the Gateway",
            lambda s: len({listener["name"] for listener in s["listeners"]}) == len(s["listeners"]),
        ),
        ("Combination of port, protocol and hostname must be unique for each listener", listeners_unique),
        (
            "If specified, the label and annotation keys' prefix must be a DNS subdomain not longer than 253 "
            "characters",
            key_prefixes_short,
        ),
    ],
    "HTTPRoute": [
        (
            "sectionName must be specified and unique when parentRefs includes 2 or more references to the same parent",
            parent_refs_sectioned,
        ),
        (
            "the total number of matches across all rules in a route must be less than 128",
            lambda s: sum(len(r.get("matches", [])) for r in s.get("rules", [])) <= 128,
        ),
        (
            "path: value must be an absolute path of valid characters, without '//', '/./', '/../', '%2f', '#', "
            "nor ending in '/.' or '/..' (Exact, PathPrefix)",
            lambda s: all(
                path_valid(m["path"]) for r in s.get("rules", []) for m in r.get("matches", []) if "path" in m
            ),
        ),
        (
            "Must have port for Service reference",
            lambda s: all(
                "port" in b
                for r in s.get("rules", [])
                for b in r.get("backendRefs", [])
                if b.get("group", "") == "" and b.get("kind", "Service") == "Service"
            ),
        ),
    ],
    "UpstreamSettingsPolicy": [
        ("TargetRefs Kind must be: Service", lambda s: all(t["kind"] == "Service" for t in s["targetRefs"])),
        ("TargetRefs Group must be core", lambda s: any(t["group"] in ("", "core") for t in s["targetRefs"])),
        ("TargetRef Name must be unique", lambda s: refs_unique(s["targetRefs"], ("name",))),
        (
            "hashMethodKey is required when loadBalancingMethod is 'hash' or 'hash consistent'",
            lambda s: s.get("loadBalancingMethod") not in ("hash", "hash consistent") or "hashMethodKey" in s,
        ),
    ],
    "ProxySettingsPolicy": [
        (
            "TargetRef Kind must be one of: Gateway, HTTPRoute, or GRPCRoute",
            lambda s: all(t["kind"] in ("Gateway", "HTTPRoute", "GRPCRoute") for t in s["targetRefs"]),
        ),
        (
            "TargetRef Group must be gateway.networking.k8s.io",
            lambda s: all(t["group"] == "gateway.networking.k8s.io" for t in s["targetRefs"]),
        ),
        (
            "TargetRef Kind and Name combination must be unique",
            lambda s: refs_unique(s["targetRefs"], ("group", "kind", "name")),
        ),
        (
            "Cannot mix Gateway kind with HTTPRoute or GRPCRoute kinds in targetRefs",
            lambda s: len({t["kind"] == "Gateway" for t in s["targetRefs"]}) == 1,
        ),
    ],
}


class Failures:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.passed = 0

    def check(self, ok: bool, message: str) -> None:
        if ok:
            self.passed += 1
        else:
            self.messages.append(message)


def name_of(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def validate_builtin(obj: dict, failures: Failures) -> None:
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
            failures.check(True, "")
        except kubernetes_validate.ValidationError as e:
            failures.check(False, f"{name_of(obj)} against Kubernetes {version}: {e.message} at {list(e.path)}")


def validate_custom(obj: dict, schema: dict, failures: Failures) -> None:
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
    key = (obj["apiVersion"], obj["kind"])
    for error in errors:
        hint = ""
        if error.validator == "additionalProperties" and key in TRANSCRIBED:
            hint = f" (not in the schema transcribed from {TRANSCRIBED[key]}: misspelt, or add it from that CRD)"
        failures.check(False, f"{name_of(obj)}: {error.message} at {list(error.path)}{hint}")
    if not errors:
        failures.check(True, "")
    if errors:
        return
    for message, rule in CEL_RULES.get(obj["kind"], []):
        failures.check(rule(obj["spec"]), f"{name_of(obj)}: {message} (the CRD's validation rule)")
    if obj["kind"] != "PrometheusRule":
        return
    alerts = []
    for group in obj["spec"]["groups"]:
        for rule in group["rules"]:
            label = rule.get("alert") or rule.get("record")
            alerts.append(label)
            try:
                promql_parser.parse(rule["expr"])
                failures.check(True, "")
            except Exception as e:  # the parser raises its own error types
                failures.check(False, f"{name_of(obj)}: rule {label}: expression does not parse: {e}")
            severity = rule.get("labels", {}).get("severity")
            if "alert" in rule:
                failures.check(
                    severity in ("critical", "warning", "info"),
                    f"{name_of(obj)}: alert {label} needs a severity label (critical, warning or info)",
                )
                failures.check(
                    "summary" in rule.get("annotations", {}),
                    f"{name_of(obj)}: alert {label} needs a summary annotation",
                )
    failures.check(len(alerts) == len(set(alerts)), f"{name_of(obj)}: rule names repeat: {alerts}")


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def consistency(objects: list[dict], failures: Failures) -> None:
    by_kind: dict[str, list[dict]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)

    def one(kind: str) -> dict:
        found = by_kind.get(kind, [])
        failures.check(len(found) == 1, f"expected exactly one {kind}, found {len(found)}")
        return found[0] if found else {}

    deployment, service, config = one("Deployment"), one("Service"), one("ConfigMap")
    if not (deployment and service and config):
        return
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    container = spec["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}

    failures.check(
        matches(deployment["spec"]["selector"]["matchLabels"], pod_labels),
        "the Deployment's selector does not match its pod labels",
    )
    failures.check(matches(service["spec"]["selector"], pod_labels), "the Service selects no streamer pod")
    for port in service["spec"]["ports"]:
        failures.check(
            port["targetPort"] in ports or port["targetPort"] in ports.values(),
            f"Service port {port['name']} targets {port['targetPort']}, which the container does not expose",
        )
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for obj in by_kind.get(kind, []):
            selector = obj["spec"].get("selector") or obj["spec"].get("podSelector")
            failures.check(matches(selector["matchLabels"], pod_labels), f"{name_of(obj)} selects no streamer pod")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        target = hpa["spec"]["scaleTargetRef"]
        failures.check(
            (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"]),
            f"{name_of(hpa)} scales {target['kind']}/{target['name']}, not the Deployment",
        )
        failures.check(
            hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"],
            f"{name_of(hpa)}: minReplicas above maxReplicas",
        )
    for monitor in by_kind.get("ServiceMonitor", []):
        failures.check(
            matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"].get("labels", {})),
            f"{name_of(monitor)} selects no Service",
        )
        service_ports = {p["name"] for p in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            failures.check(
                endpoint.get("port") in service_ports,
                f"{name_of(monitor)} scrapes port {endpoint.get('port')}, which the Service does not name",
            )

    config_refs = [e["configMapRef"]["name"] for e in container.get("envFrom", []) if "configMapRef" in e]
    failures.check(
        config_refs == [config["metadata"]["name"]],
        f"the container reads config maps {config_refs}, the overlay renders {config['metadata']['name']}",
    )
    data = config.get("data", {})
    listen = data.get("SESSION_STREAMER__LISTEN", "")
    failures.check(
        listen.startswith("0.0.0.0:") and int(listen.rsplit(":", 1)[1]) in ports.values(),
        f"SESSION_STREAMER__LISTEN={listen!r} must listen on all interfaces on the container port",
    )
    for key in (
        "SESSION_STORE__TABLE_NAME",
        "SESSION_BACKENDS__AUTH_URL",
        "SESSION_BACKENDS__SIMULATOR_URL",
        "SESSION_STREAMING__SSE_URL",
        "SESSION_STREAMING__WS_URL",
        "SESSION_STREAMER__CONNECTIONS_URL",
        "AWS_REGION",
    ):
        failures.check(bool(data.get(key)), f"the config map lacks {key}")
    failures.check(
        re.match(r"^https://[^/]+/[^/]+$", data.get("SESSION_STREAMER__CONNECTIONS_URL", "")) is not None,
        "SESSION_STREAMER__CONNECTIONS_URL must be https://{api}.execute-api.{region}.amazonaws.com/{stage}",
    )
    sse_edge(by_kind, service, ports, data, failures)

    tls_files = {k: v for k, v in data.items() if k.startswith("SESSION_BACKENDS__TLS__") and k.endswith("_FILE")}
    if tls_files:
        for key in ("SESSION_BACKENDS__AUTH_URL", "SESSION_BACKENDS__SIMULATOR_URL"):
            failures.check(
                data.get(key, "").startswith("https://"),
                f"{key} must be https:// when backends.tls is set (the streamer would refuse to start)",
            )
        secrets = {v["name"]: v["secret"] for v in spec.get("volumes", []) if "secret" in v}
        mounts = {m["mountPath"].rstrip("/"): m["name"] for m in container.get("volumeMounts", [])}
        for key, path in tls_files.items():
            directory, file = path.rsplit("/", 1)
            volume = mounts.get(directory)
            failures.check(volume in secrets, f"{key}={path}: no Secret volume is mounted at {directory}")
            items = secrets.get(volume, {}).get("items")
            failures.check(
                items is None or file in [i["path"] for i in items],
                f"{key}={path}: the Secret volume {volume} does not project {file}",
            )
        print(f"    backend TLS: {len(tls_files)} files from Secret volumes, https:// backends")

    ticket_keys(by_kind, spec, container, data, failures)
    region(by_kind, data, failures)
    appconfig_agent(spec, container, config, failures)
    streamer_discovery(data, failures)

    drain = int(data.get("SESSION_STREAMER__DRAIN_DEADLINE_SECS", "20"))
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    failures.check(
        grace >= pre_stop + drain + EXIT_MARGIN_SECS,
        f"terminationGracePeriodSeconds={grace} does not cover preStop {pre_stop} s + drain deadline "
        f"{drain} s + {EXIT_MARGIN_SECS} s to exit",
    )
    print(f"    shutdown budget: preStop {pre_stop} s + drain {drain} s + exit {EXIT_MARGIN_SECS} s, grace period {grace} s")


APPCONFIG_AGENT_IMAGE = re.compile(r"^public\.ecr\.aws/aws-appconfig/aws-appconfig-agent(:2\.[0-9]+\.[0-9]+)?(@sha256:[0-9a-f]{64})?$")
LOCAL_HOSTS = ("localhost", "127.0.0.1")


def streamer_discovery(data: dict, failures: Failures) -> None:
    """The streamer's discovery mode (infra/k8s/backends for `dns`): one the settings know, and in
    `dns` mode both names are a headless Service of infra/k8s/backends with its port."""
    mode = data.get("SESSION_DISCOVERY__MODE", "static")
    failures.check(
        mode in ("static", "cloudmap", "dns"),
        f"SESSION_DISCOVERY__MODE={mode!r} is none of static, cloudmap, dns",
    )
    if mode != "dns":
        return
    with open(K8S_DIR / "backends" / "headless.yaml", encoding="utf-8") as f:
        headless = [d for d in yaml.safe_load_all(f) if d]
    names = {
        f"{h['metadata']['name']}.{h['metadata']['namespace']}.svc.cluster.local:{h['spec']['ports'][0]['port']}"
        for h in headless
    }
    for key in ("SESSION_DISCOVERY__SIMULATOR_DNS", "SESSION_DISCOVERY__AUTH_DNS"):
        failures.check(
            data.get(key) in names,
            f"{key}={data.get(key)!r}: in dns mode it must name a headless Service of infra/k8s/backends "
            f"({sorted(names)})",
        )


def appconfig_agent(spec: dict, container: dict, config: dict, failures: Failures) -> None:
    """The AppConfig agent sidecar serves what the streamer asks for: a native sidecar (an init
    container with restartPolicy Always) listening on localhost at the port of
    SESSION_APPCONFIG__BASE_URL, for the application and environment the streamer names (the
    same config map keys), pinned to an exact release, bounded and locked down like the
    streamer."""
    data = config.get("data", {})
    base_url = data.get("SESSION_APPCONFIG__BASE_URL")
    agents = [c for c in spec.get("initContainers", []) if "aws-appconfig-agent" in c.get("image", "")]
    if not base_url:
        failures.check(not agents, "an AppConfig agent runs beside the streamer, but SESSION_APPCONFIG__BASE_URL is unset")
        return
    failures.check(len(agents) == 1, f"SESSION_APPCONFIG__BASE_URL={base_url}: expected one AppConfig agent init container, found {len(agents)}")
    if len(agents) != 1:
        return
    agent = agents[0]
    name = f"AppConfig agent {agent['name']}"
    failures.check(
        agent.get("restartPolicy") == "Always",
        f"{name}: must be a native sidecar (restartPolicy: Always), or it runs once before the streamer and exits",
    )
    match = re.fullmatch(r"http://([^:/]+):([0-9]+)", base_url)
    failures.check(
        match is not None and match.group(1) in LOCAL_HOSTS,
        f"SESSION_APPCONFIG__BASE_URL={base_url} must be http://localhost:<port>: the agent is in the pod",
    )
    env = {e["name"]: e for e in agent.get("env", [])}

    def value(key: str) -> str | None:
        return env.get(key, {}).get("value")

    port = match.group(2) if match else None
    failures.check(
        value("HTTP_PORT") == port,
        f"{name}: HTTP_PORT={value('HTTP_PORT')!r}, but the streamer asks port {port} (SESSION_APPCONFIG__BASE_URL)",
    )
    failures.check(
        value("HTTP_HOST") in LOCAL_HOSTS,
        f"{name}: HTTP_HOST={value('HTTP_HOST')!r} must be localhost: nothing outside the pod may read the configuration",
    )
    failures.check(not agent.get("ports"), f"{name}: declares ports, but it listens on localhost only")
    config_name = config["metadata"]["name"]
    for key in ("SESSION_APPCONFIG__APPLICATION", "SESSION_APPCONFIG__ENVIRONMENT"):
        ref = env.get(key, {}).get("valueFrom", {}).get("configMapKeyRef", {})
        failures.check(
            ref.get("name") == config_name and ref.get("key") == key,
            f"{name}: {key} must come from the streamer's config map {config_name} (key {key}), so both name the same profile",
        )
        failures.check(bool(data.get(key)), f"the config map lacks {key} (the stack's AppConfig output)")
    region = env.get("SERVICE_REGION", {}).get("valueFrom", {}).get("configMapKeyRef", {})
    failures.check(
        region.get("name") == config_name and region.get("key") == "AWS_REGION",
        f"{name}: SERVICE_REGION must be the streamer's AWS_REGION (config map {config_name})",
    )
    prefetch = value("PREFETCH_LIST") or ""
    failures.check(
        prefetch.startswith(
            "/applications/$(SESSION_APPCONFIG__APPLICATION)/environments/$(SESSION_APPCONFIG__ENVIRONMENT)/configurations/"
        ),
        f"{name}: PREFETCH_LIST={prefetch!r} must name the streamer's application and environment",
    )
    failures.check(
        APPCONFIG_AGENT_IMAGE.match(agent.get("image", "")) is not None and ":2.x" not in agent["image"],
        f"{name}: runs {agent.get('image')}; pin an exact release (aws-appconfig-agent:2.N.N, or by digest)",
    )
    resources = agent.get("resources", {})
    failures.check(
        bool(resources.get("requests")) and bool(resources.get("limits", {}).get("memory")),
        f"{name}: needs resource requests and a memory limit",
    )
    security = agent.get("securityContext", {})
    failures.check(
        security.get("readOnlyRootFilesystem") is True
        and security.get("allowPrivilegeEscalation") is False
        and security.get("runAsNonRoot") is True
        and security.get("capabilities", {}).get("drop") == ["ALL"],
        f"{name}: must run non-root, read-only, without privilege escalation and with every capability dropped",
    )
    print(f"    AppConfig agent: native sidecar {agent['image']} on localhost:{port}, as {base_url} asks")


def ticket_keys(by_kind: dict, spec: dict, container: dict, data: dict, failures: Failures) -> None:
    """The streamer verifies tickets with public keys only: a JWKS file from a Secret volume that
    an ExternalSecret fills through a SecretStore authenticated as the pod's ServiceAccount."""
    failures.check(
        not any(k.startswith("SESSION_AUTH__TICKET_SIGNING_KEY") for k in data),
        "the streamer must not get the ticket signing key (only the REST API signs)",
    )
    path = data.get("SESSION_AUTH__TICKET_VERIFY_KEYS_FILE", "")
    failures.check(path.startswith("/"), "the config map lacks SESSION_AUTH__TICKET_VERIFY_KEYS_FILE")
    if not path.startswith("/"):
        return
    directory, file = path.rsplit("/", 1)
    secrets = {v["name"]: v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in container.get("volumeMounts", [])}
    secret = secrets.get(mounts.get(directory))
    failures.check(secret is not None, f"SESSION_AUTH__TICKET_VERIFY_KEYS_FILE={path}: no Secret volume is mounted at {directory}")
    filling = [e for e in by_kind.get("ExternalSecret", []) if e["spec"].get("target", {}).get("name") == secret]
    failures.check(len(filling) == 1, f"no ExternalSecret fills the Secret {secret} the ticket keys come from")
    if len(filling) != 1:
        return
    external = filling[0]
    keys = [d["secretKey"] for d in external["spec"].get("data", [])]
    failures.check(file in keys, f"{name_of(external)} writes {keys}, not {file}")
    store_name = external["spec"].get("secretStoreRef", {}).get("name")
    stores = [s for s in by_kind.get("SecretStore", []) if s["metadata"]["name"] == store_name]
    failures.check(len(stores) == 1, f"{name_of(external)} names SecretStore {store_name}, which is not rendered")
    if stores:
        account = stores[0]["spec"]["provider"].get("aws", {}).get("auth", {}).get("jwt", {}).get("serviceAccountRef", {})
        failures.check(
            account.get("name") == spec.get("serviceAccountName"),
            f"{name_of(stores[0])} authenticates as {account.get('name')}, not the streamer's ServiceAccount "
            f"{spec.get('serviceAccountName')} (whose IRSA role may read the keys)",
        )
    print(f"    ticket keys: {path} from Secret {secret}, filled by {name_of(external)}")


def region(by_kind: dict, data: dict, failures: Failures) -> None:
    """One region throughout (overlays/prod-<region> patch each of these): the SDK signs the
    @connections calls for AWS_REGION, the ticket keys come from that region's Secrets Manager, and
    the streamer admits the tickets of SESSION_REGIONS__THIS only, which regions.apis must name."""
    aws_region = data.get("AWS_REGION", "")
    connections = data.get("SESSION_STREAMER__CONNECTIONS_URL", "")
    failures.check(
        f".execute-api.{aws_region}." in connections,
        f"SESSION_STREAMER__CONNECTIONS_URL={connections} is not in AWS_REGION={aws_region}",
    )
    for store in by_kind.get("SecretStore", []):
        store_region = store["spec"]["provider"].get("aws", {}).get("region")
        failures.check(
            store_region == aws_region,
            f"{name_of(store)} reads Secrets Manager in {store_region}, not AWS_REGION={aws_region}",
        )
    this = data.get("SESSION_REGIONS__THIS")
    if this is None:
        return
    prefix = "SESSION_REGIONS__APIS__"
    apis = sorted(key.removeprefix(prefix).lower() for key in data if key.startswith(prefix))
    failures.check(this == aws_region, f"SESSION_REGIONS__THIS={this} is not AWS_REGION={aws_region}")
    failures.check(this in apis, f"SESSION_REGIONS__APIS__* names {apis}, not this region {this}")
    primary = data.get("SESSION_REGIONS__PRIMARY", this)
    failures.check(primary in apis, f"SESSION_REGIONS__PRIMARY={primary} has no SESSION_REGIONS__APIS__* entry")
    if len(apis) > 1:
        # Sessions homed elsewhere stream from their home's simulator servers, in another
        # cluster: an address outside this one, on the simulator port.
        port = endpoint_port(data.get("SESSION_BACKENDS__SIMULATOR_URL", "")) or 50051
        failures.check(
            any(other_clusters(rule, port) for policy in by_kind.get("NetworkPolicy", [])
                for rule in policy["spec"].get("egress", [])),
            f"a multi-region streamer streams the other regions' simulators: its NetworkPolicy must "
            f"let it reach their clusters (an ipBlock narrower than 0.0.0.0/0) on port {port}",
        )
    print(f"    region {this} (primary {primary}, regions {apis}): AWS_REGION, @connections and ticket keys agree")


def other_clusters(rule: dict, port: int) -> bool:
    """Whether egress `rule` lets the streamer reach addresses outside its cluster, but not
    everywhere, on `port`."""
    blocks = [peer["ipBlock"]["cidr"] for peer in rule.get("to", []) if "ipBlock" in peer]
    ports = [p.get("port") for p in rule.get("ports", [])]
    return bool(blocks) and "0.0.0.0/0" not in blocks and port in ports


# The SSE edge (Gateway, HTTPRoute and NGINX Gateway Fabric's policies; infra/k8s/base).
GATEWAY_POD_LABEL = "gateway.networking.k8s.io/gateway-name"
ROUTED_PREFIX = "/v1/sessions"
# A quiet stream still carries a comment every streamer.heartbeat_secs; the read timeout must
# outlast several of them, or nginx cuts streams that are merely quiet.
MIN_HEARTBEATS_PER_READ_TIMEOUT = 4


def nginx_seconds(value: str) -> float:
    number, unit = re.fullmatch(r"([0-9]+)(ms|s|m|h)?", value).groups()
    return int(number) * {"ms": 0.001, None: 1, "s": 1, "m": 60, "h": 3600}[unit]


def hostname_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return pattern == host


def sse_edge(
    by_kind: dict[str, list[dict]], service: dict, container_ports: dict, data: dict, failures: Failures
) -> None:
    routes = by_kind.get("HTTPRoute", [])
    failures.check(len(routes) == 1, f"expected exactly one HTTPRoute for the streams, found {len(routes)}")
    if len(routes) != 1:
        return
    route = routes[0]
    spec, namespace = route["spec"], route["metadata"]["namespace"]
    host = data.get("SESSION_STREAMING__SSE_URL", "").removeprefix("https://").split("/")[0]
    service_name = service["metadata"]["name"]
    service_ports = {p["port"] for p in service["spec"]["ports"]}
    gateways = {g["metadata"]["name"]: g for g in by_kind.get("Gateway", [])}

    failures.check(
        host in spec.get("hostnames", []),
        f"{name_of(route)} does not serve the host of SESSION_STREAMING__SSE_URL ({host}): "
        f"hostnames {spec.get('hostnames', [])}",
    )
    parents = []
    for ref in spec.get("parentRefs", []):
        if ref.get("kind", "Gateway") != "Gateway" or ref.get("namespace", namespace) != namespace:
            print(
                f"    {name_of(route)}: parent {ref['name']} is outside this render "
                "(a cluster-owned Gateway): not checked"
            )
            continue
        gateway = gateways.get(ref["name"])
        failures.check(
            gateway is not None, f"{name_of(route)} attaches to Gateway/{ref['name']}, which is not in the render"
        )
        if gateway is None:
            continue
        parents.append(ref["name"])
        listeners = [
            listener for listener in gateway["spec"]["listeners"] if ref.get("sectionName") in (None, listener["name"])
        ]
        failures.check(
            bool(listeners),
            f"{name_of(route)} attaches to listener {ref.get('sectionName')}, which Gateway/{ref['name']} lacks",
        )
        for listener in listeners:
            kinds = [k["kind"] for k in listener.get("allowedRoutes", {}).get("kinds", [])]
            failures.check(
                not kinds or "HTTPRoute" in kinds,
                f"Gateway/{ref['name']} listener {listener['name']} admits no HTTPRoute",
            )
            failures.check(
                hostname_matches(listener.get("hostname", host), host),
                f"Gateway/{ref['name']} listener {listener['name']} ({listener.get('hostname')}) does not serve "
                f"the host of SESSION_STREAMING__SSE_URL ({host})",
            )
    for name, gateway in gateways.items():
        for listener in gateway["spec"]["listeners"]:
            failures.check(
                listener["protocol"] == "HTTPS" and bool(listener.get("tls", {}).get("certificateRefs")),
                f"Gateway/{name} listener {listener['name']}: every listener must be HTTPS with a certificate "
                "(TLS ends at the Gateway; the stream URLs are https://, so there is no plain-HTTP listener)",
            )
        reference = gateway["spec"].get("infrastructure", {}).get("parametersRef")
        if reference:
            failures.check(
                reference["name"] in [o["metadata"]["name"] for o in by_kind.get(reference["kind"], [])],
                f"Gateway/{name}: infrastructure.parametersRef names {reference['kind']}/{reference['name']}, "
                "which is not in the render",
            )

    for rule in spec["rules"]:
        # No matches at all is Gateway API's default: every path.
        for match in rule.get("matches") or [{}]:
            value = match.get("path", {}).get("value", "/")
            failures.check(
                value == ROUTED_PREFIX or value.startswith(ROUTED_PREFIX + "/"),
                f"{name_of(route)} routes {value}: only {ROUTED_PREFIX} may be routed "
                "(health and metrics stay inside the cluster)",
            )
        for backend in rule.get("backendRefs", []):
            failures.check(
                (backend.get("group", ""), backend.get("kind", "Service")) == ("", "Service")
                and backend["name"] == service_name
                and backend.get("port") in service_ports,
                f"{name_of(route)} routes to {backend['name']}:{backend.get('port')}, "
                f"not to a port of Service/{service_name}",
            )

    hashing = [
        p
        for p in by_kind.get("UpstreamSettingsPolicy", [])
        if any(t["kind"] == "Service" and t["name"] == service_name for t in p["spec"]["targetRefs"])
    ]
    failures.check(
        len(hashing) == 1
        and hashing[0]["spec"].get("loadBalancingMethod") == "hash consistent"
        and hashing[0]["spec"].get("hashMethodKey") == "$uri",
        f"exactly one UpstreamSettingsPolicy must give Service/{service_name} loadBalancingMethod "
        "'hash consistent' with hashMethodKey '$uri': every client of a session must reach the same pod, "
        "and $uri (the path, without the ticket) names the session",
    )

    targets = {("HTTPRoute", route["metadata"]["name"])} | {("Gateway", g) for g in parents}
    proxy = [
        p
        for p in by_kind.get("ProxySettingsPolicy", [])
        if any((t["kind"], t["name"]) in targets for t in p["spec"]["targetRefs"])
    ]
    failures.check(bool(proxy), f"no ProxySettingsPolicy applies to {name_of(route)}: nginx would buffer the events")
    heartbeat = int(data.get("SESSION_STREAMER__HEARTBEAT_SECS", "15"))
    read = None
    for policy in proxy:
        failures.check(
            policy["spec"].get("buffering", {}).get("disable") is True,
            f"{name_of(policy)} must set buffering.disable: true (events go out as they are written)",
        )
        read = policy["spec"].get("timeout", {}).get("read")
        failures.check(
            read is not None and nginx_seconds(read) >= MIN_HEARTBEATS_PER_READ_TIMEOUT * heartbeat,
            f"{name_of(policy)}: timeout.read ({read}) must outlast {MIN_HEARTBEATS_PER_READ_TIMEOUT} heartbeats of "
            f"{heartbeat} s, or nginx cuts quiet streams",
        )

    # The Gateway's nginx pods, which NGF labels with the Gateway's name in its namespace, must be
    # let in on the port the route reaches.
    target_ports = {p["targetPort"] for p in service["spec"]["ports"]}
    target_ports |= {container_ports.get(t, t) for t in target_ports}
    for name in parents:
        admitted = any(
            "namespaceSelector" not in peer
            and peer.get("podSelector", {}).get("matchLabels", {}).get(GATEWAY_POD_LABEL) == name
            and (not rule.get("ports") or any(p.get("port") in target_ports for p in rule["ports"]))
            for policy in by_kind.get("NetworkPolicy", [])
            for rule in policy["spec"].get("ingress", [])
            for peer in rule.get("from", [])
        )
        failures.check(
            admitted,
            f"no NetworkPolicy admits the pods of Gateway/{name} ({GATEWAY_POD_LABEL}: {name}) to the streamer's port",
        )
    print(
        f"    SSE edge: https://{host}{ROUTED_PREFIX} -> {name_of(route)} -> Service/{service_name}, "
        f"hash $uri consistent, buffering off, read timeout {read}"
    )


def image_by_digest(objects: list[dict], failures: Failures) -> None:
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            image = container["image"]
            failures.check(
                re.fullmatch(r"[^@\s]+@sha256:[0-9a-f]{64}", image) is not None,
                f"{name_of(obj)}: container {container['name']} runs {image}; it must be pinned by digest "
                "(name@sha256:<64 hex>, the overlay's images[].digest)",
            )
            print(f"    image by digest: {image}")


# infra/k8s/backends: internal NLBs for the gRPC backends, named in a private zone.
NLB_CLASS = "service.k8s.aws/nlb"
LB = "service.beta.kubernetes.io/aws-load-balancer-"
DNS_NAME = re.compile(r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def backends(objects: list[dict], failures: Failures) -> None:
    failures.check(bool(objects), "the backends render is empty")
    services = [o for o in objects if o["kind"] == "Service"]
    nlbs = [s for s in services if s["spec"].get("type") == "LoadBalancer"]
    headless = [s for s in services if s["spec"].get("type") != "LoadBalancer"]
    for obj in objects:
        failures.check(
            obj["kind"] in BACKENDS_KINDS,
            f"{name_of(obj)}: only {', '.join(BACKENDS_KINDS)} belong to infra/k8s/backends "
            "(and the simulators' own Deployment, with components/simulator-registration)",
        )
    names = []
    for obj in services:
        spec, service = obj["spec"], name_of(obj)
        failures.check(bool(obj["metadata"].get("namespace")), f"{service}: must name the backend's namespace")
        failures.check(bool(spec.get("selector")), f"{service}: selects no pods")
    for obj in nlbs:
        spec, annotations, service = obj["spec"], obj["metadata"].get("annotations", {}), name_of(obj)
        ports = [p["port"] for p in spec.get("ports", [])]
        failures.check(
            spec.get("loadBalancerClass") == NLB_CLASS,
            f"{service}: must be type LoadBalancer with loadBalancerClass {NLB_CLASS} "
            "(only the AWS Load Balancer Controller makes its load balancer)",
        )
        failures.check(
            annotations.get(LB + "scheme") == "internal",
            f"{service}: the NLB must be internal ({LB}scheme: internal): the backends are never on the internet",
        )
        failures.check(
            annotations.get(LB + "nlb-target-type") == "ip",
            f"{service}: the NLB must target the pods' IPs ({LB}nlb-target-type: ip)",
        )
        failures.check(
            annotations.get(LB + "healthcheck-protocol") == "TCP"
            and annotations.get(LB + "healthcheck-port") in ("traffic-port", *map(str, ports)),
            f"{service}: the NLB's health check must open the gRPC port "
            f"({LB}healthcheck-protocol: TCP, healthcheck-port: traffic-port)",
        )
        hostname = annotations.get("external-dns.alpha.kubernetes.io/hostname", "")
        failures.check(
            DNS_NAME.match(hostname) is not None,
            f"{service}: needs its private DNS name in external-dns.alpha.kubernetes.io/hostname, found {hostname!r}",
        )
        names.append(hostname)
        print(f"    {service}: internal NLB, {hostname}:{','.join(map(str, ports))}")
    zones = {n.split(".", 1)[-1] for n in names}
    failures.check(
        len(zones) == 1 and len(set(names)) == len(names),
        f"the backends' DNS names must be distinct and in one private zone "
        f"(the stack's BackendsPrivateZoneName): {names}",
    )
    # The streamer's `dns` mode: each NLB's pods again, one A record per ready pod.
    for nlb in nlbs:
        namespace, selector = nlb["metadata"].get("namespace"), nlb["spec"].get("selector")
        twins = [h for h in headless if h["metadata"].get("namespace") == namespace and h["spec"].get("selector") == selector]
        failures.check(
            len(twins) == 1,
            f"{name_of(nlb)}: needs one headless Service of the same pods for discovery.mode dns, found {len(twins)}",
        )
    for obj in headless:
        spec, service = obj["spec"], name_of(obj)
        failures.check(
            spec.get("clusterIP") == "None",
            f"{service}: must be headless (clusterIP: None): discovery.mode dns needs each server's own address",
        )
        failures.check(
            not spec.get("publishNotReadyAddresses", False),
            f"{service}: must not publish pods that are not ready (publishNotReadyAddresses: false)",
        )
        twin = [n for n in nlbs if n["metadata"].get("namespace") == obj["metadata"].get("namespace") and n["spec"].get("selector") == spec.get("selector")]
        ports = [(p["port"], p.get("targetPort")) for p in spec.get("ports", [])]
        failures.check(
            bool(twin) and ports == [(p["port"], p.get("targetPort")) for p in twin[0]["spec"].get("ports", [])],
            f"{service}: must select the pods of an NLB Service beside it, on its ports {ports}",
        )
        if spec.get("clusterIP") == "None":
            port = ports[0][0] if ports else "?"
            print(f"    {service}: headless, {obj['metadata']['name']}.{obj['metadata'].get('namespace')}.svc.cluster.local:{port}")
    simulator_registration(objects, nlbs, failures)


def simulator_registration(objects: list[dict], nlbs: list[dict], failures: Failures) -> None:
    """The simulator servers' own Cloud Map registration: their IRSA ServiceAccount, the ConfigMap
    naming the service, and (when the simulators' Deployment is in the render, with
    components/simulator-registration) their pods' wiring."""
    accounts = [o for o in objects if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == SIMULATOR_ACCOUNT]
    configs = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == REGISTRATION_CONFIG]
    failures.check(len(accounts) == 1, f"the simulators need their ServiceAccount {SIMULATOR_ACCOUNT} (IRSA) for Cloud Map")
    failures.check(len(configs) == 1, f"the simulators need the ConfigMap {REGISTRATION_CONFIG} naming their Cloud Map service")
    if len(accounts) != 1 or len(configs) != 1:
        return
    account, config = accounts[0], configs[0]
    namespace = account["metadata"].get("namespace")
    role = account["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn", "")
    failures.check(
        re.match(r"^arn:aws[a-zA-Z-]*:iam::[0-9]{12}:role/.+$", role) is not None,
        f"{name_of(account)}: needs eks.amazonaws.com/role-arn (the stack's SimulatorRegistrarRoleArn), found {role!r}",
    )
    failures.check(
        config["metadata"].get("namespace") == namespace,
        f"{name_of(config)}: must live in the simulators' namespace {namespace}",
    )
    data = config.get("data", {})
    missing = [k for k in REGISTRATION_KEYS if not data.get(k)]
    failures.check(not missing, f"{name_of(config)}: lacks {missing}")
    failures.check(
        data.get("CLOUDMAP_SERVICE") == "simulator",
        f"{name_of(config)}: CLOUDMAP_SERVICE={data.get('CLOUDMAP_SERVICE')!r}, but the stack's service "
        "(and discovery.simulator_service) is 'simulator'",
    )
    served = [p["port"] for n in nlbs if n["metadata"].get("namespace") == namespace for p in n["spec"].get("ports", [])]
    failures.check(
        data.get("AWS_INSTANCE_PORT") in map(str, served),
        f"{name_of(config)}: AWS_INSTANCE_PORT={data.get('AWS_INSTANCE_PORT')!r}, but the simulators serve on {served}",
    )
    print(f"    {name_of(account)}: IRSA for Cloud Map registration; {name_of(config)}: {data.get('CLOUDMAP_NAMESPACE')}/{data.get('CLOUDMAP_SERVICE')}")
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        failures.check(
            pod.get("serviceAccountName") == SIMULATOR_ACCOUNT and deployment["metadata"].get("namespace") == namespace,
            f"{name_of(deployment)}: must run as {namespace}/{SIMULATOR_ACCOUNT} (its IRSA role registers it)",
        )
        container = pod["containers"][0]
        env = {e["name"]: e for e in container.get("env", [])}
        for key in REGISTRATION_KEYS:
            source = env.get(key, {}).get("valueFrom", {}).get("configMapKeyRef", {})
            failures.check(
                source == {"name": REGISTRATION_CONFIG, "key": key},
                f"{name_of(deployment)}: {key} must come from the ConfigMap {REGISTRATION_CONFIG}",
            )
        for key, path in DOWNWARD.items():
            found = env.get(key, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            failures.check(found == path, f"{name_of(deployment)}: {key} must be the downward API's {path}, found {found!r}")
        ports = [p.get("containerPort") for p in container.get("ports", [])]
        failures.check(
            not ports or data.get("AWS_INSTANCE_PORT") in map(str, ports),
            f"{name_of(deployment)}: registers port {data.get('AWS_INSTANCE_PORT')}, but its container serves {ports}",
        )
        print(f"    {name_of(deployment)}: registers itself in Cloud Map as its pod (name, IP, zone)")


BACKENDS_KINDS = ("Service", "ServiceAccount", "ConfigMap", "Deployment")
SIMULATOR_ACCOUNT = "exchange-simulator"
REGISTRATION_CONFIG = "simulator-registration"
REGISTRATION_KEYS = ("CLOUDMAP_NAMESPACE", "CLOUDMAP_SERVICE", "CLOUDMAP_SERVICE_ID", "AWS_INSTANCE_PORT")
# What a simulator server registers about itself: its pod's name (the instance id), address and
# node's zone (copied onto the pod by PodTopologyLabelsAdmission).
DOWNWARD = {
    "CLOUDMAP_INSTANCE_ID": "metadata.name",
    "AWS_INSTANCE_IPV4": "status.podIP",
    "CLOUDMAP_ZONE": "metadata.labels['topology.kubernetes.io/zone']",
}


# infra/k8s/observability: the OpenTelemetry collector the streamer exports its traces to.
K8S_DIR = Path(__file__).resolve().parent.parent / "k8s"
STREAMER_ENV = K8S_DIR / "base" / "streamer.env"
STREAMER_KUSTOMIZATION = K8S_DIR / "base" / "kustomization.yaml"
COMPONENT_KINDS = ("receivers", "processors", "exporters", "extensions")


def env_file(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


def endpoint_port(endpoint: str) -> int | None:
    match = re.search(r":([0-9]+)$", endpoint or "")
    return int(match.group(1)) if match else None


def collector_config(deployment: dict, configs: list[dict], failures: Failures) -> dict:
    """The collector's configuration: the file its --config names, from the mounted ConfigMap."""
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    flags = [a.split("=", 1)[1] for a in container.get("args", []) if a.startswith("--config=")]
    failures.check(len(flags) == 1, f"{name_of(deployment)}: the collector needs exactly one --config=FILE argument")
    if len(flags) != 1:
        return {}
    directory, file = flags[0].rsplit("/", 1)
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v}
    config_name = volumes.get(mounts.get(directory))
    found = [c for c in configs if c["metadata"]["name"] == config_name and file in c.get("data", {})]
    failures.check(
        len(found) == 1,
        f"--config={flags[0]}: no rendered ConfigMap with the key {file} is mounted at {directory}",
    )
    if len(found) != 1:
        return {}
    try:
        config = yaml.safe_load(found[0]["data"][file])
    except yaml.YAMLError as e:
        failures.check(False, f"{name_of(found[0])}: {file} is not YAML: {e}")
        return {}
    failures.check(isinstance(config, dict), f"{name_of(found[0])}: {file} is not a mapping")
    return config if isinstance(config, dict) else {}


def collector(objects: list[dict], failures: Failures) -> None:
    by_kind: dict[str, list[dict]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)

    def one(kind: str) -> dict:
        found = by_kind.get(kind, [])
        failures.check(len(found) == 1, f"expected exactly one {kind}, found {len(found)}")
        return found[0] if len(found) == 1 else {}

    deployment, service = one("Deployment"), one("Service")
    account, policy = one("ServiceAccount"), one("NetworkPolicy")
    if not (deployment and service and account and policy):
        return
    pod = deployment["spec"]["template"]
    pod_labels, spec = pod["metadata"]["labels"], pod["spec"]
    container = spec["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}

    def port_number(port: object) -> object:
        return ports.get(port, port)

    # The objects select the collector's pods.
    failures.check(
        matches(deployment["spec"]["selector"]["matchLabels"], pod_labels),
        "the Deployment's selector does not match its pod labels",
    )
    failures.check(matches(service["spec"].get("selector", {}), pod_labels), "the Service selects no collector pod")
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for obj in by_kind.get(kind, []):
            selector = obj["spec"].get("selector") or obj["spec"].get("podSelector")
            failures.check(matches(selector["matchLabels"], pod_labels), f"{name_of(obj)} selects no collector pod")
    failures.check(
        spec.get("serviceAccountName") == account["metadata"]["name"],
        f"the pods run as ServiceAccount {spec.get('serviceAccountName')}, "
        f"the render has {account['metadata']['name']}",
    )
    failures.check(
        bool(account["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn")),
        f"{name_of(account)} needs eks.amazonaws.com/role-arn (the stack's CollectorRoleArn): "
        "X-Ray takes signed calls only",
    )

    # The streamer's endpoint is this Service's gRPC port.
    namespace = service["metadata"].get("namespace", "")
    host = f"{service['metadata']['name']}.{namespace}.svc.cluster.local"
    target_ports = {}
    for port in service["spec"]["ports"]:
        number = port_number(port["targetPort"])
        failures.check(
            number in ports.values(),
            f"Service port {port['name']} targets {port['targetPort']}, which the container does not expose",
        )
        target_ports[port["port"]] = number
    endpoint = env_file(STREAMER_ENV).get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    match = re.fullmatch(r"https?://([^:/]+):([0-9]+)/?", endpoint)
    failures.check(
        match is not None and match.group(1) == host and int(match.group(2)) in target_ports,
        f"{STREAMER_ENV.name}: OTEL_EXPORTER_OTLP_ENDPOINT={endpoint!r} must name "
        f"Service/{service['metadata']['name']} "
        f"as http://{host}:<a port of it> (ports {sorted(target_ports)})",
    )
    grpc = [p for p in service["spec"]["ports"] if match and p["port"] == int(match.group(2))]
    failures.check(
        bool(grpc) and grpc[0].get("appProtocol") == "grpc",
        f"the Service port the streamer sends to ({endpoint}) must declare appProtocol: grpc",
    )

    # The configuration: pipelines of defined components, memory_limiter first.
    config = collector_config(deployment, by_kind.get("ConfigMap", []), failures)
    if not config:
        return
    defined = {kind: set((config.get(kind) or {}).keys()) for kind in COMPONENT_KINDS}
    service_config = config.get("service") or {}
    pipelines = service_config.get("pipelines") or {}
    failures.check(bool(pipelines), "the collector configuration has no service.pipelines")
    for name, pipeline in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            used = pipeline.get(kind) or []
            failures.check(bool(used) or kind == "processors", f"pipeline {name} has no {kind}")
            for component in used:
                failures.check(
                    component in defined[kind],
                    f"pipeline {name} names {kind[:-1]} {component}, which the collector configuration does not define "
                    f"(defined: {sorted(defined[kind])})",
                )
        processors = pipeline.get("processors") or []
        failures.check(
            bool(processors) and processors[0].split("/")[0] == "memory_limiter",
            f"pipeline {name}: memory_limiter must be the first processor (it refuses data before the pod runs out "
            f"of memory), found {processors}",
        )
    for extension in service_config.get("extensions") or []:
        failures.check(
            extension in defined["extensions"],
            f"service.extensions names {extension}, which the collector configuration does not define",
        )

    # The OTLP receivers listen on exactly the ports the Service targets.
    listened = set()
    for name, receiver in (config.get("receivers") or {}).items():
        if name.split("/")[0] != "otlp":
            continue
        for protocol in (receiver or {}).get("protocols", {}).values():
            listened.add(endpoint_port((protocol or {}).get("endpoint", "")))
    failures.check(
        listened == set(target_ports.values()),
        f"the OTLP receivers listen on ports {sorted(map(str, listened))}, the Service targets "
        f"{sorted(map(str, target_ports.values()))}",
    )

    # The probes ask the health_check extension.
    health = [
        endpoint_port((settings or {}).get("endpoint", ""))
        for name, settings in (config.get("extensions") or {}).items()
        if name.split("/")[0] == "health_check" and name in (service_config.get("extensions") or [])
    ]
    failures.check(len(health) == 1, "the collector needs one health_check extension, enabled in service.extensions")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        port = port_number(container.get(probe, {}).get("httpGet", {}).get("port"))
        failures.check(
            bool(health) and port == health[0],
            f"{probe} asks port {port}, the health_check extension listens on {health[0] if health else None}",
        )

    # The region comes from the environment the pods get.
    env_configs = [e["configMapRef"]["name"] for e in container.get("envFrom", []) if "configMapRef" in e]
    env = {}
    for config_map in by_kind.get("ConfigMap", []):
        if config_map["metadata"]["name"] in env_configs:
            env.update(config_map.get("data", {}))
    env.update({e["name"]: e.get("value", "") for e in container.get("env", [])})
    failures.check(
        len(env_configs) == len([c for c in by_kind.get("ConfigMap", []) if c["metadata"]["name"] in env_configs]),
        f"the container reads config maps {env_configs}, which are not all rendered",
    )
    for reference in sorted(set(re.findall(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}", yaml.safe_dump(config)))):
        failures.check(
            reference in env, f"the collector configuration reads ${{env:{reference}}}, which the pods do not set"
        )

    # Only the streamer's namespace sends, and only to the receivers.
    streamer_namespace = yaml.safe_load(STREAMER_KUSTOMIZATION.read_text(encoding="utf-8"))["namespace"]
    for rule in policy["spec"].get("ingress", []):
        peers = rule.get("from", [])
        failures.check(
            bool(peers)
            and all(
                set(peer) == {"namespaceSelector"}
                and peer["namespaceSelector"].get("matchLabels") == {"kubernetes.io/metadata.name": streamer_namespace}
                for peer in peers
            ),
            f"{name_of(policy)}: ingress only from the namespace {streamer_namespace}, found {peers}",
        )
        admitted = {port_number(p.get("port")) for p in rule.get("ports", [])}
        failures.check(
            bool(admitted) and admitted <= listened,
            f"{name_of(policy)}: ingress only to the OTLP ports {sorted(map(str, listened))}, "
            f"found {sorted(map(str, admitted))}",
        )
    print(
        f"    collector: {endpoint} -> Service/{service['metadata']['name']} -> OTLP on "
        f"{sorted(map(str, listened))}, pipelines {sorted(pipelines)}, health on {health[0] if health else None}, "
        f"ServiceAccount {account['metadata']['name']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rendered", help="the output of kubectl kustomize")
    parser.add_argument("--require-digest", action="store_true", help="the streamer's image must be pinned by digest")
    parser.add_argument("--backends", action="store_true", help="the render of infra/k8s/backends")
    parser.add_argument("--collector", action="store_true", help="the render of infra/k8s/observability")
    args = parser.parse_args()
    path = args.rendered
    with open(path, encoding="utf-8") as f:
        objects = [d for d in yaml.safe_load_all(f) if d]
    failures = Failures()
    for obj in objects:
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in SCHEMAS:
            validate_custom(obj, SCHEMAS[key], failures)
            source = TRANSCRIBED.get(key, "Prometheus Operator")
            print(f"    {name_of(obj)}: custom resource, against the transcribed CRD schema of {source}, strict")
            continue
        try:
            validate_builtin(obj, failures)
            print(f"    {name_of(obj)}: Kubernetes {', '.join(KUBERNETES_VERSIONS)} schemas (strict)")
        except kubernetes_validate.SchemaNotFoundError:
            failures.check(False, f"{name_of(obj)}: no schema for {key}; add one to {__file__} before using the kind")
    if args.backends:
        backends(objects, failures)
    elif args.collector:
        collector(objects, failures)
    else:
        consistency(objects, failures)
    if args.require_digest:
        image_by_digest(objects, failures)
    if failures.messages:
        print(f"FAILED: {len(failures.messages)} problem(s) in {path}:")
        for message in failures.messages:
            print(f"  - {message}")
        sys.exit(1)
    print(f"    {len(objects)} objects, {failures.passed} checks passed")


if __name__ == "__main__":
    main()
