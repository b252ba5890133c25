"""The retry, failover and window rules both clients share (bodydance_client.policy), without a server."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from tritonclient.utils import InferenceServerException

from bodydance_client.aio import AsyncBodyDanceClient
from bodydance_client.errors import (
    BadImageError, InvalidRequestError, NoPersonError, RequestTimeoutError, ServerNotReadyError,
)
from bodydance_client.policy import (
    Failover, InOrderWindow, backoff_delays, is_retryable, ready_polls, retry_attempts, server_urls, translate,
)
from bodydance_client.sdk import BodyDanceClient


def _error(status, message="went wrong"):
    return InferenceServerException(message, status=status)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _run_request(outcomes, *, deadline_s, servers=1, retry=True, call_s=0.0):
    """Drive one request through retry_attempts like the clients do, on a fake clock.

    ``outcomes`` lists what each attempt gets: an exception to raise, or a value to return.
    Returns (value, servers tried, sleeps); errors the loop gives up with propagate.
    """
    clock, tried, sleeps = FakeClock(), [], []
    outcomes = iter(outcomes)
    for attempt in retry_attempts("frame 7", deadline_s=deadline_s, failover=Failover(servers), retry=retry,
                                  clock=clock):
        tried.append(attempt.server)
        clock.now += call_s
        outcome = next(outcomes)
        try:
            if isinstance(outcome, Exception):
                raise outcome
            return outcome, tried, sleeps
        except InferenceServerException as err:
            sleeps.append(attempt.failed(err))
            clock.now += sleeps[-1]


def test_backoff_doubles_from_a_fifth_of_a_second_to_five_seconds():
    delays = backoff_delays()
    assert [next(delays) for _ in range(8)] == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0])


def test_a_request_is_retried_with_backoff_until_it_succeeds():
    value, tried, sleeps = _run_request([_error("StatusCode.UNAVAILABLE")] * 3 + ["frame"], deadline_s=60)
    assert value == "frame" and tried == [0, 0, 0, 0]
    assert sleeps == pytest.approx([0.2, 0.4, 0.8])


def test_giving_up_at_the_deadline_names_the_attempts_and_the_last_status():
    # each call takes 0.1 s: fail at 0.1, sleep 0.2; fail at 0.4, sleep 0.4; fail at 0.9, sleep
    # what is left (0.1); fail at 1.1, past the 1 s deadline.
    with pytest.raises(ServerNotReadyError) as raised:
        _run_request([_error("StatusCode.UNAVAILABLE")] * 10, deadline_s=1.0, call_s=0.1)
    assert str(raised.value) == "frame 7: no server answered within 1 s (4 attempts; last: StatusCode.UNAVAILABLE)"
    assert isinstance(raised.value.__cause__, InferenceServerException)


def test_the_last_sleep_stops_at_the_deadline():
    clock = FakeClock()
    attempts = retry_attempts("x", deadline_s=1.0, failover=Failover(1), clock=clock)
    first = next(attempts)
    clock.now = 0.9
    assert first.failed(_error("StatusCode.UNAVAILABLE")) == pytest.approx(0.1)


@pytest.mark.parametrize("status", ["StatusCode.UNAVAILABLE", "StatusCode.RESOURCE_EXHAUSTED", "StatusCode.UNKNOWN"])
def test_outage_statuses_are_retryable(status):
    assert is_retryable(_error(status))


def test_failover_goes_round_the_servers_in_order():
    _, tried, _ = _run_request([_error("StatusCode.UNAVAILABLE")] * 5 + ["ok"], deadline_s=60, servers=3)
    assert tried == [0, 1, 2, 0, 1, 2]


def test_one_failure_moves_every_request_once():
    failover = Failover(3)
    failover.failed(0)  # a request saw server 0 fail ...
    failover.failed(0)  # ... and another one in flight with it too: it must not skip server 1
    assert failover.active == 1
    with pytest.raises(ValueError):
        Failover(0)


@pytest.mark.parametrize("status, message, kind", [
    ("StatusCode.INVALID_ARGUMENT", "in stage: [no_person] nobody in the photo", NoPersonError),
    ("StatusCode.INVALID_ARGUMENT", "[bad_image] not an image", BadImageError),
    ("StatusCode.INVALID_ARGUMENT", "unexpected shape for input 'pose'", InvalidRequestError),
    ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", RequestTimeoutError),
    ("StatusCode.INTERNAL", "model crashed", ServerNotReadyError),
])
def test_errors_that_are_not_outages_are_typed_at_once(status, message, kind):
    with pytest.raises(kind) as raised:
        _run_request([_error(status, message)], deadline_s=60, servers=2)
    assert not is_retryable(_error(status, message))
    assert type(translate(_error(status, message), "frame 7")) is kind
    if kind is NoPersonError:
        assert str(raised.value) == "nobody in the photo"
    if kind is RequestTimeoutError:
        assert str(raised.value) == "frame 7 did not finish within its timeout"


def test_without_retry_an_outage_is_reported_on_the_first_failure():
    failover = Failover(2)
    attempt = next(retry_attempts("prepare(photo)", deadline_s=60, failover=failover, retry=False))
    with pytest.raises(ServerNotReadyError, match=r"prepare\(photo\) failed: StatusCode.UNAVAILABLE down"):
        attempt.failed(_error("StatusCode.UNAVAILABLE", "down"))
    assert failover.active == 0


class Handle:
    def __init__(self, index):
        self.index, self.cancelled = index, False

    def cancel(self):
        self.cancelled = True


def test_the_window_hands_jobs_back_in_order_with_at_most_size_started_and_not_waited_for():
    started, waited = [], 0
    highest = 0

    def start(index):
        nonlocal highest
        started.append(Handle(index))
        highest = max(highest, len(started) - waited)
        return started[-1]

    with InOrderWindow(10, 3, start) as window:
        order = []
        for handle in window:
            order.append(handle.index)
            waited += 1
    assert order == list(range(10)) and highest == 3
    assert not any(h.cancelled for h in started)


def test_leaving_the_window_early_cancels_the_jobs_not_handed_out():
    started = []
    with InOrderWindow(10, 4, lambda i: started.append(Handle(i)) or started[-1]) as window:
        for handle in window:
            if handle.index == 1:
                break
    assert [h.index for h in started] == [0, 1, 2, 3, 4]
    assert [h.index for h in started if h.cancelled] == [2, 3, 4]


def test_the_window_keeps_order_with_threads_finishing_out_of_order():
    running, highest, lock = 0, 0, threading.Lock()

    def job(index):
        nonlocal running, highest
        with lock:
            running += 1
            highest = max(highest, running)
        time.sleep(random.uniform(0, 0.01))
        with lock:
            running -= 1
        return index

    with ThreadPoolExecutor(max_workers=8) as pool, \
            InOrderWindow(30, 4, lambda i: pool.submit(job, i)) as window:
        results = [future.result() for future in window]
    assert results == list(range(30)) and highest <= 4


def test_the_window_keeps_order_with_asyncio_tasks():
    async def job(index):
        await asyncio.sleep(random.uniform(0, 0.005))
        return index

    async def run():
        with InOrderWindow(20, 3, lambda i: asyncio.ensure_future(job(i))) as window:
            return [await task for task in window]
    assert asyncio.run(run()) == list(range(20))


def test_ready_polls_stop_at_the_timeout():
    clock = FakeClock()
    pauses = []
    for pause in ready_polls(1.0, clock=clock):
        pauses.append(pause)
        clock.now += pause
    assert pauses == [0.25] * 4


def _dead_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("flavour", [BodyDanceClient, AsyncBodyDanceClient])
def test_both_clients_need_a_url(flavour):
    with pytest.raises(ValueError, match="at least one server URL"):
        flavour([])
    assert server_urls("a:1") == ["a:1"] and server_urls(("a:1", "b:2")) == ["a:1", "b:2"]


def test_both_clients_give_up_on_no_server_with_the_same_message():
    url = _dead_url()
    pattern = r"prepare\(photo\): no server answered within 0 s \(\d+ attempts; last: StatusCode.UNAVAILABLE\)"
    with BodyDanceClient(url, retry_deadline_s=0.5) as client:
        with pytest.raises(ServerNotReadyError, match=pattern):
            client._infer("bodydance_subject", [], [], retry=True, what="prepare(photo)")

    async def run():
        async with AsyncBodyDanceClient(url, retry_deadline_s=0.5) as aclient:
            await aclient._infer("bodydance_subject", [], [], what="prepare(photo)")
    with pytest.raises(ServerNotReadyError, match=pattern):
        asyncio.run(run())
