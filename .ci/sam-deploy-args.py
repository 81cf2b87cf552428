"""Parses the `sam deploy` command line that scripts/deploy/sam-deploy builds with SAM CLI's own
command definition (click), without running it: every option must exist and the parameter
overrides must be in a form SAM CLI accepts and equal the expected JSON object.
    scripts/deploy/sam-deploy --print | python .ci/sam-deploy-args.py '{"BaseDomain": "", ...}'
Run with the Python of a venv that has aws-sam-cli installed (.ci/run does)."""

import json
import sys

import click
from samcli.commands.deploy.command import cli

expected = json.loads(sys.argv[1])
args = [a for a in sys.stdin.buffer.read().decode().split("\0") if a]
if not args or args[0] != "deploy":
    sys.exit(f"expected `deploy ...`, got {args[:1]}")
try:
    ctx = cli.make_context("sam deploy", args[1:])
except click.ClickException as e:
    sys.exit(f"sam deploy rejects the command line: {e.format_message()}")
got = ctx.params["parameter_overrides"]
if got != expected:
    sys.exit(f"parameter overrides: expected {expected}, SAM CLI read {got}")
print(f"sam deploy {' '.join(args[1:])}: parameter overrides {json.dumps(got, sort_keys=True)}")
