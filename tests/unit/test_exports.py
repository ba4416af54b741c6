"""Export locations, summaries, checksums and lines, without S3 or a database."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import re

import pytest

from cdc.aws.clients import SourceTable
from cdc.aws.exports import ExportError, ExportLocation, ExportSummary, _same_md5, export_location
from cdc.sources.exports import ExportFileError, line_record, read_lines
from cdc.sources.snapshots import SNAPSHOT_RECORDS

SOURCE = SourceTable(
    name="Orders",
    arn="arn:aws:dynamodb:eu-central-1:123456789012:table/Orders",
    keys=(("pk", "S"), ("sk", "N")),
    item_count=None,
    stream_arn=None,
)
STREAM = SOURCE.synthetic_stream_arn("backfill")


@pytest.mark.parametrize(
    "url",
    [
        "s3://b/p/q/AWSDynamoDB/01234-abcd",
        "s3://b/p/q/AWSDynamoDB/01234-abcd/",
    ],
)
def test_an_export_folder_with_or_without_a_trailing_slash(url):
    location = ExportLocation.parse(url)
    assert (location.bucket, location.folder) == ("b", "p/q/AWSDynamoDB/01234-abcd")
    assert location.export_id == "01234-abcd"
    assert (
        location.key("manifest-summary.json") == "p/q/AWSDynamoDB/01234-abcd/manifest-summary.json"
    )


def test_an_export_at_the_buckets_root():
    assert ExportLocation.parse("s3://b/AWSDynamoDB/x").folder == "AWSDynamoDB/x"


@pytest.mark.parametrize(
    "url", ["b/AWSDynamoDB/x", "s3://b/prefix", "s3://b/AWSDynamoDB/x/data", "s3:///AWSDynamoDB/x"]
)
def test_anything_else_is_refused(url):
    with pytest.raises(ExportError, match="not"):
        ExportLocation.parse(url)


def test_a_described_export_names_its_folder():
    described = {
        "S3Bucket": "b",
        "ExportManifest": "pre/AWSDynamoDB/01-x/manifest-summary.json",
        "ExportArn": "arn:aws:dynamodb:r:1:table/T/export/01-x",
    }
    assert export_location(described).folder == "pre/AWSDynamoDB/01-x"
    del described["ExportManifest"]
    assert export_location({**described, "S3Prefix": "pre/"}).folder == "pre/AWSDynamoDB/01-x"
    assert export_location(described).folder == "AWSDynamoDB/01-x"


def test_a_summary_missing_a_field_is_one_clear_error():
    with pytest.raises(ExportError, match=r"is not an export summary .missing 'tableArn'"):
        ExportSummary.parse(b'{"exportArn": "a", "exportTime": "2020-11-04T07:28:34.028Z"}', "x")
    with pytest.raises(ExportError, match="is not an export summary"):
        ExportSummary.parse(b"not json", "x")


def test_md5_in_base64_as_the_manifest_gives_it_or_hex():
    digest = hashlib.md5(b"data").digest()
    assert _same_md5(digest, base64.b64encode(digest).decode())
    assert _same_md5(digest, digest.hex())
    assert not _same_md5(digest, "AAAAAAAAAAAAAAAAAAAAAA==")
    assert not _same_md5(digest, "not base64!")


def gz(text: str) -> io.BytesIO:
    return io.BytesIO(gzip.compress(text.encode()))


def test_lines_resume_after_the_committed_ones_and_blank_lines_count():
    stream = gz('{"Item": {"a": {"S": "1"}}}\n\n{"Item": {"a": {"S": "3"}}}\n')
    assert [(n, line is not None) for n, line in read_lines(stream, "f")] == [
        (1, True),
        (2, False),
        (3, True),
    ]
    stream.seek(0)
    assert [n for n, _ in read_lines(stream, "f", start=2)] == [3]


def test_an_empty_file_has_no_lines():
    assert list(read_lines(io.BytesIO(b""), "f")) == []


def test_a_line_that_is_not_json_names_its_file_and_line():
    with pytest.raises(ExportFileError, match=r"^f line 2: not JSON"):
        list(read_lines(gz('{"Item": {}}\n{"Item": \n'), "f"))


def test_a_full_export_line_is_a_snapshot_insert():
    item = {"pk": {"S": "a"}, "sk": {"N": "1"}, "b": {"B": "AAE="}}
    record = line_record({"Item": item}, SOURCE, STREAM, incremental=False, where="f")
    change = SNAPSHOT_RECORDS.parse(record, 0)
    assert change.event_name == "INSERT"
    assert change.keys == {"pk": {"S": "a"}, "sk": {"N": "1"}}
    assert change.new_image == item


def test_incremental_lines_are_snapshot_inserts_and_removes():
    keys = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    meta = {"WriteTimestampMicros": {"N": "1764151200000000"}}
    changed = {"Metadata": meta, "Keys": keys, "NewImage": {**keys, "v": {"S": "new"}}}
    insert = SNAPSHOT_RECORDS.parse(
        line_record(changed, SOURCE, STREAM, incremental=True, where="f"), 0
    )
    assert insert.event_name == "INSERT" and insert.new_image is not None
    assert insert.new_image["v"] == {"S": "new"}
    deleted = {"Metadata": meta, "Keys": keys, "OldImage": {**keys, "v": {"S": "old"}}}
    remove = SNAPSHOT_RECORDS.parse(
        line_record(deleted, SOURCE, STREAM, incremental=True, where="f"), 0
    )
    assert remove.event_name == "REMOVE" and remove.new_image is None
    assert remove.keys == keys
    assert remove.sequence == insert.sequence  # both at the snapshot's version


@pytest.mark.parametrize(
    ("line", "incremental"),
    [({"Keys": {}}, False), ({"Item": {}}, True), ({"Keys": "x", "NewImage": {}}, True)],
)
def test_a_line_of_another_kind_is_refused(line, incremental):
    with pytest.raises(ExportFileError, match=r"^f line 3: not a"):
        line_record(line, SOURCE, STREAM, incremental=incremental, where="f line 3")


def test_ion_values_become_attribute_values():
    from cdc.sources.exports_ion import ion_line

    line = ion_line(
        b'$ion_1_0 {Item:{Authors:$dynamodb_SS::["A1","A2"],Id:103.,Pages:6d2,Price:2.50,'
        b"Big:12345678901234567890123456789012345678,B:{{AAE=}},Z:null,T:null.string,"
        b'In:false,L:[1,"x",{m:true}],NS:$dynamodb_NS::[1,2.0],BS:$dynamodb_BS::[{{/w==}}]}}'
    )
    assert line == {
        "Item": {
            "Authors": {"SS": ["A1", "A2"]},
            "Id": {"N": "103"},
            "Pages": {"N": "600"},
            "Price": {"N": "2.5"},
            "Big": {"N": "12345678901234567890123456789012345678"},
            "B": {"B": "AAE="},
            "Z": {"NULL": True},
            "T": {"NULL": True},
            "In": {"BOOL": False},
            "L": {"L": [{"N": "1"}, {"S": "x"}, {"M": {"m": {"BOOL": True}}}]},
            "NS": {"NS": ["1", "2"]},
            "BS": {"BS": ["/w=="]},
        }
    }


def test_an_incremental_ion_line_keeps_keys_and_images():
    from cdc.sources.exports_ion import ion_line

    line = ion_line(
        b'{Metadata:{WriteTimestampMicros:1764151200000000},Keys:{pk:"a",sk:1.},'
        b'OldImage:{pk:"a",sk:1.,v:"old"}}'
    )
    assert line["Keys"] == {"pk": {"S": "a"}, "sk": {"N": "1"}}
    assert "NewImage" not in line and line["OldImage"]["v"] == {"S": "old"}
    record = line_record(line, SOURCE, STREAM, incremental=True, where="f")
    assert record["eventName"] == "REMOVE"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"{Item:{t:2024-01-01T}}", "Item.t: Ion timestamp has no DynamoDB type"),
        (b"{Item:{s:$dynamodb_XS::[1]}}", "Item.s: unknown annotation"),
        (b'{Item:{s:$dynamodb_SS::[1,"a"]}}', "Item.s: a SS holds a member that is not S"),
        (b"{Item:", "not Amazon Ion"),
        (b"[1]", "not one Ion struct"),
    ],
)
def test_ion_that_is_no_item_is_refused_with_its_path(text, message):
    from cdc.sources.exports_ion import IonError, ion_line

    with pytest.raises(IonError, match=re.escape(message)):
        ion_line(text)


def test_an_ion_file_line_error_names_file_and_line():
    stream = gz('{Item:{a:"1"}}\n{Item:{t:2024-01-01T}}\n')
    with pytest.raises(ExportFileError, match=r"^f line 2: Item.t: Ion timestamp"):
        list(read_lines(stream, "f", output_format="ION"))
