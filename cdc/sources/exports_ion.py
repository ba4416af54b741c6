"""The lines of an export in Amazon Ion (`ION` output format) as the DynamoDB JSON lines
of cdc/sources/exports.py, so both formats take one path from there on.

Each line is one Ion text value (after an optional `$ion_1_0` version marker):
`{Item:{...}}` for a full export, `{Metadata:{...},Keys:{...},NewImage:{...},
OldImage:{...}}` for an incremental one. Ion types map onto AttributeValues as DynamoDB
documents them ("Amazon S3 import formats for DynamoDB"): string → S, decimal and int →
N, blob → B (base64, as Lambda carries it), bool → BOOL, null → NULL, struct → M, list
→ L, and a list annotated `$dynamodb_SS`, `$dynamodb_NS` or `$dynamodb_BS` → that set.
Numbers keep every digit: Ion decimals are read as `Decimal` and written in DynamoDB's
form (`6d2` is `600`). Anything else (timestamps, an unknown annotation) is refused with
the attribute's path.

`amazon.ion` is imported on first use only (`pip install 'cdc[ion]'`).
"""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

from cdc.core.errors import CdcError
from cdc.core.numbers import canonical_number

IMAGES = ("Item", "Keys", "NewImage", "OldImage")
SETS = {"$dynamodb_SS": "SS", "$dynamodb_NS": "NS", "$dynamodb_BS": "BS"}


class IonError(CdcError):
    """An Ion value that is not a DynamoDB item; the message names the attribute."""


def ion_line(raw: bytes) -> dict[str, Any]:
    """One line of an ION export as the DynamoDB JSON line it stands for."""
    try:
        from amazon.ion import simpleion
    except ImportError:
        raise IonError(
            "this export is in ION format, which needs the amazon.ion package: "
            "pip install 'cdc[ion]'"
        ) from None
    try:
        values = simpleion.loads(raw.decode("utf-8"), single_value=False)
    except Exception as exc:  # amazon.ion raises plain exceptions of several kinds
        raise IonError(f"not Amazon Ion ({exc})") from None
    if len(values) != 1 or _type(values[0]) != "STRUCT":
        raise IonError("not one Ion struct")
    line: dict[str, Any] = {}
    for name, value in values[0].items():
        if name in IMAGES:
            if _type(value) != "STRUCT":
                raise IonError(f"{name} is not a struct")
            line[name] = {k: to_attribute(v, f"{name}.{k}") for k, v in value.items()}
        elif name == "Metadata" and _type(value) == "STRUCT":
            line[name] = {k: to_attribute(v, f"{name}.{k}") for k, v in value.items()}
    return line


def to_attribute(value: Any, path: str) -> dict[str, Any]:
    kind = _type(value)
    annotations = [a.text for a in getattr(value, "ion_annotations", ())]
    if annotations:
        tag = SETS.get(annotations[0]) if len(annotations) == 1 else None
        if tag is None or kind != "LIST":
            raise IonError(f"{path}: unknown annotation {'::'.join(map(str, annotations))}")
        members = [to_attribute(v, f"{path}[{i}]") for i, v in enumerate(value)]
        wanted = tag[0]  # S, N or B
        if any(set(m) != {wanted} for m in members):
            raise IonError(f"{path}: a {tag} holds a member that is not {wanted}")
        return {tag: [m[wanted] for m in members]}
    if kind == "NULL":
        return {"NULL": True}
    if kind == "BOOL":
        return {"BOOL": bool(value)}
    if kind in ("INT", "DECIMAL"):
        return {"N": canonical_number(Decimal(value) if kind == "DECIMAL" else int(value))}
    if kind == "FLOAT":
        return {"N": canonical_number(Decimal(repr(float(value))))}
    if kind in ("STRING", "SYMBOL"):
        return {"S": str(value)}
    if kind in ("BLOB", "CLOB"):
        return {"B": base64.b64encode(bytes(value)).decode("ascii")}
    if kind in ("LIST", "SEXP"):
        return {"L": [to_attribute(v, f"{path}[{i}]") for i, v in enumerate(value)]}
    if kind == "STRUCT":
        return {"M": {k: to_attribute(v, f"{path}.{k}") for k, v in value.items()}}
    raise IonError(f"{path}: Ion {kind.lower()} has no DynamoDB type")


def _type(value: Any) -> str:
    """The Ion type's name; a typed null (`null.string`) is NULL."""
    if value is None or type(value).__name__ == "IonPyNull":  # of any type
        return "NULL"
    ion_type = getattr(value, "ion_type", None)
    return str(getattr(ion_type, "name", "UNKNOWN"))
