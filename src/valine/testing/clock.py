"""The tests' one fake time: a clock that moves only when told to.

The product takes time in two shapes: the use cases a :class:`valine.ports.Clock`
(``clock.now()``), the queues, clients and stand-ins a ``Callable[[], float]``, and the
clients an injectable ``sleep``. A :class:`ManualClock` is all three: pass ``clock`` to
a use case, ``clock`` (it is callable) to a queue or a stand-in, and ``clock.sleep`` to a
client; ``clock.advance(seconds)`` (or ``clock.t += seconds``) moves every one of them.

End-to-end tests move ``valine serve``'s time from outside instead (the service's
``VALINE_TEST_CLOCK_FILE``); a stand-in running beside it keeps the real time.
"""

from __future__ import annotations

#: Where a clock starts unless told otherwise (a fixed epoch: 2027-01-15T08:00:00Z).
START = 1_800_000_000.0


class ManualClock:
    """Epoch seconds that move only by :meth:`advance`, by assigning :attr:`t`, or by sleeping.

    ``sleep`` records each wait in :attr:`sleeps` and moves the time by it, as a real
    sleep would; ``sleep_moves=False`` keeps the time still (limits then stay in force).
    """

    def __init__(self, start: float = START, *, sleep_moves: bool = True) -> None:
        #: The time now, in epoch seconds; tests may assign it.
        self.t = start
        #: Every ``sleep`` asked for, in order.
        self.sleeps: list[float] = []
        self._sleep_moves = sleep_moves

    def now(self) -> float:
        """The time now (the :class:`valine.ports.Clock` protocol)."""
        return self.t

    def __call__(self) -> float:
        """The time now (the ``clock`` callable of queues, clients and stand-ins)."""
        return self.t

    def advance(self, seconds: float) -> None:
        """Move the time forward by ``seconds``."""
        self.t += seconds

    def sleep(self, seconds: float) -> None:
        """Record the wait instead of waiting (and move the time, unless told not to)."""
        self.sleeps.append(seconds)
        if self._sleep_moves:
            self.t += seconds
