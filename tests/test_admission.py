"""serving/admission.py directly: Admission (running places, the bounded queue, refusal at once,
the queue wait, draining, places given back after errors) and TimeLimit (results, the 504 on a
stuck call, readiness while calls are stuck, exceptions passed through)."""
from __future__ import annotations

import threading
import time

import pytest

import errors
from serving.admission import Admission, TimeLimit


def wait_until(condition, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


class Holder:
    """A request in its own thread: admitted, it signals `entered` and holds its place until
    `release` is set."""

    def __init__(self, admission: Admission, wait: float = 5.0):
        self.entered, self.release = threading.Event(), threading.Event()
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, args=(admission, wait), daemon=True)
        self.thread.start()

    def _run(self, admission, wait):
        try:
            with admission.admit(wait):
                self.entered.set()
                self.release.wait(5)
        except Exception as exc:  # handed back to the test
            self.error = exc

    def finish(self):
        self.release.set()
        self.thread.join(5)
        assert not self.thread.is_alive()


@pytest.fixture
def time_limits():
    made, gates = [], []

    def make(workers: int, timeout: float):
        limit = TimeLimit(workers=workers, timeout=timeout)
        made.append(limit)
        return limit, gates

    yield make
    for gate in gates:
        gate.set()
    for limit in made:
        limit.shutdown()


# --- Admission -------------------------------------------------------------------------------

def test_two_run_one_waits_and_the_fourth_is_refused_at_once():
    admission = Admission(workers=2, max_queue=1)
    running = [Holder(admission), Holder(admission)]
    assert all(holder.entered.wait(2) for holder in running)

    waiting = Holder(admission)
    assert wait_until(lambda: admission.admitted == 3), "the third request was not queued"
    assert not waiting.entered.wait(0.05), "a third request ran with two workers"

    started = time.monotonic()
    with pytest.raises(errors.Overloaded) as caught:
        with admission.admit(wait=5):
            pytest.fail("a fourth request was admitted")
    assert time.monotonic() - started < 0.2, "the fourth request waited instead of being refused"
    assert caught.value.code == 503
    assert caught.value.headers.get("Retry-After") == "1"

    running[0].finish()
    assert waiting.entered.wait(2), "the queued request did not get the freed place"
    for holder in (running[1], waiting):
        holder.finish()
    assert all(holder.error is None for holder in running + [waiting])
    assert admission.admitted == 0


def test_queued_request_without_a_place_within_wait_is_overloaded():
    admission = Admission(workers=1, max_queue=1)
    holder = Holder(admission)
    assert holder.entered.wait(2)
    for _ in range(2):  # the queue place comes back after each timeout
        started = time.monotonic()
        with pytest.raises(errors.Overloaded) as caught:
            with admission.admit(wait=0.1):
                pytest.fail("admitted although the only place is held")
        elapsed = time.monotonic() - started
        assert 0.09 <= elapsed < 1.0, elapsed  # it waited in the queue: not refused at once
        assert caught.value.headers.get("Retry-After") == "1"
    holder.finish()
    with admission.admit(wait=0):
        pass


def test_a_queued_request_whose_client_left_gives_its_place_up_at_once():
    admission = Admission(workers=1, max_queue=2)
    holder = Holder(admission)
    assert holder.entered.wait(2)
    left = threading.Event()
    caught = []

    def queued():
        try:
            with admission.admit(wait=10, gone=left.is_set):
                pytest.fail("admitted after the client left")
        except errors.ClientGone as exc:
            caught.append(exc)
    thread = threading.Thread(target=queued)
    thread.start()
    assert wait_until(lambda: admission.admitted == 2)
    left.set()
    started = time.monotonic()
    thread.join(2)
    assert caught and caught[0].code == 499
    assert time.monotonic() - started < 0.5 and admission.admitted == 1
    holder.finish()


def test_draining_refuses_new_requests():
    admission = Admission(workers=2, max_queue=2)
    admission.draining.set()
    with pytest.raises(errors.ShuttingDown) as caught:
        with admission.admit(wait=1):
            pytest.fail("admitted while draining")
    assert caught.value.code == 503
    assert "Retry-After" in caught.value.headers
    assert admission.admitted == 0


def test_request_admitted_before_draining_finishes():
    admission = Admission(workers=1, max_queue=0)
    holder = Holder(admission)
    assert holder.entered.wait(2)
    admission.draining.set()
    holder.finish()
    assert holder.error is None


def test_places_come_back_after_exceptions():
    admission = Admission(workers=2, max_queue=0)
    for _ in range(5):
        with pytest.raises(ValueError):
            with admission.admit(wait=0):
                raise ValueError("request failed")
    with pytest.raises(errors.InvalidImage):
        with admission.admit(wait=0):
            raise errors.InvalidImage()
    # Both running places are free again, and the limit still holds.
    with admission.admit(wait=0):
        with admission.admit(wait=0):
            with pytest.raises(errors.Overloaded):
                with admission.admit(wait=0):
                    pass
    assert admission.admitted == 0


# --- TimeLimit -------------------------------------------------------------------------------

def test_fast_call_returns_its_value(time_limits):
    limit, _ = time_limits(workers=1, timeout=0.2)
    assert limit.run(lambda: 42) == 42
    assert limit.run(lambda: "again") == "again"
    assert limit.healthy


def test_stuck_call_times_out_and_health_follows_it(time_limits):
    limit, gates = time_limits(workers=1, timeout=0.2)
    gate = threading.Event()
    gates.append(gate)
    finished = threading.Event()

    def stuck():
        gate.wait(5)
        finished.set()
        return "late"

    started = time.monotonic()
    with pytest.raises(errors.InferenceTimeout) as caught:
        limit.run(stuck)
    elapsed = time.monotonic() - started
    assert 0.19 <= elapsed < 0.5, elapsed
    assert caught.value.code == 504
    assert not finished.is_set()
    assert not limit.healthy, "healthy while every worker's call is stuck"

    assert limit.run(lambda: "spare thread") == "spare thread"  # the stuck call blocks nothing else

    gate.set()
    assert finished.wait(2)
    assert wait_until(lambda: limit.healthy), "still unhealthy after the stuck call returned"


def test_one_stuck_call_of_two_workers_stays_healthy(time_limits):
    limit, gates = time_limits(workers=2, timeout=0.1)
    gate = threading.Event()
    gates.append(gate)
    with pytest.raises(errors.InferenceTimeout):
        limit.run(lambda: gate.wait(5))
    assert limit.healthy
    gate2 = threading.Event()
    gates.append(gate2)
    with pytest.raises(errors.InferenceTimeout):
        limit.run(lambda: gate2.wait(5))
    assert not limit.healthy
    gate.set()
    assert wait_until(lambda: limit.healthy)


def test_exceptions_from_the_call_propagate_unchanged(time_limits):
    limit, _ = time_limits(workers=1, timeout=0.5)
    original = ValueError("model said no")

    def failing():
        raise original

    with pytest.raises(ValueError) as caught:
        limit.run(failing)
    assert caught.value is original

    api_error = errors.InvalidImage("bad")

    def refusing():
        raise api_error

    with pytest.raises(errors.InvalidImage) as caught:
        limit.run(refusing)
    assert caught.value is api_error
    assert limit.healthy
