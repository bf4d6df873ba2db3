"""Holds every AWS call the test suite recorded against the IAM role of the component that made it.

Usage: python permissions.py CALL_LOG TEMPLATE [--mutation NAME] [--expect-denied TEXT ...]

CALL_LOG holds one JSON line per AWS API call made during the tests (written by moto's wrapper,
scripts/moto_server.py, and the WebSocket emulator's @connections API, local/src/call_log.rs):
the component that made it (from the `app/session-<component>` of the SDK's user agent), the
service, the operation and the parameters that name its resources.

The template's SAM resources are translated to CloudFormation (aws-sam-translator, as in
sam_translate.py), its intrinsics resolved for the deployments of VARIANTS (plaintext gRPC,
mutual TLS with the client key in Secrets Manager, the edge, the cache, and the two table modes
of a multi-region deployment: the primary's global table and another region's replica) with a
fixed account, region and physical names, and each call becomes the IAM requests AWS would authorise, with their concrete ARNs:

- a DynamoDB call: `dynamodb:<Operation>` on the table (or `table/<name>/index/<index>`); a
  transaction is authorised per item, as PutItem, UpdateItem, DeleteItem or ConditionCheckItem;
  a point-in-time restore is RestoreTableToPointInTime on the table and the item actions of
  RESTORE_TARGET_ACTIONS on its new table, `table/<name>-restored` (the drill names new tables
  `<table>-<suffix>`), where the calls on the tables the log restored into are held too;
- implied by it, since the table is encrypted with a customer managed key: `kms:Decrypt`,
  `kms:Encrypt`, `kms:GenerateDataKey` and `kms:DescribeKey` on that key through DynamoDB
  (`kms:ViaService`), against the key's own policy too;
- an `@connections` call: `execute-api:ManageConnections` on
  `<api>/<stage>/<METHOD>/@connections/<id>`;
- Secrets Manager `GetSecretValue` on the secret the template names;
- Cloud Map `DiscoverInstances` (moto's server records it under its target prefix,
  route53autonaming_v20170314): `servicediscovery:DiscoverInstances` on `*` (it has no resource
  type) with its `servicediscovery:NamespaceName` and `servicediscovery:ServiceName` condition
  keys from the request;
- CloudWatch `PutMetricData` (recorded by the test's CloudWatch endpoint): `cloudwatch:PutMetricData`
  on `*` with its `cloudwatch:namespace` condition key;
- what Lambda does with a function's role for it, from the function's configuration: its logs,
  traces, network interfaces and environment key;
- what the AppConfig agent does with the role of a component that reads AppConfig (a function
  whose SESSION_APPCONFIG__BASE_URL is set, for the profiles its settings name; the streamer's
  sidecar, for every profile of the stack): `appconfig:StartConfigurationSession` and
  `appconfig:GetLatestConfiguration` on `application/<id>/environment/<id>/configuration/<id>`.

Each request is evaluated by @cloud-copilot/iam-simulate (a Node IAM policy simulator: actions
and resources with wildcards, Allow/Deny, every condition operator, KMS key policies; run by
iam-simulate/simulate.mjs) against the component's role: its inline policies, the template's
managed policies it attaches and AWS::IAM::Policy resources that name it. A denied request fails
the check, naming the component, action and resource. Actions a role grants that no request
used are reported (least privilege), not failed: some are used only on error paths.

--mutation removes one grant before evaluating (the self-test of scripts/permissions-check.sh:
the check must then fail, and --expect-denied names what it must report denied).
"""

import argparse
import copy
import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")

sys.path.insert(0, str(Path(__file__).parent))
from sam_translate import NoManagedPolicies, package  # noqa: E402
from cfnlint.decode import decode  # noqa: E402
from samtranslator.translator.transform import transform  # noqa: E402

REGION = "eu-west-1"
ACCOUNT = "123456789012"
STACK = "session-service-prod"
SIMULATOR = Path(__file__).parent / "iam-simulate" / "simulate.mjs"

# The deployments checked: parameter values, and what each makes the code call.
BASE_PARAMETERS = {
    "Environment": "prod",
    "AuthServiceUrl": "http://auth.session.internal:50052",
    "SimulatorServiceUrl": "http://simulator.session.internal:50051",
    "StreamerSseUrl": "https://stream.example.com",
    "SubnetIds": ["subnet-0a1b2c3d"],
    "SecurityGroupIds": ["sg-0a1b2c3d"],
    "VpcId": "vpc-0a1b2c3d",
    "EksOidcIssuer": "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE0123456789",
    "TicketSigningKeySecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:session-service/ticket-signing-key-AbCdEf",
    "TicketVerifyKeysSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:session-service/ticket-verify-keys-AbCdEf",
    # The recorded discovery calls were made in cloudmap mode: they are held against it.
    "DiscoveryMode": "cloudmap",
}
TLS_KEY_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:session-service/backend-tls-key-AbCdEf"
VARIANTS = {
    "plaintext gRPC": {},
    "mutual TLS": {
        "AuthServiceUrl": "https://auth.session.internal:50052",
        "SimulatorServiceUrl": "https://simulator.session.internal:50051",
        "BackendTlsLayerArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:session-service-backend-tls:1",
        "BackendTlsKeySecretArn": TLS_KEY_SECRET,
    },
    "behind CloudFront and AWS WAF": {"EdgeProtection": "cloudfront-waf"},
    "with the ElastiCache cache": {"CacheMode": "elasticache", "StreamerSecurityGroupId": "sg-0f0e0d0c"},
    # The primary region's stack, and another region's, of a multi-region deployment.
    "with a global table": {"TableMode": "global", "ReplicaRegions": "us-east-1,ap-southeast-1"},
    "with another region's replica": {"TableMode": "replica", "ReplicaTableName": f"{STACK}-sessions"},
}
TABLES = ("AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable")

# Each component's role: a function's execution role, or the streamer's IRSA role.
FUNCTIONS = {
    "rest-api": "RestApiFunction",
    "authorizer": "AuthorizerFunction",
    "ws-authorizer": "WsAuthorizerFunction",
    "ws-handler": "WsHandlerFunction",
    # session-admin, run by the Migrations custom resource on every deploy.
    "admin": "MigrationsFunction",
}
# The streamer's IRSA role, and the role an operator runs the restore drill with
# (`session-admin table restore`).
ROLES = {"streamer": "StreamerRole", "recovery": "TableRecoveryRole"}
# What DynamoDB authorises on a restore's new table (besides RestoreTableToPointInTime on the
# source): the item writes and reads the restore makes as the caller.
RESTORE_TARGET_ACTIONS = ["BatchWriteItem", "DeleteItem", "GetItem", "PutItem", "Query", "Scan", "UpdateItem"]
TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
KMS_VIA_DYNAMODB = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
# Cloud Map's API as moto's server records it (the X-Amz-Target prefix, lowercased).
CLOUD_MAP = "route53autonaming_v20170314"


class Unresolvable(Exception):
    """An intrinsic this resolver does not know: the check fails rather than guess."""


class Stack:
    """The translated template with its intrinsics resolved for one set of parameters."""

    def __init__(self, template: dict, parameters: dict):
        self.template = template
        self.resources = template["Resources"]
        self.parameters = {}
        for name, spec in template.get("Parameters", {}).items():
            value = parameters.get(name, spec.get("Default"))
            if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                value = value.split(",")
            self.parameters[name] = value
        self.pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::StackName": STACK,
            "AWS::URLSuffix": "amazonaws.com",
        }
        self.conditions = {}

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = self.truth(self.template["Conditions"][name])
        return self.conditions[name]

    def truth(self, node) -> bool:
        (fn, args), = node.items()
        if fn == "Fn::Equals":
            return self.resolve(args[0]) == self.resolve(args[1])
        if fn == "Fn::Not":
            return not self.truth(args[0])
        if fn == "Fn::And":
            return all(self.truth(a) for a in args)
        if fn == "Fn::Or":
            return any(self.truth(a) for a in args)
        if fn == "Condition":
            return self.condition(args)
        raise Unresolvable(f"condition function {fn}")

    def exists(self, logical: str) -> bool:
        resource = self.resources.get(logical)
        return resource is not None and (
            "Condition" not in resource or self.condition(resource["Condition"])
        )

    def ref(self, name: str):
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        resource = self.resources.get(name)
        if resource is None:
            raise Unresolvable(f"Ref {name}")
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind in TABLES:
            return self.resolve(props.get("TableName", name))
        if kind == "AWS::Logs::LogGroup":
            return self.resolve(props.get("LogGroupName", name))
        if kind == "AWS::IAM::ManagedPolicy":
            return f"arn:aws:iam::{ACCOUNT}:policy/{STACK}-{name}"
        if kind == "AWS::KMS::Key":
            return f"key-{name.lower()}"
        if kind == "AWS::SecretsManager::Secret":
            return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{STACK}-{name}-AbCdEf"
        if kind in ("AWS::IAM::Role", "AWS::Lambda::Function"):
            return f"{STACK}-{name}"
        if kind == "AWS::Lambda::Alias":
            function = self.resolve(props["FunctionName"])
            return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}:{self.resolve(props['Name'])}"
        return f"{name.lower()}0001"

    def get_att(self, name: str, attribute: str):
        resource = self.resources.get(name)
        if resource is None:
            raise Unresolvable(f"Fn::GetAtt {name}.{attribute}")
        kind, ref = resource["Type"], self.ref(name)
        if attribute != "Arn":
            return f"{ref}-{attribute.lower()}"
        arns = {
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{ref}",
            "AWS::DynamoDB::GlobalTable": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{ref}",
            # As CloudFormation answers it for a log group: with `:*`.
            "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{ref}:*",
            "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{ref}",
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{ref}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{ref}",
        }
        if kind not in arns:
            return f"arn:aws:{kind.split('::')[1].lower()}:{REGION}:{ACCOUNT}:{ref}"
        return arns[kind]

    def sub(self, text: str, variables: dict) -> str:
        out, i = [], 0
        while i < len(text):
            start = text.find("${", i)
            if start < 0:
                out.append(text[i:])
                break
            out.append(text[i:start])
            end = text.index("}", start)
            token = text[start + 2 : end]
            if token.startswith("!"):
                out.append("${" + token[1:] + "}")
            elif token in variables:
                out.append(str(self.resolve(variables[token])))
            elif "." in token and token.split(".", 1)[0] in self.resources:
                out.append(str(self.get_att(*token.split(".", 1))))
            else:
                out.append(str(self.ref(token)))
            i = end + 1
        return "".join(out)

    def resolve(self, node):
        """`node` with every intrinsic replaced by its value; AWS::NoValue drops the key."""
        if isinstance(node, list):
            items = [self.resolve(n) for n in node]
            return [i for i in items if i is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (fn, args), = node.items()
            if fn == "Ref":
                return NO_VALUE if args == "AWS::NoValue" else self.ref(args)
            if fn == "Fn::GetAtt":
                name, attribute = args if isinstance(args, list) else args.split(".", 1)
                return self.get_att(name, attribute)
            if fn == "Fn::Sub":
                text, variables = (args, {}) if isinstance(args, str) else args
                return self.sub(text, variables)
            if fn == "Fn::If":
                return self.resolve(args[1] if self.condition(args[0]) else args[2])
            if fn == "Fn::Join":
                return args[0].join(str(v) for v in self.resolve(args[1]))
            if fn == "Fn::FindInMap":
                names = [self.resolve(a) for a in args]
                return self.template["Mappings"][names[0]][names[1]][names[2]]
            if fn == "Fn::Select":
                return self.resolve(args[1])[int(self.resolve(args[0]))]
            if fn == "Fn::Split":
                return self.resolve(args[1]).split(args[0])
            if fn.startswith("Fn::"):
                raise Unresolvable(fn)
        resolved = {k: self.resolve(v) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}


NO_VALUE = object()


def translate(source: str) -> dict:
    template, matches = decode(source)
    if matches:
        raise SystemExit("\n".join(str(m) for m in matches))
    template = json.loads(json.dumps(template))
    package(template)
    return transform(template, {}, NoManagedPolicies())


def role_of(stack: Stack, component: str) -> str | None:
    """The logical id of the role `component` runs with, if the template creates it."""
    if component in ROLES:
        logical = ROLES[component]
        return logical if stack.exists(logical) else None
    function = stack.resources[FUNCTIONS[component]]
    role = function["Properties"]["Role"]
    if not (isinstance(role, dict) and "Fn::GetAtt" in role):
        raise Unresolvable(f"{FUNCTIONS[component]}'s Role is not a role of this template")
    target = role["Fn::GetAtt"]
    return target[0] if isinstance(target, list) else target.split(".")[0]


def policies_of(stack: Stack, role: str) -> list[dict]:
    """Every identity policy of `role`: inline, attached managed policies of the template, and
    AWS::IAM::Policy resources naming it."""
    props = stack.resolve(stack.resources[role]["Properties"])
    policies = [
        {"name": f"{role}/{p['PolicyName']}", "policy": p["PolicyDocument"]}
        for p in props.get("Policies", [])
    ]
    managed = {
        stack.ref(logical): logical
        for logical, r in stack.resources.items()
        if r["Type"] == "AWS::IAM::ManagedPolicy" and stack.exists(logical)
    }
    for arn in props.get("ManagedPolicyArns", []):
        if arn not in managed:
            raise Unresolvable(f"{role} attaches {arn}, which is not in the template: cannot evaluate it offline")
        logical = managed[arn]
        document = stack.resolve(stack.resources[logical]["Properties"]["PolicyDocument"])
        policies.append({"name": logical, "policy": document})
    for logical, r in stack.resources.items():
        if r["Type"] == "AWS::IAM::Policy" and stack.exists(logical):
            props = stack.resolve(r["Properties"])
            if stack.ref(role) in props.get("Roles", []):
                policies.append({"name": logical, "policy": props["PolicyDocument"]})
    for p in policies:
        if isinstance(p["policy"], str):
            p["policy"] = json.loads(p["policy"])
    return policies


def single(stack: Stack, kind: str | tuple) -> str:
    kinds = (kind,) if isinstance(kind, str) else kind
    found = [l for l, r in stack.resources.items() if r["Type"] in kinds and stack.exists(l)]
    if len(found) != 1:
        raise Unresolvable(f"expected one {kind}, found {found}")
    return found[0]


def the_table(stack: Stack) -> tuple[str | None, str, str | None]:
    """The table the stack's components use: its logical id (None when the stack names another
    region's replica, TableMode replica), ARN, and the stack's key that encrypts it here, if any
    (a replica made by another region's stack is encrypted with a key of its own, usually
    DynamoDB's AWS managed key, which needs no grant)."""
    if not any(stack.exists(l) for l, r in stack.resources.items() if r["Type"] in TABLES):
        name = stack.parameters.get("ReplicaTableName")
        if not name:
            raise Unresolvable("the stack creates no table and names no ReplicaTableName")
        return None, f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}", None
    table = single(stack, TABLES)
    props = stack.resources[table]["Properties"]
    if stack.resources[table]["Type"] == "AWS::DynamoDB::GlobalTable":
        replicas = [r for r in stack.resolve(props["Replicas"]) if r["Region"] == REGION]
        sse = replicas[0].get("SSESpecification", {}) if replicas else {}
    else:
        sse = stack.resolve(props.get("SSESpecification", {}))
    return table, stack.get_att(table, "Arn"), sse.get("KMSMasterKeyId")


def requests_for(stack: Stack, call: dict, restored: frozenset = frozenset()) -> list[dict]:
    """The IAM requests AWS authorises for one recorded call (implied ones included); `restored`
    names the tables the log's restores made."""
    service, operation, params = call["service"], call["operation"], call["params"]
    source = f"{service}:{operation}"
    if service == "dynamodb":
        _, table_arn, key_id = the_table(stack)
        restored_arn = f"{table_arn}-restored"
        if operation == "RestoreTableToPointInTime":
            requests = [request(f"dynamodb:{operation}", table_arn, source)] + [
                request(f"dynamodb:{a}", restored_arn, f"{source} (on the new table)")
                for a in RESTORE_TARGET_ACTIONS
            ]
        elif params.get("TableName") in restored:
            resource = restored_arn + (f"/index/{params['IndexName']}" if "IndexName" in params else "")
            requests = [request(f"dynamodb:{operation}", resource, source)]
        elif "TransactItems" in params:
            actions = sorted({TRANSACT_ACTIONS[i["kind"]] for i in params["TransactItems"]})
            requests = [request(f"dynamodb:{a}", table_arn, source) for a in actions]
        else:
            resource = table_arn + (f"/index/{params['IndexName']}" if "IndexName" in params else "")
            requests = [request(f"dynamodb:{operation}", resource, source)]
        if key_id:
            key = key_resource(stack, key_id)
            requests += [
                request(
                    action,
                    stack.get_att(key, "Arn"),
                    f"{source} (the table's key, through DynamoDB)",
                    {"kms:ViaService": f"dynamodb.{REGION}.amazonaws.com", "kms:CallerAccount": ACCOUNT},
                    key_policy(stack, key),
                )
                for action in KMS_VIA_DYNAMODB
            ]
        return requests
    if service == "execute-api":
        apis = [
            logical
            for logical, r in stack.resources.items()
            if r["Type"] == "AWS::ApiGatewayV2::Api"
            and r["Properties"].get("ProtocolType") == "WEBSOCKET"
            and stack.exists(logical)
        ]
        if len(apis) != 1:
            raise Unresolvable(f"expected one WebSocket API, found {apis}")
        api = apis[0]
        stage = stack.parameters["WebSocketStageName"]
        arn = (
            f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{stack.ref(api)}/{stage}/"
            f"{params['method']}/@connections/{params['connection_id']}"
        )
        return [request("execute-api:ManageConnections", arn, source)]
    if service == "secretsmanager":
        # Which secret of the deployment a call read: the tests name their secrets after it.
        secret_id = params.get("SecretId", "")
        if "edge-origin" in secret_id:
            if not stack.exists("EdgeOriginSecret"):
                return []
            props = stack.resources["EdgeOriginSecret"]["Properties"]
            key = key_resource(stack, stack.resolve(props["KmsKeyId"]))
            return [
                request(f"secretsmanager:{operation}", stack.ref("EdgeOriginSecret"), source),
                request(
                    "kms:Decrypt",
                    stack.get_att(key, "Arn"),
                    f"{source} (the secret's key, through Secrets Manager)",
                    {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com", "kms:CallerAccount": ACCOUNT},
                    key_policy(stack, key),
                ),
            ]
        # The ticket keys' secrets are the operator's, given as parameters (the tests' names say
        # which); anything else is the backends' client key.
        for marker, parameter in (
            ("ticket-signing-key", "TicketSigningKeySecretArn"),
            ("ticket-verify-keys", "TicketVerifyKeysSecretArn"),
        ):
            if marker in secret_id:
                return [request(f"secretsmanager:{operation}", stack.parameters[parameter], source)]
        secret = stack.parameters.get("BackendTlsKeySecretArn")
        if not secret:
            return []
        return [request(f"secretsmanager:{operation}", secret, source)]
    if service == CLOUD_MAP:
        # DiscoverInstances names no resource: the namespace and service are its condition keys.
        return [
            request(
                f"servicediscovery:{operation}",
                "*",
                source,
                {
                    "servicediscovery:NamespaceName": params.get("NamespaceName", ""),
                    "servicediscovery:ServiceName": params.get("ServiceName", ""),
                },
            )
        ]
    if service == "cloudwatch":
        # PutMetricData names no resource; the namespace is its condition key (recorded by the
        # CloudWatch endpoint of tests/tests/cloudwatch).
        return [
            request(
                f"cloudwatch:{operation}",
                "*",
                source,
                {"cloudwatch:namespace": params.get("Namespace", "")},
            )
        ]
    raise Unresolvable(f"no IAM mapping for {source}")


def platform_requests(stack: Stack, component: str) -> list[dict]:
    """What Lambda does with a function's role, from the function's configuration."""
    if component not in FUNCTIONS:
        return []
    props = stack.resolve(stack.resources[FUNCTIONS[component]]["Properties"])
    source = "Lambda, for the function"
    requests = []
    group = props.get("LoggingConfig", {}).get("LogGroup", f"/aws/lambda/{props.get('FunctionName')}")
    log_group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}"
    # Both act on the stream (the service authorization reference's resource type).
    stream = f"{log_group}:log-stream:2026/12/04/[live]0123"
    requests += [request(a, stream, source) for a in ("logs:CreateLogStream", "logs:PutLogEvents")]
    if props.get("TracingConfig", {}).get("Mode") == "Active":
        requests += [request(a, "*", source) for a in ("xray:PutTraceSegments", "xray:PutTelemetryRecords")]
    if props.get("VpcConfig", {}).get("SubnetIds"):
        requests += [
            request(f"ec2:{a}", "*", source)
            for a in (
                "CreateNetworkInterface",
                "DescribeNetworkInterfaces",
                "DescribeSubnets",
                "DeleteNetworkInterface",
                "AssignPrivateIpAddresses",
                "UnassignPrivateIpAddresses",
            )
        ]
    if props.get("KmsKeyArn"):
        key = key_resource(stack, props["KmsKeyArn"])
        requests.append(
            request(
                "kms:Decrypt",
                stack.get_att(key, "Arn"),
                "Lambda, for the function's environment",
                {"kms:ViaService": f"lambda.{REGION}.amazonaws.com", "kms:CallerAccount": ACCOUNT},
                key_policy(stack, key),
            )
        )
    return requests


def agent_requests(stack: Stack, component: str) -> list[dict]:
    """What the AppConfig agent does with the component's role: a session on each profile the
    component reads, then its latest version. A function reads the profiles its
    SESSION_APPCONFIG__*_PROFILE settings name, of its application and environment, once
    SESSION_APPCONFIG__BASE_URL points it at the extension; the streamer's sidecar (whose names
    infra/k8s holds to the stack's outputs, k8s_check.py) reads every profile of the stack's
    environment."""
    profiles = {
        stack.resolve(r["Properties"]["Name"]): logical
        for logical, r in stack.resources.items()
        if r["Type"] == "AWS::AppConfig::ConfigurationProfile" and stack.exists(logical)
    }
    environments = [
        logical
        for logical, r in stack.resources.items()
        if r["Type"] == "AWS::AppConfig::Environment" and stack.exists(logical)
    ]
    if not profiles or len(environments) != 1:
        return []
    environment = stack.resources[environments[0]]["Properties"]
    application = environment["ApplicationId"]["Ref"]
    if component in FUNCTIONS:
        props = stack.resolve(stack.resources[FUNCTIONS[component]]["Properties"])
        variables = props.get("Environment", {}).get("Variables", {})
        if "SESSION_APPCONFIG__BASE_URL" not in variables:
            return []
        names = {
            (variables.get("SESSION_APPCONFIG__APPLICATION"), variables.get("SESSION_APPCONFIG__ENVIRONMENT")): [
                value for key, value in variables.items() if key.startswith("SESSION_APPCONFIG__") and key.endswith("_PROFILE")
            ]
        }
        stack_names = (
            stack.resolve(stack.resources[application]["Properties"]["Name"]),
            stack.resolve(environment["Name"]),
        )
        if set(names) != {stack_names}:
            raise Unresolvable(f"{component} reads AppConfig {set(names)}, the stack has {stack_names}")
        wanted = names[stack_names]
    elif component == "streamer":
        wanted = list(profiles)
    else:
        return []
    requests = []
    for name in wanted:
        if name not in profiles:
            raise Unresolvable(f"{component} reads the AppConfig profile {name}, which the stack does not create")
        arn = (
            f"arn:aws:appconfig:{REGION}:{ACCOUNT}:application/{stack.ref(application)}"
            f"/environment/{stack.ref(environments[0])}/configuration/{stack.ref(profiles[name])}"
        )
        requests += [
            request(action, arn, f"the AppConfig agent, for the {name} profile")
            for action in ("appconfig:StartConfigurationSession", "appconfig:GetLatestConfiguration")
        ]
    return requests


def key_resource(stack: Stack, value: str) -> str:
    for logical, r in stack.resources.items():
        if r["Type"] == "AWS::KMS::Key" and value in (stack.ref(logical), stack.get_att(logical, "Arn")):
            return logical
    raise Unresolvable(f"the key {value} is not a key of this template")


def key_policy(stack: Stack, key: str) -> dict:
    return stack.resolve(stack.resources[key]["Properties"]["KeyPolicy"])


def request(action, resource, source, context=None, resource_policy=None) -> dict:
    return {
        "action": action,
        "resource": resource,
        "source": source,
        "context": context or {},
        "resourcePolicy": resource_policy,
    }


MUTATIONS = {
    # The streamer's role without the index: its Query on GSI1 must be denied.
    "streamer-without-index": lambda component, policies: component == "streamer"
    and strip_resources(policies, lambda r: r.endswith("/index/GSI1")),
    # rest-api's role without the table's key through DynamoDB.
    "rest-api-without-table-key": lambda component, policies: component == "rest-api"
    and strip_statements(
        policies,
        lambda s: any(
            v.startswith("dynamodb.")
            for v in json.dumps(s.get("Condition", {})).replace('"', " ").split()
        ),
    ),
    # rest-api's role without the AppConfig reads: its extension's session must be denied.
    "rest-api-without-appconfig": lambda component, policies: component == "rest-api"
    and strip_statements(policies, lambda s: s.get("Sid") == "AppConfigProfiles"),
    # The migrations function's role without its table grant: the runner's scan must be denied.
    "admin-without-table": lambda component, policies: component == "admin"
    and strip_statements(policies, lambda s: s.get("Sid") == "Table"),
    # rest-api's role without discovery: its DiscoverInstances of the simulators must be denied.
    "rest-api-without-discovery": lambda component, policies: component == "rest-api"
    and strip_statements(policies, lambda s: s.get("Sid") == "DiscoverSimulators"),
    # rest-api's role without the ticket signing key: its read at start must be denied.
    "rest-api-without-ticket-signing-key": lambda component, policies: component == "rest-api"
    and strip_statements(policies, lambda s: s.get("Sid") == "TicketSigningKey"),
    # The restore drill's role without its grants on the new table: the writes DynamoDB makes
    # there as the restore, and the drill's wait on it, must be denied.
    "recovery-without-restored-table": lambda component, policies: component == "recovery"
    and strip_statements(policies, lambda s: s.get("Sid") == "RestoredTable"),
    # The recovery role without its failover grant: the failover's take-over of a session's
    # home (an UpdateItem on the table) must be denied.
    "recovery-without-failover": lambda component, policies: component == "recovery"
    and strip_statements(policies, lambda s: s.get("Sid") == "RegionFailover"),
}


def strip_resources(policies: list[dict], drop) -> bool:
    changed = False
    for p in policies:
        for s in p["policy"]["Statement"]:
            resources = s.get("Resource", [])
            resources = [resources] if isinstance(resources, str) else resources
            kept = [r for r in resources if not drop(r)]
            if kept != resources:
                s["Resource"], changed = kept, True
    return changed


def strip_statements(policies: list[dict], drop) -> bool:
    changed = False
    for p in policies:
        kept = [s for s in p["policy"]["Statement"] if not drop(s)]
        if len(kept) != len(p["policy"]["Statement"]):
            p["policy"]["Statement"], changed = kept, True
    return changed


def simulate(simulations: list[dict]) -> list[dict]:
    done = subprocess.run(
        ["node", str(SIMULATOR)],
        input=json.dumps(simulations),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"iam-simulate failed:\n{done.stderr}")
    return json.loads(done.stdout)


def label(policies: list[dict]) -> list[dict]:
    """Gives every statement a Sid the results can name it by (Sids do not change decisions)."""
    names = {}
    for p_index, p in enumerate(policies):
        for s_index, s in enumerate(p["policy"]["Statement"]):
            sid = f"P{p_index}S{s_index}"
            names[sid] = f"{p['name']}:{s.get('Sid', f'statement {s_index + 1}')}"
            s["Sid"] = sid
    return names


def statement_actions(policies: list[dict]) -> list[tuple[str, str]]:
    out = []
    for p in policies:
        for s in p["policy"]["Statement"]:
            if s.get("Effect") != "Allow":
                continue
            actions = s.get("Action", [])
            for a in [actions] if isinstance(actions, str) else actions:
                out.append((s["Sid"], a))
    return out


def check(template: dict, calls: list[dict], mutation: str | None) -> tuple[list[str], list[str]]:
    """Every denied request and every unused grant, over both deployments."""
    denied, unused_by_variant = [], []
    restored = frozenset(
        c["params"].get("TargetTableName") for c in calls if c["operation"] == "RestoreTableToPointInTime"
    )
    for variant, overrides in VARIANTS.items():
        stack = Stack(template, {**BASE_PARAMETERS, **overrides})
        by_component = {}
        for call in calls:
            by_component.setdefault(call["component"], []).append(call)
        simulations, meta = [], []
        grants = {}
        for component in list(FUNCTIONS) + list(ROLES):
            role = role_of(stack, component)
            if role is None:
                raise Unresolvable(f"{variant}: the template creates no role for {component}")
            policies = copy.deepcopy(policies_of(stack, role))
            if mutation and MUTATIONS[mutation](component, policies):
                print(f"    [{variant}] mutation {mutation}: applied to {component}'s role {role}")
            names = label(policies)
            requests = platform_requests(stack, component) + agent_requests(stack, component)
            seen = set()
            for call in by_component.get(component, []):
                for r in requests_for(stack, call, restored):
                    key = (r["action"], r["resource"], json.dumps(r["context"], sort_keys=True))
                    if key not in seen:
                        seen.add(key)
                        requests.append(r)
            grants[component] = (role, names, statement_actions(policies), [])
            for r in requests:
                simulations.append(
                    {
                        "principal": f"arn:aws:iam::{ACCOUNT}:role/{STACK}-{role}",
                        "identityPolicies": policies,
                        "request": r,
                    }
                )
                meta.append((component, role, r))
        results = simulate(simulations)
        for (component, role, r), result in zip(meta, results):
            if result["decision"] != "Allowed":
                context = f" {r['context']}" if r["context"] else ""
                denied.append(
                    f"[{variant}] {component} (role {role}): {r['action']} on {r['resource']}{context}"
                    f" — {result['decision']}{': ' + result['detail'] if result.get('detail') else ''}"
                    f" (needed by {r['source']})"
                )
            else:
                grants[component][3].append((r["action"], result.get("allowedBy", [])))
        for component, (role, names, actions, allowed) in grants.items():
            for sid, pattern in actions:
                used = any(
                    sid in allowed_by and fnmatch.fnmatchcase(action.lower(), pattern.lower())
                    for action, allowed_by in allowed
                )
                if not used:
                    unused_by_variant.append(f"[{variant}] {component}: {pattern} ({names[sid]})")
    return denied, unused_by_variant


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("call_log")
    parser.add_argument("template")
    parser.add_argument("--mutation", choices=sorted(MUTATIONS))
    parser.add_argument("--expect-denied", action="append", default=[])
    args = parser.parse_args()

    calls = [json.loads(line) for line in Path(args.call_log).read_text().splitlines() if line.strip()]
    attributed = [c for c in calls if c["component"]]
    unknown = sorted({c["component"] for c in attributed} - set(FUNCTIONS) - set(ROLES))
    if unknown:
        print(f"calls by components the check does not know: {unknown}", file=sys.stderr)
        return 1
    if not attributed:
        print(f"{args.call_log} records no call of any component: were the tests run with AWS_CALL_LOG?", file=sys.stderr)
        return 1
    quiet = bool(args.mutation)
    summary = {}
    for c in attributed:
        key = (c["component"], c["service"], c["operation"])
        summary[key] = summary.get(key, 0) + 1
    if not quiet:
        print(f"    {len(calls)} recorded calls; {len(calls) - len(attributed)} by the tests themselves (no component):")
        for (component, service, operation), count in sorted(summary.items()):
            print(f"      {component:14} {service + ':' + operation:40} {count:6}")

    template = translate(args.template)
    denied, unused = check(template, attributed, args.mutation)
    if unused and not quiet:
        print("    granted but used by no recorded call (least privilege: review these):")
        for line in sorted(set(unused)):
            print(f"      {line}")
    if args.expect_denied:
        missing = [e for e in args.expect_denied if not any(e in d for d in denied)]
        if missing or not denied:
            print(f"    mutation {args.mutation}: expected a denial naming {missing}; denied: {denied}", file=sys.stderr)
            return 1
        print(f"    mutation {args.mutation}: denied as expected:")
        for line in denied:
            print(f"      {line}")
        return 0
    if denied:
        print("DENIED: the template's roles do not allow these calls the code makes:", file=sys.stderr)
        for line in denied:
            print(f"  {line}", file=sys.stderr)
        return 1
    print("    every recorded call, and what it implies, is allowed by its component's role")
    return 0


if __name__ == "__main__":
    sys.exit(main())
