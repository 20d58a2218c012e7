"""The unit of work's commit rules, against a transaction stand-in that answers as
DynamoDB's ``TransactWriteItems`` does (its cancellation reasons, one per item, in order).

The adapters' side (what each write is, and that a replay gives the right refusal) is
tested on DynamoDB Local in ``test_lambda_handlers.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from valine.infra import unit_of_work
from valine.infra.unit_of_work import MAX_ITEMS, UnitCancelled, UnitOfWork, Write


class Cancelled(Exception):
    """Shaped like botocore's ClientError for a cancelled transaction."""

    __module__ = "botocore.exceptions"

    def __init__(self, reasons: list[dict[str, Any]]) -> None:
        super().__init__("TransactionCanceledException")
        self.response = {
            "Error": {"Code": "TransactionCanceledException"},
            "CancellationReasons": reasons,
        }


class Table:
    """Items by key; a put is refused when its key is held (ConditionalCheckFailed)."""

    def __init__(self, conflicts: int = 0) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.calls: list[list[dict[str, Any]]] = []
        self.tokens: list[str] = []
        self.conflicts = conflicts

    def transact(self, *, TransactItems: list[dict[str, Any]], ClientRequestToken: str) -> None:  # noqa: N803
        assert len(TransactItems) <= MAX_ITEMS
        keys = [a["Put"]["Item"]["k"] for a in TransactItems]
        assert len(set(keys)) == len(keys), "one action per item"
        self.calls.append(TransactItems)
        self.tokens.append(ClientRequestToken)
        if self.conflicts:
            self.conflicts -= 1
            raise Cancelled(
                [{"Code": "TransactionConflict"}] + [{"Code": "None"}] * (len(keys) - 1)
            )
        reasons = [
            {"Code": "ConditionalCheckFailed", "Item": self.items[k]}
            if k in self.items and "Condition" in a["Put"]
            else {"Code": "None"}
            for k, a in zip(keys, TransactItems, strict=True)
        ]
        if any(r["Code"] != "None" for r in reasons):
            raise Cancelled(reasons)
        for action in TransactItems:
            self.items[action["Put"]["Item"]["k"]] = action["Put"]["Item"]


def put(key: str, *, conditional: bool = True) -> Write:
    action: dict[str, Any] = {"Put": {"Item": {"k": key}}}
    if conditional:
        action["Put"]["Condition"] = "attribute_not_exists(k)"
    return Write(action, ("t", key))


def test_everything_collected_is_one_transaction_with_a_fresh_token() -> None:
    table = Table()
    unit = UnitOfWork(table.transact)
    for key in "abc":
        assert unit.add(put(key))
    assert table.calls == []
    assert unit.commit()
    assert len(table.calls) == 1 and set(table.items) == {"a", "b", "c"}
    assert len(table.tokens[0]) == 32


def test_a_failed_condition_cancels_everything() -> None:
    table = Table()
    table.items["b"] = {"k": "b"}
    unit = UnitOfWork(table.transact)
    for key in "abc":
        unit.add(put(key))
    assert not unit.commit()
    assert unit.cancelled and set(table.items) == {"b"}
    assert unit_of_work.current() is None


def test_an_alternative_replaces_its_refused_write_and_the_commit_is_retried() -> None:
    table = Table()
    table.items["rate"] = {"k": "rate", "expired": True}
    unit = UnitOfWork(table.transact)

    def restart(old: dict[str, Any] | None) -> dict[str, Any] | None:
        return {"Put": {"Item": {"k": "rate", "uses": 1}}} if old and old["expired"] else None

    unit.add(put("seen"))
    unit.add(Write(put("rate").action, ("t", "rate"), restart))
    assert unit.commit()
    assert len(table.calls) == 2 and table.items["rate"] == {"k": "rate", "uses": 1}
    assert table.tokens[0] != table.tokens[1]


def test_a_transaction_conflict_is_retried_then_given_up() -> None:
    table = Table(conflicts=2)
    unit = UnitOfWork(table.transact)
    unit.add(put("a"))
    assert unit.commit() and len(table.calls) == 3
    stubborn = Table(conflicts=99)
    unit = UnitOfWork(stubborn.transact)
    unit.add(put("a"))
    assert not unit.commit()
    assert len(stubborn.calls) == unit_of_work.CONFLICT_TRIES and stubborn.items == {}


def test_a_full_transaction_is_flushed_and_the_rest_written_at_once() -> None:
    table = Table()
    unit = UnitOfWork(table.transact)
    assert all(unit.add(put(f"k{n}")) for n in range(MAX_ITEMS))
    assert not unit.add(put("one-more"))
    assert unit.immediate and len(table.items) == MAX_ITEMS and len(table.calls) == 1


def test_a_second_write_of_one_item_turns_the_unit_immediate() -> None:
    table = Table()
    unit = UnitOfWork(table.transact)
    assert unit.add(put("a"))
    assert not unit.add(put("a", conditional=False))  # the caller writes it at once
    assert unit.immediate and table.items == {"a": {"k": "a"}}
    assert not unit.add(put("b"))


def test_a_direct_write_flushes_first_and_a_refusal_there_cancels() -> None:
    table = Table()
    table.items["a"] = {"k": "a"}
    unit = UnitOfWork(table.transact)
    unit.add(put("a"))
    with pytest.raises(UnitCancelled):
        unit.direct_write()
    assert unit.cancelled and not unit.commit()


def test_errors_other_than_a_cancellation_propagate() -> None:
    def broken(**_: Any) -> None:
        raise ConnectionError("down")

    unit = UnitOfWork(broken)
    unit.add(put("a"))
    with pytest.raises(ConnectionError):
        unit.commit()


@given(
    st.lists(st.sampled_from("abcdefgh") | st.text("xyz", min_size=2, max_size=4), max_size=150),
    st.sets(st.sampled_from("abcdefgh")),
)
def test_a_unit_commits_one_transaction_at_most_and_a_refusal_writes_nothing(
    keys: list[str], held: set[str]
) -> None:
    """Any sequence of conditional puts (repeated keys, more than 100 items): the unit
    commits at most one transaction; if DynamoDB refuses it, nothing at all is written
    and the unit is cancelled (a replay starts from the state before the interaction);
    what it did not collect, the caller writes at once (the adds that returned False)."""
    table = Table()
    before = {k: {"k": k, "old": True} for k in held}
    table.items = dict(before)
    unit = UnitOfWork(table.transact)
    collected: list[str] = []
    try:
        for key in keys:
            if unit.add(put(key)):
                collected.append(key)
        committed = unit.commit()
    except UnitCancelled:
        committed = False
    assert len(table.calls) <= 1
    if committed:
        assert len(collected) == len(set(collected)) <= MAX_ITEMS
        assert set(table.items) == held | set(collected)
        assert not held & set(collected)
        assert keys[: len(collected)] == collected  # the rest is written at once
    else:
        assert unit.cancelled and table.items == before
        assert held & set(collected)


def test_what_tells_of_an_answer_waits_for_the_unit_and_keeps_its_context() -> None:
    """Outside a unit an observation runs at once; inside one it waits for
    ``tell_answer`` (then runs once, in the context it was recorded in), and a unit
    answered again never tells it: the replay records its own."""
    import contextvars

    told: list[str] = []
    where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="outside")
    unit_of_work.record_answer(lambda: told.append(where.get()))
    assert told == ["outside"]
    with unit_of_work.unit_of_work(Table().transact) as unit:
        token = where.set("inside")
        unit_of_work.record_answer(lambda: told.append(where.get()))
        where.reset(token)
        assert told == ["outside"]
    unit.tell_answer()
    unit.tell_answer()
    assert told == ["outside", "inside"]
    with unit_of_work.unit_of_work(Table().transact) as dropped:
        unit_of_work.record_answer(lambda: told.append("dropped"))
    assert dropped.observations and told == ["outside", "inside"]
