"""`drift = "add_columns"` (issue 17, part 4): a new attribute of one type gets a nullable
column through a revision of the user's (`cdc revision`), `cdc migrate` makes it and
moves the values that waited in `extra` into it, and every process fills it from then
on. Mixed attributes, and values a drift column cannot hold, stay in `extra`: nothing is
ever lost. On PostgreSQL, MariaDB/MySQL and SQLite, the CLI in process."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cdc.app.cli import main
from cdc.config import load_settings
from cdc.core.deadline import Deadline
from cdc.jobs.replicate import Replicator
from tests.factories import FakeContext, insert
from tests.places import Place, place_fixture  # noqa: F401

pytestmark = pytest.mark.postgres

MAPPING = """migrations = "revisions"

[tables.Orders]
keys = ["Id"]
drift = "add_columns"

[tables.Orders.columns]
Id = "bigint"
Total = "numeric(12,2)"
"""


def use(monkeypatch: pytest.MonkeyPatch, place: Place, config: Path) -> None:
    for name, value in place.env(config).items():
        monkeypatch.setenv(name, value)


def apply(place: Place, config: Path, *records: dict[str, Any]) -> None:
    settings = load_settings(place.env(config))
    result = Replicator(place.engine, settings).process(
        list(records), Deadline.from_context(FakeContext(30_000))
    )
    assert result.dead_lettered == 0 and result.error is None, result


def order(i: int, seq: int, **attributes: Any) -> dict[str, Any]:
    return insert({"Id": i}, 10**20 + seq, {"Total": Decimal("9.99"), **attributes})


def by_id(place: Place) -> dict[int, dict[str, Any]]:
    rows = {}
    for row in place.rows("orders"):
        extra = row.get("extra")
        row["extra"] = json.loads(extra) if isinstance(extra, str) else extra
        rows[int(row["id"])] = row
    return rows


def test_new_attributes_get_columns_through_a_revision(
    place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    config = tmp_path / "mapping.toml"
    config.write_text(MAPPING)
    use(monkeypatch, place, config)
    assert main(["migrate"]) == 0

    # GIVEN items with attributes the mapping does not declare: they wait in `extra`
    apply(
        place,
        config,
        order(1, 1, Coupon="WELCOME", Weight=Decimal("1.5"), Mixed="x", Note=None),
        order(2, 2, Coupon="SPRING", Weight=Decimal("12.25"), Mixed=Decimal(3)),
    )
    assert by_id(place)[1]["extra"] == {
        "Coupon": "WELCOME", "Weight": 1.5, "Mixed": "x", "Note": None,
    } or by_id(place)[1]["extra"]["Coupon"] == "WELCOME"  # fmt: skip

    # WHEN a revision is written: a nullable column per attribute of one type
    assert main(["revision", "-m", "drift"]) == 0
    (revision,) = (tmp_path / "revisions").glob("*.py")
    body = revision.read_text()
    assert "coupon" in body and "weight" in body
    assert "mixed" not in body and "'note'" not in body  # mixed types; always NULL
    # idempotent, readable calls; the attribute and type ride in the column's comment
    assert "add_drift_column('orders', 'coupon', attribute='Coupon', type='text'" in body
    assert "type='numeric(4,2)'" in body

    # AND `cdc migrate` applies it and moves the waiting values into the columns
    assert main(["migrate"]) == 0, capsys.readouterr()
    assert {"coupon", "weight"} <= set(place.columns("orders"))
    rows = by_id(place)
    assert rows[1]["coupon"] == "WELCOME" and Decimal(str(rows[2]["weight"])) == Decimal("12.25")
    assert rows[1]["extra"] == {"Mixed": "x", "Note": None}
    assert rows[2]["extra"] == {"Mixed": 3}

    # THEN a new process fills the columns itself; a value the column cannot hold
    # stays in `extra` (nothing is lost, nothing dead-lettered)
    apply(
        place,
        config,
        order(3, 3, Coupon="AUTUMN", Weight=Decimal("2")),
        order(4, 4, Coupon=Decimal(5), Weight="heavy"),
    )
    rows = by_id(place)
    assert rows[3]["coupon"] == "AUTUMN" and rows[3]["extra"] is None
    assert rows[4]["coupon"] is None and rows[4]["weight"] is None
    assert rows[4]["extra"] == {"Coupon": 5, "Weight": "heavy"}

    # AND the database matches the mapping with its drift columns: nothing to revise
    assert main(["migrate"]) == 0
    capsys.readouterr()
    assert main(["revision", "-m", "nothing new"]) == 0
    newest = max((tmp_path / "revisions").glob("*.py"), key=lambda p: p.stat().st_mtime_ns)
    assert "add_column" not in newest.read_text()


def test_a_process_that_knew_the_table_before_learns_the_columns(
    place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """A warm process (it looked at the table before the column was made) writes the
    value into `extra` until it looks again; `cdc migrate`, run again, moves it."""
    config = tmp_path / "mapping.toml"
    config.write_text(MAPPING)
    use(monkeypatch, place, config)
    assert main(["migrate"]) == 0
    settings = load_settings(place.env(config))
    warm = Replicator(place.engine, settings)
    deadline = Deadline.from_context(FakeContext(30_000))
    assert warm.process([order(1, 1, Coupon="A")], deadline).dead_lettered == 0
    assert main(["revision", "-m", "drift"]) == 0
    assert main(["migrate"]) == 0, capsys.readouterr()

    assert warm.process([order(2, 2, Coupon="B")], deadline).dead_lettered == 0
    assert by_id(place)[2]["extra"] == {"Coupon": "B"}  # not looked again yet
    assert main(["migrate"]) == 0
    assert by_id(place)[2]["coupon"] == "B" and by_id(place)[2]["extra"] is None

    spec = warm.spec_for(warm.records.parse(order(3, 3), 0))
    assert spec.drift is not None
    monkeypatch.setattr(spec.drift, "_checked", -1e9)  # the recheck interval has passed
    assert warm.process([order(3, 3, Coupon="C")], deadline).dead_lettered == 0
    assert by_id(place)[3]["coupon"] == "C"


def test_drift_needs_a_typed_table_with_extra(tmp_path: Path) -> None:
    from cdc.core.errors import ConfigError

    config = tmp_path / "m.toml"
    config.write_text('[tables.T]\ndrift = "add_columns"\n')
    with pytest.raises(ConfigError, match="needs a typed table"):
        load_settings({"CDC_CONFIG": str(config)})
    config.write_text(
        MAPPING.replace('drift = "add_columns"', 'drift = "add_columns"\nunmapped = "drop"')
    )
    with pytest.raises(ConfigError, match='with unmapped = "extra"'):
        load_settings({"CDC_CONFIG": str(config)})
    config.write_text('[defaults]\ndrift = "add_columns"\n[tables.T]\nnul = "strip"\n')
    assert load_settings({"CDC_CONFIG": str(config)}).tables["T"].options.drift == "off"
    config.write_text('[tables.T]\ndrift = "yes"\n')
    with pytest.raises(ConfigError, match="drift = 'yes'; expected one of 'off', 'add_columns'"):
        load_settings({"CDC_CONFIG": str(config)})


def test_backfill_and_verify_see_drift_columns(
    clients: Any, place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from cdc.aws.clients import describe_table
    from cdc.jobs.backfill import Backfill, BackfillOptions
    from cdc.jobs.verify import Verifier

    config = tmp_path / "mapping.toml"
    config.write_text(MAPPING)
    use(monkeypatch, place, config)
    assert main(["migrate"]) == 0
    ddb = clients.dynamodb()
    ddb.create_table(
        TableName="Orders",
        KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "Id", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for i in range(4):
        item = {"Id": {"N": str(i)}, "Total": {"N": "1.25"}, "Coupon": {"S": f"C{i}"}}
        ddb.put_item(TableName="Orders", Item=item)
    source = describe_table(ddb, "Orders")
    settings = load_settings(place.env(config))
    options = BackfillOptions(segments=1)
    assert Backfill(ddb, source, place.engine, settings, options).run().complete
    assert main(["revision", "-m", "drift"]) == 0
    assert main(["migrate"]) == 0, capsys.readouterr()
    assert by_id(place)[2]["coupon"] == "C2"

    first = Verifier(ddb, source, place.engine, settings, settle=0).run()
    assert first.identical, first.examples
    assert by_id(place)[0]["coupon"] == "C0"  # key 0 stays 0 (MySQL: no AUTO_INCREMENT)
    ddb.put_item(
        TableName="Orders",
        Item={"Id": {"N": "1"}, "Total": {"N": "1.25"}, "Coupon": {"S": "changed"}},
    )
    report = Verifier(ddb, source, place.engine, settings, settle=0).run()
    assert [d.attributes for d in report.examples["different"]] == [["coupon"]]
