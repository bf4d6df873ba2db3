"""Validates one rendered Kustomize overlay (the output of `kubectl kustomize`), offline.

Usage: python k8s_check.py RENDERED.yaml

- Built-in kinds: against the Kubernetes OpenAPI schemas that kubernetes-validate ships, in
  strict mode (unknown fields are errors), for the oldest and the newest Kubernetes versions the
  manifests target.
- Prometheus Operator kinds (ServiceMonitor, PrometheusRule): kubernetes-validate has no schema
  for custom resources. They are validated against the schemas below, which transcribe the
  operator's CRDs for the fields these manifests use and refuse any other field (a typo is an
  error, not a silently ignored key), and every rule expression is parsed as PromQL.
- Any other kind is an error: nothing leaves this check unvalidated.
- Cross-object consistency that no schema sees: selectors and port names that must match, the
  config map the pods read, backend TLS files that a mounted Secret provides (with https://
  backend URLs), and the shutdown budget (terminationGracePeriodSeconds covers the
  preStop sleep plus the streamer's drain deadline plus a margin).
"""

import re
import sys

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


def custom_resource(spec: dict) -> dict:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"type": "string"},
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
    for error in errors:
        failures.check(False, f"{name_of(obj)}: {error.message} at {list(error.path)}")
    if not errors:
        failures.check(True, "")
    if obj["kind"] != "PrometheusRule" or errors:
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
    for ingress in by_kind.get("Ingress", []):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                failures.check(
                    backend["name"] == service["metadata"]["name"]
                    and backend["port"].get("name") in {p["name"] for p in service["spec"]["ports"]},
                    f"{name_of(ingress)} routes {path['path']} to a service or port that does not exist",
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
    for ingress in by_kind.get("Ingress", []):
        host = data.get("SESSION_STREAMING__SSE_URL", "").removeprefix("https://").split("/")[0]
        failures.check(
            host in [r.get("host") for r in ingress["spec"]["rules"]],
            f"the Ingress does not serve the host of SESSION_STREAMING__SSE_URL ({host})",
        )

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

    drain = int(data.get("SESSION_STREAMER__DRAIN_DEADLINE_SECS", "20"))
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    failures.check(
        grace >= pre_stop + drain + EXIT_MARGIN_SECS,
        f"terminationGracePeriodSeconds={grace} does not cover preStop {pre_stop} s + drain deadline "
        f"{drain} s + {EXIT_MARGIN_SECS} s to exit",
    )
    print(f"    shutdown budget: preStop {pre_stop} s + drain {drain} s + exit {EXIT_MARGIN_SECS} s, grace period {grace} s")


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        objects = [d for d in yaml.safe_load_all(f) if d]
    failures = Failures()
    for obj in objects:
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in SCHEMAS:
            validate_custom(obj, SCHEMAS[key], failures)
            print(f"    {name_of(obj)}: custom resource, checked against the transcribed CRD schema")
            continue
        try:
            validate_builtin(obj, failures)
            print(f"    {name_of(obj)}: Kubernetes {', '.join(KUBERNETES_VERSIONS)} schemas (strict)")
        except kubernetes_validate.SchemaNotFoundError:
            failures.check(False, f"{name_of(obj)}: no schema for {key}; add one to {__file__} before using the kind")
    consistency(objects, failures)
    if failures.messages:
        print(f"FAILED: {len(failures.messages)} problem(s) in {path}:")
        for message in failures.messages:
            print(f"  - {message}")
        sys.exit(1)
    print(f"    {len(objects)} objects, {failures.passed} checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
