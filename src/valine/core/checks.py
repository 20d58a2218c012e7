"""When is a pull request green: the one rule, used by webhooks, the reconcile and ship.

GitHub reports a commit's checks in two systems: check runs (grouped in one check suite
per App, and per workflow for GitHub Actions) and commit statuses (Jenkins-style CI,
one per context). A pull request's checks pass only when, for its current head commit,
every counted check has finished passing:

* a check run counts as passed when ``completed`` with conclusion ``success``,
  ``neutral`` or ``skipped``; any other conclusion (``failure``, ``cancelled``,
  ``timed_out``, ``action_required``, ``startup_failure``, ``stale``) fails it; any other
  status (``queued``, ``in_progress``, ``waiting``, ``requested``, ``pending``) is pending;
* a commit status ``success`` passes, ``failure`` and ``error`` fail, ``pending`` (and
  GraphQL's ``expected``) is pending;
* a check suite without a single check run is left out (GitHub creates one for every
  installed App, and an App that runs nothing leaves it queued forever) unless it
  completed with a failing conclusion other than ``stale`` (a workflow that could not
  start concludes ``startup_failure`` with no run).

With ``required`` names (``[checks] required`` in ``valine.toml``), only checks of those
names count (a check run's name or a status context), each must be present, and the
others are informational. Without it every check counts, and at least one must exist.

The verdict is ``failed`` as soon as one counted check failed (even while others still
run: the task is red either way), else ``pending`` while anything counted is unfinished
or missing, else ``passed``. A picture that could not be read whole (more checks than
one read returns) is never ``passed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

#: Check-run and check-suite conclusions that let a pull request through.
PASSING_CONCLUSIONS = frozenset({"success", "neutral", "skipped"})
#: Commit status states that fail a pull request.
FAILING_STATES = frozenset({"failure", "error"})


class CheckKind(StrEnum):
    """Where a check comes from."""

    CHECK_RUN = "check run"
    STATUS = "status"
    SUITE = "check suite"


@dataclass(frozen=True, slots=True)
class Check:
    """One check on a commit, as GitHub reports it (lower-case values).

    ``status`` is a check run's or suite's status (``completed``, ``in_progress`` ...)
    or a commit status's state (``success``, ``pending`` ...); ``conclusion`` is None
    for a commit status and for anything not completed.
    """

    name: str
    kind: CheckKind
    status: str
    conclusion: str | None = None
    url: str = ""


@dataclass(frozen=True, slots=True)
class CheckPicture:
    """Every check on a pull request's head commit, read at one moment.

    ``in_merge_queue`` is whether the pull request had an entry in its merge queue at
    that moment (None: not asked), and ``merged`` whether it was merged.
    """

    pr_number: int
    head_sha: str
    checks: tuple[Check, ...] = ()
    complete: bool = True
    in_merge_queue: bool | None = None
    merged: bool = False


class Outcome(StrEnum):
    """A verdict's kind."""

    PASSED = "passed"
    FAILED = "failed"
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a picture means: the outcome and, unless passed, why in words."""

    outcome: Outcome
    reason: str | None = None


def check_state(check: Check) -> Outcome | None:
    """One check's own outcome; None for a check that does not count at all."""
    if check.kind is CheckKind.STATUS:
        if check.status == "success":
            return Outcome.PASSED
        return Outcome.FAILED if check.status in FAILING_STATES else Outcome.PENDING
    if check.status != "completed" or check.conclusion is None:
        return None if check.kind is CheckKind.SUITE else Outcome.PENDING
    if check.conclusion in PASSING_CONCLUSIONS:
        return None if check.kind is CheckKind.SUITE else Outcome.PASSED
    if check.kind is CheckKind.SUITE and check.conclusion == "stale":
        return None
    return Outcome.FAILED


def verdict(picture: CheckPicture, required: Sequence[str] | None = None) -> Verdict:
    """The one rule for green (see the module docstring)."""
    counted = [
        (check, state)
        for check in picture.checks
        if (state := check_state(check)) is not None
        and (required is None or check.name in required)
    ]
    for check, state in counted:
        if state is Outcome.FAILED:
            return Verdict(Outcome.FAILED, _failed(check))
    for check, state in counted:
        if state is Outcome.PENDING:
            return Verdict(
                Outcome.PENDING, f"waiting for {check.kind} `{check.name}` ({check.status})"
            )
    if required is not None:
        present = {check.name for check, _ in counted}
        missing = [name for name in required if name not in present]
        if missing:
            return Verdict(Outcome.PENDING, f"required check `{missing[0]}` has not reported")
    if not picture.complete:
        return Verdict(Outcome.PENDING, "more checks than one read returns; not all were seen")
    if not counted:
        return Verdict(Outcome.PENDING, "no check has reported yet")
    return Verdict(Outcome.PASSED)


def _failed(check: Check) -> str:
    result = check.conclusion or check.status
    link = f": {check.url}" if check.url else ""
    return f"{check.kind} `{check.name}` {result}{link}"
