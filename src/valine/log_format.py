"""The log formatters :func:`valine.logs.configure` installs: JSON lines, or a readable
line per record on a terminal; both carry the correlation ids and redact secrets (both
given by :mod:`valine.logs`, which loads this module with :mod:`logging`)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

# Attributes every LogRecord has; anything else passed with ``extra=`` is logged too.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation ids, extras."""

    def __init__(
        self, redact: Callable[[str], str], context_ids: Callable[[], Mapping[str, str]]
    ) -> None:
        """``redact`` replaces the secrets in a line; ``context_ids`` gives the ids."""
        super().__init__()
        self.redact = redact
        self._context_ids = context_ids

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line, secrets redacted."""
        document: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **self._context_ids(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(document, default=str))


class TextFormatter(JsonFormatter):
    """One readable line per record: ``12:00:01 WARNING valine.x message  key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a line for a person at a terminal, secrets redacted."""
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = {**self._context_ids()}
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                fields[key] = value
        line = f"{when} {record.levelname:<7} {record.name} {record.getMessage()}"
        if fields:
            line += "  " + " ".join(f"{k}={_plain(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return self.redact(line)


def _plain(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if text and " " not in text else json.dumps(text)
