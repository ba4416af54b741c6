"""Source names → database identifiers (README: Replica tables; docs/architecture.md §6)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.core.errors import CdcError, NameCollision
from cdc.core.naming import NameTable, fit, short_hash, snake

SNAKE_SHAPE = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*")
HASHED = re.compile(r"x_[0-9a-f]{8}")
SUFFIX = re.compile(r"_[0-9a-f]{8}")
PG_LIMIT = 63


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # the README's examples (Replica tables)
        ("ExampleTableWithStream", "example_table_with_stream"),
        ("Id", "id"),
        ("PK", "pk"),
        ("userID", "user_id"),
        ("order-items.v2", "order_items_v2"),
        # acronyms
        ("HTTPServer", "http_server"),
        ("getHTTPResponseCode", "get_http_response_code"),
        ("XMLHttpRequest", "xml_http_request"),
        ("ID", "id"),
        ("SKU", "sku"),
        # already snake, or lower case
        ("order_items", "order_items"),
        ("orders", "orders"),
        ("a", "a"),
        # digits
        ("Address2Line", "address2_line"),
        ("v2", "v2"),
        ("2FA", "2_fa"),  # a capital after a digit starts a word
        ("S3Bucket", "s3_bucket"),
        ("Table123", "table123"),
        ("123", "123"),
        # punctuation, spaces and runs of separators
        ("order--items..v2", "order_items_v2"),
        ("first name", "first_name"),
        ("user_ID", "user_id"),
        ("Snake_Case_Name", "snake_case_name"),
        ("a__b", "a_b"),
        ("ORDER#ID", "order_id"),
        # leading and trailing punctuation is dropped
        ("_private", "private"),
        ("__dunder__", "dunder"),
        ("-leading.dot.", "leading_dot"),
        ("_cdc_seq", "cdc_seq"),
        # non-ASCII letters separate words, they are not kept
        ("Größe", "gr_e"),
        ("naïveName", "na_ve_name"),
    ],
)
def test_snake_conforms_names(source, expected):
    # GIVEN a DynamoDB table or attribute name
    # WHEN it is conformed
    # THEN it is the documented snake_case identifier
    assert snake(source) == expected


@pytest.mark.parametrize("source", ["名前", "テーブル", "🙂", "", "_", "---", "..", "é", "ñ_ü"])
def test_names_without_ascii_letters_or_digits_become_x_hash(source):
    # GIVEN a name with no ASCII letter or digit
    # WHEN it is conformed
    result = snake(source)
    # THEN it is x_<8 hex digits of the name's hash>: stable and still an identifier
    assert HASHED.fullmatch(result)
    assert result == f"x_{short_hash(source)}"
    assert snake(source) == result


def test_distinct_names_without_ascii_get_distinct_identifiers():
    # GIVEN several names with no ASCII letters WHEN they are conformed
    names = ["名前", "テーブル", "🙂", "_", "-", "é", "ü"]
    # THEN no two share an identifier
    assert len({snake(n) for n in names}) == len(names)


@given(st.text())
def test_snake_always_gives_a_lowercase_identifier(source):
    # GIVEN any text (hypothesis) WHEN it is conformed
    result = snake(source)
    # THEN it is lower-case ASCII words joined by single underscores
    assert SNAKE_SHAPE.fullmatch(result), result
    # AND conforming again changes nothing (snake is idempotent)
    assert snake(result) == result


# --- fit: the identifier length limit ---------------------------------------------------


@pytest.mark.parametrize("length", [1, 30, 62, 63])
def test_fit_leaves_identifiers_within_the_limit_alone(length):
    # GIVEN an identifier of at most 63 bytes WHEN it is fitted THEN it is unchanged
    identifier = "a" * length
    assert fit(identifier, PG_LIMIT) == identifier


@pytest.mark.parametrize("length", [64, 65, 100, 255])
def test_fit_cuts_long_identifiers_and_adds_a_hash(length):
    # GIVEN an identifier longer than 63 bytes
    identifier = "a" * length
    # WHEN it is fitted
    result = fit(identifier, PG_LIMIT)
    # THEN it is at most 63 bytes: a prefix of the original plus _<8 hex digits>
    assert len(result.encode("utf-8")) <= PG_LIMIT
    assert SUFFIX.fullmatch(result[-9:])
    assert identifier.startswith(result[:-9])


@pytest.mark.parametrize("limit", [63, 64, 30])
@pytest.mark.parametrize("char", ["é", "€", "🙂"])  # 2, 3 and 4 UTF-8 bytes
@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_fit_cuts_on_a_character_boundary(char, offset, limit):
    # GIVEN a long identifier of multibyte characters, shifted so the cut falls
    # at every position inside a character
    identifier = "a" * offset + char * 40
    # WHEN it is fitted
    result = fit(identifier, limit)
    # THEN it fits in the limit, no character is split, and what is kept is a prefix
    encoded = result.encode("utf-8")
    assert len(encoded) <= limit
    assert encoded.decode("utf-8") == result
    assert "\ufffd" not in result
    prefix = result[:-9]
    assert identifier.startswith(prefix)
    # AND no more than one character's worth of the budget is wasted
    assert len(prefix.encode("utf-8")) > limit - 9 - len(char.encode("utf-8"))


def test_fit_is_deterministic():
    # GIVEN one long name WHEN it is fitted twice (e.g. on two Lambda containers)
    name = "customer_order_line_item_" * 4
    # THEN both runs give the same identifier
    assert fit(name, PG_LIMIT) == fit(name, PG_LIMIT)
    assert fit(snake(name), PG_LIMIT, name) == fit(snake(name), PG_LIMIT, name)


def test_long_names_with_a_common_prefix_get_different_identifiers():
    # GIVEN two source names that share their first 70 characters
    prefix = "very_long_table_name_shared_by_two_tables_" * 2
    first, second = prefix + "2023", prefix + "2024"
    # WHEN both are fitted to 63 bytes
    a, b = fit(first, PG_LIMIT, first), fit(second, PG_LIMIT, second)
    # THEN their identifiers differ (the hash is of the whole source name)
    assert a != b
    assert a[:-9] == b[:-9]


def test_fit_hashes_the_source_name_when_given():
    # GIVEN two source names that conform to one long identifier
    first, second = "Order" + "X" * 70, "order" + "X" * 70
    assert snake(first) == snake(second)
    # WHEN each is fitted with its source name
    # THEN the identifiers differ, because the suffix is the hash of the source
    assert fit(snake(first), PG_LIMIT, first) != fit(snake(second), PG_LIMIT, second)
    assert fit(snake(first), PG_LIMIT, first).endswith("_" + short_hash(first))


def test_fit_drops_a_trailing_separator_before_the_suffix():
    # GIVEN an identifier whose cut ends on an underscore
    identifier = "a" * 53 + "_" + "b" * 20
    # WHEN it is fitted THEN there is no double underscore before the hash
    assert "__" not in fit(identifier, PG_LIMIT)


# --- NameTable: collisions ------------------------------------------------------------


def test_claiming_one_identifier_twice_for_one_source_is_fine():
    # GIVEN a namespace in which "orders" was claimed for source "Orders"
    names = NameTable("source tables")
    assert names.claim("orders", "Orders") == "orders"
    # WHEN the same source claims it again (the same table seen again)
    # THEN the same identifier is returned
    assert names.claim("orders", "Orders") == "orders"


def test_two_sources_claiming_one_identifier_is_a_name_collision():
    # GIVEN "orders" claimed for source table "Orders"
    names = NameTable("source tables")
    names.claim("orders", "Orders")
    # WHEN another source table conforms to the same identifier
    with pytest.raises(NameCollision) as info:
        names.claim("orders", "orders")
    # THEN the error names both sources, the identifier and what to do
    message = str(info.value)
    assert "'Orders'" in message
    assert "'orders'" in message
    assert "identifier 'orders'" in message
    assert "source tables" in message
    assert "rename" in message
    assert isinstance(info.value, CdcError)


def test_reserved_identifiers_cannot_be_claimed():
    # GIVEN a column namespace where the bookkeeping columns are reserved
    columns = NameTable("attributes of table 'Orders'", reserved={"item": "<cdc column item>"})
    # WHEN an attribute conforms to "item"
    # THEN it is a collision naming the attribute and the reserved column
    with pytest.raises(NameCollision, match=r"'Item' and '<cdc column item>'"):
        columns.claim(snake("Item"), "Item")


def test_name_tables_are_independent_namespaces():
    # GIVEN two tables' column namespaces
    a, b = NameTable("attributes of a"), NameTable("attributes of b")
    # WHEN each claims "id" for a different source
    # THEN neither collides: identifiers are only unique within one namespace
    assert a.claim("id", "Id") == "id"
    assert b.claim("id", "ID") == "id"
