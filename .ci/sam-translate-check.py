"""Expands template.yaml with the SAM translator (as CloudFormation would, offline) and checks
what SAM generates around the API: exactly one stage, the `StageName` parameter's, with JSON
access logs, and no extra public stage named "Stage" (without OpenApiVersion SAM gives its
deployment `StageName: Stage`, which creates that stage).
    python .ci/sam-translate-check.py template.yaml
Run with the Python of a venv that has aws-sam-translator installed (.ci/run does)."""

import os
import sys

os.environ.setdefault("AWS_DEFAULT_REGION", "us-west-2")

from samtranslator.translator.transform import transform  # noqa: E402
from samtranslator.yaml_helper import yaml_parse  # noqa: E402


class NoManagedPolicies:
    def load(self):
        return {}


template = yaml_parse(open(sys.argv[1] if len(sys.argv) > 1 else "template.yaml").read())
# Local code paths become what `sam package` uploads.
for res in template["Resources"].values():
    props = res.get("Properties", {})
    for key in ("CodeUri", "ContentUri"):
        if isinstance(props.get(key), str):
            props[key] = "s3://bucket/key"
out = transform(template, {}, NoManagedPolicies())
stages = {k: v for k, v in out["Resources"].items() if v["Type"] == "AWS::ApiGateway::Stage"}
problems = []
if len(stages) != 1:
    problems.append(f"expected one API stage, SAM generates {sorted(stages)}")
for name, stage in stages.items():
    props = stage["Properties"]
    if props.get("StageName") != {"Ref": "StageName"}:
        problems.append(f"{name}: StageName is {props.get('StageName')!r}")
    log = props.get("AccessLogSetting", {})
    if "DestinationArn" not in log or not str(log.get("Format", "")).startswith("{"):
        problems.append(f"{name}: no JSON access log setting")
for name, res in out["Resources"].items():
    if res["Type"] == "AWS::ApiGateway::Deployment" and "StageName" in res["Properties"]:
        problems.append(f"{name}: the deployment creates stage {res['Properties']['StageName']!r}")
for p in problems:
    print(f"sam translate: {p}")
print(f"sam translate: {len(out['Resources'])} resources, stages {sorted(stages)}")
sys.exit(1 if problems else 0)
