"""AWS helpers shared by the DynamoDB store and the SQS queue: clients, errors, encodings.

Nothing here imports boto3 or botocore at module level (the Discord PING's cold start
never pays for them): clients and their ``Config`` are built on first use, and botocore's
exceptions are recognised by their module instead of being imported.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

#: Attribute values of the low-level DynamoDB client: ``{"S": "..."}``, ``{"N": "1.5"}``...
Item = dict[str, dict[str, Any]]

#: Per-request timeouts (seconds) and retries of every AWS client the service builds.
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 5.0
MAX_ATTEMPTS = 3


def client_config() -> Any:
    """botocore ``Config`` for AWS clients: modest timeouts, ``standard`` retries."""
    from botocore.config import Config

    return Config(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
    )


def dynamodb_client(endpoint_url: str | None = None, region_name: str | None = None) -> Any:
    """A low-level DynamoDB client (boto3 is imported here, on first use).

    ``endpoint_url`` None means boto3's usual resolution (``AWS_ENDPOINT_URL_DYNAMODB``,
    then AWS itself).
    """
    import boto3

    return boto3.client(
        "dynamodb", endpoint_url=endpoint_url, region_name=region_name, config=client_config()
    )


@dataclass(frozen=True, slots=True)
class TableNames:
    """The names of the DynamoDB tables of one deployment: the store's two, the queue's
    dedupe keys and its job outbox."""

    runs: str
    audit: str
    dedupe: str
    outbox: str = ""

    @classmethod
    def from_prefix(cls, prefix: str) -> TableNames:
        """``{prefix}-runs``, ``{prefix}-audit``, ``{prefix}-dedupe``, ``{prefix}-outbox``."""
        return cls(f"{prefix}-runs", f"{prefix}-audit", f"{prefix}-dedupe", f"{prefix}-outbox")


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (None for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code is not None else None


def is_botocore_error(exc: BaseException) -> bool:
    """True for botocore's exceptions (``ClientError`` and its generated subclasses,
    connection and timeout errors), told apart without importing botocore."""
    return type(exc).__module__.split(".")[0] == "botocore"


def sortable(value: float) -> str:
    """16 hex digits whose string order is the numeric order of ``value``, exactly."""
    (bits,) = struct.unpack(">Q", struct.pack(">d", value))
    bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | (1 << 63)
    return f"{bits:016x}"


def exact_number(value: float) -> dict[str, str]:
    """A DynamoDB number holding ``value`` exactly (``repr`` round-trips a float)."""
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return {"N": repr(float(value))}


def string_attributes(*names: str) -> list[dict[str, str]]:
    """``AttributeDefinitions`` of string keys."""
    return [{"AttributeName": name, "AttributeType": "S"} for name in names]


def expiring_item(key_attribute: str, key: str, expires_at: float) -> Item:
    """An item that expires at ``expires_at``: exact ``expires_at`` plus whole-second ``ttl``.

    DynamoDB's TTL is documented for whole epoch seconds, hence the separate attribute;
    conditions compare the exact ``expires_at``.
    """
    return {
        key_attribute: {"S": key},
        "expires_at": exact_number(expires_at),
        "ttl": {"N": str(math.ceil(expires_at))},
    }


def claim_key(
    client: Any,
    table: str,
    key_attribute: str,
    key: str,
    *,
    expires_at: float,
    now: float,
    extra: Item | None = None,
) -> bool:
    """Put ``key`` into ``table`` unless a record that has not expired (at ``now``) holds it.

    True if written. An expired record (``expires_at <= now``) counts as absent, since TTL
    deletes lazily (typically within two days). One conditional put
    (``attribute_not_exists OR expires_at <= :now``). Raises botocore's exceptions
    (callers translate them).
    """
    item = expiring_item(key_attribute, key, expires_at)
    if extra:
        item.update(extra)
    try:
        client.put_item(
            TableName=table,
            Item=item,
            ConditionExpression="attribute_not_exists(#k) OR expires_at <= :now",
            ExpressionAttributeNames={"#k": key_attribute},
            ExpressionAttributeValues={":now": exact_number(now)},
        )
    except Exception as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True
