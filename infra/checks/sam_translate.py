"""Translates infra/template.yaml's SAM resources into plain CloudFormation, offline.

Usage: python sam_translate.py TEMPLATE OUT.json

cfn-lint validates SAM resources against SAM's own schemas; translating them with
aws-sam-translator (the library `sam deploy` runs in CloudFormation) also proves that SAM accepts
the template and lets cfn-lint check what SAM generates (permissions, stages, routes). The
translator would ask IAM for managed policy ARNs only for policy names in SAM `Policies`
properties, which this template does not use, so no AWS call is made.
"""

import json
import logging
import os
import sys

# The translator fills in pseudo parameters from a boto session's region (no call is made).
os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
# The translator's notes about its own feature toggles are not findings.
logging.getLogger("samtranslator").setLevel(logging.ERROR)

from cfnlint.decode import decode
from samtranslator.public.translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform


class NoManagedPolicies(ManagedPolicyLoader):
    """Refuses lookups: the template names no managed policies in SAM Policies."""

    def __init__(self):  # no IAM client
        pass

    def load(self):
        raise RuntimeError("the template must not use SAM managed-policy names")


def package(template: dict) -> None:
    """Does what `sam package` does to code locations: local paths become S3 URIs."""
    sections = [template.get("Globals", {}).get("Function", {})]
    sections += [
        r.get("Properties", {})
        for r in template["Resources"].values()
        if r.get("Type") == "AWS::Serverless::Function"
    ]
    for properties in sections:
        uri = properties.get("CodeUri")
        if isinstance(uri, str) and not uri.startswith("s3://"):
            properties["CodeUri"] = "s3://packaged-by-sam/code.zip"


def main(source: str, target: str) -> None:
    template, matches = decode(source)
    if matches:
        for match in matches:
            print(match, file=sys.stderr)
        sys.exit(1)
    template = json.loads(json.dumps(template))
    package(template)
    translated = transform(template, {}, NoManagedPolicies())
    with open(target, "w", encoding="utf-8") as out:
        json.dump(translated, out, indent=1)
    kinds = {}
    for resource in translated["Resources"].values():
        kinds[resource["Type"]] = kinds.get(resource["Type"], 0) + 1
    print(f"translated {len(translated['Resources'])} resources:")
    for kind, count in sorted(kinds.items()):
        print(f"  {count:3} {kind}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
