"""Application metrics: one table of what is measured, and two ways out.

Code records a measurement with :func:`count`, :func:`seconds` or :func:`gauge`, naming
a metric of :data:`METRICS` and its dimensions. Where it goes is chosen once per process
with :func:`use`:

- :class:`Registry` (the default, the local server): kept in memory and served by
  ``GET /metrics`` in the Prometheus text exposition format (:meth:`Registry.render`).
- :class:`EmfWriter` (the Lambda functions): one CloudWatch Embedded Metric Format line
  per measurement on stdout; CloudWatch Logs turns it into a metric, with no agent, no
  client and no request (``_aws.CloudWatchMetrics`` names the namespace, the dimension
  sets and each metric's unit).

Only the standard library, imported lazily by whoever records: the Discord PING path
never loads this module. Dimension values come from fixed sets (event names, outcomes,
states, job kinds), never from user input, so the number of series stays small.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol, TextIO

from valine.core.records import Record


class Metric(Record):
    """One metric: its kind, CloudWatch name and unit, dimensions and help text."""

    kind: str  # "counter", "seconds" (a distribution of durations) or "gauge"
    cloudwatch: str
    unit: str  # a CloudWatch unit: Count, Seconds, Percent, None
    dimensions: tuple[str, ...]
    help: str


#: Every metric the service records, by its Prometheus name (``valine_`` prefixed).
METRICS: Mapping[str, Metric] = {
    "deliveries": Metric(
        "counter", "Deliveries", "Count", ("event", "outcome"), "GitHub webhook deliveries"
    ),
    "commands": Metric(
        "counter", "Commands", "Count", ("command", "outcome"), "Discord interactions"
    ),
    "job_attempts": Metric("counter", "JobAttempts", "Count", ("kind",), "job runs started"),
    "job_retries": Metric(
        "counter", "JobRetries", "Count", ("kind",), "job runs that were a retry"
    ),
    "dead_letters": Metric(
        "counter", "DeadLetters", "Count", ("kind",), "jobs that failed every attempt"
    ),
    "job_age": Metric(
        "seconds", "JobAge", "Seconds", ("kind",), "time from enqueue to a job's first start"
    ),
    "runs": Metric("counter", "Runs", "Count", ("state",), "runs planned and ended, by state"),
    "deployments": Metric(
        "counter", "Deployments", "Count", ("outcome",), "deployments after ship, by outcome"
    ),
    "run_plan_to_approve": Metric(
        "seconds", "RunPlanToApprove", "Seconds", (), "time from plan to approval"
    ),
    "run_approve_to_ready": Metric(
        "seconds", "RunApproveToReady", "Seconds", (), "time from approval to ready to ship"
    ),
    "run_ready_to_shipped": Metric(
        "seconds", "RunReadyToShipped", "Seconds", (), "time from ready to shipped"
    ),
    "active_run_age": Metric(
        "gauge", "ActiveRunAge", "Seconds", (), "age of the active run (0: none)"
    ),
    "tasks": Metric("counter", "Tasks", "Count", ("state",), "tasks ended, by end state"),
    "task_dispatch_to_pr": Metric(
        "seconds", "TaskDispatchToPr", "Seconds", (), "time from hand-over to pull request"
    ),
    "task_pr_to_green": Metric(
        "seconds", "TaskPrToGreen", "Seconds", (), "time from pull request to green checks"
    ),
    "github_requests": Metric(
        "counter", "GitHubRequests", "Count", ("kind",), "requests to GitHub (rest, graphql)"
    ),
    "github_rate_limit_remaining": Metric(
        "gauge",
        "GitHubRateLimitRemainingPercent",
        "Percent",
        ("resource",),
        "share of GitHub's rate limit left (percent; the lowest budget)",
    ),
    "discord_requests": Metric("counter", "DiscordRequests", "Count", (), "requests to Discord"),
    "discord_rate_limited": Metric(
        "counter", "DiscordRateLimited", "Count", (), "Discord answers 429"
    ),
}

#: Bucket bounds (seconds) of the duration histograms served by ``GET /metrics``.
BUCKETS = (1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)


class Sink(Protocol):
    """Where measurements go."""

    def record(self, name: str, value: float, dimensions: Mapping[str, str]) -> None:
        """Take one measurement of metric ``name``."""


class Registry:
    """Measurements kept in memory, rendered in the Prometheus text format (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._histograms: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}

    def record(self, name: str, value: float, dimensions: Mapping[str, str]) -> None:
        """Add to a counter, set a gauge or observe a duration."""
        key = (name, tuple(sorted(dimensions.items())))
        kind = METRICS[name].kind
        with self._lock:
            if kind == "counter":
                self._counters[key] = self._counters.get(key, 0.0) + value
            elif kind == "gauge":
                self._gauges[key] = value
            else:
                # [count, sum, bucket counts...]
                slots = self._histograms.setdefault(key, [0.0] * (2 + len(BUCKETS)))
                slots[0] += 1
                slots[1] += value
                for i, bound in enumerate(BUCKETS):
                    if value <= bound:
                        slots[2 + i] += 1

    def value(self, name: str, **dimensions: str) -> float:
        """A counter's total, a gauge's value or a histogram's count (0 if never recorded)."""
        key = (name, tuple(sorted(dimensions.items())))
        with self._lock:
            if key in self._histograms:
                return self._histograms[key][0]
            return self._counters.get(key, self._gauges.get(key, 0.0))

    def render(self) -> str:
        """Every metric in the Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            counters = dict(self._counters)
            gauges = dict(self._gauges)
            histograms = {k: list(v) for k, v in self._histograms.items()}
        lines: list[str] = []
        for name, metric in METRICS.items():
            full = f"valine_{name}"
            if metric.kind == "seconds":
                series = sorted((k[1], v) for k, v in histograms.items() if k[0] == name)
                lines += _histogram(full + "_seconds", metric.help, series)
                continue
            values = counters if metric.kind == "counter" else gauges
            full += "_total" if metric.kind == "counter" else ""
            lines += _header(full, metric.help, metric.kind)
            for dims, value in sorted((k[1], v) for k, v in values.items() if k[0] == name):
                lines.append(f"{full}{_labels(dims)} {_number(value)}")
        return "\n".join(lines) + "\n"


def _histogram(
    full: str, text: str, series: list[tuple[tuple[tuple[str, str], ...], list[float]]]
) -> list[str]:
    lines = _header(full, text, "histogram")
    for dims, slots in series:
        for bound, count in zip(BUCKETS, slots[2:], strict=True):
            lines.append(
                f"{full}_bucket{_labels((*dims, ('le', _number(bound))))} {_number(count)}"
            )
        lines.append(f"{full}_bucket{_labels((*dims, ('le', '+Inf')))} {_number(slots[0])}")
        lines.append(f"{full}_sum{_labels(dims)} {_number(slots[1])}")
        lines.append(f"{full}_count{_labels(dims)} {_number(slots[0])}")
    return lines


def _header(name: str, text: str, kind: str) -> list[str]:
    return [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]


def _labels(dims: Iterable[tuple[str, str]]) -> str:
    pairs = [f'{k}="{_escape(v)}"' for k, v in dims]
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value == int(value) else repr(value)


#: The CloudWatch namespace of every metric.
NAMESPACE = "ValineOrchestrator"


class EmfWriter:
    """One CloudWatch Embedded Metric Format line per measurement, on ``stream``.

    Every line carries the dimension ``Stage`` (the stack's stage); a metric with
    dimensions is also published without them (``[["Stage"], ["Stage", ...]]``), so an
    alarm can watch the total.
    """

    def __init__(
        self,
        stage: str,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stage = stage
        self._stream = stream
        self._clock = clock
        self._lock = threading.Lock()

    def line(self, name: str, value: float, dimensions: Mapping[str, str]) -> str:
        """The EMF document of one measurement, as one JSON line."""
        metric = METRICS[name]
        dimension_sets = [["Stage"]]
        if metric.dimensions:
            dimension_sets.append(["Stage", *metric.dimensions])
        document: dict[str, object] = {
            "_aws": {
                "Timestamp": int(self._clock() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": NAMESPACE,
                        "Dimensions": dimension_sets,
                        "Metrics": [{"Name": metric.cloudwatch, "Unit": metric.unit}],
                    }
                ],
            },
            "Stage": self.stage,
            **{key: dimensions[key] for key in metric.dimensions},
            metric.cloudwatch: value,
        }
        return json.dumps(document, separators=(",", ":"))

    def record(self, name: str, value: float, dimensions: Mapping[str, str]) -> None:
        """Write the measurement's line (Lambda sends stdout to CloudWatch Logs)."""
        text = self.line(name, value, dimensions) + "\n"
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(text)
            stream.flush()


_sink: list[Sink] = []
_sink_lock = threading.Lock()


def use(sink: Sink) -> Sink:
    """Send this process's measurements to ``sink``; returns the one it replaces."""
    with _sink_lock:
        previous = current()
        _sink[0] = sink
    return previous


def current() -> Sink:
    """Where this process's measurements go: chosen on first use from the environment.

    On Lambda (``AWS_LAMBDA_FUNCTION_NAME`` is set) EMF lines with the dimension
    ``Stage`` = ``VALINE_STAGE``; anywhere else a :class:`Registry` for ``GET /metrics``.
    """
    if not _sink:
        import os

        function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        stage = os.environ.get("VALINE_STAGE") or "default"
        _sink.append(EmfWriter(stage) if function else Registry())
    return _sink[0]


def count(name: str, value: float = 1, **dimensions: str) -> None:
    """Add ``value`` to counter ``name``."""
    _record(name, value, dimensions)


def seconds(name: str, value: float, **dimensions: str) -> None:
    """Observe a duration (a negative one, from a clock step, counts as 0)."""
    _record(name, max(0.0, value), dimensions)


def gauge(name: str, value: float, **dimensions: str) -> None:
    """Set gauge ``name`` to ``value``."""
    _record(name, value, dimensions)


def _record(name: str, value: float, dimensions: Mapping[str, str]) -> None:
    metric = METRICS[name]  # a KeyError for a metric not in the table: a bug, not input
    if set(dimensions) != set(metric.dimensions):
        raise ValueError(f"{name} takes dimensions {metric.dimensions}, got {sorted(dimensions)}")
    try:
        current().record(name, value, dimensions)
    except Exception:  # measuring must never break the work it measures
        from valine.logs import get_logger

        get_logger("valine.metrics").warning("could not record %s", name, exc_info=True)
