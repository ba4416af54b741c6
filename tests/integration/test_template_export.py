"""The optional export load of deploy/template.yaml: off unless asked for, its function
is the export handler of the same package, its role reads only the exports' prefix, and
the state machine loops a file until the handler answers done."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint
from cfnlint.decode import cfn_yaml

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "template.yaml"
EXPORT_RESOURCES = {
    "ExportFunctionRole",
    "ExportFunction",
    "ExportStateMachineRole",
    "ExportStateMachine",
}


@pytest.fixture(scope="module")
def template() -> Any:
    return cfn_yaml.load(str(TEMPLATE))


def statements(resource: Any) -> list[dict[str, Any]]:
    found = []
    for policy in resource["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in statement:
                found += [b for b in statement["Fn::If"][1:] if b != {"Ref": "AWS::NoValue"}]
            else:
                found.append(statement)
    return found


def test_the_export_load_exists_only_when_enabled(template):
    assert template["Parameters"]["EnableExportLoads"]["Default"] == "false"
    for name in EXPORT_RESOURCES:
        assert template["Resources"][name]["Condition"] == "ExportLoadsEnabled", name
    assert template["Outputs"]["ExportStateMachineArn"]["Condition"] == "ExportLoadsEnabled"


def test_the_export_function_runs_the_export_handler_of_the_same_package(template):
    function = template["Resources"]["ExportFunction"]["Properties"]
    stream_function = template["Resources"]["Function"]["Properties"]
    assert function["CodeUri"] == stream_function["CodeUri"]
    module, _, name = function["Handler"].rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))
    assert function["Environment"] == stream_function["Environment"]


def test_the_export_role_reads_only_the_exports(template):
    actions: dict[str, Any] = {}
    for statement in statements(template["Resources"]["ExportFunctionRole"]):
        for action in (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        ):
            actions[action] = statement["Resource"]
    s3 = {a: r for a, r in actions.items() if a.startswith("s3:")}
    assert list(s3) == ["s3:GetObject"]
    with_prefix, without = s3["s3:GetObject"]["Fn::If"][1:]
    assert with_prefix["Fn::Sub"].endswith(":s3:::${ExportBucket}/${ExportPrefix}/AWSDynamoDB/*")
    assert without["Fn::Sub"].endswith(":s3:::${ExportBucket}/AWSDynamoDB/*")
    assert {a for a in actions if a.startswith(("dynamodb:", "sqs:"))} == {"dynamodb:DescribeTable"}


def test_the_state_machine_loops_a_file_until_done(template):
    machine = template["Resources"]["ExportStateMachine"]["Properties"]
    definition = machine["Definition"]
    files = definition["States"]["LoadFiles"]
    assert files["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert files["MaxConcurrencyPath"] == "$.maxConcurrency"
    assert machine["DefinitionSubstitutions"]["Concurrency"] == {"Ref": "ExportLoadConcurrency"}
    states = files["ItemProcessor"]["States"]
    choices = {c["Variable"]: c["Next"] for c in states["Loaded"]["Choices"]}
    assert choices == {"$.done": "FileLoaded", "$.busy": "WaitForTheLease"}
    assert states["Loaded"]["Default"] == "Load"
    assert states["WaitForTheLease"]["Next"] == "Load"


def test_cfn_lint_checks_the_state_machine():
    # A typo in the state machine is caught: the lint of the template is not vacuous here.
    broken = TEMPLATE.read_text().replace("Type: Choice", "Type: Choise")
    assert broken != TEMPLATE.read_text()
    assert lint(broken)
