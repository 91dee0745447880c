"""Group commit for submissions: one writer thread stores every waiting submission in one
transaction, then answers each.

Durability is unchanged: a submission is answered only after the transaction holding
its job and its "submitted" event has committed. What changes is the cost: a burst of N
submissions pays for one commit instead of N, and on SQLite, which has one writer at a
time, submissions no longer fight for the file lock (a writer that finds it locked
sleeps in growing steps before retrying, which is what made the latency tail long).

A submission that fails its checks (unknown tenant, never fits) fails alone; an error
of the store fails the whole batch, and none of it was stored.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass, field

from mosu.core.api import JobOut, JobSpec
from mosu.core.errors import PlatformError
from mosu.service.platform import Platform
from mosu.service.services import jobs
from mosu.service.services.auth import Principal

log = logging.getLogger("mosu.api")
MAX_BATCH = 256
"""The most submissions one transaction stores (bounds how long a batch holds the store)."""


@dataclass
class _Submission:
    principal: Principal
    spec: JobSpec
    tenant: str | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[JobOut] = field(repr=False)


class SubmitWriter:
    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._queue: queue.SimpleQueue[_Submission | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0
        self.stored = 0

    async def submit(self, principal: Principal, spec: JobSpec, tenant: str | None) -> JobOut:
        """Store one submission; returns once it is committed."""
        self._ensure_started()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[JobOut] = loop.create_future()
        self._queue.put(_Submission(principal, spec, tenant, loop, future))
        return await future

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="mosu-submit", daemon=True)
                thread.start()
                self._thread = thread

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            self._store(batch)

    def _store(self, batch: list[_Submission]) -> None:
        results: list[JobOut | BaseException] = []
        platform = self._platform
        try:
            with platform.tx() as s:
                for item in batch:
                    try:
                        tenant = jobs.check_submission(
                            s,
                            principal=item.principal,
                            spec=item.spec,
                            tenant=item.tenant,
                            catalog=platform.catalog,
                        )
                    except PlatformError as exc:
                        results.append(exc)
                        continue
                    results.append(jobs.insert_job(s, spec=item.spec, tenant=tenant))
        except Exception as exc:  # nothing in this batch was stored: every caller hears why
            log.warning("storing %d submissions failed: %s", len(batch), exc)
            results = [exc] * len(batch)
        else:
            self.batches += 1
            self.stored += sum(isinstance(r, JobOut) for r in results)
        for item, result in zip(batch, results, strict=True):
            try:
                item.loop.call_soon_threadsafe(_resolve, item.future, result)
            except RuntimeError:  # its event loop has closed: nobody is waiting
                continue


def _resolve(future: asyncio.Future[JobOut], result: JobOut | BaseException) -> None:
    if future.done():  # the caller went away
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
