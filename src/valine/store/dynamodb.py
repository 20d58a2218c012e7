"""The AWS :class:`~valine.ports.RunStore`: runs and the audit trail in DynamoDB.

Written against boto3's low-level client (``boto3.client("dynamodb")``), which is imported
only when a client is built, so importing this module costs nothing on a path that never
touches the store (the Discord PING, whose cold start counts every import).

Table layout
============

:func:`table_definitions` returns the ``CreateTable`` arguments of the store's two tables;
the SAM template mirrors them (and the queue's dedupe table, see :mod:`valine.queue.sqs`;
:mod:`valine.runtime.aws_tables` provisions a whole deployment). Every table is on-demand
(``PAY_PER_REQUEST``). Names are ``{prefix}-runs`` and ``{prefix}-audit``
(:class:`valine.infra.aws.TableNames`); the constructor also takes explicit names.

``{prefix}-runs`` — key ``run_id`` (S). Two kinds of item:

* a **run**: ``run_id``, ``doc`` (``Run.to_dict()`` as JSON, tasks included: one item,
  so one conditional write covers a run and its tasks), ``version`` (N, authoritative
  over the one inside ``doc``), ``repo``, ``state``, ``created_at`` (N), ``kind`` (always
  ``"run"``), ``created_key`` (S, see below) and ``active_repo`` (S, the repository, present
  *only* while the run is active);
* a **lock**: ``run_id = "lock#<repo>"`` and ``holder`` (the id of the repository's one
  active run). A lock has none of the index attributes, so it appears in no index. Run ids
  starting with ``lock#`` are refused.

  GSI ``by_repo``: partition ``repo``, sort ``created_key``, keys only — ``recent_runs(repo)``.
  GSI ``by_time``: partition ``kind``, sort ``created_key``, keys only — ``recent_runs()``
  without a Scan. Every run shares the one ``kind`` partition; runs are created a few
  times a day, far below a partition's write limit.

  ``created_key`` is ``<created_at as 16 sortable hex digits>#<run_id>``: the IEEE-754
  bits of the float, arranged so that string order is numeric order, exactly (no rounding
  of fractions), then the run id, so equal ``created_at`` values order by ``run_id`` as
  the SQLite store does. The indexes project keys only: :meth:`DynamoRunStore.recent_runs`
  reads the runs themselves with a strongly consistent ``BatchGetItem``, so the versions
  it returns are current, and the large ``doc`` is not copied into two indexes.

``{prefix}-audit`` — key ``pk`` (S) + ``sk`` (S). Each entry is written to partition
``all`` and, when it names a run, to ``run#<run_id>`` too, in one transaction, so both
``audit_trail()`` and ``audit_trail(run_id)`` are Queries (newest first,
``ScanIndexForward=False``). ``sk`` is ``<at as sortable hex>#<append sequence>#<random>``:
time order, then the order of appending (a per-process monotonic nanosecond counter).
The ``all`` partition takes every entry; audit writes are a handful per command.

Guarantees
==========

* **Optimistic concurrency.** Every run write is conditional on ``version`` (``version =
  :v``), so of two writers that read the same version exactly one wins, whichever process
  or Lambda they run in.
* **One active run per repository.** Creating an active run puts the repository's lock
  (``attribute_not_exists``) in the same ``TransactWriteItems`` as the run; a run that
  leaves the active states deletes the lock (condition: it holds this run's id) in the
  same transaction as its new state; a terminal run that becomes active again takes the
  lock the same way. A refused lock is reported as ``ActiveRunExists`` naming the holder,
  read from the cancellation reason (``ReturnValuesOnConditionCheckFailure=ALL_OLD``).
* **Strongly consistent hot reads, no Scan.** ``get_run`` and ``active_run`` (the lock,
  then the run it names) are consistent ``GetItem`` calls: a run finished a moment ago
  never shows as active, which a GSI (eventually consistent only) could not promise.
  ``recent_runs`` and ``audit_trail`` are Queries whose cost depends on ``limit``, not on
  how many runs are stored. The module never scans a table.
* **Domain errors only.** Every botocore exception becomes ``StoreUnavailable`` (after
  botocore's own retries, ``standard`` mode), unless it means ``RunConflict``,
  ``ActiveRunExists`` or ``NotFound``.
"""

from __future__ import annotations

import functools
import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ParamSpec, TypeVar

from valine.core.errors import ActiveRunExists, NotFound, RunConflict, StoreUnavailable
from valine.core.models import Run
from valine.infra import unit_of_work
from valine.infra.aws import (
    Item,
    TableNames,
    dynamodb_client,
    error_code,
    exact_number,
    is_botocore_error,
    sortable,
    string_attributes,
)
from valine.infra.sequence import rising_ns
from valine.ports import AuditEntry

LOCK_PREFIX = "lock#"
RUN_KIND = "run"
AUDIT_ALL = "all"
#: ``TransactionConflict`` (another transaction on the same item in flight) is retried this
#: many times, after a short random pause, before the write is reported as a conflict.
TRANSACTION_TRIES = 6
_BATCH_GET_MAX = 100


# -- tables -------------------------------------------------------------------------------


def _keys_only_index(name: str, partition: str, sort: str) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": partition, "KeyType": "HASH"},
            {"AttributeName": sort, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
    }


def table_definitions(prefix: str) -> list[dict[str, Any]]:
    """``CreateTable`` arguments of the store's tables (runs, audit) of deployment ``prefix``.

    The queue's dedupe table is the queue's (:func:`valine.queue.sqs.table_definitions`);
    :mod:`valine.runtime.aws_tables` provisions a whole deployment.
    """
    names = TableNames.from_prefix(prefix)
    runs = {
        "TableName": names.runs,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": string_attributes("run_id", "repo", "kind", "created_key"),
        "KeySchema": [{"AttributeName": "run_id", "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [
            _keys_only_index("by_repo", "repo", "created_key"),
            _keys_only_index("by_time", "kind", "created_key"),
        ],
    }
    audit = {
        "TableName": names.audit,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": string_attributes("pk", "sk"),
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
    }
    return [runs, audit]


# -- encoding -----------------------------------------------------------------------------


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def lock_key(repo: str) -> str:
    """The ``run_id`` of the item holding ``repo``'s lock."""
    return f"{LOCK_PREFIX}{repo}"


def _created_key(run: Run) -> str:
    return f"{sortable(run.created_at)}#{run.run_id}"


def _run_item(run: Run) -> Item:
    """The item of ``run`` (its ``version`` is the one to store)."""
    doc = run.to_dict()
    item: Item = {
        "run_id": _s(run.run_id),
        "doc": _s(json.dumps(doc, separators=(",", ":"), allow_nan=False)),
        "version": {"N": str(run.version)},
        "repo": _s(run.repo),
        "state": _s(run.state.value),
        "created_at": exact_number(run.created_at),
        "kind": _s(RUN_KIND),
        "created_key": _s(_created_key(run)),
    }
    if run.active:
        item["active_repo"] = _s(run.repo)
    return item


def run_items(run: Run) -> list[Item]:
    """The items that hold ``run`` (at its ``version``): the run, and its lock while active.

    What :meth:`DynamoRunStore.create_run` writes (the benchmark's fill writes the same).
    """
    items = [_run_item(run)]
    if run.active:
        items.append(_lock_item(run))
    return items


def _lock_item(run: Run) -> Item:
    return {"run_id": _s(lock_key(run.repo)), "holder": _s(run.run_id)}


def audit_items(entry: AuditEntry, sequence: int) -> list[Item]:
    """The items of one audit entry: in partition ``all`` and, if it names a run, the run's.

    ``sequence`` orders entries with the same ``at`` (the order of appending).
    """
    sk = f"{sortable(entry.at)}#{sequence:020d}#{uuid.uuid4().hex[:8]}"
    item: Item = {
        "sk": _s(sk),
        "at": exact_number(entry.at),
        "actor": _s(entry.actor),
        "action": _s(entry.action),
        "outcome": _s(entry.outcome),
    }
    if entry.run_id is not None:
        item["run_id"] = _s(entry.run_id)
    if entry.detail is not None:
        item["detail"] = _s(entry.detail)
    partitions = [AUDIT_ALL]
    if entry.run_id is not None:
        partitions.append(f"run#{entry.run_id}")
    return [{**item, "pk": _s(pk)} for pk in partitions]


def _decode_run(item: Item) -> Run:
    """The run an item describes; the ``version`` attribute is authoritative."""
    data = json.loads(item["doc"]["S"])
    data["version"] = int(item["version"]["N"])
    return Run.from_dict(data)


# -- errors ---------------------------------------------------------------------------------

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _translated(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Let no botocore exception past the adapter: they become ``StoreUnavailable``."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            if is_botocore_error(exc):
                raise StoreUnavailable(f"state store (DynamoDB) error: {exc}") from exc
            raise

    return wrapper


@dataclass(frozen=True, slots=True)
class _Refusal:
    """Why one write of a (possibly single-item) transaction was refused."""

    code: str  # "ConditionalCheckFailed", "TransactionConflict", "None", ...
    item: Item | None  # the item as it was, when the condition failed and it existed


# -- the store ------------------------------------------------------------------------------


class DynamoRunStore:
    """:class:`~valine.ports.RunStore` on DynamoDB tables (layout in the module docstring).

    Safe to share between threads (botocore clients are), and any number of processes or
    Lambda instances may use the same tables: every guarantee is a DynamoDB condition.
    """

    def __init__(
        self,
        client: Any,
        *,
        runs_table: str,
        audit_table: str,
    ) -> None:
        self._client = client
        self.runs_table = runs_table
        self.audit_table = audit_table

    @classmethod
    def from_url(cls, url: str, endpoint_url: str | None = None) -> DynamoRunStore:
        """A store on the tables of a ``dynamodb://<prefix>`` URL (``{prefix}-runs``...)."""
        scheme = "dynamodb://"
        prefix = url[len(scheme) :] if url.startswith(scheme) else ""
        if not prefix or "/" in prefix:
            raise ValueError(f"not a dynamodb URL with a table prefix: {url!r}")
        names = TableNames.from_prefix(prefix)
        return cls(
            dynamodb_client(endpoint_url),
            runs_table=names.runs,
            audit_table=names.audit,
        )

    @property
    def client(self) -> Any:
        """The DynamoDB client this store uses."""
        return self._client

    def close(self) -> None:
        """Close the client's connection pool."""
        self._client.close()

    # -- runs ---------------------------------------------------------------------------

    @_translated
    def create_run(self, run: Run) -> Run:
        """Store a new run; returns it with ``version`` 1.

        Raises ``RunConflict`` if ``run.run_id`` is taken, else ``ActiveRunExists`` if
        ``run`` is active and its repository already has an active run.
        """
        _check_run_id(run.run_id)
        unit_of_work.before_direct_write()
        stored = replace(run, version=1)
        put_run = {
            "Put": {
                "TableName": self.runs_table,
                "Item": _run_item(stored),
                "ConditionExpression": "attribute_not_exists(run_id)",
            }
        }
        writes = [put_run]
        if run.active:
            writes.append(self._take_lock(run))
        for _ in range(TRANSACTION_TRIES):
            refusals = self._write(writes)
            if refusals is None:
                return stored
            if refusals[0].code == "ConditionalCheckFailed":
                raise RunConflict(f"run id {run.run_id} is already taken")
            if len(refusals) > 1 and refusals[1].code == "ConditionalCheckFailed":
                holder = _holder(refusals[1].item)
                if holder == run.run_id:  # the run's own lock: its id is taken after all
                    raise RunConflict(f"run id {run.run_id} is already taken")
                if holder is not None:
                    raise ActiveRunExists(run.repo, holder)
            _pause()  # a conflicting transaction was in flight, or the lock just went
        raise RunConflict(f"run {run.run_id} could not be created: concurrent writes")

    @_translated
    def get_run(self, run_id: str) -> Run:
        """The stored run (a strongly consistent read); raises ``NotFound``."""
        if run_id.startswith(LOCK_PREFIX):
            raise NotFound(f"no run {run_id}")
        item = self._client.get_item(
            TableName=self.runs_table,
            Key={"run_id": _s(run_id)},
            ConsistentRead=True,
            ProjectionExpression="doc, version",
        ).get("Item")
        if item is None:
            raise NotFound(f"no run {run_id}")
        return _decode_run(item)

    @_translated
    def save_run(self, run: Run) -> Run:
        """Replace the stored run if its version is still ``run.version``.

        Returns the run with ``version + 1``. Raises ``RunConflict`` when the stored
        version differs, ``NotFound`` when there is no such run, and ``ActiveRunExists``
        when ``run`` is active but another run of its repository already is. A run that
        leaves the active states releases its repository's lock in the same transaction.

        The first attempt assumes the stored run is active in ``run.repo`` (the usual
        case: one conditional write, or one transaction when the run finishes); if the
        condition shows otherwise, the write is redone for what is actually stored.
        """
        _check_run_id(run.run_id)
        unit_of_work.before_direct_write()
        stored = replace(run, version=run.version + 1)
        item = _run_item(stored)
        new_lock = run.repo if run.active else None
        prior_lock: str | None = run.repo  # the guess; corrected from the refusal
        for _ in range(TRANSACTION_TRIES):
            writes = self._save_writes(run, item, prior_lock, new_lock)
            refusals = self._write(writes)
            if refusals is None:
                return stored
            first = refusals[0]
            if first.code == "ConditionalCheckFailed":
                if first.item is None:
                    raise NotFound(f"no run {run.run_id}")
                version = int(first.item["version"]["N"])
                if version != run.version:
                    raise RunConflict(
                        f"run {run.run_id} is at version {version}, not {run.version}: "
                        "it changed since it was read"
                    )
                active = first.item.get("active_repo")
                prior_lock = None if active is None else active["S"]
                continue
            for write, refusal in zip(writes[1:], refusals[1:], strict=True):
                if refusal.code != "ConditionalCheckFailed":
                    continue
                if "Delete" in write:
                    raise StoreUnavailable(
                        f"the lock of {prior_lock} is not held by run {run.run_id} although "
                        f"the run is active: the runs table is inconsistent"
                    )
                holder = _holder(refusal.item)
                if holder is not None:
                    raise ActiveRunExists(run.repo, holder)
            _pause()
        raise RunConflict(f"run {run.run_id} could not be saved: concurrent writes")

    @_translated
    def active_run(self, repo: str, *, likely_none: bool = False) -> Run | None:
        """The repository's one active run, if any: its lock, then the run it names.

        Both reads are strongly consistent ``GetItem`` calls on the table's key. With
        ``likely_none`` inside a unit of work, no read: the unit takes a check that the
        lock is absent into its transaction and this answers None (a lock there cancels
        the transaction, and the interaction is answered again, reading it).
        """
        if likely_none and self._lock_checked_at_commit(repo):
            return None
        lock = self._client.get_item(
            TableName=self.runs_table,
            Key={"run_id": _s(lock_key(repo))},
            ConsistentRead=True,
        ).get("Item")
        holder = _holder(lock)
        if holder is None:
            return None
        try:
            run = self.get_run(holder)
        except NotFound:
            return None
        # The run may have finished between the two reads: then the lock is gone too.
        return run if run.active else None

    @_translated
    def recent_runs(self, repo: str | None = None, limit: int = 10) -> Sequence[Run]:
        """Up to ``limit`` runs, newest ``created_at`` first (ties: higher ``run_id`` first).

        Optionally only those of ``repo``. A keys-only index Query, then a consistent
        ``BatchGetItem`` of those runs: the cost depends on ``limit``, not on how many
        runs are stored. The runs returned are their current versions; which runs are
        listed follows the index, which DynamoDB updates a moment after a write (GSIs are
        eventually consistent). A ``limit`` below 1 gives no runs.
        """
        keys = self._recent_keys(repo, limit)
        runs = self._batch_get(keys)
        return [runs[run_id] for run_id in keys if run_id in runs]

    @_translated
    def recent_run_ids(self, repo: str | None = None, limit: int = 10) -> Sequence[str]:
        """The ids of :meth:`recent_runs`, in its order: the keys-only index Query alone,
        without the ``BatchGetItem`` of the runs (the run-id autocomplete lists 25)."""
        return self._recent_keys(repo, limit)

    def _recent_keys(self, repo: str | None, limit: int) -> list[str]:
        """Up to ``limit`` run ids, newest first, from ``by_time`` or ``by_repo``."""
        if limit < 1:
            return []
        if repo is None:
            query = {
                "IndexName": "by_time",
                "KeyConditionExpression": "kind = :k",
                "ExpressionAttributeValues": {":k": _s(RUN_KIND)},
            }
        else:
            query = {
                "IndexName": "by_repo",
                "KeyConditionExpression": "repo = :r",
                "ExpressionAttributeValues": {":r": _s(repo)},
            }
        return [item["run_id"]["S"] for item in self._query(self.runs_table, query, limit)]

    # -- audit --------------------------------------------------------------------------

    @_translated
    def append_audit(self, entry: AuditEntry) -> None:
        """Add one entry: to the ``all`` partition and, if it names a run, to the run's."""
        writes = [
            {"Put": {"TableName": self.audit_table, "Item": item}}
            for item in audit_items(entry, rising_ns())
        ]
        if self._collected(writes):
            return
        for _ in range(TRANSACTION_TRIES):
            if self._write(writes) is None:
                return
            _pause()
        raise StoreUnavailable("audit entry could not be written: concurrent transactions")

    @_translated
    def audit_trail(self, run_id: str | None = None, limit: int = 50) -> Sequence[AuditEntry]:
        """Up to ``limit`` audit entries, newest first, optionally of one run (a Query).

        Entries with the same ``at`` come newest-appended first. A ``limit`` below 1 gives
        no entries.
        """
        if limit < 1:
            return []
        pk = AUDIT_ALL if run_id is None else f"run#{run_id}"
        query = {
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": _s(pk)},
        }
        return [
            AuditEntry(
                at=float(item["at"]["N"]),
                actor=item["actor"]["S"],
                action=item["action"]["S"],
                outcome=item["outcome"]["S"],
                run_id=item["run_id"]["S"] if "run_id" in item else None,
                detail=item["detail"]["S"] if "detail" in item else None,
            )
            for item in self._query(self.audit_table, query, limit)
        ]

    # -- helpers ------------------------------------------------------------------------

    def _collected(self, writes: list[dict[str, Any]]) -> bool:
        """True if the unit of work in progress took ``writes`` (unconditional puts)."""
        unit = unit_of_work.current()
        if unit is None:
            return False
        for write in writes:
            item = write["Put"]["Item"]
            if not unit.add(unit_of_work.Write(write, (self.audit_table, _audit_key(item)))):
                # the unit turned immediate: write the rest (and this one) at once
                return False
        return True

    def _lock_checked_at_commit(self, repo: str) -> bool:
        """True if the unit of work in progress took the check that ``repo`` holds no lock
        (the lock item is absent) into its transaction."""
        unit = unit_of_work.current()
        if unit is None:
            return False
        key = lock_key(repo)
        check = {
            "ConditionCheck": {
                "TableName": self.runs_table,
                "Key": {"run_id": _s(key)},
                "ConditionExpression": "attribute_not_exists(run_id)",
            }
        }
        return unit.add(unit_of_work.Write(check, (self.runs_table, key)))

    def _take_lock(self, run: Run) -> dict[str, Any]:
        """The transaction write that takes ``run.repo``'s lock for ``run`` if it is free."""
        return {
            "Put": {
                "TableName": self.runs_table,
                "Item": _lock_item(run),
                "ConditionExpression": "attribute_not_exists(run_id)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _save_writes(
        self, run: Run, item: Item, prior_lock: str | None, new_lock: str | None
    ) -> list[dict[str, Any]]:
        """The writes that save ``item`` over the stored run at ``run.version``.

        ``prior_lock`` is the repository whose lock the stored run holds (None if it is
        not active), and ``new_lock`` the one ``run`` must hold; the run's condition
        checks ``prior_lock`` as well as the version.
        """
        values: Item = {":v": {"N": str(run.version)}}
        if prior_lock is None:
            condition = "version = :v AND attribute_not_exists(active_repo)"
        else:
            condition = "version = :v AND active_repo = :prior"
            values[":prior"] = _s(prior_lock)
        writes: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.runs_table,
                    "Item": item,
                    "ConditionExpression": condition,
                    "ExpressionAttributeValues": values,
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
        ]
        if prior_lock != new_lock:
            if prior_lock is not None:
                writes.append(
                    {
                        "Delete": {
                            "TableName": self.runs_table,
                            "Key": {"run_id": _s(lock_key(prior_lock))},
                            "ConditionExpression": "holder = :me",
                            "ExpressionAttributeValues": {":me": _s(run.run_id)},
                        }
                    }
                )
            if new_lock is not None:
                writes.append(self._take_lock(run))
        return writes

    def _write(self, writes: list[dict[str, Any]]) -> list[_Refusal] | None:
        """Perform ``writes`` atomically; None if done, else why each was refused.

        One write is a plain conditional put (half the cost of a transaction); several
        are one ``TransactWriteItems``. The refusals are in the order of ``writes``.
        """
        if len(writes) == 1 and "Put" in writes[0]:
            put = dict(writes[0]["Put"])
            put.setdefault("ReturnValuesOnConditionCheckFailure", "ALL_OLD")
            try:
                self._client.put_item(**put)
            except Exception as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
                response = getattr(exc, "response", {})
                return [_Refusal("ConditionalCheckFailed", response.get("Item"))]
            return None
        try:
            self._client.transact_write_items(TransactItems=writes)
        except Exception as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise
            reasons = getattr(exc, "response", {}).get("CancellationReasons")
            if not reasons or len(reasons) != len(writes):
                raise StoreUnavailable(f"transaction cancelled without reasons: {exc}") from exc
            return [_Refusal(str(r.get("Code", "None")), r.get("Item")) for r in reasons]
        return None

    def _query(self, table: str, query: dict[str, Any], limit: int) -> list[Item]:
        """Up to ``limit`` items of a descending Query, following pages if needed."""
        items: list[Item] = []
        start: Item | None = None
        while len(items) < limit:
            page_args = {
                "TableName": table,
                "ScanIndexForward": False,
                "Limit": limit - len(items),
                **query,
            }
            if start is not None:
                page_args["ExclusiveStartKey"] = start
            page = self._client.query(**page_args)
            items.extend(page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if start is None:
                break
        return items[:limit]

    def _batch_get(self, run_ids: list[str]) -> dict[str, Run]:
        """The runs of ``run_ids`` (strongly consistent), by id; missing ones are left out."""
        runs: dict[str, Run] = {}
        for start in range(0, len(run_ids), _BATCH_GET_MAX):
            request: dict[str, Any] = {
                self.runs_table: {
                    "Keys": [
                        {"run_id": _s(rid)} for rid in run_ids[start : start + _BATCH_GET_MAX]
                    ],
                    "ConsistentRead": True,
                    "ProjectionExpression": "run_id, doc, version",
                }
            }
            for attempt in range(8):
                answer = self._client.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.runs_table, []):
                    runs[item["run_id"]["S"]] = _decode_run(item)
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * 2**attempt) * random.random())  # noqa: S311
            else:
                raise StoreUnavailable("DynamoDB kept leaving keys of a BatchGetItem unprocessed")
        return runs


def _audit_key(item: Item) -> str:
    return f"{item['pk']['S']}|{item['sk']['S']}"


def _holder(lock: Item | None) -> str | None:
    """The run id a lock item names, if there is a lock."""
    if not lock or "holder" not in lock:
        return None
    return str(lock["holder"]["S"])


def _check_run_id(run_id: str) -> None:
    if run_id.startswith(LOCK_PREFIX):
        raise ValueError(f"run ids must not start with {LOCK_PREFIX!r}: {run_id!r}")


def _pause() -> None:
    """A short random pause before a write that met a concurrent transaction is redone."""
    time.sleep(random.uniform(0.005, 0.05))  # noqa: S311 - jitter, not security
