"""``hsimap.models.workers``: jobs beside the calling thread, progress one call at a time,
the first failure stops the others and is the error raised."""

from __future__ import annotations

import threading
import time

import pytest

from hsimap.models.base import ProgressEvent
from hsimap.models.workers import Stopped, Workers


def test_without_workers_jobs_run_at_once_on_the_calling_thread():
    names = []
    with Workers(0) as workers:
        job = workers.run(lambda: names.append(threading.current_thread().name) or 7)
        assert names == [threading.current_thread().name]  # already done
    assert job.result() == 7 and job.seconds >= 0


def test_workers_run_jobs_beside_the_caller_and_serialise_progress():
    inside, most = [0], [0]

    def callback(event: ProgressEvent) -> None:
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.001)
        inside[0] -= 1

    def job(progress) -> str:
        for i in range(50):
            progress(ProgressEvent("job", i + 1, 50))
        return threading.current_thread().name

    with Workers(2) as workers:
        progress = workers.progress(callback)
        jobs = [workers.run(job, progress) for _ in range(2)]
        job(progress)  # the caller reports too
    assert all(j.result().startswith("hsimap-fit") for j in jobs)
    assert most[0] == 1


def test_a_failing_worker_stops_the_caller_and_its_error_is_raised():
    seen = []

    def fails() -> None:
        raise ValueError("the worker's own error")

    with pytest.raises(ValueError, match="worker's own"), Workers(1) as workers:
        progress = workers.progress(seen.append)
        workers.run(fails)
        for i in range(1000):  # stops at the first event after the failure
            progress(ProgressEvent("caller", i, 1000))
            time.sleep(0.001)
    assert len(seen) < 1000


def test_an_interrupted_caller_stops_the_workers_at_their_next_event():
    reached = []

    def long(progress) -> None:
        for i in range(10_000):
            progress(ProgressEvent("long", i, 10_000))
            reached.append(i)
            time.sleep(0.001)

    with pytest.raises(KeyboardInterrupt), Workers(1) as workers:
        job = workers.run(long, workers.progress(lambda e: None))
        time.sleep(0.05)
        raise KeyboardInterrupt
    assert isinstance(job.future.exception(), Stopped)
    assert len(reached) < 10_000
