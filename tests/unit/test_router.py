"""The one router of commands and buttons: what registers there is what is offered.

Adding a command is its schema entry (``valine.core.commands``), its permission
(``valine.core.authz``) and one registered handler. These tests add one that way and find
it in the schema check, in ``/help`` and in every refusal path; and they check that the
product's schema and its registry are the same set of commands.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import pytest

from valine.core import authz, commands
from valine.core.authz import GUARDED_ACTIONS, Grant, Permissions
from valine.core.commands import COMMANDS, Command, CommandSpec, Need, parse_command
from valine.core.policy import DiscordScope, Executor, Policy
from valine.core.replies import Answer, Reply, announce
from valine.testing.clock import ManualClock
from valine.testing.memory import MemoryJobQueue, MemoryRunStore
from valine.usecases import ROUTER, Orchestrator
from valine.usecases.interactions import InteractionsMixin
from valine.usecases.router import GITHUB, NOT_OURS, Call, Router

REPO = "octo/widgets"
ADA = {"id": "1", "application_id": "9", "token": "t", "channel_id": "3", "guild_id": "4"}
ROLLBACK = CommandSpec("rollback", "Roll the last shipped run back", (commands._run_id(True),))


def _no_network() -> Any:
    raise AssertionError("an interaction never calls GitHub or Discord")


def orchestrator(users: frozenset[str] = frozenset({"42"})) -> Orchestrator:
    """The use cases on the in-memory store and queue; ``users`` hold every grant."""
    clock = ManualClock()
    return Orchestrator(
        repo=REPO,
        policy=Policy(
            executor=Executor(kind="workflow", workflow="agent.yml"),
            permissions=Permissions({a: Grant(users=users) for a in GUARDED_ACTIONS}),
            discord=DiscordScope(guild_ids=("4",)),
        ),
        store=MemoryRunStore(),
        queue=MemoryJobQueue(clock=clock),
        github=_no_network,
        discord=_no_network,
        clock=clock,
        entropy=lambda: "abcdef",
    )


def who(user_id: str, **more: Any) -> dict[str, Any]:
    """The interaction fields of ``user_id`` in the served server."""
    return {**ADA, "user_id": user_id, "user_name": "someone", **more}


def text(answer: Answer) -> str:
    """What the user reads in an answer."""
    assert isinstance(answer, Reply)
    return answer.text + "".join(c.description for c in answer.message.cards)


def private(answer: Answer) -> bool:
    """True when only the invoking user sees the answer."""
    return isinstance(answer, Reply) and answer.private


def nothing_missing(needs: Collection[Need]) -> list[str]:
    return []


@pytest.fixture
def rollback(monkeypatch: pytest.MonkeyPatch) -> Router:
    """The product's router plus a ``/rollback`` added the documented way."""
    monkeypatch.setattr(commands, "COMMANDS", (*COMMANDS, ROLLBACK))
    monkeypatch.setitem(commands.COMMANDS_BY_NAME, "rollback", ROLLBACK)  # type: ignore[index]
    monkeypatch.setitem(authz.VERBS, "rollback", "roll runs back")
    monkeypatch.setitem(authz.GRANTED_AS, "rollback", "ship")
    added = Router()

    @added.command("rollback", action="rollback", needs=GITHUB)
    def _rollback(uc: InteractionsMixin, call: Call) -> Answer:
        return announce(f"rolling {call.run_id} back")

    router = Router().include(ROUTER, added)
    return router


def test_every_schema_command_has_one_handler_and_every_handler_a_schema_entry() -> None:
    assert [spec.name for spec, _ in ROUTER.offered()] == [c.name for c in COMMANDS]
    assert {r.name for r in ROUTER.commands()} == {c.name for c in COMMANDS}


def test_every_guarded_route_names_an_action_with_a_permission() -> None:
    for route in (*ROUTER.commands(), *ROUTER.buttons()):
        if route.action is not None:
            assert route.action in authz.VERBS, route.name
            assert authz.is_guarded(route.action), route.name


def test_a_registered_command_is_in_the_schema_check_help_and_the_refusals(
    rollback: Router,
) -> None:
    data = {"name": "rollback", "options": [{"name": "run_id", "type": 3, "value": "x"}]}
    assert parse_command(data) == Command("rollback", {"run_id": "x"})
    registration = [c["name"] for c in commands.registration_payload()]
    assert registration[-1] == "rollback"

    uc = orchestrator()
    help_text = text(rollback.answer_command(uc, who("7"), Command("help"), nothing_missing))
    line = next(x for x in help_text.splitlines() if x.startswith("`/rollback`"))
    assert "Roll the last shipped run back." in line and "Allowed: <@42>." in line

    run = {"run_id": "r20261125-abcdef"}
    missing = rollback.answer_command(
        uc, who("42"), Command("rollback", run), lambda needs: sorted(n.value for n in needs)
    )
    assert private(missing) and "`/rollback` cannot run" in text(missing)
    assert "github_auth" in text(missing)

    refused = rollback.answer_command(uc, who("7"), Command("rollback", run), nothing_missing)
    assert private(refused) and text(refused).startswith("⛔ You may not roll runs back.")
    assert [(e.actor, e.action, e.outcome) for e in uc.store.audit_trail()] == [
        ("7", "rollback", "refused: not permitted")
    ]
    outside = rollback.answer_command(
        uc, who("42", guild_id="5"), Command("rollback", run), nothing_missing
    )
    assert private(outside) and "⛔" in text(outside)
    malformed = Command("rollback", {"run_id": "x"})
    bad = rollback.answer_command(uc, who("42"), malformed, nothing_missing)
    assert private(bad) and "is not a run id" in text(bad)
    done = rollback.answer_command(uc, who("42"), Command("rollback", run), nothing_missing)
    assert not private(done) and text(done) == "rolling r20261125-abcdef back"


def test_an_action_without_a_permission_cannot_be_registered() -> None:
    router = Router()
    with pytest.raises(ValueError, match="no permission"):
        router.command("rollback", action="rollback")


def test_a_name_registered_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        Router().include(ROUTER, ROUTER)


@pytest.mark.parametrize(
    "custom_id",
    ["", "nope:r20261125-abcdef", "approve:", "approve:r1", "retry:r20261125-abcdef", "ship:a:b"],
)
def test_a_button_that_is_not_ours_is_refused_privately(custom_id: str) -> None:
    uc = orchestrator()
    answer = ROUTER.press(uc, who("42"), custom_id, nothing_missing)
    assert private(answer) and text(answer) == NOT_OURS
    assert uc.store.recent_runs(REPO, limit=5) == []
