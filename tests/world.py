"""The end-to-end world (the stand-ins and ``valine serve``): :mod:`valine.testing.world`.

It lives in the testing kit so the proving ground drives the same world without
reaching into ``tests/``; the tests import it from here.
"""

from __future__ import annotations

from valine.testing import wait_for
from valine.testing.world import (
    DEFAULT_CONFIG,
    GUILD,
    REPO,
    World,
    button,
    start_world,
    stop_world,
    world_env,
)

__all__ = [
    "DEFAULT_CONFIG",
    "GUILD",
    "REPO",
    "World",
    "button",
    "start_world",
    "stop_world",
    "wait_for",
    "world_env",
]
