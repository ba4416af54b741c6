"""Kinesis Data Streams for DynamoDB: Lambda's `aws:kinesis` records carrying a table's
changes (README: Kinesis Data Streams)."""
