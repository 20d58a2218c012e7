"""The lease side shared by queues that wrap another and change only how jobs go in.

Imports nothing at run time beyond the standard library (it sits on the Lambda paths).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from valine.ports import Job, JobQueue


class LeaseDelegate:
    """The lease side of a queue that changes only how jobs go in.

    ``lease``, ``ack``, ``retry``, ``extend``, ``release``, ``dead_letters`` and
    ``depth`` go to :attr:`inner`, the queue that holds the jobs. A wrapper such as the
    repository-tagging queue or the DynamoDB outbox defines ``inner`` and its own
    ``enqueue`` and ``claim``.
    """

    @property
    def inner(self) -> JobQueue:
        """The queue that holds the jobs."""
        raise NotImplementedError

    def lease(self, visibility_timeout: float) -> Job | None:
        """See :meth:`JobQueue.lease`."""
        return self.inner.lease(visibility_timeout)

    def ack(self, job: Job) -> None:
        """See :meth:`JobQueue.ack`."""
        self.inner.ack(job)

    def retry(self, job: Job, error: str) -> bool:
        """See :meth:`JobQueue.retry`."""
        return self.inner.retry(job, error)

    def extend(self, job: Job, visibility_timeout: float) -> bool:
        """See :meth:`JobQueue.extend`."""
        return self.inner.extend(job, visibility_timeout)

    def release(self, job: Job, delay: float) -> bool:
        """See :meth:`JobQueue.release`."""
        return self.inner.release(job, delay)

    def dead_letters(self, limit: int = 50) -> Sequence[Job]:
        """See :meth:`JobQueue.dead_letters`."""
        return self.inner.dead_letters(limit)

    def depth(self) -> int:
        """See :meth:`JobQueue.depth`."""
        return self.inner.depth()
