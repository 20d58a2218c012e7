"""One router for slash commands and buttons (after gidgethub's ``routing.Router``).

Each concern module keeps a :class:`Router` and registers, beside the use case, the
handler of each command or button it answers, the action whose permission guards it
(:mod:`valine.core.authz`) and the settings it needs (:class:`~valine.core.commands.Need`)::

    ROUTES = Router()

    @ROUTES.command("ship", action="ship", needs=GITHUB)
    def _ship(uc: ShippingMixin, call: Call) -> Answer:
        return uc.ship(call.run_id, call.actor)

``valine.usecases`` combines the modules' routers into one; the runtime picks the
orchestrator (the use cases of one repository) and hands it the interaction. Before a
handler runs, the router refuses what cannot run: a missing setting, an interaction
from outside the served server, one over the rate limit, a malformed run id, an actor
without the route's permission (audited). A handler checks again what depends on the
run itself (who planned it, its state).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from valine.core import commands
from valine.core.authz import VERBS
from valine.core.commands import Command, CommandSpec, Need
from valine.core.replies import Answer, notice
from valine.usecases.base import Actor

#: The settings of a command that only reads the store.
READS: frozenset[Need] = frozenset({Need.REPOSITORY})
#: The settings of a command that changes something on GitHub (now or in a job).
GITHUB: frozenset[Need] = frozenset({Need.REPOSITORY, Need.GITHUB_AUTH})
#: The answer to a press of a button the router does not know, or with bad arguments.
NOT_OURS = "This button is not one of Valine's (or is from an old version)."


@dataclass(frozen=True, slots=True)
class Call:
    """One command or button press, as a handler receives it."""

    #: The interaction's fields (id, token, channel and guild ids, the user and roles).
    interaction: Mapping[str, Any]
    actor: Actor
    #: The command's options, or the button's arguments (``run_id``, ``issue``).
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: The router that dispatched it (``/help`` lists its commands).
    router: Router | None = None

    @property
    def run_id(self) -> str:
        """The ``run_id`` option (empty when not given)."""
        return str(self.options.get("run_id", "")).strip()

    def option(self, name: str) -> str:
        """An option's value as text (empty when not given)."""
        return str(self.options.get(name, "")).strip()


#: A handler: the use cases of the interaction's repository and the call.
Handler = Callable[[Any, Call], Answer]
#: Which of the given settings are missing, named for the user (empty: none).
Unmet = Callable[[Collection[Need]], list[str]]


@dataclass(frozen=True, slots=True)
class Route:
    """What answers one command or button, and what it needs first."""

    name: str
    handler: Handler
    #: The action whose permission guards it (``None``: open to everyone).
    action: str | None
    needs: frozenset[Need]
    #: For a button: the names its custom id's arguments give, after the action.
    args: tuple[str, ...] = ()
    #: False for a command that answers for every served repository at once
    #: (``/status``, ``/help``): it runs from a channel no repository names.
    own_repository: bool = True


class Gatekeeper(Protocol):
    """What the router asks the use cases before a handler runs."""

    def gate(self, interaction: Mapping[str, Any], actor: Actor, action: str) -> Answer | None:
        """The refusal of an interaction from outside the served server or over the rate."""
        ...

    def bad_run_id(self, run_id: str) -> str | None:
        """None for a well-formed run id; else what one looks like."""
        ...

    def not_permitted(self, actor: Actor, action: str, run_id: str | None) -> Answer | None:
        """The (audited) refusal of ``action`` to ``actor``; None when permitted."""
        ...

    def unrouted(self, shown: str, run_id: str) -> Answer | None:
        """The refusal of a command that needs a repository when the interaction names
        none (its channel is no repository's, among several); None when it has one."""
        ...


class Router:
    """Commands and buttons by name, each with its handler, permission and settings."""

    def __init__(self) -> None:
        self._commands: dict[str, Route] = {}
        self._buttons: dict[str, Route] = {}

    def command(
        self,
        name: str,
        *,
        action: str | None = None,
        needs: Collection[Need] = (),
        own_repository: bool = True,
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function as the handler of ``/name``.

        ``own_repository=False``: it answers for every served repository, so it also
        runs from a channel that no repository names.
        """
        return self._register(
            self._commands, name, action, needs, (), own_repository=own_repository
        )

    def button(
        self,
        name: str,
        *,
        action: str | None = None,
        needs: Collection[Need] = (),
        args: tuple[str, ...] = ("run_id",),
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function as the handler of the ``name`` button.

        Its custom id is ``name:<arg>:<arg>…`` with one value per name of ``args``.
        """
        return self._register(self._buttons, name, action, needs, args)

    def _register(
        self,
        table: dict[str, Route],
        name: str,
        action: str | None,
        needs: Collection[Need],
        args: tuple[str, ...],
        *,
        own_repository: bool = True,
    ) -> Callable[[Handler], Handler]:
        if action is not None and action not in VERBS:
            raise ValueError(
                f"{name!r}: action {action!r} has no permission (valine.core.authz.VERBS)"
            )

        def register(handler: Handler) -> Handler:
            _add(table, Route(name, handler, action, frozenset(needs), args, own_repository))
            return handler

        return register

    def include(self, *others: Router) -> Router:
        """Add every route of ``others`` (a name registered twice is an error); self."""
        for other in others:
            for route in other._commands.values():
                _add(self._commands, route)
            for route in other._buttons.values():
                _add(self._buttons, route)
        return self

    def commands(self) -> Iterator[Route]:
        """The command routes, in the order they were registered."""
        return iter(self._commands.values())

    def buttons(self) -> Iterator[Route]:
        """The button routes, in the order they were registered."""
        return iter(self._buttons.values())

    def command_route(self, name: str) -> Route | None:
        """The route of ``/name``, if one is registered."""
        return self._commands.get(name)

    def offered(self) -> list[tuple[CommandSpec, str | None]]:
        """The registered commands in the schema's order, each with its guarding action
        (what ``/help`` lists; a route without a schema entry cannot be invoked)."""
        return [
            (spec, route.action)
            for spec in commands.COMMANDS
            if (route := self._commands.get(spec.name)) is not None
        ]

    def answer_command(
        self, uc: Gatekeeper, interaction: Mapping[str, Any], command: Command, unmet: Unmet
    ) -> Answer:
        """Answer a schema-checked command: refuse what cannot run, else its handler."""
        route = self._commands.get(command.name)
        if route is None:
            return notice(f"`/{command.name}` is not answered by this service.")
        options = MappingProxyType(dict(command.options))
        call = Call(interaction, Actor.of(interaction), options, self)
        return _dispatch(uc, route, call, f"/{command.name}", unmet)

    def press(
        self, uc: Gatekeeper, interaction: Mapping[str, Any], custom_id: str, unmet: Unmet
    ) -> Answer:
        """Answer a button press (``name:arg:…``) through the same use cases."""
        name, _, rest = custom_id.partition(":")
        actor = Actor.of(interaction)
        route = self._buttons.get(name)
        if route is None:
            refusal = uc.gate(interaction, actor, "button")
            return refusal or notice(NOT_OURS)
        values = rest.split(":") if rest else []
        if len(values) != len(route.args):
            refusal = uc.gate(interaction, actor, route.action or name)
            return refusal or notice(NOT_OURS)
        args = MappingProxyType(dict(zip(route.args, values, strict=True)))
        call = Call(interaction, actor, args, self)
        return _dispatch(uc, route, call, f"/{route.action or name}", unmet, button=True)


def _add(table: dict[str, Route], route: Route) -> None:
    if route.name in table:
        raise ValueError(f"{route.name!r} is registered twice")
    table[route.name] = route


def _dispatch(
    uc: Gatekeeper, route: Route, call: Call, shown: str, unmet: Unmet, *, button: bool = False
) -> Answer:
    """The refusals every route shares, in order; then the route's handler."""
    lacking = unmet(route.needs)
    if lacking:
        return notice(
            f"`{shown}` cannot run: the service is missing {', '.join(lacking)}. "
            "Set it in the environment or .env and restart."
        )
    refusal = uc.gate(call.interaction, call.actor, route.action or route.name)
    if refusal is not None:
        return refusal
    if (button or call.run_id) and (problem := uc.bad_run_id(call.run_id)):
        return notice(NOT_OURS if button else problem)
    if route.own_repository and (refusal := uc.unrouted(shown, call.run_id)) is not None:
        return refusal
    if route.action is not None:
        refusal = uc.not_permitted(call.actor, route.action, call.run_id or None)
        if refusal is not None:
            return refusal
    return route.handler(uc, call)
