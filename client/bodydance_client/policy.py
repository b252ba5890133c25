"""The rules both clients follow, written once; the clients only make the calls.

:class:`~bodydance_client.sdk.BodyDanceClient` (blocking) and
:class:`~bodydance_client.aio.AsyncBodyDanceClient` (asyncio) differ only in
how they wait: a blocking call and ``time.sleep``, or an awaited call and
``asyncio.sleep``. What to wait for is decided here, without any I/O:

* which errors are worth retrying, and which typed :class:`BodyDanceError` a
  server error becomes (:func:`is_retryable`, :func:`translate`);
* the retry loop of one request: exponential backoff (0.2 s doubling to 5 s)
  until a deadline, failing over to the next server URL after each failure,
  and the give-up error naming the attempt count (:func:`retry_attempts`);
* the bounded, in-order window of frames in flight (:class:`InOrderWindow`);
* polling for readiness until a timeout (:func:`ready_polls`);
* which URLs are gRPC targets that gRPC balances itself (:func:`is_balanced_target`,
  :func:`balanced_target`): ``dns:///service:8001`` (every address the name resolves to) or
  ``ipv4:10.0.0.1:8001,10.0.0.2:8001``. Such a target is one connection, and so one entry of the
  failover; gRPC spreads its requests over the addresses (``round_robin``), skips those it cannot
  reach, and a retried request goes to the next healthy one.
"""

from __future__ import annotations

import collections
import ipaddress
import threading
import time
from typing import Callable, Deque, Generic, Iterator, List, Optional, Sequence, TypeVar, Union

from bodydance_client import contract as C
from bodydance_client.errors import BodyDanceError, RequestTimeoutError, ServerNotReadyError, from_tagged

RETRYABLE_CODES = ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "UNKNOWN")
FIRST_DELAY_S = 0.2
MAX_DELAY_S = 5.0
READY_POLL_S = 0.25
READY_MODELS = (C.SUBJECT_ENSEMBLE.name, C.FRAME_ENSEMBLE.name)
# gRPC name-resolver schemes whose targets can name several servers (``unix:`` names one).
BALANCED_SCHEMES = ("dns:", "ipv4:", "ipv6:")
DEFAULT_LB_POLICY = "round_robin"

Clock = Callable[[], float]


def server_urls(urls: Union[str, Sequence[str]]) -> List[str]:
    """One ``host:port`` or several -> a non-empty list (ValueError if there are none)."""
    listed = [urls] if isinstance(urls, str) else list(urls)
    if not listed:
        raise ValueError("at least one server URL is needed")
    return listed


def is_balanced_target(url: str) -> bool:
    """True for a gRPC target with a resolver scheme (``dns:///svc:8001``, ``ipv4:a:1,b:2``), which gRPC
    resolves and balances itself; False for a plain ``host:port`` (one server, the failover's unit)."""
    return url.startswith(BALANCED_SCHEMES)


def balanced_target(addresses: Sequence[str]) -> str:
    """``['10.0.0.1:8001', '[::1]:8002']`` -> one gRPC target (``ipv4:...`` or ``ipv6:...``) over them all.

    Only IP literals with ports: a host name is ``dns:///name:port``, resolved by gRPC itself.
    """
    listed = list(addresses)
    if not listed:
        raise ValueError("at least one address is needed")
    families = set()
    for address in listed:
        host, sep, port = address.rpartition(":")
        try:
            families.add(ipaddress.ip_address(host.strip("[]")).version)
        except ValueError:
            raise ValueError(f"{address!r} is not an IP address with a port; for a name use "
                             f"'dns:///{address}'") from None
        if not sep or not port.isdigit():
            raise ValueError(f"{address!r} has no port")
    if len(families) > 1:
        raise ValueError("IPv4 and IPv6 addresses cannot share one target")
    return f"ipv{families.pop()}:" + ",".join(listed)


# -- errors ---------------------------------------------------------------------------------
def status_of(err) -> str:
    """The gRPC status of a tritonclient ``InferenceServerException`` ('' when it has none)."""
    return str(err.status() or "")


def is_retryable(err) -> bool:
    """True for the statuses an overloaded, restarting or absent server answers with."""
    status = status_of(err)
    return any(code in status for code in RETRYABLE_CODES)


def translate(err, what: str) -> BodyDanceError:
    """A server error -> the typed error a caller can act on (``what`` names the request)."""
    status = status_of(err)
    if "INVALID_ARGUMENT" in status:
        return from_tagged(err.message() or str(err))
    if "DEADLINE_EXCEEDED" in status:
        return RequestTimeoutError(f"{what} did not finish within its timeout")
    return ServerNotReadyError(f"{what} failed: {status} {err.message()}")


# -- retries and failover -------------------------------------------------------------------
def backoff_delays(first_s: float = FIRST_DELAY_S, cap_s: float = MAX_DELAY_S) -> Iterator[float]:
    """0.2, 0.4, 0.8, ... seconds, each double the last, capped at 5 s (forever)."""
    delay = first_s
    while True:
        yield delay
        delay = min(delay * 2, cap_s)


class Failover:
    """Which of ``count`` servers requests go to; a failure there moves everyone to the next one.

    Shared by every request of one client (threads or tasks), so a dead server is
    left once, not once per request in flight.
    """

    def __init__(self, count: int):
        if count < 1:
            raise ValueError("at least one server is needed")
        self.count = count
        self._active = 0
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        with self._lock:
            return self._active

    def failed(self, index: int) -> None:
        """Server ``index`` failed: move on, unless another request already did."""
        with self._lock:
            if self._active == index:
                self._active = (index + 1) % self.count


class Attempt:
    """One try of a request: send it to :attr:`server`; on an error, ask :meth:`failed` how long to wait."""

    def __init__(self, tries: "_Tries", number: int, server: int):
        self._tries = tries
        self.number = number  # 1, 2, ...
        self.server = server

    def failed(self, err) -> float:
        """Seconds to back off before the next attempt; raises when the request is to give up.

        Raises the translated error for a non-retryable ``err`` (or any error when
        retrying is off), and :class:`ServerNotReadyError` with the attempt count once
        the deadline has passed. Call it inside the ``except`` block.
        """
        tries = self._tries
        if not (tries.retry and is_retryable(err)):
            raise translate(err, tries.what) from err
        if tries.clock() > tries.deadline:
            raise ServerNotReadyError(
                f"{tries.what}: no server answered within {tries.deadline_s:.0f} s "
                f"({self.number} attempts; last: {status_of(err)})") from err
        tries.failover.failed(self.server)
        return min(next(tries.delays), max(0.0, tries.deadline - tries.clock()))


class _Tries:
    def __init__(self, what: str, deadline_s: float, failover: Failover, retry: bool, clock: Clock,
                 delays: Iterator[float]):
        self.what, self.deadline_s, self.failover, self.retry, self.clock = what, deadline_s, failover, retry, clock
        self.deadline = clock() + deadline_s
        self.delays = delays


def retry_attempts(what: str, *, deadline_s: float, failover: Failover, retry: bool = True,
                   clock: Clock = time.monotonic, delays: Optional[Iterator[float]] = None) -> Iterator[Attempt]:
    """The attempts of one request, for a loop that returns on success::

        for attempt in retry_attempts("frame 3", deadline_s=60, failover=failover):
            try:
                return servers[attempt.server].infer(...)
            except InferenceServerException as err:
                time.sleep(attempt.failed(err))

    The deadline starts at the first attempt; it ends only through a return or an error.
    """
    tries = _Tries(what, deadline_s, failover, retry, clock, delays if delays is not None else backoff_delays())
    number = 0
    while True:
        number += 1
        yield Attempt(tries, number, failover.active)


# -- the frame window -----------------------------------------------------------------------
H = TypeVar("H")


class InOrderWindow(Generic[H]):
    """Start jobs ``0 .. count-1`` with at most ``size`` in flight; hand their handles back in order.

    ``start(index)`` begins job ``index`` and returns a handle with ``cancel()``
    (a ``concurrent.futures.Future`` or an ``asyncio.Task``). Iterating yields the
    oldest handle; the next job starts only after the consumer has waited for it,
    so jobs started and not yet waited for never exceed ``size``. Leaving the
    ``with`` block cancels the jobs not handed out.
    """

    def __init__(self, count: int, size: int, start: Callable[[int], H]):
        self.count = count
        self.size = max(1, size)
        self._start = start
        self._next = 0
        self._pending: Deque[H] = collections.deque()

    def __iter__(self) -> Iterator[H]:
        while self._next < self.count or self._pending:
            while self._next < self.count and len(self._pending) < self.size:
                self._pending.append(self._start(self._next))
                self._next += 1
            yield self._pending.popleft()

    def cancel(self) -> None:
        while self._pending:
            self._pending.popleft().cancel()

    def __enter__(self) -> "InOrderWindow[H]":
        return self

    def __exit__(self, *exc) -> None:
        self.cancel()


# -- readiness ------------------------------------------------------------------------------
def ready_polls(timeout_s: float, *, interval_s: float = READY_POLL_S, clock: Clock = time.monotonic) -> Iterator[float]:
    """Yield the pause after each readiness check until ``timeout_s`` has passed."""
    deadline = clock() + timeout_s
    while clock() < deadline:
        yield interval_s


def not_ready_error(urls: Sequence[str], timeout_s: float) -> ServerNotReadyError:
    return ServerNotReadyError(f"no server at {', '.join(urls)} had both ensembles ready within {timeout_s:.0f} s")
