"""Personal data (issue 17, part 5): `exclude = true` attributes are stored nowhere (not
in columns, `item`, `extra`, nor the dead letters' raw records), and `hash =
"hmac-sha256"` attributes are stored as the keyed digest, the same for the same value
in every table and path (stream, backfill, verify, dlq redrive). On PostgreSQL,
MariaDB/MySQL and SQLite.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, Table, inspect, select

from cdc.app.commands.dlq import redrive
from cdc.aws.clients import describe_table
from cdc.config import Settings, load_settings
from cdc.core.errors import ConfigError
from cdc.jobs.backfill import Backfill, BackfillOptions
from cdc.jobs.verify import Verifier
from tests.every_database import EVERY_DATABASE, Database, open_database
from tests.factories import insert, modify

KEY = "a-test-key-of-32-bytes-or-so-123"
SSN = "078-05-1120"  # excluded: must appear nowhere
PHONE = "+49 30 1234567"  # excluded (nested): must appear nowhere
EMAIL = "ada@example.com"  # hashed: only its digest is stored

MAPPING = """
[tables.Customers]
keys = ["Id"]
[tables.Customers.columns]
Id = "bigint"
Name = "text"
Email = { type = "text", hash = "hmac-sha256" }
Total = "numeric(12,2)"
[tables.Customers.attributes]
Ssn = { exclude = true }
"Contact.Phone" = { exclude = true }
Referrer = { hash = "hmac-sha256" }

[tables.Events]
[tables.Events.attributes]
Ssn = { exclude = true }
Email = { hash = "hmac-sha256" }
"""


def digest(text: str) -> str:
    return hmac.new(KEY.encode(), text.encode(), hashlib.sha256).hexdigest()


@pytest.fixture(params=EVERY_DATABASE)
def database(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    yield from open_database(request, tmp_path)


def settings_for(database: Database, tmp_path: Path, mapping: str = MAPPING) -> Settings:
    path = tmp_path / "mapping.toml"
    path.write_text(mapping)
    env = {
        "CDC_CONFIG": str(path),
        "CDC_DATABASE_URL": database.engine.url.render_as_string(hide_password=False),
        "CDC_HASH_KEY": KEY,
    }
    if database.schema is not None:
        env["CDC_SCHEMA"] = database.schema
    return load_settings(env)


def everything(database: Database) -> str:
    """Every value of every table of the database (replica and bookkeeping), as text."""
    parts = []
    with database.engine.connect() as conn:
        for name in inspect(conn).get_table_names(schema=database.schema):
            table = Table(name, MetaData(), autoload_with=conn, schema=database.schema)
            for row in conn.execute(select(table)):
                parts.extend(
                    v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in row
                )
    return "\n".join(parts)


def customer(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "Name": f"customer {i}",
        "Email": EMAIL,
        "Total": Decimal("12.50"),
        "Ssn": SSN,
        "Contact": {"Phone": PHONE, "City": "Berlin"},
        "Referrer": "bob@example.com",
        **extra,
    }


def as_json(value: Any) -> Any:
    return value if isinstance(value, dict) else json.loads(value)


def rows(database: Database, name: str) -> dict[Any, dict[str, Any]]:
    table = database.table(name)
    with database.engine.connect() as conn:
        return {r["id"]: dict(r) for r in conn.execute(select(table)).mappings()}


def test_excluded_attributes_are_stored_nowhere_and_hashes_join(
    database: Database, tmp_path: Path
) -> None:
    settings = settings_for(database, tmp_path)
    records = [
        insert({"Id": 1}, 100, customer(1), table="Customers"),
        # Total does not fit numeric(12,2): dead-lettered, with its record redacted
        insert({"Id": 2}, 101, customer(2, Total=Decimal("1.005")), table="Customers"),
        insert({"id": "e1"}, 102, {"Ssn": SSN, "Email": EMAIL, "kind": "login"}, table="Events"),
        modify({"id": "e2"}, 103, {"Ssn": {"deep": SSN}, "Email": None}, table="Events"),
    ]
    written = database.replicator(settings).process(records, _deadline())
    assert written.dead_lettered == 1, written

    stored = everything(database)
    assert SSN not in stored
    assert PHONE not in stored
    assert EMAIL not in stored and "bob@example.com" not in stored
    assert digest(EMAIL) in stored

    # typed: the hashed column holds the digest; the rest of the item is in `extra`
    (row,) = rows(database, "customers").values()
    assert row["email"] == digest(EMAIL)
    extra = as_json(row["extra"])
    assert extra == {"Contact": {"City": "Berlin"}, "Referrer": digest("bob@example.com")}

    # document mode: `item` holds the digest, NULL stays NULL
    items = database.items("events")
    assert items["e1"][0] == {"id": "e1", "Email": digest(EMAIL), "kind": "login"}
    assert items["e2"][0] == {"id": "e2", "Email": None}

    # the dead letter keeps the digest in its marker map, and the excluded value nowhere
    (letter,) = database.dead_letters()
    image = json.loads(letter["raw_record"])["dynamodb"]["NewImage"]
    assert "Ssn" not in image and image["Contact"] == {"M": {"City": {"S": "Berlin"}}}
    assert image["Email"] == {"M": {"cdc:hmac-sha256": {"S": digest(EMAIL)}}}


def test_a_redriven_letter_stores_the_same_digest(database: Database, tmp_path: Path) -> None:
    # GIVEN a dead letter of an item the mapping rejected (Total has three decimals)
    settings = settings_for(database, tmp_path)
    record = insert({"Id": 7}, 200, customer(7, Total=Decimal("1.005")), table="Customers")
    assert database.replicator(settings).process([record], _deadline()).dead_lettered == 1

    # WHEN the mapping is widened and the letter redriven
    settings = settings_for(database, tmp_path, MAPPING.replace("numeric(12,2)", "numeric(12,3)"))
    _widen(database)  # the new scale, as a revision would
    assert redrive(database.engine, settings, ids=[], all_=True, table=None) == 0

    # THEN the row holds the digest of the original value, not a digest of the digest
    row = rows(database, "customers")[7]
    assert row["email"] == digest(EMAIL)
    assert as_json(row["extra"])["Referrer"] == digest("bob@example.com")
    assert SSN not in everything(database)


def _widen(database: Database) -> None:
    from sqlalchemy import text

    name = f"{database.schema}.customers" if database.schema else "customers"
    with database.engine.begin() as conn:
        if database.name == "sqlite":
            return  # SQLite keeps what it is given
        if database.name == "postgresql":
            conn.execute(text(f"ALTER TABLE {name} ALTER COLUMN total TYPE NUMERIC(12, 3)"))
        else:
            conn.execute(text(f"ALTER TABLE {name} MODIFY total DECIMAL(12, 3)"))


def test_backfill_and_verify_keep_personal_data_out(
    clients: Any, database: Database, tmp_path: Path
) -> None:
    settings = settings_for(database, tmp_path)
    ddb = clients.dynamodb()
    ddb.create_table(
        TableName="Customers",
        KeySchema=[{"AttributeName": "Id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "Id", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for i in range(1, 6):
        ddb.put_item(
            TableName="Customers",
            Item={
                "Id": {"N": str(i)},
                "Name": {"S": f"customer {i}"},
                "Email": {"S": f"user{i}@example.com"},
                "Total": {"N": "12.5" if i != 5 else "1.005"},  # 5: dead-lettered
                "Ssn": {"S": SSN},
                "Contact": {"M": {"Phone": {"S": PHONE}}},
            },
        )
    source = describe_table(ddb, "Customers")
    report = Backfill(ddb, source, database.engine, settings, BackfillOptions(segments=1)).run()
    assert report.complete
    stored = everything(database)
    assert SSN not in stored and PHONE not in stored and "user5@example.com" not in stored
    assert rows(database, "customers")[3]["email"] == digest("user3@example.com")

    # verify compares digests with digests and never reports the excluded attributes
    verified = Verifier(ddb, source, database.engine, settings, settle=0).run()
    assert verified.counts["different"] == 0 and verified.counts["missing"] == 0
    assert verified.counts["unreplicable"] == 1

    # a changed hashed value and a changed excluded value: only the first is a difference
    ddb.put_item(
        TableName="Customers",
        Item={
            "Id": {"N": "1"},
            "Name": {"S": "customer 1"},
            "Email": {"S": "new@example.com"},
            "Total": {"N": "12.5"},
            "Ssn": {"S": "another"},
            "Contact": {"M": {"Phone": {"S": "+1 555"}}},
        },
    )
    ddb.put_item(
        TableName="Customers",
        Item={
            "Id": {"N": "2"},
            "Name": {"S": "customer 2"},
            "Email": {"S": "user2@example.com"},
            "Total": {"N": "12.5"},
            "Ssn": {"S": "changed, but never stored"},
        },
    )
    verified = Verifier(ddb, source, database.engine, settings, settle=0).run()
    different = {d.key["Id"]: d.attributes for d in verified.examples["different"]}
    assert different == {1: ["email"], 2: ["extra"]}  # `extra` held an empty Contact


def _deadline() -> Any:
    from cdc.core.deadline import Deadline
    from tests.factories import FakeContext

    return Deadline.from_context(FakeContext(30_000))


# --- the mapping file ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (
            '[tables.T]\nkeys = ["Id"]\n[tables.T.columns]\nId = "text"\n'
            "[tables.T.attributes]\nId = { exclude = true }\n",
            "Id is a key attribute and cannot be excluded",
        ),
        (
            '[tables.T]\nkeys = ["Id"]\n[tables.T.columns]\nId = { type = "text", '
            'hash = "hmac-sha256" }\n',
            "Id is a key attribute and cannot be hashed",
        ),
        (
            '[tables.T]\nkeys = ["Id"]\n[tables.T.columns]\nId = "text"\n'
            'N = { type = "bigint", hash = "hmac-sha256" }\n',
            "its type must be text, not bigint",
        ),
        (
            '[tables.T]\nkeys = ["Id"]\n[tables.T.columns]\nId = "text"\nS = "text"\n'
            "[tables.T.attributes]\nS = { exclude = true }\n",
            "S is excluded (never stored) but also a column",
        ),
        ('[tables.T.attributes]\nS = { hash = "md5" }\n', "hash = 'md5'; expected one of"),
        (
            '[tables.T]\nkeys = ["Id"]\n[tables.T.columns]\nId = "text"\n"A.B" = "text"\n'
            "[tables.T.attributes]\nA = { exclude = true }\n",
            "A is excluded, which leaves nothing for the column of A.B",
        ),
        ("[tables.T.attributes]\nS = { redact = true }\n", "unknown key(s) redact"),
        ("[tables.T.attributes]\nS = true\n", "must be { exclude = true }"),
    ],
)
def test_bad_attribute_rules_are_one_clear_error(
    tmp_path: Path, mapping: str, message: str
) -> None:
    path = tmp_path / "m.toml"
    path.write_text(mapping)
    with pytest.raises(ConfigError) as raised:
        load_settings({"CDC_CONFIG": str(path), "CDC_HASH_KEY": KEY})
    assert message in str(raised.value)


def test_hashing_needs_a_key_and_never_prints_it(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('[tables.T.attributes]\nEmail = { hash = "hmac-sha256" }\n')
    with pytest.raises(ConfigError, match="set CDC_HASH_KEY to the key, or CDC_HASH_KEY_SECRET"):
        load_settings({"CDC_CONFIG": str(path)})
    with pytest.raises(ConfigError, match="at least 16 bytes") as raised:
        load_settings({"CDC_CONFIG": str(path), "CDC_HASH_KEY": "short-secret"})
    assert "short-secret" not in str(raised.value)
    settings = load_settings({"CDC_CONFIG": str(path), "CDC_HASH_KEY": KEY})
    assert KEY not in repr(settings)


def test_the_personal_data_example_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "personal_data.toml"
    tables = load_settings({"CDC_CONFIG": str(example), "CDC_HASH_KEY": KEY}).tables
    app = tables["App"]
    assert app.options.drift == "add_columns"
    assert app.options.personal is not None
    assert app.options.personal.excluded == {"Phone", "Shipping.Street"}
    assert app.options.personal.hashed == {"Email", "Referrer"}
    assert tables["AuditLog"].options.personal is not None


def test_the_key_can_come_from_a_secret(clients: Any, tmp_path: Path) -> None:
    import boto3

    from cdc.app.engines import engine_for

    arn = boto3.client("secretsmanager").create_secret(Name="hash-key", SecretString=KEY)["ARN"]
    path = tmp_path / "m.toml"
    path.write_text('[tables.T.attributes]\nEmail = { hash = "hmac-sha256" }\n')
    env = {
        "CDC_CONFIG": str(path),
        "CDC_DATABASE_URL": f"sqlite:///{tmp_path}/r.db",
        "CDC_HASH_KEY_SECRET_ARN": arn,
    }
    settings = load_settings(env)
    engine_for(settings).dispose()  # reads the secret, once, at start-up
    personal = settings.tables["T"].options.personal
    assert personal is not None
    assert personal.apply({"Email": {"S": EMAIL}}, "x") == {"Email": {"S": digest(EMAIL)}}

    missing = load_settings({**env, "CDC_HASH_KEY_SECRET_ARN": arn + "-gone"})
    with pytest.raises(ConfigError, match="cannot read CDC_HASH_KEY_SECRET_ARN="):
        engine_for(missing)


def test_a_letter_whose_table_cannot_be_made_is_redacted_too(
    database: Database, tmp_path: Path
) -> None:
    # GIVEN a document table whose rules cannot apply (one names a key attribute), so no
    # replica table is made for it and its records are dead-lettered before one exists
    mapping = MAPPING.replace(
        'Ssn = { exclude = true }\nEmail = { hash = "hmac-sha256" }',
        ('Ssn = { exclude = true }\nEmail = { hash = "hmac-sha256" }\nid = { exclude = true }'),
    )
    settings = settings_for(database, tmp_path, mapping)
    record = insert({"id": "e1"}, 102, {"Ssn": SSN, "Email": EMAIL}, table="Events")
    # WHEN its record arrives
    written = database.replicator(settings).process([record], _deadline())
    # THEN it is dead-lettered with its personal data redacted all the same
    assert written.dead_lettered == 1, written
    stored = everything(database)
    assert SSN not in stored and EMAIL not in stored
    assert digest(EMAIL) in stored
