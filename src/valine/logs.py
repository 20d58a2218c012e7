"""Structured JSON logs with the request's correlation ids, and secret redaction.

Handlers wrap their work in :func:`log_context` (interaction id, delivery id, run id);
every record logged inside carries those ids. :func:`configure` installs a JSON formatter
that also replaces every configured secret value with ``[redacted]`` as a last line of
defence -- code should never log a secret in the first place.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, TextIO

_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "valine_log_context", default=MappingProxyType({})
)

# Attributes every LogRecord has; anything else passed with ``extra=`` is logged too.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


@contextmanager
def log_context(**ids: str) -> Iterator[None]:
    """Attach correlation ids to every record logged inside the ``with`` block."""
    token = _context.set({**_context.get(), **{k: str(v) for k, v in ids.items()}})
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation ids, extras."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first so a secret containing another is redacted whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line, secrets redacted."""
        document: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_context.get(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(document, default=str))

    def redact(self, text: str) -> str:
        """``text`` with every configured secret replaced by ``[redacted]``."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text


def configure(
    level: str = "INFO", secrets: Iterable[str] = (), stream: TextIO | None = None
) -> None:
    """Send the ``valine`` and ``uvicorn`` loggers to ``stream`` as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    for name in ("valine", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True
