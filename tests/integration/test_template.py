"""The SAM template in deploy/: cfn-lint passes, and the settings the replication's
safety depends on are there (partial batch responses, an on-failure queue, a record age
below the stream's retention) with a least-privilege role."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint
from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "template.yaml"
EVENT = ROOT / "tests" / "events" / "stream-sample-devguide.json"

# Actions on data: every one must name its resource. (ec2's network-interface actions,
# which Lambda needs to join the VPC, cannot be scoped and are checked separately.)
DATA_SERVICES = ("dynamodb", "secretsmanager", "sqs", "rds-db", "kms", "logs", "s3")
VPC_ACTIONS = {
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}


def cfn_lint() -> str:
    """The cfn-lint console script of the interpreter running the tests."""
    beside = Path(sys.executable).parent / "cfn-lint"
    found = str(beside) if beside.exists() else shutil.which("cfn-lint")
    assert found, "cfn-lint is not installed (pip install -e '.[dev]')"
    return found


@pytest.fixture(scope="module")
def template() -> Any:
    return cfn_yaml.load(str(TEMPLATE))


def resources(template: Any, kind: str) -> dict[str, Any]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def only(template: Any, kind: str) -> dict[str, Any]:
    found = resources(template, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.values()))["Properties"]


def named(template: Any, name: str) -> dict[str, Any]:
    """The stream function's resources by name: the optional export load adds a second
    function and role (tests/integration/test_template_export.py)."""
    return dict(template["Resources"][name]["Properties"])


def statements(template: Any) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Every statement of the function role's policies, with the condition it is under
    (both branches of an Fn::If are yielded)."""
    role = named(template, "FunctionRole")
    for policy in role["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in statement:
                condition, *branches = statement["Fn::If"]
                for branch in branches:
                    if branch != {"Ref": "AWS::NoValue"}:
                        yield branch, condition
            else:
                yield statement, None


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def parameter_ref(template: Any, value: Any) -> dict[str, Any]:
    assert isinstance(value, dict), f"{value!r} is not a parameter"
    assert set(value) == {"Ref"}, f"{value!r} is not a parameter"
    return template["Parameters"][value["Ref"]]


# --- cfn-lint ---------------------------------------------------------------------------


def test_cfn_lint_passes():
    run = subprocess.run([cfn_lint(), str(TEMPLATE)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_cfn_lint_would_catch_a_broken_mapping():
    # GIVEN the template with a typo in the event source mapping THEN cfn-lint says so:
    # the check above is not vacuous.
    broken = TEMPLATE.read_text().replace(
        "FunctionResponseTypes: [ReportBatchItemFailures]",
        "FunctionResponseTypes: [ReportBatchFailures]",
    )
    assert broken != TEMPLATE.read_text()
    assert any("ReportBatchFailures" in match.message for match in lint(broken))


# --- the function -------------------------------------------------------------------------


def test_the_function_runs_the_handler_on_a_current_python(template):
    function = named(template, "Function")
    assert function["Handler"] == "cdc.handler.handler"
    runtime = parameter_ref(template, function["Runtime"])
    assert set(runtime["AllowedValues"]) <= {"python3.12", "python3.13"}
    assert runtime["Default"] in runtime["AllowedValues"]
    (architecture,) = function["Architectures"]
    assert set(parameter_ref(template, architecture)["AllowedValues"]) == {"x86_64", "arm64"}
    for setting in ("MemorySize", "Timeout"):
        parameter_ref(template, function[setting])
    assert function["CodeUri"] == "../dist/cdc-lambda.zip"  # package.py's default --out


def test_the_function_is_in_the_vpc_and_configured_from_parameters(template):
    function = named(template, "Function")
    vpc = function["VpcConfig"]
    assert parameter_ref(template, vpc["SubnetIds"])["Type"] == "List<AWS::EC2::Subnet::Id>"
    assert (
        parameter_ref(template, vpc["SecurityGroupIds"])["Type"]
        == "List<AWS::EC2::SecurityGroup::Id>"
    )
    variables = function["Environment"]["Variables"]
    for name in ("CDC_DATABASE_SECRET_ARN", "CDC_SCHEMA", "CDC_CONFIG"):
        assert name in variables
    assert variables["CDC_DATABASE_SECRET_ARN"]["Fn::If"][1] == {"Ref": "DatabaseSecretArn"}
    # A URL could carry a password: it must not be shown in the console's parameters.
    assert template["Parameters"]["DatabaseUrl"]["NoEcho"] is True


# --- the event source mapping ----------------------------------------------------------------


def test_the_mapping_reports_partial_failures_and_bisects(template):
    mapping = only(template, "AWS::Lambda::EventSourceMapping")
    assert mapping["EventSourceArn"] == {"Ref": "StreamArn"}
    assert mapping["FunctionName"] == {"Ref": "Function"}
    assert "ReportBatchItemFailures" in mapping["FunctionResponseTypes"]
    assert mapping["BisectBatchOnFunctionError"] is True
    for setting in (
        "StartingPosition",
        "BatchSize",
        "MaximumBatchingWindowInSeconds",
        "MaximumRetryAttempts",
        "MaximumRecordAgeInSeconds",
        "ParallelizationFactor",
    ):
        parameter_ref(template, mapping[setting])


def test_the_mapping_gives_up_while_the_stream_still_has_the_records(template):
    mapping = only(template, "AWS::Lambda::EventSourceMapping")
    age = parameter_ref(template, mapping["MaximumRecordAgeInSeconds"])["Default"]
    assert 60 <= age < 24 * 3600  # streams keep records 24 h
    assert parameter_ref(template, mapping["MaximumRetryAttempts"])["Default"] == -1
    # The destination is the S3 bucket by default, the SQS queue on request.
    condition, bucket, queue = mapping["DestinationConfig"]["OnFailure"]["Destination"]["Fn::If"]
    assert template["Conditions"][condition] == {
        "Fn::Equals": [{"Ref": "OnFailureDestination"}, "s3"]
    }
    assert template["Parameters"]["OnFailureDestination"]["Default"] == "s3"
    assert template["Resources"][bucket["Fn::GetAtt"][0]]["Type"] == "AWS::S3::Bucket"
    assert template["Resources"][queue["Fn::GetAtt"][0]]["Type"] == "AWS::SQS::Queue"
    assert mapping["MetricsConfig"] == {"Metrics": ["EventCount"]}


# --- the role ---------------------------------------------------------------------------------


def test_the_role_names_the_resource_of_every_data_action(template):
    role = named(template, "FunctionRole")
    assert "ManagedPolicyArns" not in role  # managed policies grant logs:* on "*"
    for statement, _condition in statements(template):
        assert statement["Effect"] == "Allow"
        actions = as_list(statement["Action"])
        assert all("*" not in action for action in actions), statement
        if any(action.split(":")[0] in DATA_SERVICES for action in actions):
            assert all(resource != "*" for resource in as_list(statement["Resource"])), statement
        else:
            assert set(actions) <= VPC_ACTIONS, statement


def test_the_role_grants_what_the_function_needs(template):
    grants: dict[str, tuple[Any, str | None]] = {}
    for statement, condition in statements(template):
        for action in as_list(statement["Action"]):
            grants[action] = (statement["Resource"], condition)
    for action in ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"):
        assert grants[action] == ({"Ref": "StreamArn"}, None)
    assert "/stream/*" in str(grants["dynamodb:ListStreams"][0])
    # The on-failure destination: the queue or the bucket, only the one in use, and the
    # bucket only in this account.
    assert grants["sqs:SendMessage"] == (
        {"Fn::GetAtt": ["OnFailureQueue", "Arn"]},
        "UseSqsDestination",
    )
    assert grants["s3:PutObject"] == ({"Fn::Sub": "${OnFailureBucket.Arn}/*"}, "UseS3Destination")
    assert grants["s3:ListBucket"] == (
        {"Fn::GetAtt": ["OnFailureBucket", "Arn"]},
        "UseS3Destination",
    )
    for statement, _condition in statements(template):
        if any(a.startswith("s3:") for a in as_list(statement["Action"])):
            assert statement["Condition"] == {
                "StringEquals": {"s3:ResourceAccount": {"Ref": "AWS::AccountId"}}
            }
    assert grants["secretsmanager:GetSecretValue"] == ({"Ref": "DatabaseSecretArn"}, "HasSecret")
    # Hydration reads the one table, and only when enabled.
    resource, condition = grants["dynamodb:BatchGetItem"]
    assert condition == "HydrationEnabled"
    assert resource == {"Fn::Select": [0, {"Fn::Split": ["/stream/", {"Ref": "StreamArn"}]}]}
    assert grants["rds-db:connect"][1] == "UseIamAuth"
    assert grants["logs:PutLogEvents"] == ({"Fn::GetAtt": ["LogGroup", "Arn"]}, None)
    assert set(grants) >= VPC_ACTIONS


# --- alarms on the function's own metrics ---------------------------------------------------


def evaluate(node: Any, parameters: dict[str, str]) -> Any:
    """The few intrinsic functions the alarm dimensions use: Ref, Select, Split, Sub."""
    if isinstance(node, dict) and len(node) == 1:
        ((function, argument),) = node.items()
        if function == "Ref":
            return parameters[argument]
        if function == "Fn::Select":
            index, values = argument
            return evaluate(values, parameters)[int(index)]
        if function == "Fn::Split":
            separator, value = argument
            return evaluate(value, parameters).split(separator)
        if function == "Fn::Sub":
            text, variables = argument
            for name, value in variables.items():
                text = text.replace("${" + name + "}", evaluate(value, parameters))
            return text
    return node


def emitted_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Any:
    """The handler's EMF documents for the sample event."""
    from cdc import handler

    event = json.loads(EVENT.read_text())
    monkeypatch.setenv("CDC_DATABASE_URL", f"sqlite:///{tmp_path}/cdc.db")
    for name in ("CDC_DATABASE_SECRET_ARN", "CDC_SCHEMA", "CDC_CONFIG", "CDC_METRICS_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    handler.reset()
    try:
        handler.handler(event, None)
    finally:
        handler.reset()
    lines = capsys.readouterr().out.splitlines()
    return event, [json.loads(line) for line in lines if '"_aws"' in line]


def test_the_dead_letter_alarm_watches_the_metric_the_handler_emits(
    template, tmp_path, monkeypatch, capsys
):
    # GIVEN the handler's EMF output for the sample event
    event, documents = emitted_metrics(tmp_path, monkeypatch, capsys)
    assert documents
    emitted = documents[0]["_aws"]["CloudWatchMetrics"][0]

    # THEN the alarm names the same namespace, metric and dimension values
    alarm = next(
        r["Properties"]
        for r in resources(template, "AWS::CloudWatch::Alarm").values()
        if r["Properties"]["MetricName"] == "RecordsDeadLettered"
    )
    assert alarm["Namespace"] == emitted["Namespace"]
    assert "RecordsDeadLettered" in {m["Name"] for m in emitted["Metrics"]}
    parameters = {"StreamArn": event["Records"][0]["eventSourceARN"]}
    dimensions = {d["Name"]: evaluate(d["Value"], parameters) for d in alarm["Dimensions"]}
    assert set(dimensions) == set(emitted["Dimensions"][0])
    assert dimensions == {name: documents[0][name] for name in dimensions}


# --- the S3 on-failure destination ---------------------------------------------------------------


def test_the_failure_bucket_is_private_encrypted_and_expires_its_objects(template):
    bucket = template["Resources"]["OnFailureBucket"]
    assert bucket["Condition"] == "UseS3Destination"
    assert bucket["DeletionPolicy"] == "Retain"  # never deleted with the records in it
    properties = bucket["Properties"]
    (rule,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert set(properties["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(properties["PublicAccessBlockConfiguration"]) == 4
    (expiry,) = properties["LifecycleConfiguration"]["Rules"]
    assert expiry["Status"] == "Enabled"
    assert parameter_ref(template, expiry["ExpirationInDays"])["Default"] >= 7
    policy = template["Resources"]["OnFailureBucketPolicy"]["Properties"]["PolicyDocument"]
    (tls,) = policy["Statement"]
    assert tls["Effect"] == "Deny"
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_redrive_policy_names_its_resources(template):
    policy = template["Resources"]["RedriveFailuresPolicy"]["Properties"]["PolicyDocument"]
    grants: dict[str, tuple[Any, str | None]] = {}
    for statement in policy["Statement"]:
        condition = None
        if "Fn::If" in statement:
            condition, statement, _ = statement["Fn::If"]
        assert all("*" not in a for a in as_list(statement["Action"])), statement
        assert all(r != "*" for r in as_list(statement["Resource"])), statement
        for action in as_list(statement["Action"]):
            grants[action] = (statement["Resource"], condition)
    assert grants["s3:GetObject"] == ({"Fn::Sub": "${OnFailureBucket.Arn}/*"}, "UseS3Destination")
    assert grants["s3:DeleteObject"] == grants["s3:GetObject"]
    # --keep writes under done/ only (the command's default --done-prefix).
    assert grants["s3:PutObject"] == (
        {"Fn::Sub": "${OnFailureBucket.Arn}/done/*"},
        "UseS3Destination",
    )
    assert grants["sqs:DeleteMessage"][1] == "UseSqsDestination"
    assert grants["dynamodb:GetRecords"] == ({"Ref": "StreamArn"}, None)


# --- the dashboard ------------------------------------------------------------------------------


def substitute(node: Any, values: dict[str, str], conditions: dict[str, bool]) -> Any:
    """Fn::Sub (both forms) and Fn::If / Ref / Select / Split, enough for the dashboard."""
    if isinstance(node, dict) and len(node) == 1:
        ((function, argument),) = node.items()
        if function == "Fn::If":
            name, yes, no = argument
            return substitute(yes if conditions[name] else no, values, conditions)
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            local = {k: substitute(v, values, conditions) for k, v in variables.items()}
            for name, value in {**values, **local}.items():
                text = text.replace("${" + name + "}", str(value))
            assert "${" not in text, text[text.index("${") : text.index("${") + 40]
            return text
        return evaluate(node, values)
    return node


def dashboard_body(template: Any, destination: str, stream: str) -> dict[str, Any]:
    values = {
        "StreamArn": stream,
        "AWS::Region": "eu-west-1",
        "AWS::StackName": "cdc-orders",
        "Function": "cdc-orders-Function-1",
        "StreamMapping": "2b5c8f4e-9d1a-4c3b-8e7f-0a1b2c3d4e5f",
        "OnFailureBucket": "cdc-orders-onfailurebucket-1",
        "OnFailureQueue.QueueName": "cdc-orders-OnFailureQueue-1",
        "IteratorAgeAlarmSeconds": "300",
        "Timeout": "60",
        **{
            f"{name}.Arn": f"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{name}"
            for name in resources(template, "AWS::CloudWatch::Alarm")
        },
    }
    conditions = {"UseS3Destination": destination == "s3"}
    dashboard = only(template, "AWS::CloudWatch::Dashboard")
    body = substitute(dashboard["DashboardBody"], values, conditions)
    return json.loads(body)


@pytest.mark.parametrize("destination", ["s3", "sqs"])
def test_the_dashboard_graphs_the_metrics_the_handler_emits(
    template, destination, tmp_path, monkeypatch, capsys
):
    event, documents = emitted_metrics(tmp_path, monkeypatch, capsys)
    # the batch's metrics (the document's other directive is ReplicationGaps, by table)
    (emitted,) = [
        d
        for d in documents[0]["_aws"]["CloudWatchMetrics"]
        if d["Metrics"][0]["Name"] != "ReplicationGaps"
    ]
    stream_arn = event["Records"][0]["eventSourceARN"]
    body = dashboard_body(template, destination, stream_arn)
    widgets = body["widgets"]
    assert all({"x", "y", "width", "height"} <= set(w) for w in widgets)
    searches = [
        m[0]["expression"]
        for w in widgets
        for m in w["properties"].get("metrics", [])
        if isinstance(m[0], dict)
    ]
    graphed = {e.split('MetricName="')[1].split('"')[0] for e in searches}
    # every metric the handler emits (ReplicationLag only for records with an event
    # time, which the sample lacks), and the gaps another part of cdc emits
    from cdc.app.observe import METRICS

    assert graphed == {name for name, _unit in METRICS} | {"ReplicationGaps"}
    assert {m["Name"] for m in emitted["Metrics"]} <= graphed
    schema = ",".join([emitted["Namespace"], *emitted["Dimensions"][0]])
    for expression in searches:
        if "ReplicationGaps" not in expression:
            # the same namespace and dimensions, this deployment's table
            assert expression.startswith(f"SEARCH('{{{schema}}} "), expression
            assert f'Table="{documents[0]["Table"]}"' in expression
    titles = " ".join(w["properties"].get("title", "") for w in widgets)
    assert ("On-failure bucket" in titles) == (destination == "s3")
    assert ("On-failure queue" in titles) == (destination == "sqs")
    plain = [
        m for w in widgets for m in w["properties"].get("metrics", []) if isinstance(m[0], str)
    ]
    assert ["AWS/Lambda", "IteratorAge", "FunctionName", "cdc-orders-Function-1"] in plain
    mapping_metrics = {m[1] for m in plain if m[2] == "EventSourceMappingUUID"}
    assert mapping_metrics == {"OnFailureDestinationDeliveredEventCount", "DroppedEventCount"}
    (alarms,) = [w for w in widgets if w["type"] == "alarm"]
    assert len(alarms["properties"]["alarms"]) >= 5


def test_the_gaps_alarm_watches_the_metric_the_handler_emits(template):
    from cdc.app.observe import emf_documents
    from cdc.core.outcomes import BatchResult, Outcome
    from cdc.sources.dynamodb_streams.records import LAMBDA_RECORDS
    from tests.factories import insert

    # GIVEN a batch of a table with an open gap
    record = insert({"Id": 1}, 1, table="Orders")
    change = LAMBDA_RECORDS.parse(record, 0)
    arn = change.stream_arn
    result = BatchResult([Outcome.SETTLED], [record], [change], open_gaps={"Orders": 2})
    (gaps,) = emf_documents(result, "cdc")
    (emitted,) = [
        d for d in gaps["_aws"]["CloudWatchMetrics"] if d["Metrics"][0]["Name"] == "ReplicationGaps"
    ]
    # THEN the alarm names the same namespace, metric and dimension (the table alone)
    alarm = next(
        r["Properties"]
        for r in resources(template, "AWS::CloudWatch::Alarm").values()
        if r["Properties"]["MetricName"] == "ReplicationGaps"
    )
    assert alarm["Namespace"] == emitted["Namespace"] == "cdc"
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and alarm["Threshold"] == 0
    dimensions = {d["Name"]: evaluate(d["Value"], {"StreamArn": arn}) for d in alarm["Dimensions"]}
    assert [list(dimensions)] == emitted["Dimensions"]
    assert dimensions == {"Table": gaps["Table"]} == {"Table": "Orders"}
    assert gaps["ReplicationGaps"] == 2
