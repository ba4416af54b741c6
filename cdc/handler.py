"""The Lambda entry point under its published name, `cdc.handler.handler` (README:
Deployment). The code is in cdc/app/handler.py; like it, importing this module does
no I/O and does not import boto3."""

from cdc.app.handler import handler, replicator, reset

__all__ = ["handler", "replicator", "reset"]
