"""Settings from environment variables and an optional TOML file (README: Configuration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc.config import (
    DEFAULT_CLI_URL,
    DatabaseOptions,
    Settings,
    load_settings,
    parse_database_url,
)
from cdc.core.errors import ConfigError
from cdc.core.mapping import TableOptions
from tests.settings_cases import (
    Bad,
    Good,
    attribute,
    bad_cases,
    good_cases,
)

PASSWORD = "s3cr3t-Pa55"  # never to appear in any message
PG_URL = f"postgresql+psycopg://cdc:{PASSWORD}@db.internal:5432/replica"
SAMPLE_EVENT = Path(__file__).resolve().parents[1] / "events" / "stream-sample-devguide.json"


@pytest.fixture
def config_file(tmp_path):
    """Write a TOML mapping file and return the environment that names it."""

    def write(text: str) -> tuple[dict[str, str], Path]:
        path = tmp_path / "cdc.toml"
        path.write_text(text)
        return {"CDC_CONFIG": str(path)}, path

    return write


# --- precedence -------------------------------------------------------------------------


def test_environment_overrides_the_config_file(config_file):
    # GIVEN a config file naming one database and schema
    env, _ = config_file(
        'database_url = "postgresql://file@file-host/filedb"\nschema = "file_schema"\n'
    )
    # AND environment variables naming others
    env |= {"CDC_DATABASE_URL": PG_URL, "CDC_SCHEMA": "env_schema"}
    # WHEN settings are loaded
    settings = load_settings(env)
    # THEN the environment wins
    assert settings.database_url is not None
    assert settings.database_url.host == "db.internal"
    assert settings.schema == "env_schema"


def test_config_file_is_used_when_the_environment_is_silent(config_file):
    # GIVEN a config file with a database URL, a schema and table options
    env, path = config_file(
        'database_url = "postgres://cdc@file-host/filedb"\n'
        'schema = "file_schema"\n'
        "[defaults]\n"
        'deletes = "hard"\n'
        "[tables.Orders]\n"
        'nul = "strip"\n'
        "hydrate = true\n"
    )
    # WHEN settings are loaded with only CDC_CONFIG set
    settings = load_settings(env)
    # THEN everything comes from the file
    assert settings.database_url is not None
    assert settings.database_url.host == "file-host"
    assert settings.database_url.drivername == "postgresql+psycopg"
    assert settings.schema == "file_schema"
    assert settings.config_path == path
    # AND table options start from [defaults]; other tables get the defaults
    assert settings.options_for("Orders") == TableOptions(deletes="hard", nul="strip", hydrate=True)
    assert settings.options_for("Customers") == TableOptions(deletes="hard")


@pytest.mark.parametrize("value", ["", None])
def test_empty_environment_variables_count_as_unset(config_file, value):
    # GIVEN a config file URL and CDC_DATABASE_URL / CDC_SCHEMA set to "" (or absent)
    env, _ = config_file('database_url = "sqlite:///file.db"\n')
    if value is not None:
        env |= {"CDC_DATABASE_URL": value, "CDC_SCHEMA": value}
    # WHEN settings are loaded THEN the file's URL is used, and there is no schema
    settings = load_settings(env)
    assert settings.database_url is not None
    assert settings.database_url.database == "file.db"
    assert settings.schema is None


def test_secret_arn_in_the_environment_overrides_a_url_in_the_file(config_file):
    # GIVEN a config file with a database URL (e.g. a developer's default)
    env, _ = config_file('database_url = "postgresql://dev@localhost/dev"\n')
    # AND the deployment sets a Secrets Manager secret instead of a URL
    env["CDC_DATABASE_SECRET_ARN"] = (
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cdc/db-AbCdEf"
    )
    # WHEN settings are loaded
    settings = load_settings(env)
    # THEN the environment's choice wins: the file's URL is not used
    assert settings.secret_arn is not None
    assert settings.database_url is None


def test_url_and_secret_arn_together_are_an_error():
    # GIVEN both CDC_DATABASE_URL and CDC_DATABASE_SECRET_ARN in the environment
    env = {
        "CDC_DATABASE_URL": PG_URL,
        "CDC_DATABASE_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x",
    }
    # WHEN settings are loaded THEN the error names both variables, not the password
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert "CDC_DATABASE_URL" in str(info.value)
    assert "CDC_DATABASE_SECRET_ARN" in str(info.value)
    assert PASSWORD not in str(info.value)


def test_secret_arn_must_be_an_arn():
    # GIVEN a secret name where an ARN is expected
    # WHEN settings are loaded THEN the error names the variable
    with pytest.raises(ConfigError, match="CDC_DATABASE_SECRET_ARN"):
        load_settings({"CDC_DATABASE_SECRET_ARN": "cdc/db"})


# --- the database URL ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "drivername"),
    [
        ("postgres://u:p@h/db", "postgresql+psycopg"),
        ("postgresql://u:p@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg2://u:p@h/db", "postgresql+psycopg2"),
        ("mysql://u:p@h/db", "mysql+pymysql"),
        ("mariadb://u:p@h/db", "mariadb+pymysql"),
        ("mysql+pymysql://u:p@h/db", "mysql+pymysql"),
        ("sqlite:///cdc.db", "sqlite"),
        ("sqlite://", "sqlite"),
        ("  postgresql://u:p@h/db  ", "postgresql+psycopg"),
    ],
)
def test_database_urls_get_the_driver_cdc_installs(given, drivername):
    # GIVEN a URL as psql or mysql users write it
    # WHEN it is loaded from CDC_DATABASE_URL
    settings = load_settings({"CDC_DATABASE_URL": given})
    # THEN SQLAlchemy gets the driver spelled out (psycopg 3 for Postgres)
    assert settings.database_url is not None
    assert settings.database_url.drivername == drivername


@pytest.mark.parametrize(
    "bad",
    [
        "not a url",
        PASSWORD,
        f"://cdc:{PASSWORD}@host/db",
        f"postgresql://cdc:{PASSWORD}@db.internal:notaport/replica",
        f"postgresql://cdc:{PASSWORD}@[::1/replica",
        f"oracle://cdc:{PASSWORD}@db.internal/replica",
        f"mssql+pyodbc://cdc:{PASSWORD}@db.internal/replica",
    ],
)
def test_a_bad_database_url_is_an_error_naming_the_variable_without_the_password(bad):
    # GIVEN a CDC_DATABASE_URL that is not a usable database URL
    # WHEN settings are loaded
    with pytest.raises(ConfigError) as info:
        load_settings({"CDC_DATABASE_URL": bad})
    # THEN the error names CDC_DATABASE_URL and never echoes the password
    message = str(info.value)
    assert "CDC_DATABASE_URL" in message
    assert PASSWORD not in message
    assert PASSWORD not in repr(info.value)
    assert info.value.__cause__ is None or PASSWORD not in str(info.value.__cause__)


def test_a_bad_database_url_in_the_file_names_the_file(config_file):
    # GIVEN a config file whose database_url is not a URL
    env, path = config_file(f'database_url = "cdc:{PASSWORD} at db.internal"\n')
    # WHEN settings are loaded
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    # THEN the error names the file and the key, never the password
    assert str(path) in str(info.value)
    assert "database_url" in str(info.value)
    assert PASSWORD not in str(info.value)


def test_masked_url_hides_the_password():
    # GIVEN settings loaded from a URL with a password
    settings = load_settings({"CDC_DATABASE_URL": PG_URL})
    # WHEN the URL is shown (logs, CLI summary)
    shown = settings.masked_url()
    # THEN the password is masked and everything else is there
    assert PASSWORD not in shown
    assert shown == "postgresql+psycopg://cdc:***@db.internal:5432/replica"
    # AND the real password is still available to connect
    assert settings.database_url is not None
    assert settings.database_url.password == PASSWORD


def test_masked_url_without_a_database():
    # GIVEN settings with no database WHEN shown THEN they say so
    assert Settings().masked_url() == "(none)"


def test_no_database_and_no_default_leaves_the_url_unset():
    # GIVEN an empty environment and no default (the Lambda handler's case)
    settings = load_settings({})
    # THEN there is no database URL; the caller decides how to fail
    assert settings.database_url is None
    assert settings.secret_arn is None
    assert settings.has_database is False
    assert settings.schema is None
    assert settings.defaults == TableOptions()


def test_the_default_url_is_used_when_nothing_names_a_database():
    # GIVEN an empty environment and the CLI's default
    settings = load_settings({}, default_url=DEFAULT_CLI_URL)
    # THEN the local SQLite database is used
    assert settings.database_url is not None
    assert settings.database_url.render_as_string() == "sqlite:///cdc.db"
    assert settings.has_database


def test_the_default_url_does_not_override_a_configured_one():
    # GIVEN CDC_DATABASE_URL and a default WHEN loaded THEN the configured URL wins
    settings = load_settings({"CDC_DATABASE_URL": PG_URL}, default_url=DEFAULT_CLI_URL)
    assert settings.database_url is not None
    assert settings.database_url.get_backend_name() == "postgresql"


def test_parse_database_url_names_the_setting_it_was_given():
    # GIVEN a bad URL from some other setting WHEN parsed THEN that setting is named
    with pytest.raises(ConfigError, match=r"^the default database URL"):
        parse_database_url("nonsense", "the default database URL")


# --- schema -----------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["sqlite:///cdc.db", "sqlite://"])
def test_cdc_schema_with_sqlite_is_an_error(url):
    # GIVEN CDC_SCHEMA with a SQLite database (SQLite has no schemas)
    # WHEN settings are loaded THEN the error names CDC_SCHEMA and SQLite
    with pytest.raises(ConfigError, match=r"CDC_SCHEMA.*SQLite"):
        load_settings({"CDC_DATABASE_URL": url, "CDC_SCHEMA": "replica"})


def test_cdc_schema_with_the_default_sqlite_is_an_error():
    # GIVEN CDC_SCHEMA and no database (the CLI falls back to SQLite)
    # WHEN settings are loaded THEN it is an error, not a silently ignored schema
    with pytest.raises(ConfigError, match="CDC_SCHEMA"):
        load_settings({"CDC_SCHEMA": "replica"}, default_url=DEFAULT_CLI_URL)


def test_cdc_schema_with_postgres_is_kept():
    settings = load_settings({"CDC_DATABASE_URL": PG_URL, "CDC_SCHEMA": "replica"})
    assert settings.schema == "replica"


# --- the TOML file ----------------------------------------------------------------------


def test_unknown_top_level_keys_are_errors_naming_the_file_and_key(config_file):
    # GIVEN a config file with a misspelt top-level key
    env, path = config_file('database_url = "sqlite:///x.db"\nshema = "replica"\n')
    # WHEN settings are loaded
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    # THEN the error names the file, the unknown key and the known ones
    message = str(info.value)
    assert str(path) in message
    assert "shema" in message
    assert "schema" in message.split("known:")[1]


@pytest.mark.parametrize(
    ("toml", "where", "key"),
    [
        ('[tables.Orders]\ndelete = "hard"\n', "tables.Orders", "delete"),
        ("[tables.Orders]\nttl = true\n", "tables.Orders", "ttl"),
        ('[defaults]\nnulls = "strip"\n', "defaults", "nulls"),
        ('[tables."order-items.v2"]\ncolour = 1\n', "tables.order-items.v2", "colour"),
    ],
)
def test_unknown_table_options_are_errors_naming_file_table_and_key(config_file, toml, where, key):
    # GIVEN a table (or the defaults) with an option cdc does not know
    env, path = config_file(toml)
    # WHEN settings are loaded
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    # THEN the error names the file, the table and the key, and lists the known options
    message = str(info.value)
    assert str(path) in message
    assert f"[{where}]" in message
    assert key in message
    assert "ttl_deletes" in message


@pytest.mark.parametrize(
    ("option", "value", "choices"),
    [
        ("deletes", '"sometimes"', ["'soft'", "'hard'"]),
        ("ttl_deletes", '"keep"', ["'delete'", "'ignore'"]),
        ("nul", '"drop"', ["'reject'", "'strip'", "'replace'"]),
        ("deletes", "true", ["'soft'", "'hard'"]),
    ],
)
def test_invalid_option_values_list_the_choices(config_file, option, value, choices):
    # GIVEN an option with a value outside its choices
    env, path = config_file(f"[tables.Orders]\n{option} = {value}\n")
    # WHEN settings are loaded
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    # THEN the error names the file, table, option and every valid choice
    message = str(info.value)
    assert str(path) in message
    assert f"[tables.Orders] {option}" in message
    for choice in choices:
        assert choice in message


@pytest.mark.parametrize("option", ["hydrate", "auto_create"])
@pytest.mark.parametrize("value", ['"yes"', "1", '"true"'])
def test_boolean_options_must_be_booleans(config_file, option, value):
    # GIVEN a boolean option given as a string or number
    env, _ = config_file(f"[tables.Orders]\n{option} = {value}\n")
    # WHEN settings are loaded THEN it is an error naming the table and option
    with pytest.raises(ConfigError, match=rf"\[tables\.Orders\] {option} must be true or false"):
        load_settings(env)


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ("tables = 5\n", "'tables'"),
        ('defaults = "soft"\n', "[defaults]"),
        ('[tables]\nOrders = "hard"\n', "[tables.Orders]"),
        ("schema = 5\n", "schema must be a str"),
        ("database_url = 5\n", "database_url must be a str"),
    ],
)
def test_wrongly_shaped_config_files_are_errors_naming_the_file(config_file, toml, fragment):
    # GIVEN a config file whose structure is wrong
    env, path = config_file(toml)
    # WHEN settings are loaded THEN the error names the file and the offending key
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_a_missing_config_file_is_an_error(tmp_path):
    # GIVEN CDC_CONFIG naming a file that does not exist
    missing = tmp_path / "nope.toml"
    # WHEN settings are loaded THEN the error names CDC_CONFIG and the path
    with pytest.raises(ConfigError) as info:
        load_settings({"CDC_CONFIG": str(missing)})
    assert "CDC_CONFIG" in str(info.value)
    assert str(missing) in str(info.value)


def test_an_invalid_toml_file_is_an_error(config_file):
    # GIVEN CDC_CONFIG naming a file that is not TOML
    env, path = config_file("[tables.Orders\ndeletes = hard\n")
    # WHEN settings are loaded THEN the error names CDC_CONFIG and the file
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert "CDC_CONFIG" in str(info.value)
    assert str(path) in str(info.value)


def test_tables_without_an_entry_use_the_defaults(config_file):
    # GIVEN defaults and one configured table
    env, _ = config_file(
        '[defaults]\nttl_deletes = "ignore"\n'
        '[tables.Orders]\ndeletes = "hard"\nttl_deletes = "delete"\n'
    )
    # WHEN options are looked up
    settings = load_settings(env)
    # THEN the configured table gets its own; any other table (names are exact) the defaults
    assert settings.options_for("Orders") == TableOptions(deletes="hard")
    assert settings.options_for("orders") == TableOptions(ttl_deletes="ignore")
    assert settings.defaults == TableOptions(ttl_deletes="ignore")


@pytest.mark.parametrize("dialect_name", ["postgresql", "mysql", "sqlite"])
def test_the_example_mapping_in_the_repository_is_valid(dialect_name):
    # GIVEN the example mapping the README points to
    from pathlib import Path

    from sqlalchemy import MetaData

    from cdc.sql.backends.registry import backend_for
    from cdc.sql.replica import typed_spec

    example = Path(__file__).resolve().parents[2] / "examples" / "mapping.toml"
    # WHEN it is loaded and its typed tables are built for a database
    settings = load_settings({"CDC_CONFIG": str(example)}, default_url="sqlite:///x.db")
    dialect = backend_for(dialect_name)
    orders = typed_spec(settings.tables["Orders"], MetaData(), None, dialect)
    # THEN every declared column is there, keys first, with the options it sets
    assert orders.key_names == ("customer_id", "order_id")
    assert {"total", "city", "extra"} <= set(orders.value_names)
    assert orders.options.deletes == "hard"
    assert settings.tables["AuditLog"].options.ttl_deletes == "ignore"


# --- every setting of the README's table, in one place (issue 12 item 18) -----------------

# A working configuration the cases are laid over: nothing is connected to.
BASE_ENV = {"CDC_DATABASE_URL": "postgresql://cdc@127.0.0.1:1/x", "CDC_SCHEMA": "replica"}


def env_with(case_env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in {**BASE_ENV, **case_env}.items() if v}


@pytest.mark.parametrize("case", bad_cases())
def test_every_invalid_setting_is_one_error_naming_it_and_what_it_accepts(case: Bad) -> None:
    # GIVEN one setting with a value cdc does not accept
    # WHEN settings are loaded
    with pytest.raises(ConfigError) as info:
        load_settings(env_with(case.env))
    # THEN one line names the variable and what it accepts
    message = str(info.value)
    assert case.variable in message
    assert case.accepts in message
    assert "\n" not in message


@pytest.mark.parametrize("case", good_cases())
def test_every_valid_setting_reaches_the_settings(case: Good) -> None:
    # GIVEN one setting with a value cdc accepts (any case where it is a word)
    # WHEN settings are loaded THEN it is there, validated
    assert attribute(load_settings(env_with(case.env)), case.attribute) == case.expected


def test_unset_settings_take_their_defaults() -> None:
    settings = load_settings({"CDC_DATABASE_URL": "postgresql://cdc@127.0.0.1:1/x"})
    assert (settings.log_level, settings.metrics, settings.metrics_namespace) == (
        "INFO",
        "emf",
        "cdc",
    )
    assert settings.service == "cdc"
    assert settings.database == DatabaseOptions()
