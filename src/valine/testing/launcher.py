"""``valine serve`` with the end-to-end tests' two hooks: ``python -m valine.testing.launcher``.

The product has no test switches; the tests that must cross a timeout or lose a job
start the service through this launcher instead, which builds the same services with
two parts replaced and then serves exactly as ``valine serve`` does:

* ``VALINE_TEST_CLOCK_FILE``: a file holding seconds added to the use cases' clock (a
  missing or empty file means none), so a test moves time past a timeout by writing it;
* ``VALINE_TEST_LOSE_ENQUEUE=ship_run,start_run``: the first enqueue of each listed job
  kind raises ``QueueUnavailable``, as a queue outage right after a save would, so a test
  shows the reconcile carries the run on.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from valine.core.errors import QueueUnavailable
from valine.logs import get_logger
from valine.ports import Clock, JobQueue
from valine.runtime.cli import serve_services
from valine.runtime.config import Settings, local_settings
from valine.runtime.wiring import Services, SystemClock

log = get_logger("valine.testing")

CLOCK_FILE = "VALINE_TEST_CLOCK_FILE"
LOSE_ENQUEUE = "VALINE_TEST_LOSE_ENQUEUE"


class OffsetClock:
    """The wall clock plus the seconds written in a file (re-read on every call)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def now(self) -> float:
        """The wall clock plus the file's offset."""
        try:
            with open(self.path) as file:
                offset = float(file.read().strip() or 0)
        except (OSError, ValueError):
            offset = 0.0
        return time.time() + offset


class LossyQueue:
    """A queue whose first enqueue of each listed job kind is lost (``QueueUnavailable``)."""

    def __init__(self, queue: JobQueue, kinds: set[str]) -> None:
        self._queue = queue
        self._left = set(kinds)
        self._lock = threading.Lock()

    def enqueue(self, kind: str, payload: dict[str, Any], **kw: Any) -> bool:
        """Lose the first enqueue of each listed kind; pass every other one through."""
        with self._lock:
            lose = kind in self._left
            self._left.discard(kind)
        if lose:
            log.warning("test: losing the enqueue of a %s job", kind)
            raise QueueUnavailable(f"test: enqueue of {kind} lost")
        return self._queue.enqueue(kind, payload, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


class HookedServices(Services):
    """The product's services with the use cases' clock and queue replaced as asked."""

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        super().__init__(settings)
        self._clock_file = environ.get(CLOCK_FILE) or None
        kinds = environ.get(LOSE_ENQUEUE) or ""
        self._lose = {kind.strip() for kind in kinds.split(",") if kind.strip()}

    @cached_property
    def clock(self) -> Clock:
        """The offset clock when ``VALINE_TEST_CLOCK_FILE`` is set, else the product's."""
        return OffsetClock(self._clock_file) if self._clock_file else SystemClock()

    @cached_property
    def use_case_queue(self) -> JobQueue:
        """The lossy queue when ``VALINE_TEST_LOSE_ENQUEUE`` is set, else the product's."""
        if not self._lose:
            return self.queue
        lossy: JobQueue = LossyQueue(self.queue, self._lose)
        return lossy


def main(argv: Sequence[str] | None = None) -> int:
    """Serve like ``valine serve [--host] [--port]``, with the hooks the environment asks for."""
    parser = argparse.ArgumentParser(prog="python -m valine.testing.launcher")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    args = parser.parse_args(argv)
    services = HookedServices(local_settings(), os.environ)
    return serve_services(services, args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
