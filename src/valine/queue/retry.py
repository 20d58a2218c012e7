"""The retry rules every JobQueue adapter shares: how many attempts, how long to wait."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from valine.infra.http_client import backoff_delay


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, and dead-lettering after ``max_attempts``."""

    max_attempts: int = 5
    base_backoff: float = 1.0
    max_backoff: float = 300.0
    # Jitter only spreads retries out; it needs no cryptographic quality.
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_backoff < 0 or self.max_backoff < 0:
            raise ValueError("base_backoff and max_backoff must not be negative")

    def exhausted(self, attempts: int) -> bool:
        """True when a job that failed attempt number ``attempts`` must be dead-lettered."""
        return attempts >= self.max_attempts

    def backoff(self, attempts: int) -> float:
        """The delay before retrying a job whose attempt number ``attempts`` failed.

        Uniform in ``[b/2, b]`` with ``b = min(max_backoff, base_backoff * 2**(attempts-1))``.
        """
        return backoff_delay(attempts, self.base_backoff, self.max_backoff, self.rng.random)


def queue_policy(
    max_attempts: int,
    base_backoff: float,
    max_backoff: float,
    rng: random.Random | None,
    dedupe_ttl: float,
) -> RetryPolicy:
    """The retry policy of a queue adapter's constructor arguments (checks ``dedupe_ttl``)."""
    if dedupe_ttl < 0:
        raise ValueError("dedupe_ttl must not be negative")
    return RetryPolicy(max_attempts, base_backoff, max_backoff, rng or random.Random())  # noqa: S311
