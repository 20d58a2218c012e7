"""Stand-ins of the outside world (GitHub, Discord) for tests, demos and local runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


def wait_for(what: str, probe: Callable[[], _T | None], timeout: float = 20.0) -> _T:
    """Poll ``probe`` every 50 ms until it returns something truthy; TimeoutError after."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")
