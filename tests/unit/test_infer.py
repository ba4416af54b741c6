"""cdc/core/infer.py: column types from observed values."""

from __future__ import annotations

from decimal import Decimal

from cdc.core.infer import observe, propose, share


def proposal(values: list[dict], name: str = "X", plain: bool = False) -> tuple:
    _, seen = observe(({name: v} for v in values), plain=plain)
    p = propose(seen[name], plain=plain)
    return p.type, p.format


def test_numbers_get_their_observed_precision_and_scale() -> None:
    assert proposal([{"N": "1.5"}, {"N": "-123.25"}, {"N": "7"}]) == ("numeric(5,2)", None)
    assert proposal([{"N": "1"}, {"N": "123456"}]) == ("bigint", None)
    assert proposal([{"N": "1" * 30}]) == ("numeric(30,0)", None)
    assert proposal([{"N": "1.50"}]) == ("numeric(2,1)", None)  # 1.50 is 1.5


def test_times_from_iso_strings_and_epoch_numbers_under_time_names() -> None:
    assert proposal([{"S": "2026-11-26T10:00:00Z"}]) == ("timestamptz", "iso")
    assert proposal([{"S": "2026-11-26"}]) == ("date", None)
    assert proposal([{"N": "1764000000"}], "CreatedAt") == ("timestamptz", "epoch_s")
    assert proposal([{"N": "1764000000000"}], "expires") == ("timestamptz", "epoch_ms")
    assert proposal([{"N": "1764000000"}], "OrderId") == ("bigint", None)  # no time name
    assert proposal([{"N": "1764000000"}], "Format") == ("bigint", None)
    assert proposal([{"N": "1764000000"}], "updated_at") == ("timestamptz", "epoch_s")
    assert proposal([{"S": "2026-11-26T10:00:00Z"}, {"S": "soon"}]) == ("text", None)


def test_other_kinds_mixed_and_null() -> None:
    assert proposal([{"BOOL": True}]) == ("boolean", None)
    assert proposal([{"SS": ["a"]}]) == ("text[]", None)
    assert proposal([{"NS": ["1"]}]) == ("numeric[]", None)
    assert proposal([{"M": {}}, {"L": []}]) == (None, None)  # mixed
    assert proposal([{"L": []}]) == ("jsonb", None)
    assert proposal([{"NULL": True}]) == (None, None)
    assert proposal([{"S": "a"}, {"NULL": True}]) == ("text", None)


def test_plain_values_from_a_replica() -> None:
    assert proposal([Decimal("1.25"), 3], plain=True) == ("numeric(3,2)", None)
    assert proposal([["a", "b"]], plain=True) == ("text[]", None)
    assert proposal([{"a": 1}], plain=True) == ("jsonb", None)
    assert proposal([True, None], plain=True) == ("boolean", None)


def test_share() -> None:
    assert share(15, 50) == "15 of 50 (30.0%)"
    assert share(50, 50) == "50 of 50 (100%)"
    assert share(9999, 10000) == "9999 of 10000 (99.9%)"
