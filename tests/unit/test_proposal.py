"""The mapping `cdc infer-mapping` proposes (cdc/core/proposal.py), on shapes the
single-table example does not have: every proposal loads as a mapping file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cdc.config import load_settings
from cdc.core.proposal import Sample, render
from tests.factories import image


def loaded(text: str, tmp_path: Path, source: str = "App") -> Any:
    path = tmp_path / "proposed.toml"
    path.write_text(text)
    env = {"CDC_CONFIG": str(path), "CDC_DATABASE_URL": f"sqlite:///{tmp_path}/r.db"}
    return load_settings(env).tables[source]


def sample(items: list[dict[str, Any]], keys: Any = (("PK", "S"), ("SK", "S"))) -> Sample:
    return Sample("App", list(keys), [image(i) for i in items], "a test")


def by_name(config: Any) -> dict[str, Any]:
    return {e.name: e for e in config.entities}


def patterns(entity: Any) -> dict[str, str]:
    return {a: p.pattern for a, p in entity.patterns}


def test_no_entity_groups_is_a_typed_table(tmp_path: Path) -> None:
    items = [{"Id": n, "Name": f"n{n}"} for n in range(5)]
    text = render(sample(items, [("Id", "N")]))
    assert "entities" not in text
    config = loaded(text, tmp_path)
    assert config.keys == ("Id",)
    assert {c.attribute: str(c.type) for c in config.columns} == {"Id": "bigint", "Name": "text"}


def test_key_prefixes_make_key_prefix_rules(tmp_path: Path) -> None:
    items = [{"PK": f"USER#{n}", "SK": "PROFILE", "Name": "x"} for n in range(3)] + [
        {"PK": f"USER#{n}", "SK": f"POST#{n}-{k}", "Body": "b"} for n in range(3) for k in range(2)
    ]
    text = render(sample(items))
    entities = by_name(loaded(text, tmp_path))
    assert list(entities) == ["post", "profile"]
    assert (entities["post"].match.key, entities["post"].match.prefix) == ("SK", "POST#")
    assert patterns(entities["post"]) == {
        "PK": r"USER#(?P<user_id>\d+)",
        "SK": "POST#(?P<post>[^#]+)",
    }
    assert [(g.name, str(g.type)) for g in entities["post"].groups] == [
        ("user_id", "bigint"),
        ("post", "text"),
    ]
    assert entities["profile"].table == "profiles"


def test_key_shapes_digits_zeros_numbers_and_single_items(tmp_path: Path) -> None:
    items = [
        *({"PK": n, "SK": f"INV#{n:04d}", "Type": "invoice"} for n in range(3)),
        {"PK": 7, "SK": "USER#alice", "Type": "user"},  # one item: alice still varies
        {"PK": 8, "SK": "SETTINGS", "Type": "settings"},
        *({"PK": n, "SK": f"A#{n}" if n % 2 else f"B#{n}#x", "Type": "mess"} for n in range(4)),
    ]
    text = render(sample(items, [("PK", "N"), ("SK", "S")]))
    entities = by_name(loaded(text, tmp_path))
    invoice = entities["invoice"]
    assert patterns(invoice) == {"PK": r"(?P<pk>-?\d+)", "SK": r"INV#(?P<inv_id>\d+)"}
    # leading zeros: text, or INV#0001 and INV#1 would be one key
    assert [(g.name, str(g.type)) for g in invoice.groups] == [("pk", "bigint"), ("inv_id", "text")]
    assert patterns(entities["user"])["SK"] == "USER#(?P<user>[^#]+)"
    assert patterns(entities["settings"])["SK"] == "SETTINGS"
    assert patterns(entities["mess"])["SK"] == "(?P<sk>.+)"  # more than one shape
    assert entities["settings"].table == "settings"  # plural of a word ending in s


def test_an_all_constant_key_is_captured_whole(tmp_path: Path) -> None:
    items = [{"PK": "CONFIG", "SK": "GLOBAL", "Type": "config"}] + [
        {"PK": f"USER#{n}", "SK": "PROFILE", "Type": "user"} for n in range(5)
    ]
    entities = by_name(loaded(render(sample(items)), tmp_path))
    assert patterns(entities["config"]) == {"PK": "(?P<pk>CONFIG)", "SK": "GLOBAL"}


def test_names_that_collide_are_kept_apart(tmp_path: Path) -> None:
    items = [
        *({"PK": f"CUSTOMER#{n}", "SK": "A", "Type": "Order", "CustomerId": n} for n in range(3)),
        *({"PK": f"CUSTOMER#{n}", "SK": "B", "Type": "order", "Extra": 1} for n in range(3)),
        *({"PK": f"CUSTOMER#{n}", "SK": "C", "Type": "app"} for n in range(3)),
    ]
    text = render(sample(items))
    # an attribute whose column would be a key column's: no column, with a comment
    assert "# CustomerId: no column, its name 'customer_id' is taken by the key column" in text
    entities = by_name(loaded(text, tmp_path))
    assert sorted(entities) == ["app", "order", "order_2"]
    assert sorted(e.table for e in entities.values()) == ["apps", "orders", "orders_2"]


def test_lists_of_maps_become_child_tables_from_a_replica_too(tmp_path: Path) -> None:
    items = [
        {
            "PK": f"ORDER#{n}",
            "SK": "ORDER",
            "Type": "order",
            "Lines": [{"Sku": "A", "Position": 1}],
            "Notes": [{"Text": "a"}, {"Text": 1}],  # no element attribute makes a column
        }
        for n in range(3)
    ] + [{"PK": f"ORDER#{n}", "SK": "NOTE", "Type": "note"} for n in range(3)]
    plain = Sample("App", [("PK", "S"), ("SK", "S")], items, "a test", plain=True)
    text = render(plain)
    order = by_name(loaded(text, tmp_path))["order"]
    (lines,) = order.children
    assert (lines.attribute, lines.table) == ("Lines", "order_lines")
    # `position` is the child table's own column
    assert {c.attribute for c in lines.columns} == {"Sku"}
    assert "# Position: no column, its name 'position' is taken" in text
    assert {c.attribute: str(c.type) for c in order.columns} == {"Notes": "jsonb"}


def test_a_binary_key_proposes_no_entities(tmp_path: Path) -> None:
    items = [{"PK": bytes([n]), "Type": "a" if n % 2 else "b"} for n in range(4)]
    text = render(sample(items, [("PK", "B")]))
    assert "a binary key cannot be parsed" in text
    assert loaded(text, tmp_path).keys == ("PK",)


def test_the_more_specific_key_prefix_rule_comes_first(tmp_path: Path) -> None:
    items = [{"PK": f"USER#{n}", "SK": "PROFILE"} for n in range(3)] + [
        {"PK": f"USER#{n}", "SK": f"note{n}"} for n in range(5)
    ]
    text = render(sample(items))
    entities = list(loaded(text, tmp_path).entities)
    # USER#/PROFILE before USER#/*: the first rule that holds takes an item, and the
    # user entity's SK pattern would take PROFILE too
    assert [(e.name, e.match.key, e.match.prefix) for e in entities] == [
        ("profile", "SK", "PROFILE"),
        ("user", "PK", "USER#"),
    ]
    assert "come here" not in text
    assert "items no entity takes: 0 of 8 (0%) in the sample" in text
