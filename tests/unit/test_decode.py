"""DynamoDB AttributeValue JSON → Python values and the plain-JSON form (README: Replica
tables, "Plain JSON form")."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.core.decode import (
    find_nul,
    image_to_plain,
    map_strings,
    parse_binary,
    parse_number,
    to_plain,
    to_python,
)
from cdc.core.errors import DecodeError, RecordError
from cdc.core.jsontext import dumps, dumps_bytes, image_to_json, loads

DIGITS_38 = "12345678901234567890123456789012345678"
DIGITS_39 = "123456789012345678901234567890123456789"
MAX_NUMBER = "9.9999999999999999999999999999999999999E+125"  # 38 nines, the largest
PRECISE = "1234567890.1234567890123456789012345678"  # 38 digits; a float keeps ~17

BOTH = pytest.mark.parametrize("decode", [to_python, to_plain], ids=["to_python", "to_plain"])


# --- every type, both decoders ---------------------------------------------------------


@pytest.mark.parametrize(
    ("av", "expected"),
    [
        ({"S": "héllo"}, "héllo"),
        ({"S": ""}, ""),
        ({"N": "42"}, Decimal(42)),
        ({"N": "-0.5"}, Decimal("-0.5")),
        ({"N": PRECISE}, Decimal(PRECISE)),
        ({"B": "AAEC/w=="}, b"\x00\x01\x02\xff"),
        ({"B": ""}, b""),
        ({"BOOL": True}, True),
        ({"BOOL": False}, False),
        ({"NULL": True}, None),
        ({"M": {"a": {"N": "1"}, "b": {"S": "x"}}}, {"a": Decimal(1), "b": "x"}),
        ({"M": {}}, {}),
        ({"L": [{"S": "x"}, {"N": "2"}, {"NULL": True}]}, ["x", Decimal(2), None]),
        ({"L": []}, []),
        ({"SS": ["b", "a"]}, {"a", "b"}),
        ({"NS": ["10", "9.5"]}, {Decimal(10), Decimal("9.5")}),
        ({"BS": ["AAE=", "/w=="]}, {b"\x00\x01", b"\xff"}),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) and len(v) == 1 else None,
)
def test_to_python_decodes_every_type(av, expected):
    # GIVEN one AttributeValue of each DynamoDB type
    # WHEN it is decoded to Python values
    result = to_python(av)
    # THEN it is what boto3 would give: Decimal numbers, bytes, Python sets
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("av", "expected"),
    [
        ({"S": "héllo"}, "héllo"),
        ({"N": "42"}, Decimal(42)),
        ({"N": PRECISE}, Decimal(PRECISE)),
        ({"B": "AAEC/w=="}, "AAEC/w=="),  # binary stays base64 text
        ({"BOOL": True}, True),
        ({"BOOL": False}, False),
        ({"NULL": True}, None),
        ({"M": {"a": {"B": "/w=="}, "b": {"SS": ["y", "x"]}}}, {"a": "/w==", "b": ["x", "y"]}),
        ({"L": [{"S": "x"}, {"N": "2"}, {"NULL": True}]}, ["x", Decimal(2), None]),
        # SS: sorted by code point (uppercase before lowercase)
        ({"SS": ["b", "a", "B", "ä"]}, ["B", "a", "b", "ä"]),
        # NS: sorted numerically, not as text ("10" < "9" and "1E+2" < "9" as text)
        (
            {"NS": ["10", "9", "-1.5", "1E+2", "0.25"]},
            [Decimal("-1.5"), Decimal("0.25"), Decimal(9), Decimal(10), Decimal(100)],
        ),
        # BS: sorted base64 strings, not decoded bytes ("/w==" is 0xff, "AAE=" is 0x0001)
        ({"BS": ["ZmZmZg==", "AAE=", "/w=="]}, ["/w==", "AAE=", "ZmZmZg=="]),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) and len(v) == 1 else None,
)
def test_to_plain_gives_the_contract_json_form(av, expected):
    # GIVEN one AttributeValue of each DynamoDB type
    # WHEN it is decoded to the plain-JSON form
    result = to_plain(av)
    # THEN it follows the plain JSON form (README: Replica tables): sets are sorted lists,
    # binary stays base64, N is exact
    assert result == expected
    assert type(result) is type(expected)
    if isinstance(result, list):
        assert [type(v) for v in result] == [type(v) for v in expected]


def test_plain_sets_encode_as_sorted_json_arrays():
    # GIVEN a map holding each kind of set
    av = {
        "M": {
            "ss": {"SS": ["pear", "Apple", "fig"]},
            "ns": {"NS": ["10", "9", "-1.5"]},
            "bs": {"BS": ["Zg==", "AA=="]},
        }
    }
    # WHEN it is encoded as plain JSON text
    text = dumps(to_plain(av))
    # THEN every set is a sorted array and the numbers are JSON numbers, not strings
    assert text == '{"ss":["Apple","fig","pear"],"ns":[-1.5,9,10],"bs":["AA==","Zg=="]}'


# --- numbers: exact, DynamoDB's precision and range ----------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "-0",
        "1",
        "-1",
        "3.14",
        DIGITS_38,
        "-" + DIGITS_38,
        "0." + DIGITS_38,
        PRECISE,
        "1" + "0" * 39,  # 40 characters, but 1 significant digit
        "1." + "0" * 45,  # trailing zeros after the point are not significant
        "0.000" + DIGITS_38,  # leading zeros are not significant
        "1E-130",
        "-1E-130",
        "0.1E-129",
        MAX_NUMBER,
        "-" + MAX_NUMBER,
        "1E+125",
        "1.5E3",
    ],
)
def test_numbers_within_dynamodb_limits_are_accepted_exactly(text):
    # GIVEN an N value DynamoDB accepts (at most 38 significant digits, 1E-130..9.99E+125)
    # WHEN it is decoded by either decoder
    # THEN the value is the exact Decimal of the text, never rounded
    assert parse_number(text, "n") == Decimal(text)
    assert to_python({"N": text}) == Decimal(text)
    assert to_plain({"N": text}) == Decimal(text)
    assert str(to_plain({"N": text})) == str(Decimal(text))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (DIGITS_39, "significant digits"),
        ("-" + DIGITS_39, "significant digits"),
        ("1.23456789012345678901234567890123456789", "significant digits"),
        ("1" + "0" * 37 + "1", "significant digits"),  # inner zeros do count
        ("1E-131", "range"),
        ("-1E-131", "range"),
        ("0.1E-130", "range"),
        ("1E+126", "range"),
        ("-1E+126", "range"),
        ("10E+125", "range"),
        ("1E+99999999999999999999", "range"),
        ("1E-99999999999999999999", "range"),
        ("12abc", "not a number"),
        ("NaN", "not a number"),
        ("nan", "not a number"),
        ("Infinity", "not a number"),
        ("-Infinity", "not a number"),
        ("inf", "not a number"),
        (" 1", "not a number"),
        ("1 ", "not a number"),
        ("1\n", "not a number"),
        ("1_000", "not a number"),
        ("", "not a number"),
        ("0x10", "not a number"),
        ("1,5", "not a number"),
        ("--1", "not a number"),
        ("1e", "not a number"),
        ("e5", "not a number"),
        (".", "not a number"),
    ],
)
def test_numbers_dynamodb_would_reject_raise_decode_error(text, reason):
    # GIVEN an N value DynamoDB would not store
    # WHEN it is decoded
    # THEN DecodeError names the attribute path and says what is wrong
    with pytest.raises(DecodeError) as info:
        to_plain({"M": {"Price": {"N": text}}}, "NewImage")
    assert "NewImage.Price" in str(info.value)
    assert reason in str(info.value)
    with pytest.raises(DecodeError):
        to_python({"N": text})


@pytest.mark.parametrize("payload", [1, 1.5, None, True, Decimal(1), ["1"], {"N": "1"}, b"1"])
def test_number_payload_that_is_not_a_string_is_rejected(payload):
    # GIVEN an N whose payload is a JSON number (or anything but a string)
    # WHEN it is decoded
    # THEN it is rejected: DynamoDB JSON always carries numbers as strings
    with pytest.raises(DecodeError, match=r"value\.Qty: N value .* is not a number"):
        to_python({"M": {"Qty": {"N": payload}}})
    with pytest.raises(DecodeError):
        to_plain({"N": payload})


# --- wrong shapes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"BOOL": "yes"}, "BOOL value 'yes' is not true or false"),
        ({"BOOL": 1}, "BOOL value 1"),
        ({"NULL": False}, "NULL value False must be true"),
        ({"NULL": "true"}, "NULL value 'true' must be true"),
        ({"S": 1}, "S value 1 is not a string"),
        ({"S": None}, "S value None is not a string"),
        ({"M": []}, "M value [] is not an object"),
        ({"L": {}}, "L value {} is not a list"),
        ({"SS": "a"}, "SS value 'a' is not a list"),
        ({"NS": "1"}, "NS value '1' is not a list"),
        ({"BS": "AA=="}, "BS value 'AA==' is not a list"),
        ({"B": "not base64!"}, "is not valid base64"),
        ({"B": "YQ"}, "is not valid base64"),  # missing padding
        ({"B": 1}, "is not a base64 string"),
        ({"X": 1}, "unknown type descriptor 'X'"),
        ({"s": "lowercase tag"}, "unknown type descriptor 's'"),
        ({"S": "a", "N": "1"}, "exactly one type descriptor"),
        ({}, "exactly one type descriptor"),
        ("text", "exactly one type descriptor"),
        (None, "exactly one type descriptor"),
        (["S", "a"], "exactly one type descriptor"),
    ],
)
@BOTH
def test_wrong_shapes_raise_decode_error_naming_the_path(decode, bad, message):
    # GIVEN an item whose Address.Lines[2] is an AttributeValue of the wrong shape
    av = {"M": {"Lines": {"L": [{"S": "1 Main St"}, {"S": "Apt 2"}, bad]}}}
    image = {"Id": {"N": "1"}, "Address": av}
    # WHEN it is decoded
    with pytest.raises(DecodeError) as info:
        decode(av, "NewImage.Address")
    # THEN the error names the attribute path and what is wrong with the value
    assert str(info.value).startswith("NewImage.Address.Lines[2]: ")
    assert message in str(info.value)
    assert info.value.path == "NewImage.Address.Lines[2]"
    # AND image_to_plain builds the same path from the image's attribute names
    with pytest.raises(DecodeError, match=r"^NewImage\.Address\.Lines\[2\]: "):
        image_to_plain(image, "NewImage")


@pytest.mark.parametrize(
    ("av", "path"),
    [
        ({"SS": ["a", 1]}, "NewImage.Tags[1]"),
        ({"NS": ["1", "2", "x"]}, "NewImage.Tags[2]"),
        ({"BS": ["AA==", "@@"]}, "NewImage.Tags[1]"),
        ({"M": {"a": {"M": {"b c": {"BOOL": "no"}}}}}, "NewImage.Tags.a.b c"),
        ({"L": [{"L": [{"N": "1"}, {"M": {"k": {"X": 0}}}]}]}, "NewImage.Tags[0][1].k"),
    ],
)
@BOTH
def test_errors_inside_sets_and_nesting_name_the_element(decode, av, path):
    # GIVEN a bad element deep inside a set, a map or a list
    # WHEN it is decoded
    with pytest.raises(DecodeError) as info:
        decode(av, "NewImage.Tags")
    # THEN the path leads to exactly that element
    assert info.value.path == path


def test_decode_error_is_a_record_error_of_kind_decode():
    # GIVEN a wrong-shaped value WHEN it is decoded
    with pytest.raises(RecordError) as info:
        to_plain({"BOOL": "yes"})
    # THEN it is a permanent record error that lands in dead letters as "decode"
    assert isinstance(info.value, DecodeError)
    assert info.value.kind == "decode"


@pytest.mark.parametrize("image", [[], "item", None, {"S": 1}])
def test_image_that_is_not_an_object_is_rejected(image):
    # GIVEN a NewImage that is not a map of attributes (or has a bad attribute)
    # WHEN it is decoded THEN DecodeError names the image
    with pytest.raises(DecodeError, match=r"^NewImage"):
        image_to_plain(image, "NewImage")


def test_image_to_plain_decodes_every_attribute():
    # GIVEN a whole item
    image = {"Id": {"N": "101"}, "Tags": {"SS": ["b", "a"]}, "Raw": {"B": "AA=="}}
    # WHEN it is turned into plain JSON values
    # THEN each attribute is in its plain form
    assert image_to_plain(image, "NewImage") == {
        "Id": Decimal(101),
        "Tags": ["a", "b"],
        "Raw": "AA==",
    }


def test_parse_binary_rejects_non_base64_and_accepts_padding():
    # GIVEN base64 text with and without a valid alphabet
    # THEN valid text decodes, anything else is a DecodeError naming the path
    assert parse_binary("aGk=", "p") == b"hi"
    with pytest.raises(DecodeError, match=r"^Keys\.Blob: "):
        parse_binary("aGk=\n!", "Keys.Blob")


# --- agreement with boto3 --------------------------------------------------------------


def _rich_item() -> dict[str, Any]:
    return {
        "Id": {"S": "order-1"},
        "Count": {"N": "3"},
        "Price": {"N": PRECISE},
        "Tiny": {"N": "1E-130"},
        "Huge": {"N": MAX_NUMBER},
        "Negative": {"N": "-0.001"},
        "Blob": {"B": "AAEC/w=="},
        "Flag": {"BOOL": True},
        "Off": {"BOOL": False},
        "Nothing": {"NULL": True},
        "Tags": {"SS": ["b", "a", "c"]},
        "Scores": {"NS": ["1", "2.5", "-3"]},
        "Blobs": {"BS": ["AA==", "/w=="]},
        "Empty": {"S": ""},
        "Nested": {
            "M": {
                "List": {"L": [{"N": "1"}, {"S": "two"}, {"M": {"x": {"NULL": True}}}]},
                "Map": {"M": {"deep": {"BS": ["Zg=="]}}},
                "EmptyList": {"L": []},
            }
        },
    }


def _with_raw_bytes(av: Any) -> Any:
    """boto3 works on the low-level client's shape, where B/BS are already bytes."""
    if isinstance(av, dict):
        (tag, payload), *_ = av.items()
        if tag == "B":
            return {"B": base64.b64decode(payload)}
        if tag == "BS":
            return {"BS": [base64.b64decode(p) for p in payload]}
        if tag == "M":
            return {"M": {k: _with_raw_bytes(v) for k, v in payload.items()}}
        if tag == "L":
            return {"L": [_with_raw_bytes(v) for v in payload]}
    return av


def test_to_python_agrees_with_boto3_type_deserializer():
    # GIVEN a rich item with every type, extreme numbers and nesting
    item = _rich_item()
    boto3 = TypeDeserializer()
    # WHEN it is decoded by to_python and by boto3's TypeDeserializer
    ours = {name: to_python(av) for name, av in item.items()}
    theirs = {name: boto3.deserialize(_with_raw_bytes(av)) for name, av in item.items()}
    # THEN both give the same values
    assert ours == theirs
    assert ours["Price"] == Decimal(PRECISE)
    assert isinstance(ours["Blob"], bytes)


# --- JSON text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [PRECISE, DIGITS_38, "-" + DIGITS_38, "1E-130", MAX_NUMBER, "0.1", "-0", "100"],
)
def test_dumps_and_loads_round_trip_numbers_exactly(text):
    # GIVEN an exact 38-digit (or extreme) number inside a plain value
    value = {"n": to_plain({"N": text}), "l": [to_plain({"N": text})]}
    # WHEN it is written as JSON text and read back
    encoded = dumps(value)
    decoded = loads(encoded)
    # THEN the numbers are JSON numbers, exact, and come back as Decimal (never float)
    assert decoded == {"n": Decimal(text), "l": [Decimal(text)]}
    assert type(decoded["n"]) is Decimal
    assert '"' + text not in encoded  # a number, not a string
    assert loads(dumps_bytes(value)) == decoded


def test_dumps_keeps_digits_a_float_would_lose():
    # GIVEN a 38-digit number that a float cannot hold
    assert Decimal(float(Decimal(PRECISE))) != Decimal(PRECISE)
    # WHEN it is encoded THEN every digit is in the JSON text
    assert dumps({"price": Decimal(PRECISE)}) == '{"price":' + PRECISE + "}"
    # AND loads turns integers into Decimal too
    assert loads("[1, 2.50]") == [Decimal(1), Decimal("2.50")]
    assert type(loads("1")) is Decimal


def test_dumps_encodes_python_values_in_plain_form():
    # GIVEN Python values as to_python gives them (bytes, sets)
    # WHEN they are encoded THEN bytes become base64 and sets sorted arrays
    assert dumps({"b": b"\xff", "s": {"b", "a"}, "none": None, "t": True}) == (
        '{"b":"/w==","s":["a","b"],"none":null,"t":true}'
    )


def test_dumps_refuses_values_with_no_plain_form():
    # GIVEN a value that has no plain-JSON form WHEN it is encoded THEN TypeError
    with pytest.raises(TypeError, match="object"):
        dumps({"x": object()})


# --- U+0000 helpers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", None),
        ("a\x00b", "item"),
        ({"a": "ok", "b": ["x", "y\x00"]}, "item.b[1]"),
        ({"outer": {"inner": "\x00"}}, "item.outer.inner"),
        ([Decimal(0), None, True, "\x00"], "item[3]"),
        ({"n": Decimal(1), "t": True, "z": None}, None),
        ({"bin": b"\x00"}, None),  # binary may hold zero bytes; only text cannot
        ({"k\x00": "v"}, "item.'k\\x00'"),
    ],
)
def test_find_nul_names_the_first_string_holding_u0000(value, expected):
    # GIVEN a plain value WHEN it is searched for U+0000
    # THEN the path of the offending string (or attribute name) is returned, else None
    assert find_nul(value, "item") == expected


def test_map_strings_fixes_every_string_and_name_and_nothing_else():
    # GIVEN a nested plain value with strings, names, numbers, booleans and null
    value = {"a\x00": ["x\x00", {"b": "\x00"}], "n": Decimal("1.5"), "t": True, "z": None}
    # WHEN every string is fixed
    fixed = map_strings(value, lambda s: s.replace("\x00", "?"))
    # THEN strings and attribute names change, other values keep their type and value
    assert fixed == {"a?": ["x?", {"b": "?"}], "n": Decimal("1.5"), "t": True, "z": None}
    assert type(fixed["n"]) is Decimal
    assert value["a\x00"][0] == "x\x00"  # the input is not modified


# --- the document fast path: image_to_json ---------------------------------------------
# It must give exactly the text of `dumps(image_to_plain(...))` (the replica's `item`
# must not depend on which path decoded it), and the same DecodeError when invalid.

_number_texts = st.one_of(
    st.from_regex(r"-?[0-9]{1,40}(\.[0-9]{1,40})?([eE][-+]?[0-9]{1,3})?", fullmatch=True),
    st.from_regex(r"-?0\.0{0,9}[0-9]{1,5}", fullmatch=True),
    st.sampled_from(["0", "-0", "0.0", "0.000000", "0.0000001", "00.5", "1.50", "NaN", " 1"]),
    st.sampled_from([DIGITS_38, DIGITS_39, MAX_NUMBER, PRECISE, "1E-130", "1E-131", "1E+126"]),
)
_strings = st.text(st.characters(codec="utf-8"), max_size=8) | st.sampled_from(["\ud800", "a\x00"])
_leaves = st.one_of(
    st.builds(lambda t: {"N": t}, _number_texts),
    st.builds(lambda s: {"S": s}, _strings),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
    st.just({"B": "AAEC/w=="}),
    st.builds(lambda ts: {"SS": ts}, st.lists(st.text(max_size=3), min_size=1, max_size=3)),
    st.builds(lambda ts: {"NS": ts}, st.lists(_number_texts, min_size=1, max_size=3)),
    # duplicate members: equal numbers spelled alike or not, equal strings, equal bytes
    st.builds(lambda t: {"NS": [t, t, "1", "1.0"]}, _number_texts),
    st.builds(lambda s: {"SS": [s, s]}, st.text(max_size=3)),
    st.just({"BS": ["AA==", "AB==", "AA=="]}),
    st.sampled_from([{"N": 1}, {"S": None}, {"NULL": False}, {"BOOL": 1}, {"X": 1}, {}, []]),
    st.just({"S": "x", "N": "1"}),
)
_values = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"L": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda m: {"M": m}, st.dictionaries(_strings, inner, max_size=3)),
    ),
    max_leaves=8,
)


def _decoded(decode: Any, image: Any) -> str:
    try:
        return str(decode(image))
    except DecodeError as exc:
        return f"DecodeError: {exc}"


@settings(max_examples=1500, deadline=None)
@given(st.dictionaries(_strings, _values, max_size=5))
def test_image_to_json_is_exactly_the_careful_text(image):
    expected = _decoded(lambda i: dumps(image_to_plain(i, "NewImage")), image)
    assert _decoded(lambda i: image_to_json(i, "NewImage"), image) == expected


@pytest.mark.parametrize(
    "text", ["12.50", "-0", "0.000001", "0.0000001", "007", "1E+5", "-1.0e-3", DIGITS_38, PRECISE]
)
def test_image_to_json_numbers_are_canonical_decimal_text(text):
    assert image_to_json({"n": {"N": text}}, "NewImage") == f'{{"n":{Decimal(text)}}}'


# --- sets with duplicate members (issue 12, item 16) -----------------------------------
# DynamoDB never sends them; hand-written and some SDKs' sample events do. One rule on
# every path, as boto3's TypeDeserializer has it: equal members are one member.


@pytest.mark.parametrize(
    ("av", "plain", "python"),
    [
        ({"SS": ["b", "a", "b"]}, ["a", "b"], {"a", "b"}),
        ({"SS": ["x", "x", "x"]}, ["x"], {"x"}),
        # `1` and `1.0` are one number, written once in its canonical spelling whatever
        # the order; a lone member keeps its text, as any N does
        ({"NS": ["1", "1.0", "2"]}, [Decimal(1), Decimal(2)], {Decimal(1), Decimal(2)}),
        ({"NS": ["1.0", "1"]}, [Decimal(1)], {Decimal(1)}),
        ({"NS": ["1E+2", "100", "100.00"]}, [Decimal(100)], {Decimal(100)}),
        ({"NS": ["1.50", "1.50"]}, [Decimal("1.50")], {Decimal("1.5")}),
        ({"NS": ["-0", "0", "0.0"]}, [Decimal(0)], {Decimal(0)}),
        ({"NS": ["10", "9", "10"]}, [Decimal(9), Decimal(10)], {Decimal(9), Decimal(10)}),
        # two base64 spellings of one byte ("AB==" has non-zero padding bits) are one
        # binary, written canonically
        ({"BS": ["AA==", "AA=="]}, ["AA=="], {b"\x00"}),
        ({"BS": ["AB==", "AA==", "/w=="]}, ["/w==", "AA=="], {b"\x00", b"\xff"}),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else "",
)
def test_set_members_are_de_duplicated_on_every_path(av, plain, python):
    # GIVEN a set with duplicate members WHEN it is decoded by each path
    # THEN equal members are one member, and the paths agree
    assert to_plain(av) == plain
    assert [str(v) for v in to_plain(av)] == [str(v) for v in plain]
    assert to_python(av) == python
    image = {"s": av, "nested": {"M": {"in_list": {"L": [av]}}}}
    text = dumps({"s": plain, "nested": {"in_list": [plain]}})
    assert image_to_json(image, "NewImage") == text
    assert dumps(image_to_plain(image, "NewImage")) == text
    # AND the plain form holds exactly boto3's members
    assert len(to_plain(av)) == len(to_python(av))


def test_duplicates_in_a_set_are_one_member_whatever_their_order():
    members = ["1", "1.0", "1.00", "2", "2.0"]
    texts = set()
    for turn in range(len(members)):
        rotated = members[turn:] + members[:turn]
        texts.add(dumps(to_plain({"NS": rotated})))
        texts.add(image_to_json({"n": {"NS": list(reversed(rotated))}}, "NewImage"))
    assert texts == {"[1,2]", '{"n":[1,2]}'}


_sets_with_duplicates = st.one_of(
    st.lists(st.sampled_from(["a", "b", "B", "ä", ""]), min_size=1, max_size=6).map(
        lambda xs: {"SS": xs}
    ),
    st.lists(
        st.sampled_from(
            ["1", "1.0", "01", "1E0", "10E-1", "-0", "0", "2.50", "2.5", "1E+2", "100"]
        ),
        min_size=1,
        max_size=6,
    ).map(lambda xs: {"NS": xs}),
    st.lists(st.sampled_from(["AA==", "AB==", "AAE=", "/w==", "/x=="]), min_size=1, max_size=6).map(
        lambda xs: {"BS": xs}
    ),
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), _sets_with_duplicates, max_size=3))
def test_image_to_json_is_exactly_the_careful_text_with_duplicate_set_members(image):
    # GIVEN an item whose sets repeat members WHEN each path decodes it THEN the
    # texts are byte for byte the same, every set without duplicates
    text = image_to_json(image, "NewImage")
    assert text == dumps(image_to_plain(image, "NewImage"))
    for name, av in image.items():
        members = loads(text)[name]
        assert len(members) == len(to_python(av)) == len(set(members))
        assert members == sorted(members)
