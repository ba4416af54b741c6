"""deploy/template-kinesis.yaml, the SAM template for a table's Kinesis data stream:
cfn-lint passes; the mapping reports partial failures, bisects, retries without end and
gives up to an on-failure queue; the role reads the one stream (and the one table, for
hydration) and nothing else; the dead-letter alarm watches the dimensions the handler
emits for a Kinesis batch."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint
from cfnlint.decode import cfn_yaml

from tests.integration.test_template import (
    DATA_SERVICES,
    VPC_ACTIONS,
    as_list,
    cfn_lint,
    evaluate,
    only,
    parameter_ref,
    resources,
)
from tests.kinesis_factories import BASE_MS, kinsert, wrap

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "template-kinesis.yaml"


@pytest.fixture(scope="module")
def template() -> Any:
    return cfn_yaml.load(str(TEMPLATE))


def grants(template: Any) -> dict[str, tuple[Any, str | None]]:
    found: dict[str, tuple[Any, str | None]] = {}
    role = only(template, "AWS::IAM::Role")
    for policy in role["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            branches: list[tuple[Any, str | None]] = [(statement, None)]
            if "Fn::If" in statement:
                condition, *options = statement["Fn::If"]
                branches = [(b, condition) for b in options if b != {"Ref": "AWS::NoValue"}]
            for branch, condition in branches:
                assert branch["Effect"] == "Allow"
                actions = as_list(branch["Action"])
                assert all("*" not in a for a in actions), branch
                if any(a.split(":")[0] in (*DATA_SERVICES, "kinesis") for a in actions):
                    assert "*" not in as_list(branch["Resource"]), branch
                else:
                    assert set(actions) <= VPC_ACTIONS, branch
                for action in actions:
                    found[action] = (branch["Resource"], condition)
    return found


def test_cfn_lint_passes() -> None:
    run = subprocess.run([cfn_lint(), str(TEMPLATE)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_cfn_lint_would_catch_a_broken_mapping() -> None:
    broken = TEMPLATE.read_text().replace("BisectBatchOnFunctionError: true", "Bisect: true")
    assert broken != TEMPLATE.read_text()
    assert lint(broken)


def test_the_mapping_reads_the_kinesis_stream_safely(template: Any) -> None:
    mapping = only(template, "AWS::Lambda::EventSourceMapping")
    assert mapping["EventSourceArn"] == {"Ref": "KinesisStreamArn"}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert parameter_ref(template, mapping["MaximumRetryAttempts"])["Default"] == -1
    age = parameter_ref(template, mapping["MaximumRecordAgeInSeconds"])["Default"]
    assert 60 <= age < 24 * 3600  # below the shortest Kinesis retention
    queue = mapping["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    assert template["Resources"][queue]["Type"] == "AWS::SQS::Queue"
    function = only(template, "AWS::Serverless::Function")
    assert function["Handler"] == "cdc.handler.handler"


def test_the_role_has_least_privilege(template: Any) -> None:
    found = grants(template)
    stream = {"Ref": "KinesisStreamArn"}
    for action in (
        "kinesis:DescribeStream",
        "kinesis:DescribeStreamSummary",
        "kinesis:GetRecords",
        "kinesis:GetShardIterator",
        "kinesis:ListShards",
    ):
        assert found[action] == (stream, None)
    assert not any(a.startswith("dynamodb:") and a != "dynamodb:BatchGetItem" for a in found)
    resource, condition = found["dynamodb:BatchGetItem"]
    assert condition == "HydrationEnabled"
    assert "table/${TableName}" in str(resource)
    assert found["kms:Decrypt"][1] in ("HasKinesisKey", "HasSecretKey")
    assert found["sqs:SendMessage"] == ({"Fn::GetAtt": ["OnFailureQueue", "Arn"]}, None)


def test_the_dead_letter_alarm_watches_what_the_handler_emits(
    template: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from cdc import handler

    # GIVEN the handler's EMF output for a Kinesis batch with a dead letter
    records = [kinsert({"id": 1}, BASE_MS), wrap(b"{}")]
    monkeypatch.setenv("CDC_DATABASE_URL", f"sqlite:///{tmp_path}/cdc.db")
    for name in ("CDC_DATABASE_SECRET_ARN", "CDC_SCHEMA", "CDC_CONFIG", "CDC_METRICS_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    handler.reset()
    try:
        assert handler.handler({"Records": records}, None) == {"batchItemFailures": []}
    finally:
        handler.reset()
    documents = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
    ]
    orders = next(d for d in documents if d["Table"] == "Orders")
    # THEN its dimensions name the Kinesis stream and the table, as the alarm does
    assert orders["Stream"] == "stream/orders-changes"
    alarm = next(
        r["Properties"]
        for r in resources(template, "AWS::CloudWatch::Alarm").values()
        if r["Properties"]["MetricName"] == "RecordsDeadLettered"
    )
    parameters = {"KinesisStreamArn": records[0]["eventSourceARN"], "TableName": "Orders"}
    dimensions = {d["Name"]: evaluate(d["Value"], parameters) for d in alarm["Dimensions"]}
    assert dimensions == {"Stream": "stream/orders-changes", "Table": "Orders"}
    assert alarm["Namespace"] == orders["_aws"]["CloudWatchMetrics"][0]["Namespace"]
