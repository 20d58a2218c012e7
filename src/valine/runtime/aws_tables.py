"""Every DynamoDB table of one deployment: the store's (runs, audit) and the queue's
(dedupe, and the job outbox with its stream).

AWS creates them from ``template.yaml`` (``tests/unit/test_template.py`` checks that the
template mirrors :func:`table_definitions`); tests and local trials create them here.
"""

from __future__ import annotations

import time
from typing import Any

from valine.infra.aws import error_code
from valine.queue import outbox, sqs
from valine.store import dynamodb


def table_definitions(prefix: str) -> list[dict[str, Any]]:
    """``CreateTable`` arguments of every table of the deployment ``prefix``."""
    return (
        dynamodb.table_definitions(prefix)
        + sqs.table_definitions(prefix)
        + outbox.table_definitions(prefix)
    )


def time_to_live_definitions(prefix: str) -> list[dict[str, Any]]:
    """``UpdateTimeToLive`` arguments of every table of ``prefix`` that expires items."""
    return sqs.time_to_live_definitions(prefix) + outbox.time_to_live_definitions(prefix)


def create_tables(client: Any, prefix: str, *, timeout: float = 60.0) -> None:
    """Create every table of ``prefix`` and enable TTL (tests and local use; AWS uses SAM).

    Waits until each table is ``ACTIVE`` (instant on DynamoDB Local).
    """
    for definition in table_definitions(prefix):
        client.create_table(**definition)
    deadline = time.monotonic() + timeout
    for definition in table_definitions(prefix):
        while True:
            table = client.describe_table(TableName=definition["TableName"])["Table"]
            indexes = table.get("GlobalSecondaryIndexes", [])
            if table["TableStatus"] == "ACTIVE" and all(
                index["IndexStatus"] == "ACTIVE" for index in indexes
            ):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"table {definition['TableName']} is not ACTIVE yet")
            time.sleep(0.2)
    for ttl in time_to_live_definitions(prefix):
        client.update_time_to_live(**ttl)


def delete_tables(client: Any, prefix: str) -> None:
    """Delete every table of ``prefix`` (tests); tables already gone are skipped."""
    for definition in table_definitions(prefix):
        try:
            client.delete_table(TableName=definition["TableName"])
        except Exception as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
