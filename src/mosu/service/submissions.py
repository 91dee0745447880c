"""Group commit for submissions: one writer thread stores every waiting submission in one
transaction, then answers each.

Durability is unchanged: a submission is answered only after the transaction holding
its job and its "submitted" event has committed. What changes is the cost: a burst of N
submissions pays for one commit instead of N, and on SQLite, which has one writer at a
time, submissions no longer fight for the file lock (a writer that finds it locked
sleeps in growing steps before retrying, which is what made the latency tail long).

One submission never fails another. A submission that fails its checks (unknown tenant,
never fits) fails alone; if the store refuses the batch as a whole, nothing of it was
stored and every submission of it is tried again in a transaction of its own, so only
the one the store refuses fails.

Exactly once: a submission may carry an ``Idempotency-Key``. The key is stored with the
job in the same transaction, so a retry with the same key (and the same spec) returns
that job instead of creating another, on any server sharing the store, for
``KEY_KEEP_S`` at least; the same key with another spec is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import Table, delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mosu.core.api import JobOut
from mosu.core.errors import IdempotencyKeyReused, PlatformError
from mosu.core.submission import Submission
from mosu.service.db import bulk
from mosu.service.db.rows import SubmissionKeyRow
from mosu.service.platform import Platform
from mosu.service.services import jobs
from mosu.service.services.auth import Principal

log = logging.getLogger("mosu.api")
MAX_BATCH = 256
"""The most submissions one transaction stores (bounds how long a batch holds the store)."""
KEY_KEEP_S = 24 * 3600.0
"""An idempotency key is honoured at least this long after its job was created."""
PRUNE_EVERY_S = 3600.0


@dataclass(frozen=True, slots=True)
class Stored:
    job: JobOut
    replayed: bool = False
    """True when an earlier submission with the same idempotency key created ``job``."""


@dataclass
class _Submission:
    principal: Principal
    job: Submission
    tenant: str | None
    key: str | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Stored] = field(repr=False)


def fingerprint(job: Submission) -> str:
    """What makes two submissions the same: the spec as stored, field by field."""
    text = json.dumps(job.spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class SubmitWriter:
    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._queue: queue.SimpleQueue[_Submission | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._pruned_at = 0.0
        self.batches = 0
        self.stored = 0
        self.retried_alone = 0
        """Submissions stored one by one after the store refused their batch."""

    async def submit(
        self, principal: Principal, job: Submission, tenant: str | None, key: str | None = None
    ) -> Stored:
        """Store one submission; returns once it is committed."""
        self._ensure_started()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Stored] = loop.create_future()
        self._queue.put(_Submission(principal, job, tenant, key, loop, future))
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
            self._prune()

    def _store(self, batch: list[_Submission]) -> None:
        try:
            with self._platform.tx() as s:
                results = self._batch(s, batch)
        except Exception as exc:  # nothing of this batch was stored
            if len(batch) == 1:
                results = [exc]
            else:
                log.warning(
                    "the store refused a batch of %d submissions (%s); storing each alone",
                    len(batch),
                    exc.__class__.__name__,
                )
                results = [self._alone(item) for item in batch]
                self.retried_alone += len(batch)
        else:
            self.batches += 1
        self.stored += sum(isinstance(r, Stored) and not r.replayed for r in results)
        for item, result in zip(batch, results, strict=True):
            try:
                item.loop.call_soon_threadsafe(_resolve, item.future, result)
            except RuntimeError:  # its event loop has closed: nobody is waiting
                continue

    def _alone(self, item: _Submission) -> Stored | BaseException:
        for attempt in range(2):
            try:
                with self._platform.tx() as s:
                    return self._batch(s, [item])[0]
            except IntegrityError as exc:
                # Another server stored the same idempotency key meanwhile: read it again.
                if attempt == 1 or item.key is None:
                    return exc
            except Exception as exc:
                return exc
        raise AssertionError("unreachable")

    def _batch(self, session: Session, batch: list[_Submission]) -> list[Stored | BaseException]:
        """Check and store a batch in one transaction: one query reads every idempotency
        key it names, one statement stores its jobs, one their events, one the new keys.
        A failed check is that submission's answer; a store error escapes and fails the
        transaction. A key a submission earlier in the batch just claimed is checked
        after that one is stored, so it finds the job it made."""
        keys = _Keys(session, [(_owner(item), item.key) for item in batch if item.key])
        results: list[Stored | BaseException | None] = [None] * len(batch)
        checked: list[tuple[int, str, str]] = []
        after: list[int] = []
        claimed: set[tuple[str, str]] = set()
        for i, item in enumerate(batch):
            owner = _owner(item)
            claim = (owner, item.key) if owner is not None and item.key is not None else None
            if claim in claimed:
                after.append(i)
                continue
            outcome = self._check(session, item, keys)
            if isinstance(outcome, tuple):
                checked.append((i, *outcome))
                if claim is not None:
                    claimed.add(claim)
            else:
                results[i] = outcome
        self._insert(session, batch, checked, keys, results)
        for i in after:
            outcome = self._check(session, batch[i], keys)
            if isinstance(outcome, tuple):
                self._insert(session, batch, [(i, *outcome)], keys, results)
            else:
                results[i] = outcome
        keys.store(session)
        answered = [r for r in results if r is not None]
        assert len(answered) == len(batch), "every submission of a batch gets an answer"
        return answered

    def _check(
        self, session: Session, item: _Submission, keys: _Keys
    ) -> Stored | PlatformError | tuple[str, str]:
        """A retry's earlier job, a failed check, or (tenant, spec fingerprint) to store."""
        owner = _owner(item)
        spec_hash = fingerprint(item.job) if item.key is not None else ""
        try:
            if item.key is not None and owner is not None:
                # A retry returns what the first submission created, even if the same spec
                # would no longer pass the checks (a node drained, a secret deleted since).
                earlier = keys.earlier(owner, item.key, spec_hash)
                if earlier is not None:
                    job = earlier.job or jobs.get_job(
                        session, principal=item.principal, job_id=earlier.job_id
                    )
                    return Stored(job, replayed=True)
            tenant = jobs.check_submission(
                session,
                principal=item.principal,
                job=item.job,
                tenant=item.tenant,
                catalog=self._platform.catalog,
            )
        except PlatformError as exc:
            return exc
        return tenant, spec_hash

    @staticmethod
    def _insert(
        session: Session,
        batch: list[_Submission],
        checked: list[tuple[int, str, str]],
        keys: _Keys,
        results: list[Stored | BaseException | None],
    ) -> None:
        outs = jobs.insert_jobs(session, [(batch[i].job, tenant) for i, tenant, _ in checked])
        for (i, tenant, spec_hash), out in zip(checked, outs, strict=True):
            key = batch[i].key
            if key is not None:
                keys.add(tenant, key, spec_hash, out)
            results[i] = Stored(out)

    def _prune(self) -> None:
        now = time.time()
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        try:
            with self._platform.tx() as s:
                s.execute(
                    delete(SubmissionKeyRow).where(SubmissionKeyRow.created_at < now - KEY_KEEP_S)
                )
        except Exception as exc:  # housekeeping: try again at the next interval
            log.warning("pruning old idempotency keys failed: %s", exc.__class__.__name__)


_KEYS_TABLE = cast(Table, SubmissionKeyRow.__table__)
_INSERT_KEY = insert(_KEYS_TABLE)


def _owner(item: _Submission) -> str | None:
    """The tenant whose idempotency keys a submission uses."""
    return item.tenant if item.principal.is_operator else item.principal.tenant


@dataclass
class _Key:
    fingerprint: str
    job_id: int
    job: JobOut | None = None
    """Set when the job was created in this very batch."""


class _Keys:
    """The idempotency keys one batch names: read in one query, new ones stored in one."""

    def __init__(self, session: Session, wanted: list[tuple[str | None, str | None]]) -> None:
        pairs = sorted({(t, k) for t, k in wanted if t is not None and k is not None})
        self._known: dict[tuple[str, str], _Key] = {}
        self._new: list[dict[str, object]] = []
        if pairs:
            rows = bulk.select_by_pairs(
                session.connection(),
                _KEYS_TABLE,
                ("tenant", "key"),
                pairs,
                ("tenant", "key", "fingerprint", "job_id"),
            )
            self._known = {(r.tenant, r.key): _Key(r.fingerprint, r.job_id) for r in rows}

    def earlier(self, tenant: str, key: str, spec_hash: str) -> _Key | None:
        """What this key made before; refuses another spec."""
        known = self._known.get((tenant, key))
        if known is not None and known.fingerprint != spec_hash:
            raise IdempotencyKeyReused(
                f"this key was used for a different job spec (job {known.job_id}); "
                "use a new key for a new submission",
                field="Idempotency-Key",
            )
        return known

    def add(self, tenant: str, key: str, spec_hash: str, job: JobOut) -> None:
        self._known[(tenant, key)] = _Key(spec_hash, job.id, job)
        self._new.append(
            {
                "tenant": tenant,
                "key": key,
                "fingerprint": spec_hash,
                "job_id": job.id,
                "created_at": time.time(),
            }
        )

    def store(self, session: Session) -> None:
        if self._new:
            bulk.insert_rows(session.connection(), _INSERT_KEY, self._new)


def _resolve(future: asyncio.Future[Stored], result: Stored | BaseException) -> None:
    if future.done():  # the caller went away
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
