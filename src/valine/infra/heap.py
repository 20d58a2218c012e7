"""The process's heap at start-up: the cyclic collector paused while it loads, then frozen.

A Lambda container's first request loads nearly everything it will ever hold: the
modules, botocore and its service models, the settings and the clients. While that is
being built, the cyclic garbage collector runs again and again over objects that will
live as long as the container (on a cold deferred command, 117 young and 9 middle
collections, ~13 ms of ~200 ms; the floor's plain boto3 script spends ~30 ms so,
docs/benchmarks.md). Pausing it for the first request and then freezing the heap
(``gc.freeze``: what exists now is never walked again) skips that work for good.

Reference counting frees objects as always; only reference cycles that became garbage
during the first request are kept (frozen), once per process. Only requests bounded in
time and size use :func:`start_up` (an HTTP request: Discord's 3 seconds, API Gateway's
29), never a worker's batch of jobs, whose garbage is not bounded.

Standard library only, and nothing imported: a PING's cold start counts every import.
"""

from __future__ import annotations

import gc

#: Not empty once the heap was frozen in this process (it is frozen once only).
_FROZEN: list[bool] = []
#: Not empty once a start-up was begun in this process (the first request only).
_STARTED: list[bool] = []


def freeze_once() -> None:
    """Freeze the heap (``gc.freeze``), the first time this is called in the process only."""
    if not _FROZEN:
        _FROZEN.append(True)
        gc.freeze()


def start_up() -> bool:
    """Begin the process's start-up: pause the cyclic collector until :func:`started`.

    Only the first call in a process, with the collector on, pauses it and returns True;
    every other returns False and changes nothing. A True answer must be followed by
    :func:`started`, in a ``finally``.
    """
    if _STARTED or not gc.isenabled():
        return False
    _STARTED.append(True)
    gc.disable()
    return True


def started() -> None:
    """End the start-up :func:`start_up` began: freeze what was built, resume collecting."""
    _FROZEN.append(True)
    gc.freeze()
    gc.enable()
