"""The webhook endpoint parses only what each event's reader reads, and loses nothing.

``PROJECTIONS`` name, per event, the fields its shape declares and the paths its reader
also reads; the rest of a body is skipped unbuilt. If a reader read a field its
projection does not keep, its job would change: these tests compare, for every real
example of every event and for examples with one field changed to another type, the
endpoint's verdict (the shape's check) and the queued job (``essentials``) computed from
the projected body with the same computed from the whole document.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from helpers import WRONG_TYPES, paths_in, set_at
from valine.core.shape import ShapeError, check
from valine.github.events import EVENT_SHAPES, HANDLED_EVENTS, essentials, projection
from valine.github.webhooks import repository_name


def outcome(event: str, payload: Any) -> Any:
    """What the endpoint does with ``payload``: the 400's message, or the job it queues."""
    try:
        if event in EVENT_SHAPES:
            check(EVENT_SHAPES[event], payload)
    except ShapeError as exc:
        return str(exc)
    if event not in HANDLED_EVENTS:
        return "ignored"
    # what the endpoint reads beside the job: whom it serves, and the action it logs
    return essentials(event, payload), repository_name(payload), payload.get("action")


def assert_projection_loses_nothing(event: str, document: dict[str, Any]) -> None:
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    assert outcome(event, projection(event).parse(body)) == outcome(event, document)


def test_every_real_example_queues_the_same_job(
    webhook_examples: dict[str, list[dict[str, Any]]],
) -> None:
    handled = 0
    for event, examples in webhook_examples.items():
        for example in examples:
            assert_projection_loses_nothing(event, example)
            handled += event in HANDLED_EVENTS
    assert handled > 50


def test_the_projection_keeps_a_small_part_of_a_real_body(
    webhook_examples: dict[str, list[dict[str, Any]]],
) -> None:
    """The point of it: a pull request's body is ~25 KB; what its reader reads is < 1 KB."""
    example = webhook_examples["pull_request"][0]
    body = json.dumps(example).encode()
    kept = projection("pull_request").parse(body)
    assert len(json.dumps(kept)) < len(body) / 10
    assert kept["pull_request"]["head"]["sha"] == example["pull_request"]["head"]["sha"]


@st.composite
def changed_examples(
    draw: st.DrawFn, examples: dict[str, list[dict[str, Any]]]
) -> tuple[str, dict[str, Any]]:
    """A real example of a handled event with one or two values of another type."""
    event = draw(st.sampled_from(sorted(HANDLED_EVENTS & set(examples))))
    document = copy.deepcopy(draw(st.sampled_from(examples[event])))
    for _ in range(draw(st.integers(1, 2))):
        path = draw(st.sampled_from(paths_in(document)))
        set_at(document, path, copy.deepcopy(draw(st.sampled_from(WRONG_TYPES))))
    return event, document


@given(data=st.data())
def test_changed_examples_decide_and_queue_as_the_whole_document(
    webhook_examples: dict[str, list[dict[str, Any]]], data: st.DataObject
) -> None:
    event, document = data.draw(changed_examples(webhook_examples))
    assert_projection_loses_nothing(event, document)
