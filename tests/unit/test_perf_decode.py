"""The decoding fast paths (issue 14, item 1): `image_to_json` and `image_to_plain` decode
every DynamoDB type (S, N, B, BOOL, NULL, M, L, SS, NS, BS) in one pass, and give byte
for byte what the careful decoder gives, or the very same error. Only invalid input
reaches the careful decoder."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.core import decode
from cdc.core.decode import MAX_DEPTH, careful_image_to_plain, image_to_plain
from cdc.core.errors import DecodeError
from cdc.core.jsontext import dumps, image_to_json

PATH = "NewImage"

# --- the strategies -----------------------------------------------------------------------

# Numbers DynamoDB stores, in every spelling: integers, decimals, exponents, leading and
# trailing zeros, signs, 38 significant digits, and the limits of its range.
_valid_numbers = st.one_of(
    st.from_regex(r"-?[1-9][0-9]{0,37}", fullmatch=True),
    st.from_regex(r"-?[0-9]{1,19}\.[0-9]{1,19}", fullmatch=True),
    st.from_regex(r"-?0\.0{0,12}[1-9][0-9]{0,5}", fullmatch=True),
    st.from_regex(r"[-+]?[1-9][0-9]{0,20}(\.[0-9]{0,10})?[eE][-+]?[0-9]{1,2}", fullmatch=True),
    st.sampled_from(
        [
            "0",
            "-0",
            "+0",
            "0.0",
            "00",
            "007",
            "1.50",
            "1.",
            ".5",
            "-.5",
            "0E+999",
            "0e-5",
            "1E-130",
            "-1E-130",
            "1.0E-130",
            "10E-131",
            "1.E5",
            "9.9999999999999999999999999999999999999E+125",
            "-9.9999999999999999999999999999999999999E+125",
            "1E+125",
            "99999999999999999999999999999999999999",
            "0.00000000000000000000000000000000000001",
            "12345678901234567890123456789012345678",
            "1234567890.1234567890123456789012345678",
            "100000000000000000000000000000000000000000",
            "0.000001",
            "0.0000001",
            "1E+2",
            "100",
            "100.00",
            "1",
            "1.0",
            "1.00",
            "01",
        ]
    ),
)

# Numbers DynamoDB refuses: 39 digits, out of range, not ASCII, not a number at all.
_invalid_numbers = st.one_of(
    st.from_regex(r"[1-9][0-9]{38,42}", fullmatch=True),
    st.from_regex(r"[1-9]\.[0-9]{38}[1-9]", fullmatch=True),
    st.sampled_from(
        [
            "1E+126",
            "1E-131",
            "9.99999999999999999999999999999999999999E+125",
            "1e999999999999",
            "123456789012345678901234567890123456789",
            "NaN",
            "Infinity",
            "-inf",
            " 1",
            "1 ",
            "1_000",
            "",
            "-",
            ".",
            "e5",
            "1e",
            "0x10",
            "\u0661\u0662\u0663",
            "\uff11\uff12",
            "1,5",
            "--1",
        ]
    ),
)
_numbers = st.one_of(_valid_numbers, _valid_numbers, _invalid_numbers)

# Strings of any Unicode, lone surrogates (which no database stores) and NUL included.
_valid_strings = st.text(st.characters(codec="utf-8"), max_size=8) | st.sampled_from(
    ["", "a\x00", "é", "日本", "\U0001f600"]
)
_strings = _valid_strings | st.sampled_from(["\ud800", "a\udfff"])

# Base64 text: canonical, with non-zero padding bits (`AB==` is the byte of `AA==`),
# and not base64 at all.
_valid_base64 = st.one_of(
    st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode("ascii")),
    st.sampled_from(["", "AA==", "AB==", "AAE=", "AAF=", "/w==", "/x==", "AAEC/w=="]),
)
_invalid_base64 = st.sampled_from(
    ["A", "AA=", "=AA=", "AA==AA==", "AA==\n", "A A=", "é===", "AA-_", "AAA"]
)
_base64 = st.one_of(_valid_base64, _valid_base64, _invalid_base64)

# Sets: drawn from small pools so that members repeat (equal text, or equal value spelled
# otherwise: `1` and `1.0`, `AA==` and `AB==`), or from the whole range.
_set_numbers = st.sampled_from(["1", "1.0", "01", "1E0", "10E-1", "-0", "0", "0.0", "2.50"])
_set_strings = st.sampled_from(["a", "b", "B", "ä", "", "\U0001f600"])
_set_binaries = st.sampled_from(["AA==", "AB==", "AAE=", "/w==", "/x==", ""])


def _sets(numbers: Any, strings: Any, binaries: Any) -> Any:
    return st.one_of(
        st.lists(st.one_of(_set_strings, strings), max_size=6).map(lambda xs: {"SS": xs}),
        st.lists(st.one_of(_set_numbers, numbers), max_size=6).map(lambda xs: {"NS": xs}),
        st.lists(st.one_of(_set_binaries, binaries), max_size=6).map(lambda xs: {"BS": xs}),
    )


def _leaves(numbers: Any, strings: Any, binaries: Any) -> Any:
    return st.one_of(
        st.builds(lambda t: {"N": t}, numbers),
        st.builds(lambda s: {"S": s}, strings),
        st.builds(lambda b: {"B": b}, binaries),
        st.builds(lambda b: {"BOOL": b}, st.booleans()),
        st.just({"NULL": True}),
        _sets(numbers, strings, binaries),
    )


# Wrong shapes, each somewhere DynamoDB would never put it.
_malformed = st.sampled_from(
    [
        {"N": 1}, {"N": 1.5}, {"N": None}, {"S": None}, {"S": 1}, {"B": 1}, {"B": None},
        {"NULL": False}, {"NULL": None}, {"BOOL": 1}, {"BOOL": "true"}, {"X": 1}, {}, [], None,
        "x", {"S": "x", "N": "1"}, {"M": []}, {"M": None}, {"L": {}}, {"L": None},
        {"SS": "a"}, {"SS": [1]}, {"SS": [None]}, {"SS": [["a"]]}, {"SS": ["a", 1]},
        {"NS": "1"}, {"NS": [1]}, {"NS": [["1"]]}, {"NS": ["1", 1.0]}, {"BS": "AA=="},
        {"BS": [None]}, {"BS": [b"\x00"]}, {"BS": [["AA=="]]}, {"SS": {"a": 1}},
    ]
)  # fmt: skip

_valid_leaves = _leaves(_valid_numbers, _valid_strings, _valid_base64)
_any_leaves = st.one_of(_leaves(_numbers, _strings, _base64), _malformed)


def _nested(leaves: Any, names: Any) -> Any:
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.builds(lambda xs: {"L": xs}, st.lists(inner, max_size=4)),
            st.builds(lambda m: {"M": m}, st.dictionaries(names, inner, max_size=4)),
        ),
        max_leaves=12,
    )


def _deep(leaves: Any, depths: Any) -> Any:
    """A chain of maps and lists `depth` levels deep (an attribute holding a map is
    level 1), a leaf at the bottom: DynamoDB's limit is 32."""

    def build(depth: int, kinds: list[bool], leaf: Any) -> Any:
        value = leaf
        for is_map in kinds[:depth]:
            value = {"M": {"k": value}} if is_map else {"L": [value]}
        return value

    return st.builds(
        build,
        depths,
        st.lists(st.booleans(), min_size=MAX_DEPTH + 2, max_size=MAX_DEPTH + 2),
        leaves,
    )


_valid_values = st.one_of(
    _nested(_valid_leaves, _valid_strings), _deep(_valid_leaves, st.integers(0, MAX_DEPTH))
)
_any_values = st.one_of(
    _nested(_any_leaves, _strings),
    _deep(_any_leaves, st.integers(MAX_DEPTH - 2, MAX_DEPTH + 2)),
)
valid_images = st.dictionaries(_valid_strings, _valid_values, max_size=8)
any_images = st.one_of(
    st.dictionaries(_strings, _any_values, max_size=8),
    st.sampled_from([None, [], "x", 1]),
)


# --- the checks ---------------------------------------------------------------------------


def _outcome(decoder: Callable[[Any], Any]) -> str:
    """The decoder's result as exact text (`repr` keeps each Decimal's spelling and every
    type), or its error, path included."""
    try:
        return repr(decoder())
    except DecodeError as exc:
        return f"DecodeError: {exc}"


def _careful_text(image: Any) -> str:
    return _outcome(lambda: dumps(careful_image_to_plain(image, PATH)))


@contextmanager
def _careful_decoder_refused() -> Iterator[None]:
    """While inside, reaching the careful decoder (of any attribute) is a failure."""

    def refuse(av: Any, path: str, depth: int) -> Any:
        raise AssertionError(f"the careful decoder was reached for {path} = {av!r}")

    with mock.patch.object(decode, "_to_plain", refuse):
        yield


@settings(max_examples=800, deadline=None)
@given(any_images)
def test_image_to_json_is_byte_for_byte_the_careful_text_or_its_error(image: Any) -> None:
    # GIVEN any item, valid or not, of every type WHEN the document fast path decodes it
    # THEN its text is exactly the careful decoder's, or the very same error
    assert _outcome(lambda: image_to_json(image, PATH)) == _careful_text(image)


@settings(max_examples=800, deadline=None)
@given(any_images)
def test_image_to_plain_is_exactly_the_careful_value_or_its_error(image: Any) -> None:
    # GIVEN any item, valid or not WHEN the plain fast path decodes it
    # THEN the value is the careful decoder's (each Decimal spelled alike), or its error
    expected = _outcome(lambda: careful_image_to_plain(image, PATH))
    assert _outcome(lambda: image_to_plain(image, PATH)) == expected


@settings(max_examples=500, deadline=None)
@given(valid_images)
def test_a_valid_item_of_every_type_is_decoded_in_one_pass(image: Any) -> None:
    # GIVEN a valid item (sets with duplicate members, binary, numbers at the limits,
    # nesting up to 32 levels) and what the careful decoder makes of it
    text = _careful_text(image)
    plain = _outcome(lambda: careful_image_to_plain(image, PATH))
    assert not text.startswith("DecodeError"), text  # the strategy makes valid items only
    # WHEN the fast paths decode it, the careful decoder out of reach
    # THEN they never need it, and agree with it
    with _careful_decoder_refused():
        assert _outcome(lambda: image_to_json(image, PATH)) == text
        assert _outcome(lambda: image_to_plain(image, PATH)) == plain


ALL_TYPES = {
    "s": {"S": "héllo"},
    "n": {"N": "54889.06"},
    "big": {"N": "50358903709634367014717357100618163941"},
    "tiny": {"N": "31E-108"},
    "huge": {"N": "9.9999999999999999999999999999999999999E+125"},
    "b": {"B": "AAEC/w=="},
    "t": {"BOOL": True},
    "z": {"NULL": True},
    "ss": {"SS": ["b", "a", "b"]},
    "ns": {"NS": ["10", "2", "1.0", "1", "9.5"]},
    "bs": {"BS": ["AB==", "/w==", "AA=="]},
    "m": {"M": {"l": {"L": [{"NS": ["1"]}, {"BS": ["AA=="]}, {"SS": ["x"]}, {"B": ""}]}}},
}


@pytest.mark.parametrize("decoder", [image_to_json, image_to_plain])
def test_sets_and_binary_never_reach_the_careful_decoder(decoder: Any) -> None:
    # GIVEN an item holding every type, sets with duplicate members
    # WHEN a fast path decodes it, the careful decoder out of reach
    with _careful_decoder_refused():
        got = decoder(ALL_TYPES, PATH)
    # THEN it is decoded, exactly as the careful decoder does
    text = got if isinstance(got, str) else dumps(got)
    assert text == dumps(careful_image_to_plain(ALL_TYPES, PATH))
    assert text.endswith(
        '"ss":["a","b"],"ns":[1,2,9.5,10],"bs":["/w==","AA=="],"m":{"l":[[1],["AA=="],["x"],""]}}'
    )


@pytest.mark.parametrize(
    ("av", "message"),
    [
        ({"SS": ["a", 1]}, "NewImage.x[1]: SS value 1 is not a string"),
        ({"NS": ["1", "1E+126"]}, "NewImage.x[1]: N value '1E+126' is outside DynamoDB's range"),
        ({"BS": ["AA==", "A"]}, "NewImage.x[1]: B value 'A' is not valid base64"),
        ({"B": "é"}, "NewImage.x: B value 'é' is not valid base64"),
        ({"SS": ["\ud800"]}, "NewImage.x[0]: value '\\ud800' is not valid Unicode"),
    ],
)
@pytest.mark.parametrize("decoder", [image_to_json, image_to_plain])
def test_an_invalid_set_or_binary_keeps_the_careful_error(
    decoder: Any, av: Any, message: str
) -> None:
    # GIVEN an item whose set or binary is invalid WHEN a fast path decodes it
    # THEN the careful decoder's error names the member
    with pytest.raises(DecodeError) as caught:
        decoder({"x": av}, PATH)
    assert str(caught.value).startswith(message)
