"""One request uses the model at a time; the others wait their turn in arrival order, in a bounded line.

A local model answers one request at a time, so requests queue for it. Without a bound a busy
server only gets slower for everyone (80 concurrent clients once pushed p50 past 2 s on a 0.3M
model); with :class:`ModelQueue` at most ``max_waiting`` requests wait, and the next one is told at
once to come back later (503 with ``Retry-After``, see :class:`ServerBusy`). The turn passes
directly from one request to the next waiter (first come, first served: a newcomer cannot jump the
line), a waiter whose client hangs up leaves the line, and a stopping server empties it.

Everything here runs on the server's event loop; only :attr:`ModelQueue.stopping` is set from
elsewhere (a signal handler), so it is a thread-safe event.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable

# How often a waiting request checks whether its client is still there and the server still runs.
POLL_SECONDS = 0.1


class ServerBusy(Exception):
    """The line for the model is full: the server answers 503 with ``Retry-After``."""

    def __init__(self, waiting: int, retry_after: int) -> None:
        super().__init__(
            f"the server is busy: {waiting} requests are already waiting for the model (the limit is "
            f"[server] max_waiting in infuse.toml); retry in {retry_after} s"
        )
        self.retry_after = retry_after


class ServerStopping(Exception):
    """The server is shutting down: no new work starts (503)."""


class ClientGone(Exception):
    """The client hung up while its request waited for the model."""


class ModelQueue:
    """A FIFO lock with a bounded number of waiters.

    >>> queue = ModelQueue(max_waiting=16)
    >>> turn = await queue.acquire(request.is_disconnected)  # doctest: +SKIP
    >>> try: ...  # use the model  # doctest: +SKIP
    ... finally: turn.release()  # doctest: +SKIP
    """

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        self.stopping = threading.Event()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._busy = False
        self._mean_seconds: float | None = None  # how long one request holds the model (moving average)

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def retry_after(self) -> int:
        """Seconds until a place in the line is likely free: the mean time per request times the line."""
        mean = self._mean_seconds if self._mean_seconds is not None else 1.0
        return max(1, min(3600, math.ceil(mean * (self.waiting + 1))))

    async def acquire(self, client_gone: Callable[[], Awaitable[bool]]) -> Turn:
        """Wait for the model; raises :class:`ServerBusy`, :class:`ServerStopping` or :class:`ClientGone`."""
        if self.stopping.is_set():
            raise ServerStopping("the server is shutting down; retry against a running server")
        if not self._busy and not self._waiters:
            self._busy = True
            return Turn(self)
        if len(self._waiters) >= self.max_waiting:
            raise ServerBusy(len(self._waiters), self.retry_after())
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            while not turn.done():
                await asyncio.wait([turn], timeout=POLL_SECONDS)
                if turn.done():
                    break
                if self.stopping.is_set():
                    raise ServerStopping("the server is shutting down; retry against a running server")
                if await client_gone():
                    raise ClientGone()
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._hand_on()  # the turn came just as this request gave up: pass it on
            else:
                turn.cancel()
                self._waiters.remove(turn)
            raise
        return Turn(self)

    def _hand_on(self) -> None:
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # the model stays busy: it now belongs to that waiter
                return
        self._busy = False

    def _released(self, seconds: float) -> None:
        self._mean_seconds = seconds if self._mean_seconds is None else 0.8 * self._mean_seconds + 0.2 * seconds
        self._hand_on()


class Turn:
    """A request's turn with the model; :meth:`release` (once, on the event loop) passes it on."""

    def __init__(self, queue: ModelQueue) -> None:
        self._queue = queue
        self._started = time.perf_counter()
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._queue._released(time.perf_counter() - self._started)
