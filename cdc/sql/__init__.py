"""The SQL side: replicator, writer, replica and bookkeeping tables, migrations glue, and
one backend per database (cdc/sql/backends). Importing it registers the backends, which
is how the configuration (cdc.config.databases) learns what each database supports."""

from cdc.sql.backends import registry as _registry

_registry.load()
