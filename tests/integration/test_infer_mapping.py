"""`cdc infer-mapping TABLE` (issue 17, part 3), run as a user does: a separate `cdc`
process against `moto_server`. The proposal loads with the mapping-file loader, names
each attribute's type as observed (numeric precision and scale, ISO and epoch times,
booleans, sets, maps and lists), says how much of the sample each choice covers, and
suggests the entity groups of a single-table design as comments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cdc.config import load_settings
from tests.moto_server import (
    MotoServer,
    cdc_env,
    moto_server,  # noqa: F401 - the fixture
    run_cdc,
)


@pytest.fixture
def aws(moto_server: MotoServer) -> MotoServer:  # noqa: F811 - the imported fixture
    moto_server.reset()
    return moto_server


def single_table_items() -> list[dict[str, Any]]:
    """20 customers and 30 orders in one table, told apart by Type and by key prefix."""
    items: list[dict[str, Any]] = []
    for n in range(20):
        items.append(
            {
                "PK": {"S": f"CUSTOMER#{n}"},
                "SK": {"S": "PROFILE"},
                "Type": {"S": "customer"},
                "Name": {"S": f"Customer {n}"},
                "CreatedAt": {"S": f"2026-11-{n + 1:02d}T10:00:00Z"},
                "Vip": {"BOOL": n % 3 == 0},
            }
        )
    for n in range(30):
        order = {
            "PK": {"S": f"CUSTOMER#{n % 20}"},
            "SK": {"S": f"ORDER#2026-11-{n % 28 + 1:02d}#{n}"},
            "Type": {"S": "order"},
            "Total": {"N": f"{n * 7}.{n % 10}5"},
            "PlacedAt": {"N": str(1_764_000_000 + n)},
            "Tags": {"SS": ["gift", f"t{n}"]},
            "Lines": {"L": [{"M": {"Sku": {"S": "A"}, "Qty": {"N": "1"}}}]},
        }
        if n % 2:
            order["Coupon"] = {"S": "WELCOME"}
        items.append(order)
    return items


def make_app_table(server: MotoServer) -> None:
    ddb = server.client("dynamodb")
    ddb.create_table(
        TableName="App",
        KeySchema=[
            {"AttributeName": "PK", "KeyType": "HASH"},
            {"AttributeName": "SK", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for item in single_table_items():
        ddb.put_item(TableName="App", Item=item)


def env_for(server: MotoServer, tmp_path: Path) -> dict[str, str]:
    return cdc_env(server.url, f"sqlite:///{tmp_path}/replica.db")


def loads(text: str, tmp_path: Path) -> Any:
    path = tmp_path / "proposed.toml"
    path.write_text(text)
    return load_settings({"CDC_CONFIG": str(path)}).tables


def line_of(text: str, attribute: str) -> str:
    found = [line for line in text.splitlines() if line.startswith(f"{attribute} =")]
    assert len(found) == 1, (attribute, text)
    return found[0]


def test_a_scan_sample_becomes_a_mapping_that_loads(aws: MotoServer, tmp_path: Path) -> None:
    make_app_table(aws)
    done = run_cdc("infer-mapping", "App", env=env_for(aws, tmp_path))
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "proposed from a Scan of 50 items of App" in text

    config = loads(text, tmp_path)["App"]
    assert config.keys == ("PK", "SK")
    types = {c.attribute: (str(c.type), c.time_format) for c in config.columns}
    assert types == {
        "PK": ("text", "auto"),
        "SK": ("text", "auto"),
        "Name": ("text", "auto"),
        "CreatedAt": ("timestamptz", "iso"),
        "Vip": ("boolean", "auto"),
        "Total": ("numeric(5,2)", "auto"),  # up to 203.95: 3 digits before, 2 after
        "PlacedAt": ("timestamptz", "epoch_s"),
        "Tags": ("text[]", "auto"),
        "Lines": ("jsonb", "auto"),
        "Coupon": ("text", "auto"),
        "Type": ("text", "auto"),
    }
    # how much of the sample each choice covers
    assert "in 15 of 50 (30.0%) items" in line_of(text, "Coupon")
    assert "in 20 of 50 (40.0%) items" in line_of(text, "Vip")
    assert "numbers with up to 3 digits before and 2 after the point" in line_of(text, "Total")

    # entity groups, commented out, with their key patterns and their own columns
    assert "# Items are told apart by the attribute Type" in text
    assert "# [tables.App.entities.customer]  # 20 of 50 (40.0%) items" in text
    assert '# match = { attribute = "Type", value = "order" }' in text
    assert '# key.PK = "^CUSTOMER#(?P<customer_id>\\\\d+)$"' in text
    day = "\\\\d{4}-\\\\d{2}-\\\\d{2}"
    assert f'# key.SK = "^ORDER#(?P<order_day>{day})#(?P<order_id>\\\\d+)$"' in text
    assert '# key.SK = "^PROFILE$"' in text


def test_sample_size_and_output_file(aws: MotoServer, tmp_path: Path) -> None:
    make_app_table(aws)
    out = tmp_path / "app.toml"
    done = run_cdc(
        "infer-mapping", "App", "--sample", "7", "--output", str(out), env=env_for(aws, tmp_path)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "wrote" in done.stderr and "7 items read" in done.stderr
    assert "a Scan of 7 items" in out.read_text()
    assert loads(out.read_text(), tmp_path)["App"].keys == ("PK", "SK")


def test_mixed_types_stay_in_extra(aws: MotoServer, tmp_path: Path) -> None:
    ddb = aws.client("dynamodb")
    ddb.create_table(
        TableName="Mixed",
        KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "Id", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for n in range(10):
        value = {"S": "x"} if n < 6 else {"N": "1"}
        ddb.put_item(
            TableName="Mixed",
            Item={"Id": {"N": str(n)}, "Value": value, "userId": {"S": "a"}, "user_id": {"S": "b"}},
        )
    done = run_cdc("infer-mapping", "Mixed", env=env_for(aws, tmp_path))
    assert done.returncode == 0, done.stderr
    assert (
        "# Value: no column, mixed types (S in 6, N in 4); in 10 of 10 (100%) items" in done.stdout
    )
    assert "its name 'user_id' is taken by" in done.stdout
    config = loads(done.stdout, tmp_path)["Mixed"]
    assert {c.attribute: str(c.type) for c in config.columns}["Id"] == "bigint"


def test_from_replica_reads_the_accumulated_items(aws: MotoServer, tmp_path: Path) -> None:
    make_app_table(aws)
    env = env_for(aws, tmp_path)
    assert run_cdc("backfill", "App", env=env).returncode == 0
    done = run_cdc("infer-mapping", "App", "--from-replica", env=env)
    assert done.returncode == 0, done.stderr
    assert "the `item` column of 50 rows of app" in done.stdout
    types = {c.attribute: str(c.type) for c in loads(done.stdout, tmp_path)["App"].columns}
    assert types["Total"] == "numeric(5,2)"
    assert types["Tags"] == "text[]"  # a set is a list in the replica's JSON
    assert types["PK"] == "text"


def test_a_missing_table_is_one_line(aws: MotoServer, tmp_path: Path) -> None:
    done = run_cdc("infer-mapping", "Nope", env=env_for(aws, tmp_path))
    assert done.returncode == 2
    assert "DynamoDB table 'Nope' does not exist" in done.stderr
    assert "Traceback" not in done.stderr
    missing = run_cdc("infer-mapping", "Nope", "--from-replica", env=env_for(aws, tmp_path))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "there is no replica table nope" in missing.stderr
