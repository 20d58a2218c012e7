"""Logs with the request's correlation ids, and secret redaction.

Handlers wrap their work in :func:`log_context` (interaction id, delivery id, run id);
every record logged inside carries those ids. :func:`configure` installs a formatter --
JSON lines (CloudWatch, files, pipes) or, on a terminal, one readable line per record --
that also replaces every configured secret value with ``[redacted]`` as a last line of
defence -- code should never log a secret in the first place. ``VALINE_LOG_FORMAT``
(``json`` or ``text``) forces either.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
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


def redact(
    text: str, secrets: Iterable[str | None] = (), patterns: Iterable[re.Pattern[str]] = ()
) -> str:
    """``text`` with every secret (of 4 or more characters) replaced by ``[redacted]``.

    Longest first, so a secret containing another is redacted whole. Each of ``patterns``
    finds a secret by its place (an interaction token in a URL): its first group is kept
    and the rest of the match replaced.
    """
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "[redacted]")
    for pattern in patterns:
        text = pattern.sub(r"\1[redacted]", text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation ids, extras."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = list(secrets)

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
        return redact(text, self._secrets)


class TextFormatter(JsonFormatter):
    """One readable line per record: ``12:00:01 WARNING valine.x message  key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a line for a person at a terminal, secrets redacted."""
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = {**_context.get()}
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


#: Accepted values of ``VALINE_LOG_FORMAT`` ("auto": text on a terminal, else JSON).
LOG_FORMATS = ("auto", "json", "text")


def configure(
    level: str = "INFO",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    log_format: str = "auto",
) -> None:
    """Send the ``valine`` logger, and the HTTP server's errors, to ``stream`` (stderr).

    ``log_format`` "json" or "text" forces a format; "auto" writes text when ``stream``
    is a terminal and JSON lines otherwise (always on Lambda).
    """
    out = stream or sys.stderr
    text = log_format == "text" or (log_format == "auto" and _is_terminal(out))
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter(secrets) if text else JsonFormatter(secrets))
    # Granian's own logger: its errors only (it warns at every start that embedding it
    # is "experimental"); its access log is never on.
    for name, at in (("valine", level.upper()), ("_granian", "ERROR")):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(at)
        logger.propagate = False
    logging.getLogger("granian.access").disabled = True


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False
