"""Worker threads that drain a :class:`~valine.ports.JobQueue` into handlers.

Each job's ``kind`` names its handler; the handler gets the job's payload. A handler
that returns acks the job; one that raises gets the job retried with a backoff and, after
the queue's ``max_attempts``, dead-lettered. Delivery is at least once (a worker may die
between the handler's effect and the ack), so handlers must be idempotent.

While a handler runs, the pool's heartbeat extends the job's lease every third of the
visibility timeout (:meth:`~valine.ports.JobQueue.extend`), so a job that runs longer than
its lease is not taken by a second worker; only a worker that dies lets it go.

A handler that raises :class:`~valine.core.errors.RateLimited` has its job put back until
the limit resets (:meth:`~valine.ports.JobQueue.release`) without spending an attempt: a
rate limit is a wait, not a failure. So does one that raises
:class:`~valine.core.errors.ClaimHeld` (another attempt, perhaps one killed mid-step,
holds a claim on the step): the job comes back when the claim expires.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from valine.core.errors import ClaimHeld, RateLimited
from valine.logs import get_logger
from valine.ports import Job, JobQueue

log = get_logger("valine.worker")

Handler = Callable[[dict[str, Any]], None]
#: Called once a job is dead-lettered: ``(kind, payload, last_error)``.
DeadLetterHook = Callable[[str, dict[str, Any], str], None]


def _extra(job: Job) -> dict[str, Any]:
    return {"job_id": job.job_id, "job_kind": job.kind, "job_attempts": job.attempts}


class Outcome(enum.Enum):
    """What became of one run of a job."""

    #: The handler returned: the caller acknowledges the job.
    DONE = "done"
    #: The handler failed: the queue retries it later or dead-lettered it.
    FAILED = "failed"
    #: The job must wait (a rate limit): put back without spending an attempt.
    RELEASED = "released"


#: Seconds added to a rate limit's reset before a released job runs again.
RESET_MARGIN = 1.0


def run_job(
    queue: JobQueue,
    job: Job,
    handler: Handler | None,
    on_dead_letter: DeadLetterHook | None,
    *,
    clock: Callable[[], float] = time.time,
) -> Outcome:
    """Run one leased job; ``Outcome.DONE`` if it succeeded (the caller acknowledges it).

    A handler that raises (or a kind no handler takes) has the job handed to the queue's
    ``retry``: it runs again after a backoff, or, after its last attempt, is
    dead-lettered and ``on_dead_letter`` tells the people waiting. A handler that raises
    :class:`RateLimited` or :class:`ClaimHeld`, and a job handed out before its
    ``not_before``, are put back with ``release`` (no attempt spent). The local worker
    pool and the AWS worker Lambda both run jobs through here. Payloads are never
    logged: they may hold user content.
    """
    extra = _extra(job)
    now = clock()
    if job.not_before > now:
        queue.release(job, job.not_before - now)
        return Outcome.RELEASED
    _measure_start(job, handler is not None, now)
    try:
        if handler is None:
            raise LookupError(f"no handler for job kind {job.kind!r}")
        handler(job.payload)
    except RateLimited as limited:
        delay = max(0.0, limited.reset_at - clock()) + RESET_MARGIN
        log.warning(
            "job %s (%s) waits %.0f s for GitHub's rate limit to reset: %s",
            job.job_id,
            job.kind,
            delay,
            limited,
            extra=extra,
        )
        queue.release(job, delay)
        return Outcome.RELEASED
    except ClaimHeld as held:
        delay = max(0.0, held.until - clock()) + RESET_MARGIN
        log.warning(
            "job %s (%s) waits %.0f s for a claim to expire: %s",
            job.job_id,
            job.kind,
            delay,
            held,
            extra=extra,
        )
        queue.release(job, delay)
        return Outcome.RELEASED
    except Exception as exc:
        log.warning(
            "job %s (%s) failed on attempt %d: %r",
            job.job_id,
            job.kind,
            job.attempts,
            exc,
            exc_info=True,
            extra=extra,
        )
        if not queue.retry(job, repr(exc)):
            _dead_lettered(job, repr(exc), on_dead_letter)
        return Outcome.FAILED
    log.debug("job %s (%s) done", job.job_id, job.kind, extra=extra)
    return Outcome.DONE


def _measure_start(job: Job, known: bool, now: float) -> None:
    """Count the attempt (and the retry), and the age of a job's first start."""
    from valine import metrics

    kind = job.kind if known else "unknown"
    metrics.count("job_attempts", kind=kind)
    if job.attempts > 1:
        metrics.count("job_retries", kind=kind)
    elif job.enqueued_at > 0:
        metrics.seconds("job_age", now - job.enqueued_at, kind=kind)


def dead_lettered(job: Job, error: str, on_dead_letter: DeadLetterHook | None) -> None:
    """Log a job's death and tell the people waiting (``on_dead_letter``); never raises."""
    _dead_lettered(job, error, on_dead_letter)


def _dead_lettered(job: Job, error: str, on_dead_letter: DeadLetterHook | None) -> None:
    extra = _extra(job)
    log.error(
        "job %s (%s) dead-lettered after %d attempts: %s",
        job.job_id,
        job.kind,
        job.attempts,
        error,
        extra=extra,
    )
    if on_dead_letter is None:
        return
    try:
        on_dead_letter(job.kind, job.payload, error)
    except Exception:
        log.exception("dead-letter hook failed for job %s", job.job_id, extra=extra)


#: How often a worker yielding to requests checks whether they have been answered.
BUSY_CHECK = 0.01


class WorkerPool:
    """A pool of daemon threads, each leasing and running one job at a time.

    ``poll_interval`` is how long a thread sleeps after finding no due job (or after the
    queue itself failed); it wakes at once when :meth:`stop` is called. With ``busy``
    (requests are being answered), a thread that finished a job waits until they are, at
    most ``yield_interval`` seconds, before its next job. ``clock`` (epoch
    seconds, the queue's) says how long a rate-limited job waits.
    """

    def __init__(
        self,
        queue: JobQueue,
        handlers: Mapping[str, Handler],
        *,
        threads: int = 2,
        visibility_timeout: float = 60.0,
        poll_interval: float = 0.2,
        on_dead_letter: DeadLetterHook | None = None,
        busy: Callable[[], bool] | None = None,
        yield_interval: float = 0.25,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.queue = queue
        self.handlers = dict(handlers)
        self.threads = threads
        self.visibility_timeout = visibility_timeout
        self.poll_interval = poll_interval
        self.on_dead_letter = on_dead_letter
        self.busy = busy
        self.yield_interval = yield_interval
        self._clock = clock
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._heartbeat = Heartbeat(queue, visibility_timeout)

    def start(self) -> None:
        """Start the worker threads; raises ``RuntimeError`` if they are already running."""
        if any(t.is_alive() for t in self._threads):
            raise RuntimeError("worker pool already started")
        self._stop.clear()
        self._heartbeat.start()
        self._threads = [
            threading.Thread(target=self._loop, name=f"valine-worker-{i}", daemon=True)
            for i in range(self.threads)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop taking jobs and wait up to ``timeout`` seconds for running jobs to finish.

        Returns True if every thread has exited. A job still running when the timeout
        passes is left to its thread (a daemon, so it does not keep the process alive);
        if the process then ends, the job runs again after its visibility timeout.
        """
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stopped = not any(t.is_alive() for t in self._threads)
        if stopped:
            self._heartbeat.stop()  # a job still running keeps its lease until it ends
        return stopped

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` has been called (until the next :meth:`start`)."""
        return self._stop.is_set()

    @property
    def running(self) -> bool:
        """True while any worker thread is alive."""
        return any(t.is_alive() for t in self._threads)

    def run_one(self) -> bool:
        """Lease one due job and run it (see :func:`run_job`); False if no job was due.

        The heartbeat keeps the lease while the handler runs.
        """
        job = self.queue.lease(self.visibility_timeout)
        if job is None:
            return False
        with self._heartbeat.holding(job):
            outcome = run_job(
                self.queue,
                job,
                self.handlers.get(job.kind),
                self.on_dead_letter,
                clock=self._clock,
            )
        if outcome is Outcome.DONE:
            self.queue.ack(job)
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.run_one()
            except Exception:
                # The queue itself failed (e.g. the database was locked for too long):
                # keep the thread alive and try again after a pause.
                log.exception("worker could not take or settle a job")
                worked = False
            if not worked:
                self._stop.wait(self.poll_interval)
            else:
                self._yield_to_requests()

    def _yield_to_requests(self) -> None:
        """Wait while requests are being answered: until none is, at most ``yield_interval``.

        Requests wait for an answer (GitHub allows 10 s, Discord 3 s) and share this
        process's interpreter: they go first. Jobs are durable, so a backlog only waits;
        under a load that never pauses each thread still runs one job per interval.
        """
        if self.busy is None:
            return
        deadline = time.monotonic() + self.yield_interval
        while self.busy() and not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(BUSY_CHECK, left))


class Heartbeat:
    """Extends the lease of every job the pool is running, every ``interval`` seconds.

    One daemon thread for the whole pool; ``interval`` defaults to a third of the
    visibility timeout, so two beats can be missed (a stalled database) before a lease
    runs out. A lease the queue says is lost stops being extended.
    """

    def __init__(
        self, queue: JobQueue, visibility_timeout: float, interval: float | None = None
    ) -> None:
        self.queue = queue
        self.visibility_timeout = visibility_timeout
        self.interval = interval if interval is not None else max(0.05, visibility_timeout / 3)
        self._held: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def holding(self, job: Job) -> _Held:
        """A context in which ``job``'s lease is kept."""
        return _Held(self, job)

    def hold(self, job: Job) -> None:
        """Keep extending ``job``'s lease until :meth:`drop`."""
        with self._lock:
            self._held[job.job_id] = job

    def drop(self, job: Job) -> None:
        """Stop extending ``job``'s lease."""
        with self._lock:
            self._held.pop(job.job_id, None)

    def beat(self) -> int:
        """Extend every held lease once; how many the queue extended."""
        with self._lock:
            held = list(self._held.values())
        extended = 0
        for job in held:
            try:
                if self.queue.extend(job, self.visibility_timeout):
                    extended += 1
                else:
                    self.drop(job)
            except Exception:
                log.exception("could not extend the lease of job %s", job.job_id)
        return extended

    def start(self) -> None:
        """Beat in a daemon thread until :meth:`stop`."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="valine-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()


class _Held:
    """``with heartbeat.holding(job):`` keeps the job's lease for the block."""

    def __init__(self, heartbeat: Heartbeat, job: Job) -> None:
        self._heartbeat = heartbeat
        self._job = job

    def __enter__(self) -> None:
        self._heartbeat.hold(self._job)

    def __exit__(self, *_exc: object) -> None:
        self._heartbeat.drop(self._job)


class PeriodicJobs:
    """Enqueues a job of each configured kind once per period (the local EventBridge).

    The dedupe key names the period, so several processes on one queue (or a restart
    within a period) still enqueue each periodic job once.
    """

    def __init__(
        self,
        queue: JobQueue,
        every: Mapping[str, float],
        *,
        clock: Callable[[], float] = time.time,
        check_interval: float = 5.0,
        hooks: Sequence[Callable[[], object]] = (),
    ) -> None:
        self.queue = queue
        self.every = dict(every)
        #: Also called on every tick (the ``[schedule]`` scheduler).
        self.hooks = tuple(hooks)
        self._clock = clock
        self._check_interval = check_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> list[str]:
        """Enqueue every job whose period has begun since it last was; the kinds enqueued."""
        now = self._clock()
        added = []
        for kind, period in self.every.items():
            key = f"periodic:{kind}:{int(now // period)}"
            if self.queue.enqueue(kind, {"scheduled_at": now}, dedupe_key=key):
                added.append(kind)
        for hook in self.hooks:
            hook()
        return added

    def start(self) -> None:
        """Tick in a daemon thread every ``check_interval`` seconds until :meth:`stop`."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="valine-periodic", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop ticking."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("could not enqueue the periodic jobs")
            self._stop.wait(self._check_interval)
