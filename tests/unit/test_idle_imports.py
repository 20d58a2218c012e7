"""What the service loads before its first request: no PyNaCl, no orjson.

PyNaCl (~1.2 MB resident) loads only where the verifier is built (a DISCORD_PUBLIC_KEY is
set), orjson only on the first body of 4 KB or more; so an idle ``valine serve`` without
a Discord key holds neither (docs/benchmarks.md, memory).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import valine

CODE = """\
import sys
import valine.runtime.cli, valine.runtime.server, valine.runtime.wiring
import valine.discord.interactions, valine.github.webhooks
print(sorted(m for m in ("nacl", "orjson") if m in sys.modules))
"""


def test_the_service_modules_load_neither_pynacl_nor_orjson() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(valine.__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
