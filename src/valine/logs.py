"""Logs with the request's correlation ids, and secret redaction.

Handlers wrap their work in :func:`log_context` (interaction id, delivery id, run id);
every record logged inside carries those ids. :func:`configure` installs a formatter --
JSON lines (CloudWatch, files, pipes) or, on a terminal, one readable line per record --
that also replaces every configured secret value with ``[redacted]`` as a last line of
defence -- code should never log a secret in the first place. ``VALINE_LOG_FORMAT``
(``json`` or ``text``) forces either.

Every module takes its logger from :func:`get_logger`, which loads :mod:`logging` (and
applies :func:`configure`'s settings) with the first record: a request that logs
nothing -- a Discord PING on a cold Lambda -- does not pay for importing it. This module
itself imports no more than the correlation ids need; the formatters are in
:mod:`valine.log_format`.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TextIO, cast

if TYPE_CHECKING:
    import logging
    import re

_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "valine_log_context", default=MappingProxyType({})
)


class log_context:  # noqa: N801 - used as a function: ``with log_context(...)``
    """Attach correlation ids to every record logged inside the ``with`` block.

    A small class rather than a ``contextmanager`` generator: it is entered on every
    request, and the generator's frame and wrapper cost the event loop about twice as
    much (see docs/benchmarks.md, "Where the time goes").
    """

    __slots__ = ("_ids", "_token")

    def __init__(self, **ids: str) -> None:
        self._ids = {k: str(v) for k, v in ids.items()}
        self._token: contextvars.Token[Mapping[str, str]] | None = None

    def __enter__(self) -> None:
        self._token = _context.set({**_context.get(), **self._ids})

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _context.reset(self._token)
            self._token = None


def context_ids() -> Mapping[str, str]:
    """The correlation ids attached where this is called (:func:`log_context`)."""
    return _context.get()


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


class _DeferredLogger:
    """A module's logger that imports :mod:`logging` only when it is first used.

    The first attribute asked for (``log.info``, ``log.warning`` ...) loads the real
    logger, applies a pending :func:`configure`, and binds the real logger's attributes
    here, so later calls cost what a plain logger's do.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attribute: str) -> Any:
        logger = _logger(self.name)
        self.__dict__.update(
            (name, getattr(logger, name))
            for name in ("debug", "info", "warning", "error", "exception", "critical", "log")
        )
        self.__dict__["isEnabledFor"] = logger.isEnabledFor
        return getattr(logger, attribute)


def get_logger(name: str) -> logging.Logger:
    """The logger ``name``, loading :mod:`logging` with its first use (see the module)."""
    if "logging" in sys.modules:
        return _logger(name)
    return cast("logging.Logger", _DeferredLogger(name))


def _logger(name: str) -> logging.Logger:
    import logging

    if _pending:
        _apply_pending()
    return logging.getLogger(name)


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
    is a terminal and JSON lines otherwise (always on Lambda). Applied at once when
    :mod:`logging` is loaded already, else with the first record (:func:`get_logger`).
    """
    _pending[:] = [(level, tuple(secrets), stream, log_format)]
    if "logging" in sys.modules:
        _apply_pending()


#: :func:`configure`'s settings not applied yet (:mod:`logging` not loaded), if any.
_pending: list[tuple[str, tuple[str, ...], TextIO | None, str]] = []


def _apply_pending() -> None:
    """Apply :func:`configure`'s settings if still pending (once, whichever thread asks)."""
    try:
        settings = _pending.pop()
    except IndexError:  # another thread took them first
        return
    _apply(*settings)


def _apply(level: str, secrets: Iterable[str], stream: TextIO | None, log_format: str) -> None:
    import logging

    from valine.log_format import JsonFormatter, TextFormatter

    out = stream or sys.stderr
    text = log_format == "text" or (log_format == "auto" and _is_terminal(out))
    handler = logging.StreamHandler(out)
    kept = tuple(secrets)

    def redact_secrets(line: str) -> str:
        return redact(line, kept)

    formatter = TextFormatter if text else JsonFormatter
    handler.setFormatter(formatter(redact_secrets, context_ids))
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
