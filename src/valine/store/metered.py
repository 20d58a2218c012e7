"""A RunStore that measures what its saves mean (runs and tasks ended, their durations).

It wraps the real store for the use cases: every run read is remembered by its id and
version, so a save knows the run it replaces without another read, and
:func:`valine.core.measures.run_measurements` says what the change means. Everything
else is passed through untouched.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from valine import metrics
from valine.core.measures import run_measurements
from valine.core.models import Run
from valine.ports import AuditEntry, RunStore

#: Runs remembered by (run_id, version): enough for every save in flight.
REMEMBERED = 256


class MeteredRunStore:
    """``store`` plus metrics of every saved change."""

    def __init__(self, store: RunStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[str, int], Run] = OrderedDict()

    def create_run(self, run: Run) -> Run:
        """Store a new run (counted as planned)."""
        created = self._store.create_run(run)
        self._measure(None, created)
        return self._remember(created)

    def get_run(self, run_id: str) -> Run:
        """The stored run, remembered for the save that may follow."""
        return self._remember(self._store.get_run(run_id))

    def save_run(self, run: Run) -> Run:
        """Save conditionally, then record what changed against the run it replaces."""
        saved = self._store.save_run(run)
        with self._lock:
            before = self._seen.get((run.run_id, run.version))
        if before is not None:
            self._measure(before, saved)
        return self._remember(saved)

    def active_run(self, repo: str, *, likely_none: bool = False) -> Run | None:
        """The repository's active run, remembered."""
        run = self._store.active_run(repo, likely_none=likely_none)
        return None if run is None else self._remember(run)

    def recent_runs(self, repo: str | None = None, limit: int = 10) -> Sequence[Run]:
        """Recent runs, each remembered."""
        return [self._remember(run) for run in self._store.recent_runs(repo, limit)]

    def recent_run_ids(self, repo: str | None = None, limit: int = 10) -> Sequence[str]:
        """Passed through (ids only: nothing to remember)."""
        return self._store.recent_run_ids(repo, limit)

    def append_audit(self, entry: AuditEntry) -> None:
        """Passed through."""
        self._store.append_audit(entry)

    def audit_trail(self, run_id: str | None = None, limit: int = 50) -> Sequence[AuditEntry]:
        """Passed through."""
        return self._store.audit_trail(run_id, limit)

    def _remember(self, run: Run) -> Run:
        with self._lock:
            self._seen[(run.run_id, run.version)] = run
            self._seen.move_to_end((run.run_id, run.version))
            while len(self._seen) > REMEMBERED:
                self._seen.popitem(last=False)
        return run

    @staticmethod
    def _measure(before: Run | None, after: Run) -> None:
        for found in run_measurements(before, after):
            if found.name.startswith(("run_", "task_")):
                metrics.seconds(found.name, found.value, **dict(found.dimensions))
            else:
                metrics.count(found.name, found.value, **dict(found.dimensions))
