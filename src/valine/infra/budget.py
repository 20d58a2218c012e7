"""How long one job may take, from the clients' retry settings (the worker timeout arithmetic).

A job is a handful of GitHub and Discord calls. The slowest a GitHub call can be is every
attempt timing out plus the backoff between them plus the short wait for a rate limit
(a longer wait puts the job back instead, see :class:`~valine.core.errors.RateLimited`):

    GITHUB_CALL = GITHUB_ATTEMPTS * GITHUB_TIMEOUT + GITHUB_RETRY_WAIT + RATE_LIMIT_BUDGET
                = 4 * 10 + 30 + 10 = 80 s

The longest job is the ship job: one merge per task (``planner.max_tasks``, 5 by default)
plus the relabel-and-close mutation and its read-back, so ``MAX_CALLS_PER_JOB`` = 7 and

    LONGEST_JOB = MAX_CALLS_PER_JOB * GITHUB_CALL = 7 * 80 = 560 s

The AWS worker Lambda's ``Timeout`` must exceed it (900 s, Lambda's maximum, leaves
``START_MARGIN``); the worker starts a record of its batch only while at least
``LONGEST_JOB`` remains and puts the others back without spending an attempt; and the
queue's ``VisibilityTimeout`` is six times the function's timeout, as AWS recommends for
SQS event sources, so no record of a batch becomes visible while the batch runs.
``tests/unit/test_template.py`` checks ``template.yaml`` against these numbers. The local
worker pool needs no such bound: its heartbeat extends a running job's lease.
"""

from __future__ import annotations

#: Seconds one GitHub request may take before it times out.
GITHUB_TIMEOUT = 10.0
#: Attempts of one GitHub request (network errors, 5xx of idempotent requests).
GITHUB_ATTEMPTS = 4
#: Total backoff of one GitHub call between its attempts.
GITHUB_RETRY_WAIT = 30.0
#: The longest a call waits in place for a rate limit; beyond it the job is put back.
RATE_LIMIT_BUDGET = 10.0
#: GitHub calls of the longest job (the ship job of 5 tasks).
MAX_CALLS_PER_JOB = 7
#: The slowest one GitHub call can be.
GITHUB_CALL = GITHUB_ATTEMPTS * GITHUB_TIMEOUT + GITHUB_RETRY_WAIT + RATE_LIMIT_BUDGET
#: The longest one job can take.
LONGEST_JOB = MAX_CALLS_PER_JOB * GITHUB_CALL
#: What the worker Lambda's timeout must leave beyond the longest job (start-up, the ack).
START_MARGIN = 60.0
#: AWS: a queue's visibility timeout should be at least this many times the function's.
VISIBILITY_FACTOR = 6
