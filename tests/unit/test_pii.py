"""cdc/core/pii.py: attributes excluded or hashed, and dead letters redacted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from cdc.core.errors import ConfigError, RecordError
from cdc.core.pii import AttributeRule, HashKey, Personal

KEY = "0123456789abcdef-key"


def personal(*rules: tuple[str, str]) -> Personal:
    return Personal(
        tuple(AttributeRule(a, r) for a, r in rules),  # type: ignore[arg-type]
        HashKey("CDC_HASH_KEY", lambda: KEY),
    )


def digest(data: bytes) -> str:
    return hmac.new(KEY.encode(), data, hashlib.sha256).hexdigest()


def test_hashes_are_keyed_and_equal_for_equal_values() -> None:
    p = personal(("Id2", "hash"))
    assert p.apply({"Id2": {"S": "ada"}}, "NewImage") == {"Id2": {"S": digest(b"ada")}}
    one = p.apply({"Id2": {"N": "1.0"}}, "NewImage")
    assert one == p.apply({"Id2": {"N": "1"}}, "NewImage") == {"Id2": {"S": digest(b"1")}}
    assert p.apply({"Id2": {"NULL": True}}, "x") == {"Id2": {"NULL": True}}
    assert p.apply({"Id2": {"B": "AAE="}}, "x") == {"Id2": {"S": digest(b"\x00\x01")}}
    maps = [{"M": {"a": {"N": "1"}, "b": {"S": "x"}}}, {"M": {"b": {"S": "x"}, "a": {"N": "1"}}}]
    assert p.apply({"Id2": maps[0]}, "x") == p.apply({"Id2": maps[1]}, "x")


def test_exclusion_of_nested_attributes_and_children_first() -> None:
    p = personal(("A", "hash"), ("A.B", "exclude"), ("C", "exclude"))
    image = {"A": {"M": {"B": {"S": "secret"}, "D": {"S": "d"}}}, "C": {"S": "gone"}}
    out = p.apply(image, "NewImage")
    assert "C" not in out
    without_b = personal(("A", "hash")).apply({"A": {"M": {"D": {"S": "d"}}}}, "NewImage")
    assert out["A"] == without_b["A"]
    assert image["C"] == {"S": "gone"}  # the input is not changed


def test_a_dead_letter_keeps_digests_in_a_marker_read_back_as_is() -> None:
    p = personal(("Email", "hash"), ("Ssn", "exclude"))
    record = {
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "Keys": {"Id": {"N": "1"}},
            "NewImage": {"Id": {"N": "1"}, "Email": {"S": "a@b"}, "Ssn": {"S": "123"}},
            "OldImage": {"Id": {"N": "1"}, "Ssn": {"S": "456"}},
        },
    }
    redacted = p.redact_record(record)
    new = redacted["dynamodb"]["NewImage"]
    assert new == {"Id": {"N": "1"}, "Email": {"M": {"cdc:hmac-sha256": {"S": digest(b"a@b")}}}}
    assert redacted["dynamodb"]["OldImage"] == {"Id": {"N": "1"}}
    assert p.apply(new, "NewImage")["Email"] == {"S": digest(b"a@b")}
    snapshot = {"eventSource": "cdc:snapshot", "Item": {"Ssn": {"S": "1"}, "x": {"S": "y"}}}
    assert p.redact_record(snapshot)["Item"] == {"x": {"S": "y"}}


def test_a_kinesis_dead_letter_is_redacted_inside_its_base64_data() -> None:
    p = personal(("Email", "hash"), ("Ssn", "exclude"))
    change = {
        "tableName": "Orders",
        "dynamodb": {
            "Keys": {"Id": {"N": "1"}},
            "NewImage": {"Id": {"N": "1"}, "Email": {"S": "a@b"}, "Ssn": {"S": "123"}},
        },
    }
    data = base64.b64encode(json.dumps(change).encode()).decode()
    record = {"eventSource": "aws:kinesis", "kinesis": {"data": data, "sequenceNumber": "9"}}
    redacted = p.redact_record(record)
    assert redacted["kinesis"]["sequenceNumber"] == "9"
    inner = json.loads(base64.b64decode(redacted["kinesis"]["data"]))
    new = inner["dynamodb"]["NewImage"]
    assert new == {"Id": {"N": "1"}, "Email": {"M": {"cdc:hmac-sha256": {"S": digest(b"a@b")}}}}
    assert "123" not in json.dumps(redacted) and "a@b" not in json.dumps(redacted)
    # data that cannot be read cannot be redacted: it is not kept
    broken = {"eventSource": "aws:kinesis", "kinesis": {"data": "not base64!"}}
    assert p.redact_record(broken)["kinesis"]["data"] is None


def test_a_malformed_hashed_value_is_an_error_that_does_not_quote_it() -> None:
    p = personal(("Phone", "hash"))
    with pytest.raises(RecordError) as raised:
        p.apply({"Phone": {"N": "555-1234"}}, "NewImage")
    assert "555" not in str(raised.value)


def test_the_key_is_checked_and_never_shown() -> None:
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        HashKey("CDC_HASH_KEY", lambda: "short").get()
    with pytest.raises(ConfigError, match="set CDC_HASH_KEY"):
        HashKey("CDC_HASH_KEY", None).get()
    assert KEY not in repr(HashKey("CDC_HASH_KEY", lambda: KEY))
