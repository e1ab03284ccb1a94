"""Failed-auth rate limiting: an address that fails too often is refused for a while.

Why in memory: the check runs before anything else on every request, including the ones an
attacker sends by the thousand, so it must cost no database write. The price is that the counts
are **per server process** (a restart, or another worker process, starts from zero); the failures
themselves are also recorded in the identity database (:meth:`IdentityStore.record_failure`) for
admins to read. The limits come from ``[auth]`` (``max_failures`` within ``failure_window`` seconds
block an address for ``block_seconds``).

>>> limiter = FailedAuthLimiter(max_failures=2, window=60, block=30, clock=lambda: 0.0)
>>> limiter.failure("10.0.0.1"), limiter.failure("10.0.0.1")
(None, 30.0)
>>> limiter.retry_after("10.0.0.1"), limiter.retry_after("10.0.0.2")
(30.0, None)
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from infuse.config import AuthSettings
from infuse.identity.errors import TooManyFailuresError


class FailedAuthLimiter:
    """Counts failed authentications per client address; ``max_failures`` in ``window`` s block for ``block`` s."""

    def __init__(
        self,
        max_failures: int = 10,
        window: float = 300.0,
        block: float = 900.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 100_000,
    ) -> None:
        self.max_failures = max_failures
        self.window = float(window)
        self.block = float(block)
        self.max_addresses = max_addresses  # memory bound: a flood of addresses cannot grow it without limit
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._blocked: dict[str, float] = {}  # address -> until (clock time)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> FailedAuthLimiter:
        return cls(settings.max_failures, settings.failure_window, settings.block_seconds)

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or None when it is not blocked."""
        with self._lock:
            until = self._blocked.get(address)
            if until is None:
                return None
            left = until - self._clock()
            if left <= 0:
                del self._blocked[address]
                return None
            return left

    def check(self, address: str) -> None:
        """Raise :class:`TooManyFailuresError` (429, with ``retry_after``) when ``address`` is blocked."""
        left = self.retry_after(address)
        if left is not None:
            raise TooManyFailuresError(address, left)

    def failure(self, address: str) -> float | None:
        """Count a failed authentication; returns ``retry_after`` when this failure blocks the address."""
        with self._lock:
            now = self._clock()
            if len(self._failures) >= self.max_addresses and address not in self._failures:
                self._prune(now)
            times = self._failures.setdefault(address, deque())
            times.append(now)
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) < self.max_failures:
                return None
            del self._failures[address]
            self._blocked[address] = now + self.block
            return self.block

    def success(self, address: str) -> None:
        """A successful authentication forgets the address's earlier failures (not an active block)."""
        with self._lock:
            self._failures.pop(address, None)

    def _prune(self, now: float) -> None:
        """Drop counts older than the window and ended blocks; when still full, the oldest counts."""
        for address in [a for a, t in self._failures.items() if not t or t[-1] <= now - self.window]:
            del self._failures[address]
        for address in [a for a, until in self._blocked.items() if until <= now]:
            del self._blocked[address]
        while len(self._failures) >= self.max_addresses:
            self._failures.pop(next(iter(self._failures)))
