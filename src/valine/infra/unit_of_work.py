"""One DynamoDB transaction for the writes of one Discord interaction (the AWS runtime).

A deferred command on Lambda used to make one DynamoDB call per write: the interaction
id's claim, the caller's rate limit, the job's dedupe key, the audit entry. Inside a
:class:`UnitOfWork` the DynamoDB adapters (``store.dynamodb``, ``queue.sqs``,
``queue.outbox``) do not write: they *collect* each write as a transaction item and
answer as if it had succeeded (a claim answers "claimed"). Before the interaction is
answered, :meth:`UnitOfWork.commit` writes everything in **one** ``TransactWriteItems``.

The design is optimistic, in the style of an idempotency layer (the logic here, a
backend supplies the few writes):

* If the transaction is **cancelled** because a condition failed -- a duplicate
  interaction, a caller over the rate limit, a refusal already audited, a job already
  enqueued -- nothing was written. A write may offer an *alternative* for its refusal
  (a rate counter that has expired restarts at 1): if every refused write has one, the
  transaction is retried with them. Otherwise the unit is :attr:`~UnitOfWork.cancelled`
  and the runtime answers the interaction again on the immediate path (every write at
  once, as before), which gives the right refusal. Interaction handlers never call
  GitHub or Discord (``valine.usecases``), so running one twice has no other effect;
  :func:`forbid_outside_calls` makes a client call inside a unit an error.
* A write the unit cannot collect (saving a run: conditional on its version, read back
  on a conflict) first **flushes** what was collected (a cancellation there still
  replays), then the unit turns *immediate*: the rest of the interaction writes at once.
* ``TransactionConflict`` (another transaction on one of the items) is retried a few
  times after a short pause, then replayed on the immediate path too.
* DynamoDB's rules: at most 100 items and one action per item (a 101st item, or a second
  write of one key, flushes the unit and turns it immediate), 4 MB in all;
  ``ClientRequestToken`` makes botocore's own retries of one commit idempotent for 10
  minutes.

The unit in progress is a context variable: :func:`current` is None outside one, so the
local runtime (SQLite) and every other Lambda path are unchanged. Standard library only
at import time: the Discord PING loads this module.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from valine.logs import get_logger

log = get_logger("valine.unit_of_work")

#: DynamoDB's limit of items in one ``TransactWriteItems``.
MAX_ITEMS = 100
#: How many times a commit that met ``TransactionConflict`` is tried before replaying.
CONFLICT_TRIES = 4

Item = dict[str, dict[str, Any]]
#: The item a refused write offers instead, given the item as it was (None: refused).
Alternative = Callable[[Item | None], dict[str, Any] | None]


class UnitCancelled(Exception):
    """The unit's transaction was refused: the interaction must be answered again."""


class OutsideCall(RuntimeError):
    """A handler inside a unit of work called GitHub or Discord (a replay would repeat it)."""


class Write:
    """One transaction item (``{"Put": ...}``, ``{"Update": ...}``...) and its key.

    ``key`` is (table, key value): DynamoDB allows one action per item. A plain class,
    not a dataclass: the PING's cold start imports this module.
    """

    __slots__ = ("action", "alternative", "key")

    def __init__(
        self,
        action: dict[str, Any],
        key: tuple[str, str],
        alternative: Alternative | None = None,
    ) -> None:
        self.action = action
        self.key = key
        self.alternative = alternative


class UnitOfWork:
    """The writes of one interaction, committed together (see the module docstring).

    ``transact`` performs one ``TransactWriteItems`` (keyword arguments as botocore's
    client takes them).
    """

    def __init__(self, transact: Callable[..., Any]) -> None:
        self.transact = transact
        self.pending: list[Write] = []
        self.immediate = False
        self.cancelled = False
        self.flushed = False
        #: ``TransactWriteItems`` calls made (retries included).
        self.commits = 0
        #: What waits for the commit (sending a job to SQS), run by the runtime.
        self.after_commit: list[Callable[[], None]] = []
        #: What tells of the answer (a metric, a log line), each in the context it was
        #: recorded in: run once the answer stands, dropped when the interaction is
        #: answered again (the replay tells its own), see :func:`record_answer`.
        self.observations: list[Callable[[], None]] = []

    @property
    def collecting(self) -> bool:
        """True while writes are collected (not cancelled, not turned immediate)."""
        return not self.immediate and not self.cancelled

    def add(self, write: Write) -> bool:
        """Collect ``write``; False (nothing collected) when the unit writes at once: it
        is immediate, or the same item is already in the transaction (DynamoDB allows one
        action per item), or the transaction is full (100 items). In the last two cases
        what was collected is flushed first and the unit turns immediate, so a unit
        commits at most one transaction and only that one can be cancelled: a replay
        never meets writes of its own first attempt."""
        if not self.collecting:
            return False
        if len(self.pending) >= MAX_ITEMS or any(w.key == write.key for w in self.pending):
            self.direct_write()
            return False
        self.pending.append(write)
        return True

    def direct_write(self) -> None:
        """Called before a write the unit cannot collect: flush, then write at once."""
        if self.immediate or self.cancelled:
            return
        self.flush()
        self.immediate = True

    def flush(self) -> None:
        """Commit what is collected so far; raises :class:`UnitCancelled` if refused."""
        if self.cancelled:
            raise UnitCancelled("the unit of work was cancelled")
        if not self.pending:
            return
        writes, self.pending = self.pending, []
        if not self._commit(writes):
            self.cancelled = True
            raise UnitCancelled("a condition of the interaction's transaction failed")
        self.flushed = True

    def commit(self) -> bool:
        """Commit the rest; False if the unit is (or now becomes) cancelled."""
        try:
            self.flush()
        except UnitCancelled:
            return False
        return True

    def run_after_commit(self) -> None:
        """Run the actions that wait for the commit (each once; the first error raises)."""
        actions, self.after_commit = self.after_commit, []
        for action in actions:
            action()

    def tell_answer(self) -> None:
        """Run what tells of the answer (each once; an error is logged, not raised)."""
        observations, self.observations = self.observations, []
        for observation in observations:
            try:
                observation()
            except Exception:  # telling of an answer must never change it
                log.warning("could not record the interaction's answer", exc_info=True)

    def _commit(self, writes: list[Write]) -> bool:
        """One transaction of ``writes`` (retried with alternatives or after conflicts)."""
        # Here, not at the top: every Discord request opens a unit, a PING too, and
        # uuid and random cost a PING's cold start more than the rest of this module.
        import random
        import uuid

        from valine.infra.aws import error_code

        for _ in range(CONFLICT_TRIES):
            self.commits += 1
            try:
                self.transact(
                    TransactItems=[w.action for w in writes],
                    ClientRequestToken=uuid.uuid4().hex,
                )
                return True
            except Exception as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise
                reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
            if len(reasons) != len(writes):
                raise RuntimeError("a cancelled transaction came without its reasons")
            codes = {str(r.get("Code", "None")) for r in reasons} - {"None"}
            if codes == {"TransactionConflict"}:
                time.sleep(random.uniform(0.005, 0.05))  # noqa: S311 - jitter
                continue
            if codes != {"ConditionalCheckFailed"}:
                log.warning("interaction transaction cancelled: %s", sorted(codes))
                return False
            retried = _alternatives(writes, reasons)
            if retried is None:
                return False
            writes = retried
        return False


def _alternatives(writes: list[Write], reasons: list[dict[str, Any]]) -> list[Write] | None:
    """``writes`` with each refused one replaced by its alternative; None if one has none."""
    replaced: list[Write] = []
    for write, reason in zip(writes, reasons, strict=True):
        if reason.get("Code") != "ConditionalCheckFailed":
            replaced.append(write)
            continue
        action = write.alternative(reason.get("Item")) if write.alternative else None
        if action is None:
            return None
        replaced.append(Write(action, write.key))
    return replaced


_CURRENT: contextvars.ContextVar[UnitOfWork | None] = contextvars.ContextVar(
    "valine_unit_of_work", default=None
)


def current() -> UnitOfWork | None:
    """The unit of work collecting this context's writes, or None (write at once)."""
    unit = _CURRENT.get()
    return unit if unit is not None and unit.collecting else None


def before_direct_write() -> None:
    """Flush the current unit (if any) before a write it cannot collect."""
    unit = _CURRENT.get()
    if unit is not None:
        unit.direct_write()


def record_answer(observation: Callable[[], None]) -> None:
    """Run ``observation`` (a metric, a log line of the interaction) now, or, inside a
    unit of work, once the answer stands.

    An interaction whose unit is cancelled is answered again on the immediate path, which
    records its own: what the first attempt recorded is dropped with it, so an
    interaction is counted and logged once, whichever path answers it. The observation
    runs in a copy of this context (its log correlation ids).
    """
    unit = _CURRENT.get()
    if unit is None:
        observation()
        return
    context = contextvars.copy_context()
    unit.observations.append(lambda: context.run(observation))


@contextmanager
def unit_of_work(transact: Callable[..., Any]) -> Iterator[UnitOfWork]:
    """Collect this context's DynamoDB writes into one unit (commit it before leaving)."""
    unit = UnitOfWork(transact)
    token = _CURRENT.set(unit)
    try:
        yield unit
    finally:
        _CURRENT.reset(token)


def forbid_outside_calls(service: str) -> None:
    """Raise :class:`OutsideCall` if a unit of work is open in this context.

    The runtime calls it before handing out its GitHub or Discord client: a handler that
    could be replayed must not call them (usecases/__init__.py), and this makes that a
    rule the code keeps, not a promise.
    """
    unit = _CURRENT.get()
    if unit is not None and not unit.cancelled:
        raise OutsideCall(f"{service} called while an interaction's unit of work is open")
