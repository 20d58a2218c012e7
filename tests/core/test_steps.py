"""The task steps are typed values in the state module, and their stamps read back."""

from __future__ import annotations

from valine.core.states import StampedStep, Step, mermaid_diagram


def test_steps_keep_the_strings_stored_runs_hold() -> None:
    # Runs stored before the steps were typed must read the same.
    assert [s.value for s in Step] == [
        "labelled",
        "commented",
        "relabel_sent",
        "dispatched",
        "queued",
        "dequeued",
        "shipped",
        "released",
        "not-released",
    ]
    assert "labelled" in (Step.LABELLED,) and Step.LABELLED in ("labelled",)
    assert StampedStep.DISPATCH_CLAIM.at(12.5) == "dispatch-claimed:12.5"


def test_a_stamped_step_reads_its_stamps_back_and_is_dropped_whole() -> None:
    steps = ("labelled", StampedStep.LABEL_CLAIM.at(10.0), "x", StampedStep.LABEL_CLAIM.at(20.25))
    assert StampedStep.LABEL_CLAIM.times(steps) == [10.0, 20.25]
    assert StampedStep.LABEL_CLAIM.recorded(steps)
    assert not StampedStep.DISPATCH_CLAIM.recorded(steps)
    assert StampedStep.LABEL_CLAIM.without(steps) == ("labelled", "x")
    assert StampedStep.HANDED_OVER.at(2) == "handed-over:2"


def test_the_diagram_lists_every_step() -> None:
    page = mermaid_diagram()
    for step in (*Step, *StampedStep):
        assert f"- `{step.value}`:" in page
