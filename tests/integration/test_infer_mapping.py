"""`cdc infer-mapping TABLE` (issue 17, part 3), run as a user does: a separate `cdc`
process against `moto_server`. The proposal loads with the mapping-file loader, names
each attribute's type as observed (numeric precision and scale, ISO and epoch times,
booleans, sets, maps and lists), says how much of the sample each choice covers, and
proposes the entities of a single-table design: for items shaped like
examples/single_table.toml's, the example's entities, which replicate as the example's."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, Table, select

from cdc.config import load_settings
from cdc.core.proposal import Sample, render
from cdc.jobs.replicate import Replicator
from cdc.sql.engines import make_engine
from tests.factories import create_pk_sk_table, image, insert
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
    """Items shaped like examples/single_table.toml's, as plain Python (`image()` makes
    them DynamoDB JSON): 20 customers, 24 orders with their lines and 6 archived
    orders in one table, told apart by Type and by key prefix."""
    items: list[dict[str, Any]] = []
    for n in range(20):
        items.append(
            {
                "PK": f"CUSTOMER#{n}",
                "SK": "PROFILE",
                "Type": "customer",
                "Name": f"Customer {n}",
                "Email": f"c{n}@example.com",
                "CreatedAt": f"2026-11-{n + 1:02d}T10:00:00Z",
                "Vip": n % 3 == 0,
            }
        )
    for n in range(30):
        order: dict[str, Any] = {
            "PK": f"CUSTOMER#{n % 20}",
            "SK": f"ORDER#2026-11-{n % 28 + 1:02d}#{n}",
            "Type": "archived" if n % 5 == 4 else "order",
            "Total": Decimal(f"{n * 7}.{n % 10}5"),
        }
        if order["Type"] == "order":
            order["Status"] = "placed"
            order["PlacedAt"] = 1_764_000_000 + n
            order["Tags"] = {"gift", f"t{n}"}
            order["Lines"] = [
                {"Sku": f"SKU-{k}", "Qty": k + 1, "Price": Decimal(f"{k + 1}.99")}
                for k in range(n % 3 + 1)
            ]
            if n % 2:
                order["Coupon"] = "WELCOME"
        items.append(order)
    return items


def make_app_table(server: MotoServer) -> None:
    ddb = server.client("dynamodb")
    create_pk_sk_table(ddb, "App")
    for item in single_table_items():
        ddb.put_item(TableName="App", Item=image(item))


def env_for(server: MotoServer, tmp_path: Path) -> dict[str, str]:
    return cdc_env(server.url, f"sqlite:///{tmp_path}/replica.db")


def loads(text: str, tmp_path: Path) -> Any:
    path = tmp_path / "proposed.toml"
    path.write_text(text)
    return load_settings({"CDC_CONFIG": str(path)}).tables


def line_of(text: str, attribute: str, section: str | None = None) -> str:
    """The line of `attribute` (in the TOML table `section`, when given)."""
    lines = text.splitlines()
    if section is not None:
        start = lines.index(f"[{section}]") if f"[{section}]" in lines else None
        if start is None:
            start = next(i for i, line in enumerate(lines) if line.startswith(f"[{section}] "))
        following = lines[start + 1 :]
        lines = following[: next((i for i, x in enumerate(following) if x.startswith("[")), None)]
    found = [line for line in lines if line.startswith(f"{attribute} =")]
    assert len(found) == 1, (attribute, section, text)
    return found[0]


def entities(config: Any) -> dict[str, Any]:
    return {e.name: e for e in config.entities}


def test_a_scan_sample_becomes_a_mapping_that_loads(aws: MotoServer, tmp_path: Path) -> None:
    make_app_table(aws)
    done = run_cdc("infer-mapping", "App", env=env_for(aws, tmp_path))
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "proposed from a Scan of 50 items of App" in text

    config = loads(text, tmp_path)["App"]
    assert config.keys == () and config.columns == ()
    assert config.unmatched == "document"
    found = entities(config)
    assert list(found) == ["order", "customer", "archived_order"]  # most items first
    order = found["order"]
    types = {c.attribute: (str(c.type), c.time_format) for c in order.columns}
    assert types == {
        "Status": ("text", "auto"),
        "Total": ("numeric(5,2)", "auto"),  # up to 203.95: 3 digits before, 2 after
        "PlacedAt": ("timestamptz", "epoch_s"),
        "Tags": ("text[]", "auto"),
        "Coupon": ("text", "auto"),
    }
    customer = {c.attribute: (str(c.type), c.time_format) for c in found["customer"].columns}
    assert customer == {
        "Name": ("text", "auto"),
        "Email": ("text", "auto"),
        "CreatedAt": ("timestamptz", "iso"),
        "Vip": ("boolean", "auto"),
    }
    (lines,) = order.children
    assert {c.attribute: str(c.type) for c in lines.columns} == {
        "Sku": "text",
        "Qty": "bigint",
        "Price": "numeric(3,2)",
    }
    # how much of the sample each choice covers
    assert '# 24 of 50 (48.0%) items: Type = "order"' in text
    assert "in 12 of 24 (50.0%) items" in line_of(
        text, "Coupon", "tables.App.entities.order.columns"
    )
    assert "in 20 of 20 (100%) items" in line_of(
        text, "Vip", "tables.App.entities.customer.columns"
    )
    total = line_of(text, "Total", "tables.App.entities.order.columns")
    assert "numbers with up to 3 digits before and 2 after the point" in total
    assert "# Lines: a list of maps in 24 of 24 (100%) items, 48 elements" in text
    assert "in 48 of 48 (100%) elements" in line_of(
        text, "Sku", "tables.App.entities.order.children.Lines.columns"
    )
    assert "items no entity takes: 0 of 50 (0%) in the sample" in text
    assert "# Items are told apart by the attribute Type" in text
    assert 'key.PK = "CUSTOMER#(?P<customer_id>\\\\d+)"' in text
    day = "\\\\d{4}-\\\\d{2}-\\\\d{2}"
    assert f'key.SK = "ORDER#(?P<order_day>{day})#(?P<order_id>\\\\d+)"' in text
    assert 'key.SK = "PROFILE"' in text


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
    # 7 items of whichever entities the Scan returned first: a mapping that loads
    config = loads(out.read_text(), tmp_path)["App"]
    assert config.keys == ("PK", "SK") or config.entities


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
    found = entities(loads(done.stdout, tmp_path)["App"])
    assert list(found) == ["order", "customer", "archived_order"]
    types = {c.attribute: str(c.type) for c in found["order"].columns}
    assert types["Total"] == "numeric(5,2)"
    assert types["Tags"] == "text[]"  # a set is a list in the replica's JSON
    assert [g.name for g in found["order"].groups] == ["customer_id", "order_day", "order_id"]
    (lines,) = found["order"].children
    assert {c.attribute: str(c.type) for c in lines.columns}["Price"] == "numeric(3,2)"


def test_a_missing_table_is_one_line(aws: MotoServer, tmp_path: Path) -> None:
    done = run_cdc("infer-mapping", "Nope", env=env_for(aws, tmp_path))
    assert done.returncode == 2
    assert "DynamoDB table 'Nope' does not exist" in done.stderr
    assert "Traceback" not in done.stderr
    missing = run_cdc("infer-mapping", "Nope", "--from-replica", env=env_for(aws, tmp_path))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "there is no replica table nope" in missing.stderr


# --- the single-table example ---------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "single_table.toml"


def example_sample() -> Sample:
    return Sample(
        "App",
        [("PK", "S"), ("SK", "S")],
        [image(item) for item in single_table_items()],
        "a Scan of 50 items",
    )


def test_the_proposal_for_the_example_items_is_the_example(tmp_path: Path) -> None:
    # GIVEN items shaped like examples/single_table.toml's
    proposed = tmp_path / "proposed.toml"
    proposed.write_text(render(example_sample()))
    database = {"CDC_DATABASE_URL": f"sqlite:///{tmp_path}/replica.db"}
    # WHEN the proposal is loaded, as `cdc` loads a mapping file
    ours = load_settings({"CDC_CONFIG": str(proposed), **database}).tables["App"]
    example = load_settings(
        {"CDC_CONFIG": str(EXAMPLE), "CDC_HASH_KEY": "k" * 32, **database}
    ).tables["App"]
    # THEN its entities are the example's: the same names and tables (customers,
    # orders, archived_orders, order_lines), match rules, key patterns, key columns and
    # their types, and child table. What differs: the order (most items first), column
    # types sized to the data (Total numeric(5,2), not numeric(12,2); Qty bigint, not
    # integer; Sku not required), the example's personal-data rules and soft deletes,
    # and the columns of attributes only the sample has (Tags, Coupon).
    assert ours.unmatched == example.unmatched == "document"
    assert (ours.keys, ours.columns) == ((), ())
    mine, theirs = entities(ours), entities(example)
    assert sorted(mine) == sorted(theirs) == ["archived_order", "customer", "order"]
    for name, entity in theirs.items():
        proposal = mine[name]
        assert proposal.table == entity.table, name
        assert proposal.match == entity.match, name
        patterns = [(a, p.pattern) for a, p in proposal.patterns]
        assert patterns == [(a, p.pattern) for a, p in entity.patterns], name
        assert proposal.groups == entity.groups, name
        assert [(c.attribute, c.table) for c in proposal.children] == [
            (c.attribute, c.table) for c in entity.children
        ], name
        for child, theirs_child in zip(proposal.children, entity.children, strict=True):
            assert {c.attribute for c in child.columns} == {
                c.attribute for c in theirs_child.columns
            }
        columns = {c.attribute for c in proposal.columns}
        assert columns - {"Tags", "Coupon"} == {c.attribute for c in entity.columns}, name
    assert {c.attribute: str(c.type) for c in mine["customer"].columns} == {
        c.attribute: str(c.type) for c in theirs["customer"].columns
    }


def test_the_proposal_replicates_each_item_into_its_entity_table(tmp_path: Path) -> None:
    # GIVEN the proposal for the example's items, loaded with a SQLite replica
    proposed = tmp_path / "proposed.toml"
    proposed.write_text(render(example_sample()))
    url = f"sqlite:///{tmp_path}/replica.db"
    settings = load_settings({"CDC_CONFIG": str(proposed), "CDC_DATABASE_URL": url})
    items = single_table_items()
    customer, order, archived = items[0], items[21], items[24]  # order 1, archived order 4
    assert (customer["Type"], order["Type"], archived["Type"]) == ("customer", "order", "archived")
    stray = {"PK": "TENANT#1", "SK": "CONFIG", "Type": "config"}
    records = [
        insert(
            {"PK": item["PK"], "SK": item["SK"]},
            10**20 + n,
            {k: v for k, v in item.items() if k not in ("PK", "SK")},
            table="App",
        )
        for n, item in enumerate([customer, order, archived, stray])
    ]
    assert settings.database_url is not None
    engine = make_engine(settings.database_url)
    try:
        # WHEN their INSERT records are replicated
        result = Replicator(engine, settings).process(records)
        assert result.failed == 0, result.error
        # THEN each lands in its entity table, keyed by the columns parsed from its key
        with engine.connect() as conn:

            def rows(name: str) -> list[dict[str, Any]]:
                table = Table(name, MetaData(), autoload_with=conn)
                return [dict(r._mapping) for r in conn.execute(select(table))]

            (c,) = rows("customers")
            assert (c["customer_id"], c["name"], c["vip"]) == (0, "Customer 0", True)
            (o,) = rows("orders")
            assert (o["customer_id"], str(o["order_day"]), o["order_id"]) == (1, "2026-11-02", 1)
            assert Decimal(str(o["total"])) == Decimal("7.15")
            lines = sorted((r["position"], r["sku"], r["qty"]) for r in rows("order_lines"))
            assert lines == [(0, "SKU-0", 1), (1, "SKU-1", 2)]
            (a,) = rows("archived_orders")
            assert (a["customer_id"], a["order_id"]) == (4, 4)
            (d,) = rows("app")  # no entity takes it: a document
            assert (d["pk"], d["sk"]) == ("TENANT#1", "CONFIG")
    finally:
        engine.dispose()


def test_the_readme_shows_the_proposal_for_the_example_items() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### `cdc infer-mapping TABLE`") :]
    block = section[section.index("```toml\n") + len("```toml\n") :]
    assert block[: block.index("```\n")] == render(example_sample())
