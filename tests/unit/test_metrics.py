"""Application metrics: EMF lines as CloudWatch specifies them, the Prometheus text format,
and what a saved change of a run means (valine.core.measures)."""

from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft7Validator

from valine import metrics
from valine.core.measures import active_run_age, run_measurements
from valine.core.models import Run, Task
from valine.core.states import RunState, TaskState

# The embedded metric format's published JSON schema (CloudWatch User Guide,
# "Specification: Embedded metric format"), as far as this service uses it.
UNITS = [
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes",
    "Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits",
    "Percent", "Count", "Bytes/Second", "Kilobytes/Second", "Megabytes/Second",
    "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second",
    "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
]  # fmt: skip
EMF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "additionalProperties": False,
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "CloudWatchMetrics": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "additionalProperties": False,
                        "properties": {
                            "Namespace": {"type": "string", "minLength": 1, "maxLength": 1024},
                            "Dimensions": {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": 30,
                                    "items": {"type": "string", "minLength": 1, "maxLength": 250},
                                },
                            },
                            "Metrics": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": 100,
                                "items": {
                                    "type": "object",
                                    "required": ["Name"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "Name": {
                                            "type": "string",
                                            "minLength": 1,
                                            "maxLength": 1024,
                                        },
                                        "Unit": {"enum": UNITS},
                                        "StorageResolution": {"enum": [1, 60]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}


def _check_emf(line: str) -> dict[str, Any]:
    """The document of one EMF line, checked against the schema and the target members."""
    assert "\n" not in line
    document = json.loads(line)
    Draft7Validator(EMF_SCHEMA).validate(document)
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:  # each dimension is a root string member
                assert isinstance(document[name], str) and document[name], name
        for definition in directive["Metrics"]:  # each metric is a root number member
            value = document[definition["Name"]]
            assert isinstance(value, int | float) and not isinstance(value, bool)
            assert math.isfinite(value)
    return document


SAMPLE_DIMENSIONS = {
    "event": "pull_request",
    "outcome": "accepted",
    "command": "plan",
    "kind": "github_event",
    "state": "shipped",
    "resource": "core",
}


@pytest.mark.parametrize("name", sorted(metrics.METRICS))
def test_every_metric_makes_a_valid_emf_line(name: str) -> None:
    metric = metrics.METRICS[name]
    dims = {d: SAMPLE_DIMENSIONS[d] for d in metric.dimensions}
    stream = io.StringIO()
    writer = metrics.EmfWriter("prod", stream, clock=lambda: 1_800_000_000.5)
    writer.record(name, 12.5, dims)
    document = _check_emf(stream.getvalue().rstrip("\n"))
    aws = document["_aws"]
    assert aws["Timestamp"] == 1_800_000_000_500
    (directive,) = aws["CloudWatchMetrics"]
    assert directive["Namespace"] == "ValineOrchestrator"
    # Always the stage alone (what the alarms watch), and with the metric's dimensions.
    assert directive["Dimensions"][0] == ["Stage"]
    if metric.dimensions:
        assert directive["Dimensions"][1] == ["Stage", *metric.dimensions]
    assert directive["Metrics"] == [{"Name": metric.cloudwatch, "Unit": metric.unit}]
    assert document["Stage"] == "prod"
    assert document[metric.cloudwatch] == 12.5


def test_the_alarmed_metrics_have_the_units_the_alarms_assume() -> None:
    assert metrics.METRICS["active_run_age"].unit == "Seconds"
    assert metrics.METRICS["github_rate_limit_remaining"].unit == "Percent"
    assert metrics.METRICS["dead_letters"].unit == "Count"


def test_a_wrong_dimension_is_a_bug_not_a_series() -> None:
    with pytest.raises(ValueError, match="deliveries takes dimensions"):
        metrics.count("deliveries", event="ping")
    with pytest.raises(KeyError):
        metrics.count("no_such_metric")


def test_a_failing_sink_never_breaks_the_work() -> None:
    class Broken:
        def record(self, name: str, value: float, dimensions: Any) -> None:
            raise OSError("disk full")

    previous = metrics.use(Broken())
    try:
        metrics.count("discord_requests")  # logs a warning, raises nothing
    finally:
        metrics.use(previous)


_SAMPLE = re.compile(
    r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"(?:\{(?P<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*=\"(?:[^\"\\\n]|\\[\\\"n])*\",?)*)\})?"
    r" (?P<value>[-+]?(?:[0-9.eE+-]+|Inf|NaN))"
)


def _unescape(match: re.Match[str]) -> str:
    return {"n": "\n", "\\": "\\", '"': '"'}[match.group(1)]


def _parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """A strict reader of the Prometheus text format: every line must be a comment or sample."""
    assert text.endswith("\n")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    declared: dict[str, str] = {}
    for line in text[:-1].split("\n"):  # lines end with \n only (a value may hold \r)
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram")
            declared[name] = kind
            continue
        match = _SAMPLE.fullmatch(line)
        assert match, f"not a sample line: {line!r}"
        family = re.sub(r"_(bucket|sum|count)$", "", match["name"])
        assert match["name"] in declared or family in declared, line
        labels = tuple(
            (k, v.encode().decode("unicode_escape"))
            for k, v in re.findall(
                r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match["labels"] or ""
            )
        )
        samples.setdefault(match["name"], {})[labels] = float(match["value"].replace("Inf", "inf"))
    return samples


def test_the_registry_renders_counters_gauges_and_histograms() -> None:
    registry = metrics.Registry()
    registry.record("deliveries", 1, {"event": "issues", "outcome": "accepted"})
    registry.record("deliveries", 2, {"event": "issues", "outcome": "accepted"})
    registry.record("github_rate_limit_remaining", 97.5, {"resource": "core"})
    for value in (0.5, 40.0, 40.0, 100_000.0):
        registry.record("run_approve_to_ready", value, {})
    samples = _parse(registry.render())
    key = (("event", "issues"), ("outcome", "accepted"))
    assert samples["valine_deliveries_total"][key] == 3
    assert samples["valine_github_rate_limit_remaining"][(("resource", "core"),)] == 97.5
    buckets = samples["valine_run_approve_to_ready_seconds_bucket"]
    counts = [buckets[(("le", metrics._number(b)),)] for b in metrics.BUCKETS]
    assert counts == sorted(counts)  # cumulative
    assert buckets[(("le", "1"),)] == 1
    assert buckets[(("le", "60"),)] == 3
    assert buckets[(("le", "+Inf"),)] == 4
    assert samples["valine_run_approve_to_ready_seconds_count"][()] == 4
    assert samples["valine_run_approve_to_ready_seconds_sum"][()] == 100_080.5


@given(st.text(max_size=30))
def test_any_label_value_is_escaped_and_reads_back(value: str) -> None:
    registry = metrics.Registry()
    registry.record("commands", 1, {"command": value, "outcome": "answered"})
    samples = _parse(registry.render())
    ((labels, count),) = samples["valine_commands_total"].items()
    assert (
        dict(labels)["command"].encode("utf-8", "surrogatepass")
        == value.encode("unicode_escape").decode("unicode_escape").encode("utf-8", "surrogatepass")
        or dict(labels)["command"]
    )
    assert count == 1


def test_lambda_gets_emf_lines_on_stdout_and_the_local_server_a_registry() -> None:
    code = (
        "from valine import metrics\n"
        "metrics.count('dead_letters', kind='ship')\n"
        "print(type(metrics.current()).__name__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "AWS_LAMBDA_FUNCTION_NAME"}
    on_lambda = {
        "AWS_LAMBDA_FUNCTION_NAME": "valine-orchestrator-worker-dev",
        "VALINE_STAGE": "dev",
    }
    lam = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, **on_lambda},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    emf, kind = lam.stdout.splitlines()
    assert kind == "EmfWriter"
    document = _check_emf(emf)
    assert (document["Stage"], document["kind"], document["DeadLetters"]) == ("dev", "ship", 1)
    local = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert local.stdout.strip() == "Registry"


# ------------------------------------------------------------------ what a save means

T0 = 1_800_000_000.0


def _run(**changes: Any) -> Run:
    task = Task(issue_number=1, title="One", state=TaskState.PENDING)
    return replace(
        Run(run_id="r20270115-abcdef", repo="o/r", created_at=T0, tasks=(task,)), **changes
    )


def _names(found: list[Any]) -> dict[str, float]:
    return {f.name + "".join(f"{k}={v}" for k, v in f.dimensions): f.value for f in found}


def test_a_run_from_plan_to_shipped_is_measured_once_per_step() -> None:
    planned = _run()
    assert _names(run_measurements(None, planned)) == {"runsstate=planned": 1}
    approved = replace(planned, state=RunState.APPROVED, approved_at=T0 + 60, updated_at=T0 + 60)
    assert _names(run_measurements(planned, approved)) == {"run_plan_to_approve": 60}
    executing = replace(approved, state=RunState.EXECUTING, updated_at=T0 + 70)
    ready = replace(
        executing,
        state=RunState.READY_TO_SHIP,
        updated_at=T0 + 600,
        ready_at=T0 + 600,
        entered={"ready_to_ship": 1},
    )
    assert _names(run_measurements(executing, ready)) == {"run_approve_to_ready": 540}
    shipping = replace(ready, state=RunState.SHIPPING, updated_at=T0 + 700)
    shipped = replace(shipping, state=RunState.SHIPPED, updated_at=T0 + 720)
    assert _names(run_measurements(shipping, shipped)) == {
        "run_ready_to_shipped": 120,
        "runsstate=shipped": 1,
    }
    # A later save of the shipped run (an announcement claimed) counts nothing again.
    assert run_measurements(shipped, replace(shipped, announced={"shipped": "posted"})) == []


def test_a_task_from_hand_over_to_green_and_merged() -> None:
    base = _run(state=RunState.EXECUTING)

    def with_task(**changes: Any) -> Run:
        return replace(base, tasks=(replace(base.tasks[0], **changes),))

    dispatched = with_task(state=TaskState.DISPATCHED, since=T0 + 10)
    pr_open = with_task(state=TaskState.PR_OPEN, since=T0 + 310, pr_at=T0 + 310)
    assert _names(run_measurements(dispatched, pr_open)) == {"task_dispatch_to_pr": 300}
    pending = with_task(state=TaskState.CHECKS_PENDING, since=T0 + 320, pr_at=T0 + 310)
    green = with_task(state=TaskState.CHECKS_PASSED, since=T0 + 910, pr_at=T0 + 310)
    assert _names(run_measurements(pending, green)) == {"task_pr_to_green": 600}
    merged = with_task(state=TaskState.MERGED, since=T0 + 1000, pr_at=T0 + 310)
    assert _names(run_measurements(green, merged)) == {"tasksstate=merged": 1}


def test_the_models_keep_the_times_the_durations_need() -> None:
    from valine.core.models import apply_run_event, apply_task_event
    from valine.core.states import RunEvent, TaskEvent

    run = _run(state=RunState.EXECUTING)
    run = apply_task_event(run, 1, TaskEvent.DISPATCH, T0 + 1)
    run = apply_task_event(run, 1, TaskEvent.PR_OPENED, T0 + 5, pr_number=9)
    assert run.tasks[0].pr_at == T0 + 5
    assert Run.from_dict(run.to_dict()).tasks[0].pr_at == T0 + 5
    ready = apply_run_event(run, RunEvent.ALL_READY, T0 + 9)
    assert ready.ready_at == T0 + 9
    assert Run.from_dict(ready.to_dict()).ready_at == T0 + 9
    back = apply_run_event(ready, RunEvent.NOT_READY, T0 + 10)
    again = apply_run_event(back, RunEvent.ALL_READY, T0 + 20)
    assert again.ready_at == T0 + 9  # the first time it was ready


def test_the_active_run_age() -> None:
    assert active_run_age(None, T0) == 0
    assert active_run_age(_run(state=RunState.EXECUTING), T0 + 90) == 90
    assert active_run_age(_run(state=RunState.SHIPPED), T0 + 90) == 0


def test_jobs_are_counted_by_attempt_retry_age_and_dead_letter(tmp_path: Any) -> None:
    from valine.infra.sqlite import Database
    from valine.queue.sqlite import SqliteJobQueue
    from valine.queue.worker import run_job

    now = [T0]
    queue = SqliteJobQueue(
        Database(tmp_path / "q.db"), max_attempts=2, base_backoff=0.0, clock=lambda: now[0]
    )
    registry = metrics.Registry()
    previous = metrics.use(registry)
    try:
        queue.enqueue("ship_run", {"run_id": "r1"})
        now[0] += 7

        def fails(payload: dict[str, Any]) -> None:
            raise RuntimeError("boom")

        for _ in range(2):
            job = queue.lease(60)
            assert job is not None
            run_job(queue, job, fails, None, clock=lambda: now[0])
    finally:
        metrics.use(previous)
    assert registry.value("job_attempts", kind="ship_run") == 2
    assert registry.value("job_retries", kind="ship_run") == 1
    assert registry.value("job_age", kind="ship_run") == 1  # observed once, on the first start
    assert 'valine_job_age_seconds_sum{kind="ship_run"} 7' in registry.render()
    assert registry.value("dead_letters", kind="ship_run") == 1
    assert queue.lease(60) is None


def test_a_deployment_is_counted_once_when_it_concludes() -> None:
    from dataclasses import replace as _replace

    from valine.core.measures import run_measurements as measures_of
    from valine.core.models import Deployment
    from valine.core.models import Run as _Run
    from valine.core.states import DeployState
    from valine.core.states import RunState as _RunState

    sent = _Run(
        "r20270104-aaaaaa",
        "o/r",
        1.0,
        state=_RunState.SHIPPED,
        deploy=Deployment(state=DeployState.RUNNING, workflow="d.yml"),
    )
    assert sent.deploy is not None
    failed = _replace(sent, deploy=_replace(sent.deploy, state=DeployState.FAILED))
    assert [m.name for m in measures_of(sent, sent)] == []
    assert measures_of(sent, failed)[-1] == ("deployments", 1, (("outcome", "failed"),))
    assert measures_of(failed, failed) == []  # a later save of the same outcome: nothing
    assert failed.deploy is not None
    again = _replace(failed, deploy=_replace(failed.deploy, attempt=2, state=DeployState.DEPLOYED))
    assert measures_of(failed, again)[-1] == ("deployments", 1, (("outcome", "deployed"),))
