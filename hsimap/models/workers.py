"""Worker threads beside the calling one, for fits (or parts of a fit) that do not depend
on each other: progress one call at a time, every thread stopped at its next progress event
once one fails, and that thread's error raised."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from hsimap.models.base import ProgressCallback, ProgressEvent


class Stopped(Exception):  # noqa: N818 - a signal between threads, not an error
    """Raised in a thread at its next progress event once another thread failed."""


class Job:
    """A function running in a worker thread: its result and its wall seconds."""

    def __init__(self, future: Future[Any]) -> None:
        self.future = future
        self.seconds = 0.0

    def result(self) -> Any:
        return self.future.result()


class Workers:
    """Worker threads beside the calling one, for the parts of a fit that do not depend on
    each other; a context manager.

    Progress callbacks wrapped by :meth:`progress` are called by one thread at a time and
    raise :class:`Stopped` once any thread failed, so the others stop at their next event.
    On leaving, the workers are waited for, and the first real error is raised (a worker's,
    when the calling thread only stopped because of it). With ``n = 0`` jobs run at once on
    the calling thread: the same code, one stage after the other.
    """

    def __init__(self, n: int) -> None:
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.pool = ThreadPoolExecutor(n, thread_name_prefix="hsimap-fit") if n else None
        self.jobs: list[Job] = []

    def progress(self, callback: ProgressCallback) -> ProgressCallback:
        def call(event: ProgressEvent) -> None:
            if self.stop.is_set():
                raise Stopped
            with self.lock:
                callback(event)
        return call

    def run(self, fn: Any, *args: Any, **kwargs: Any) -> Job:
        """``fn(*args, **kwargs)`` in a worker (or now, without workers)."""
        def timed() -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                job.seconds = round(time.perf_counter() - start, 3)

        if self.pool is None:
            future: Future[Any] = Future()
            job = Job(future)
            future.set_result(timed())
        else:
            job = Job(Future())
            job.future = self.pool.submit(timed)
            job.future.add_done_callback(self._stop_on_error)
        self.jobs.append(job)
        return job

    def _stop_on_error(self, future: Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self.stop.set()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        if error is not None:
            self.stop.set()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        if isinstance(error, Stopped):  # the thread that failed first has the error
            for job in self.jobs:
                first = None if job.future.cancelled() else job.future.exception()
                if first is not None and not isinstance(first, Stopped):
                    raise first
