"""The use cases: plan, approve, execute, track, ship, cancel, status.

Each one follows the same line: load -> let the core decide -> save (conditionally on
the version read) -> enqueue or perform the actions. Two kinds of entry point:

* **Interaction handlers** (``answer_command``, ``press_button``) run inside Discord's
  3-second window: they read and write the store and enqueue jobs, and never call
  GitHub. What needs GitHub is a job.
* **Job handlers** (``job_handlers()``, each registered by its concern with
  ``@jobs.register``) run on the worker pool, at least once each. Every one is
  idempotent: a side effect on GitHub is recorded on its task (``steps_done``) in
  the same conditional write that moves the task on, and a step already recorded is
  never performed again. The workflow dispatch -- the one effect that must not happen
  twice -- is *claimed* in a conditional write before it is sent, so two copies of a job
  racing each other cannot both send it.

One module per concern, combined here into :class:`Orchestrator`:

* ``base`` -- job kinds, limits, ``Actor``, and ``UseCaseBase`` (the ports, the
  conditional save and the helpers several concerns share);
* ``router`` -- the one router of commands and buttons: each concern module registers
  its handlers there (``ROUTES``) with their permission and settings, combined below
  into :data:`ROUTER`; ``commanding`` -- the gate, authorisation and audited save every
  command shares;
* ``interactions`` -- approve, cancel, retry, ``/status``, ``/help``, autocomplete;
* ``planning`` -- ``/plan`` and the plan job; ``execution`` -- start, relabel, dispatch;
* ``tracking`` -- webhook deliveries and the reconcile;
* ``shipping`` -- ``/ship``, its buttons, the ship, cancel and release jobs;
  ``notifications`` -- the run's message;
* ``deploying`` -- ``/deploy`` and the deploy workflow after ship; ``rhythm`` -- the
  scheduled plan, the reminder and ``/digest``;
* ``failures`` -- jobs that failed for good.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from valine.core.commands import Command, Need
from valine.core.replies import Answer
from valine.usecases import deploying, interactions, planning, rhythm, shipping
from valine.usecases.base import (
    CANCEL,
    CLAIM_TIMEOUT,
    DEPLOY,
    DISPATCH,
    GITHUB_EVENT,
    NOTIFY,
    PLAN,
    RECONCILE,
    RECONCILE_EVERY,
    RELEASE,
    SCHEDULE,
    SHIP,
    START,
    Actor,
    DispatchInProgress,
    UseCaseBase,
    jobs,
)
from valine.usecases.execution import ExecutionMixin
from valine.usecases.failures import FailuresMixin
from valine.usecases.interactions import InteractionsMixin
from valine.usecases.notifications import NotificationsMixin
from valine.usecases.planning import PlanningMixin
from valine.usecases.rhythm import ScheduleMixin
from valine.usecases.router import Router
from valine.usecases.shipping import ShippingMixin
from valine.usecases.tracking import TrackingMixin

__all__ = [
    "CANCEL",
    "CLAIM_TIMEOUT",
    "DEPLOY",
    "DISPATCH",
    "GITHUB_EVENT",
    "NOTIFY",
    "PLAN",
    "RECONCILE",
    "RECONCILE_EVERY",
    "RELEASE",
    "ROUTER",
    "SCHEDULE",
    "SHIP",
    "START",
    "Actor",
    "DispatchInProgress",
    "Orchestrator",
    "UseCaseBase",
]


#: Every command and button, as the concern modules registered them.
ROUTER = Router().include(
    planning.ROUTES, interactions.ROUTES, shipping.ROUTES, deploying.ROUTES, rhythm.ROUTES
)


def _nothing_unmet(needs: Collection[Need]) -> list[str]:
    return []


class Orchestrator(
    ScheduleMixin,
    InteractionsMixin,
    PlanningMixin,
    ExecutionMixin,
    TrackingMixin,
    ShippingMixin,
    NotificationsMixin,
    FailuresMixin,
):
    """The product's use cases over the ports (of one repository)."""

    def answer_command(
        self,
        interaction: Mapping[str, Any],
        command: Command,
        unmet: Callable[[Collection[Need]], list[str]] = _nothing_unmet,
    ) -> Answer:
        """Answer a schema-checked slash command within Discord's 3 seconds.

        ``unmet`` names the settings of a command's needs that are missing.
        """
        return ROUTER.answer_command(self, interaction, command, unmet)

    def press_button(
        self,
        interaction: Mapping[str, Any],
        custom_id: str,
        unmet: Callable[[Collection[Need]], list[str]] = _nothing_unmet,
    ) -> Answer:
        """Answer a button press (``action:run_id…``) through the same use cases."""
        return ROUTER.press(self, interaction, custom_id, unmet)

    def job_handlers(self) -> dict[str, Callable[[dict[str, Any]], None]]:
        """Every background job this orchestrator runs, by kind (as each concern
        registered it with ``@jobs.register``); the runtime adds the queued webhook
        delivery, which ``github/`` reads into :meth:`on_delivery`."""
        return jobs.bound(self)
