"""What tracking accepts: trusted pull requests only, bodies in linear time, typed fields.

Property-based (Hypothesis): arbitrary JSON and mutated real @octokit/webhooks-examples
payloads never raise in ``essentials`` nor, read into a domain event by ``github/``, in
``changes_for`` or ``check_targets``; a payload with a field of the wrong type is no
event and changes nothing.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import WRONG_TYPES, paths_in, pr_event, set_at
from valine.core.checks import Check, CheckKind, CheckPicture, Outcome, verdict
from valine.core.events import CheckSuiteCompleted, CommitStatusChanged
from valine.core.models import Run, Task
from valine.core.policy import Labels, policy_from_mapping
from valine.core.states import RunState, TaskState
from valine.core.tracking import Change, apply_changes, changes_for, check_targets, claimed_issue
from valine.github.events import Malformed, delivery, essentials, event_of, malformed

REPO = "octo/widgets"
RUN_ID = "r20261125-abc123"
SHA = "1" * 40
T = TaskState
EVENTS = ("pull_request", "check_suite", "status", "issues", "issue_comment", "workflow_run")


def a_run() -> Run:
    return Run(
        RUN_ID,
        REPO,
        0.0,
        state=RunState.EXECUTING,
        version=1,
        tasks=(
            Task(12, "a", T.DISPATCHED),
            Task(13, "b", T.CHECKS_PENDING, pr_number=40, head_sha=SHA),
        ),
    )


def changes_of(
    event: str, payload: Any, run: Run, trusted: frozenset[str] = frozenset()
) -> list[Change]:
    """What a delivery means for ``run``: its domain event (none if malformed), applied."""
    try:
        seen = event_of(event, payload)
    except Malformed:
        return []
    return [] if seen is None else changes_for(seen, run, Labels(), trusted)


def targets_of(event: str, payload: Any, run: Run) -> tuple[int, ...]:
    """The PRs a delivery has re-read: none unless it is a check event."""
    try:
        seen = event_of(event, payload)
    except Malformed:
        return ()
    if not isinstance(seen, CheckSuiteCompleted | CommitStatusChanged):
        return ()
    return check_targets(seen, run)


def opened(examples: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return pr_event(examples, "opened", repo=REPO, number=50, body="Fixes #12", **fields)


# -- whose pull requests count ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "trusted"),
    [
        ({"author_association": "OWNER"}, True),
        ({"author_association": "MEMBER"}, True),
        ({"author_association": "COLLABORATOR"}, True),
        ({"author_association": "NONE", "user_type": "Bot"}, True),
        ({"author_association": "NONE", "author": "agent-login"}, True),  # [executor] login
        ({"author_association": "CONTRIBUTOR"}, False),
        ({"author_association": "FIRST_TIME_CONTRIBUTOR"}, False),
        ({"author_association": "NONE"}, False),
        ({"author_association": "OWNER", "head_repo": "stranger/widgets"}, False),  # a fork
        ({"user_type": "Bot", "head_repo": "stranger/widgets"}, False),
    ],
)
def test_only_a_trusted_pull_request_claims_a_task(
    webhook_examples: dict[str, Any], fields: dict[str, Any], trusted: bool
) -> None:
    run = a_run()
    changes = changes_of(
        "pull_request", opened(webhook_examples, **fields), run, frozenset({"agent-login"})
    )
    after = apply_changes(run, changes, 1.0).task(12)
    if trusted:
        assert (after.state, after.pr_number, after.notes) == (T.PR_OPEN, 50, ())
    else:
        assert (after.state, after.pr_number) == (T.DISPATCHED, None)
        assert len(after.notes) == 1 and after.notes[0].startswith("PR #50 by ")
        assert [c.note for c in changes] == [after.notes[0]]  # what the audit trail gets


def test_a_deleted_fork_is_not_trusted(webhook_examples: dict[str, Any]) -> None:
    payload = opened(webhook_examples)
    payload["pull_request"]["head"]["repo"] = None
    (change,) = changes_of("pull_request", payload, a_run())
    assert change.note is not None and change.note.endswith("its head repository is gone")


def test_an_ignored_pull_request_is_noted_once(webhook_examples: dict[str, Any]) -> None:
    run = a_run()
    payload = opened(webhook_examples, author_association="NONE")
    run = apply_changes(run, changes_of("pull_request", payload, run), 1.0)
    assert changes_of("pull_request", payload, run) == []  # an "edited" again


def test_a_linked_open_pull_request_is_not_replaced(webhook_examples: dict[str, Any]) -> None:
    run = a_run()
    run = apply_changes(run, changes_of("pull_request", opened(webhook_examples), run), 1.0)
    other = pr_event(
        webhook_examples, "opened", repo=REPO, number=51, head_ref=f"valine/{RUN_ID}/12"
    )
    run = apply_changes(run, changes_of("pull_request", other, run), 1.0)
    assert run.task(12).pr_number == 50


def test_the_branch_name_wins_over_a_closing_keyword() -> None:
    run = a_run()
    assert claimed_issue("Fixes #13", f"valine/{RUN_ID}/12", run) == 12
    assert claimed_issue("Fixes #13", "feature", run) == 13


def test_pr_authors_and_the_assignee_are_trusted_logins() -> None:
    policy = policy_from_mapping(
        {"executor": {"kind": "assign", "assignee": "Agent", "pr_authors": ["Helper"]}}
    )
    assert policy.executor.trusted_logins == frozenset({"agent", "helper"})


# -- linear-time bodies -------------------------------------------------------------------

N = 65_536
PATHOLOGICAL = {
    "whitespace after a keyword": "fix" + " " * (N - 3),
    "whitespace, then a colon": "fix" + " " * (N - 5) + ":x",
    "mixed whitespace and colons": ("Fixes \t\n: " * N)[:N],
    "repeated keywords": ("fix " * N)[:N],
    "repeated keyword and hash": ("fixes #" * N)[:N],
    "hash runs": "#" * N,
    "digits without a boundary": "fix #" + "1" * (N - 6) + "x",
    "a word run": "fix " + "a" * (N - 4),
    "a repository-like run": "fix a/" + "b" * (N - 6),
    "run id then many mentions": (RUN_ID + " " + "#1" * N)[:N],
    "whitespace only": ("\t\n " * N)[:N],
}


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_bodies_are_parsed_in_milliseconds(name: str) -> None:
    body = PATHOLOGICAL[name]
    assert len(body) == N
    started = time.perf_counter()
    claimed_issue(body, "feature", a_run())
    # Generous (the issue asks for milliseconds; the old pattern took minutes).
    assert time.perf_counter() - started < 0.5


def test_a_link_after_a_pathological_prefix_is_still_found() -> None:
    body = "fix" + " " * 60_000 + ":x " + "#" * 5_000 + " Fixes #12"
    assert claimed_issue(body, "feature", a_run()) == 12


# -- typed payloads -------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@given(event=st.sampled_from(EVENTS), payload=json_values)
def test_arbitrary_json_never_raises_and_changes_nothing_when_malformed(
    event: str, payload: Any
) -> None:
    run = a_run()
    slim = essentials(event, payload)
    changes = changes_of(event, payload, run)
    targets_of(event, payload, run)
    assert changes_of(event, slim, run) == changes
    if malformed(event, payload) is not None:
        assert changes == []
        assert "malformed" in slim


@given(event=st.sampled_from((*EVENTS, "ping", "push")), payload=json_values)
def test_any_queued_job_reads_into_a_delivery_without_raising(event: str, payload: Any) -> None:
    """The worker's side: whatever a queued job holds, ``delivery`` returns either the
    problem (no event) or the very event the payload reads into."""
    job = {"event": event, "delivery_id": "d1", "payload": payload}
    seen = delivery(job)
    assert seen.delivery_id == "d1"
    if seen.problem is not None:
        assert seen.event is None
    else:
        assert seen.event == event_of(event, payload)
        assert seen.repo == payload["repository"]["full_name"]


@st.composite
def mutated_examples(draw: st.DrawFn, examples: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A real example re-aimed at the run, with one field set to a value of another type."""
    event = draw(
        st.sampled_from(("pull_request", "check_suite", "issues", "status", "workflow_run"))
    )
    payload = copy.deepcopy(draw(st.sampled_from(examples[event])))
    payload["repository"]["full_name"] = REPO
    if event == "pull_request":
        payload["pull_request"]["body"] = "Fixes #12"
        payload["pull_request"]["head"]["repo"] = {"full_name": REPO}
    path = draw(st.sampled_from(paths_in(payload)))
    set_at(payload, path, draw(st.sampled_from(WRONG_TYPES)))
    return event, payload


@given(data=st.data())
def test_mutated_real_examples_never_raise_and_malformed_ones_change_nothing(
    webhook_examples: dict[str, Any], data: st.DataObject
) -> None:
    event, payload = data.draw(mutated_examples(webhook_examples))
    run = a_run()
    slim = essentials(event, payload)
    changes = changes_of(event, payload, run)
    targets = targets_of(event, payload, run)
    problem = malformed(event, payload)
    if problem is not None:
        assert (changes, targets) == ([], ())
        assert slim["malformed"] == problem
    else:
        seen = event_of(event, payload)  # well-typed: reading it is fine
        assert event_of(event, slim) == seen  # the queued copy is the same event
        assert changes_of(event, slim, run) == changes


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("pull_request", "number"), "50", "pull_request.number"),
        (("pull_request", "number"), True, "pull_request.number"),
        (("pull_request", "head"), ["x"], "pull_request.head"),
        (("pull_request", "body"), 12, "pull_request.body"),
        (("pull_request", "user"), "octocat", "pull_request.user"),
        (("repository",), [], "repository"),
    ],
)
def test_a_wrong_type_is_named(
    webhook_examples: dict[str, Any], path: tuple[str, ...], value: Any, field: str
) -> None:
    payload = opened(webhook_examples)
    set_at(payload, path, value)
    assert str(malformed("pull_request", payload)).startswith(f"{field}: expected")
    # What the worker gets from the queued job: no event, and the reason.
    job = {
        "event": "pull_request",
        "delivery_id": "d1",
        "payload": essentials("pull_request", payload),
    }
    seen = delivery(job)
    assert (seen.event, seen.label) == (None, "pull_request")
    assert str(seen.problem).startswith(f"{field}: expected")


# -- the rule for green ------------------------------------------------------------------

checks = st.builds(
    Check,
    name=st.sampled_from(["test", "lint", "e2e"]),
    kind=st.sampled_from(list(CheckKind)),
    status=st.sampled_from(["completed", "in_progress", "queued", "success", "pending", "failure"]),
    conclusion=st.sampled_from([None, "success", "failure", "neutral", "skipped", "cancelled"]),
)


@given(st.lists(checks, max_size=6), st.none() | st.lists(st.sampled_from(["test", "lint"])))
def test_passed_means_every_counted_check_passed(
    found: list[Check], required: list[str] | None
) -> None:
    result = verdict(CheckPicture(1, SHA, tuple(found)), required)
    counted = [c for c in found if required is None or c.name in required]
    passing = [
        (c.kind is CheckKind.STATUS and c.status == "success")
        or (
            c.kind is not CheckKind.STATUS
            and c.status == "completed"
            and c.conclusion in {"success", "neutral", "skipped"}
        )
        for c in counted
        if not (
            c.kind is CheckKind.SUITE
            and (c.status != "completed" or c.conclusion in {None, "success", "neutral", "skipped"})
        )
    ]
    if result.outcome is Outcome.PASSED:
        assert passing and all(passing)
        assert required is None or {c.name for c in counted} >= set(required)
    else:
        assert result.reason
