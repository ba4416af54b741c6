"""The document fast path's shortcuts for integers and sets (cdc/core/jsontext.py): an
N value of ASCII digits skips the regex, an NS of canonical integers is sorted as
integers, a BS without two members of equal bytes is its texts sorted. Each gives byte
for byte what the careful decoder gives, and anything else takes the general path."""

from __future__ import annotations

import base64
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.core import jsontext
from cdc.core.decode import careful_image_to_plain
from cdc.core.errors import DecodeError
from cdc.core.jsontext import dumps, image_to_json

PATH = "NewImage"

# Integers in every spelling the shortcut must tell apart: canonical (the shortcut),
# leading zeros, signs, non-ASCII digits, 38 and 39 digits, decimals equal to integers.
_integers = st.one_of(
    st.from_regex(r"[1-9][0-9]{0,37}", fullmatch=True),
    st.integers(0, 30).map(str),
    st.sampled_from(
        [
            "0",
            "00",
            "007",
            "-0",
            "-7",
            "+7",
            "7.0",
            "7E0",
            "70E-1",
            "\u0661\u0662",
            "\uff11",
            "\u00b2",
            "9" * 38,
            "9" * 39,
            "1" + "0" * 38,
        ]
    ),
)
_binaries = st.one_of(
    st.binary(max_size=6).map(lambda b: base64.b64encode(b).decode("ascii")),
    st.sampled_from(["AA==", "AB==", "AAE=", "AAF=", "/w==", "/x==", "", "A", "é==="]),
)


def _outcome(make: Any) -> str:
    try:
        return repr(make())
    except DecodeError as exc:
        return f"DecodeError: {exc}"


def _same_as_careful(image: dict[str, Any]) -> None:
    careful = _outcome(lambda: dumps(careful_image_to_plain(image, PATH)))
    assert _outcome(lambda: image_to_json(image, PATH)) == careful


@settings(max_examples=600, deadline=None)
@given(st.lists(_integers, max_size=7))
def test_number_sets_of_integers_are_the_careful_text(members: list[str]) -> None:
    # GIVEN an NS of integers, canonical or not, equal members included
    # WHEN the document fast path decodes it (alone, in a list, in a map)
    # THEN its text is exactly the careful decoder's, or the very same error
    _same_as_careful({"ns": {"NS": members}})
    _same_as_careful({"l": {"L": [{"NS": members}]}, "m": {"M": {"ns": {"NS": members}}}})


@settings(max_examples=400, deadline=None)
@given(_integers)
def test_integer_numbers_are_the_careful_text(text: str) -> None:
    # GIVEN one N value that looks like an integer WHEN the fast path decodes it, in a
    # map and in a list THEN the text is the careful decoder's, or its error
    _same_as_careful({"n": {"N": text}, "l": {"L": [{"N": text}]}})


@settings(max_examples=400, deadline=None)
@given(st.lists(_binaries, max_size=6))
def test_binary_sets_are_the_careful_text(members: list[str]) -> None:
    # GIVEN a BS, with or without members of equal bytes (`AA==` and `AB==`), valid or
    # not WHEN the fast path decodes it THEN exactly the careful decoder's text or error
    _same_as_careful({"bs": {"BS": members}})


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        (["10", "9", "100", "9"], "[9,10,100]"),
        (["10", "9", "010"], "[9,10]"),  # not all canonical: the general path merges 10s
        (["5", "5.0"], "[5]"),
        ([], "[]"),
    ],
)
def test_number_sets_sort_numerically_each_value_once(members: list[str], expected: str) -> None:
    assert image_to_json({"ns": {"NS": members}}, PATH) == '{"ns":' + expected + "}"


def test_integer_number_sets_take_the_integer_shortcut() -> None:
    # GIVEN an NS of canonical integers WHEN decoded THEN no Decimal is made for it
    # (the general path's `_fast_numbers` is not reached)
    def refuse(payload: Any) -> Any:
        raise AssertionError(f"the general NS path was reached for {payload!r}")

    with mock.patch.object(jsontext, "_fast_numbers", refuse):
        text = image_to_json({"ns": {"NS": ["3", "12345678901234567890123456789012345678"]}}, PATH)
    assert text == '{"ns":[3,12345678901234567890123456789012345678]}'


# Exponents of every size DynamoDB allows and beyond, signs, zeros, 38 and 39 digits.
_exponents = st.one_of(
    st.from_regex(r"-?[0-9]{1,20}(\.[0-9]{0,20})?[eE][-+]?[0-9]{1,5}", fullmatch=True),
    st.sampled_from(["1E-130", "1E-131", "9.9E+125", "10E+125", "0E+999", "0e5", "1e+0"]),
)


@settings(max_examples=600, deadline=None)
@given(_exponents)
def test_numbers_with_an_exponent_are_the_careful_text(text: str) -> None:
    # GIVEN an N value with an exponent, within DynamoDB's range or not
    # WHEN the fast path decodes it, in a map and in a list
    # THEN the text is the careful decoder's (its Decimal's text), or the very same error
    _same_as_careful({"n": {"N": text}, "l": {"L": [{"N": text}]}})
