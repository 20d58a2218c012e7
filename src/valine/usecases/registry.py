"""Handlers registered in the module of their concern: job kinds and GitHub events.

A use-case method says what it handles where it is written, as gidgethub's
``Router.register`` does::

    class PlanningMixin(UseCaseBase):
        @jobs.register(PLAN)
        def run_plan_job(self, job): ...

and :class:`~valine.usecases.Orchestrator` hands out the registered methods bound to
itself (``job_handlers()``, ``event_handlers()``). A key registered twice is an error
at import time, so two concerns never silently claim the same job kind or event.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from types import MethodType
from typing import Any, Generic, TypeVar

_K = TypeVar("_K", bound=Hashable)
_F = TypeVar("_F", bound=Callable[..., Any])


class Registry(Generic[_K]):
    """Use-case methods by key (a job kind, an event type), bound on request."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._methods: dict[_K, Callable[..., Any]] = {}

    def register(self, *keys: _K) -> Callable[[_F], _F]:
        """Register the decorated method as the handler of ``keys``."""

        def decorate(method: _F) -> _F:
            for key in keys:
                if key in self._methods:
                    raise ValueError(f"{self.what} {_name(key)} already has a handler")
                self._methods[key] = method
            return method

        return decorate

    def keys(self) -> frozenset[_K]:
        """Every key with a handler."""
        return frozenset(self._methods)

    def get(self, owner: object, key: _K) -> Callable[..., Any] | None:
        """The handler of ``key`` bound to ``owner``, or None when none is registered."""
        method = self._methods.get(key)
        return None if method is None else MethodType(method, owner)

    def bound(self, owner: object) -> dict[_K, Callable[..., Any]]:
        """Every handler bound to ``owner`` (an object of a class that defines them)."""
        return {key: MethodType(method, owner) for key, method in self._methods.items()}


def _name(key: object) -> str:
    return key.__name__ if isinstance(key, type) else repr(key)
