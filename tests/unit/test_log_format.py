"""Logs: readable lines on a terminal, JSON lines otherwise; VALINE_LOG_FORMAT forces either."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from valine import logs
from valine.core.errors import ConfigurationError
from valine.runtime.config import Settings


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    logs.configure("INFO", (), io.StringIO())


def _log_one(stream: io.StringIO, log_format: str = "auto") -> str:
    logs.configure("INFO", ["sekrit-value"], stream, log_format=log_format)
    with logs.log_context(run_id="r20990101-abcdef"):
        logging.getLogger("valine.test").warning(
            "webhook %s refused with sekrit-value", "d-1", extra={"status": 401}
        )
    return stream.getvalue()


def test_a_terminal_gets_one_readable_line_with_the_ids() -> None:
    line = _log_one(Terminal()).rstrip("\n")
    assert "\n" not in line
    assert " WARNING valine.test webhook d-1 refused with [redacted]" in line
    assert line.endswith("run_id=r20990101-abcdef status=401")
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_a_pipe_gets_json_lines() -> None:
    record = json.loads(_log_one(io.StringIO()))
    assert record["level"] == "warning"
    assert record["run_id"] == "r20990101-abcdef"
    assert record["message"] == "webhook d-1 refused with [redacted]"


@pytest.mark.parametrize(("forced", "is_json"), [("json", True), ("text", False)])
def test_the_format_can_be_forced(forced: str, is_json: bool) -> None:
    stream: io.StringIO = Terminal() if is_json else io.StringIO()
    out = _log_one(stream, forced)
    assert out.startswith("{") is is_json
    assert "sekrit-value" not in out


def test_a_text_line_shows_the_exception() -> None:
    stream = Terminal()
    logs.configure("INFO", (), stream)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("valine.test").exception("job failed")
    out = stream.getvalue()
    assert "ERROR   valine.test job failed" in out
    assert "ValueError: boom" in out


def test_an_unknown_format_stops_start_up() -> None:
    assert Settings.from_env({"VALINE_LOG_FORMAT": "text"}).log_format == "text"
    with pytest.raises(ConfigurationError, match="VALINE_LOG_FORMAT must be auto, json or text"):
        Settings.from_env({"VALINE_LOG_FORMAT": "pretty"})


DEFERRED = """\
import sys
from valine import logs
from valine.runtime import wiring  # a module with a logger, as a Lambda handler loads it
logs.configure("INFO", ["sekrit-value"], sys.stdout, log_format="json")
before = "logging" in sys.modules
with logs.log_context(run_id="r20990101-abcdef"):
    wiring.log.warning("refused with sekrit-value")
sys.stdout.write(f"logging loaded before the record: {before}\\n")
"""


def test_logging_loads_with_the_first_record_and_then_takes_the_configuration() -> None:
    """In a process that has not loaded :mod:`logging` (a cold Lambda, unlike the
    runtime's own), ``configure`` waits for the first record: until then nothing loads
    it, and that record is formatted, redacted and carries the ids as ever."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", DEFERRED], capture_output=True, text=True, check=True, timeout=60
    )
    record_line, verdict = done.stdout.splitlines()
    assert verdict == "logging loaded before the record: False"
    record = json.loads(record_line)
    assert record["message"] == "refused with [redacted]"
    assert (record["logger"], record["run_id"]) == ("valine.runtime", "r20990101-abcdef")
    assert done.stderr == ""
