"""log_context: ids attached inside the block, restored on leaving it (also on an error)."""

from __future__ import annotations

import contextlib

import pytest

from valine import logs


def test_nested_contexts_merge_and_restore_even_on_an_error() -> None:
    before = dict(logs.context_ids())
    with logs.log_context(run_id="r1"):
        assert logs.context_ids()["run_id"] == "r1"
        with pytest.raises(RuntimeError), logs.log_context(delivery_id="d-1"):
            assert dict(logs.context_ids()) == {**before, "run_id": "r1", "delivery_id": "d-1"}
            raise RuntimeError("inside")
        assert dict(logs.context_ids()) == {**before, "run_id": "r1"}
    assert dict(logs.context_ids()) == before


def test_ids_are_kept_as_strings() -> None:
    with logs.log_context(attempt=3):  # type: ignore[arg-type]
        assert logs.context_ids()["attempt"] == "3"


def test_entering_costs_no_generator_frame() -> None:
    """Entered on every request: a small class, not a ``contextmanager`` generator."""
    manager = logs.log_context(run_id="r1")
    assert not isinstance(manager, contextlib._GeneratorContextManager)
