"""Exact DynamoDB numbers: the decimal context that holds every one of them (38
significant digits, exponents far beyond DynamoDB's range) and their canonical text."""

from __future__ import annotations

from decimal import Context, Decimal

# Wide enough that no DynamoDB number is ever rounded: Decimal operations such as
# normalize() round to the *context's* precision, 28 digits by default.
EXACT = Context(prec=200, Emin=-999_999, Emax=999_999)


def canonical_number(value: Decimal | int) -> str:
    """One text per numeric value: `100`, `1.5`, `0.001`, never `1E+2` or `1.50`."""
    if isinstance(value, int):
        return str(value)
    if value == value.to_integral_value(context=EXACT):
        return str(int(value))
    return format(value.normalize(EXACT), "f")
