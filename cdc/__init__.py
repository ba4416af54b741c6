"""cdc: replicate DynamoDB Streams into relational databases.

Every stream record becomes a row version (table, key, sequence number, deleted?, item)
applied with an idempotent upsert guarded by the sequence number, so duplicates, replays
and out-of-order deliveries cannot make the replica wrong.
"""

__version__ = "0.1.0"
