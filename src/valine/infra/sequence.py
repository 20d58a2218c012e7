"""A nanosecond clock that only rises within the process: ids made one after another sort
in the order they were made (the SQLite queue's job ids, the audit entries' sort keys)."""

from __future__ import annotations

import time
from _thread import allocate_lock  # threading.Lock itself, without importing threading

_lock = allocate_lock()
_last = [0]


def rising_ns() -> int:
    """Nanoseconds since the epoch, strictly greater than the last answer in this process
    (from any thread), even where the clock is coarse or steps back."""
    with _lock:
        _last[0] = max(_last[0] + 1, time.time_ns())
        return _last[0]
