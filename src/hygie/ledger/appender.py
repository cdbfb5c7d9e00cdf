"""Group commit for audit entries of reads.

A read does not need a write transaction of its own: its audit entries are handed to this
appender, which writes every entry that queued up meanwhile in ONE transaction (one commit, one
disk flush), then wakes the readers. A read returns its data only after its entries are durable;
if the batch fails, every read in it fails (fail closed). Writes keep their audit entries in
their own transaction, atomically with the data.

There is no appender thread: the caller that finds no commit in progress becomes the *leader*
and commits its own entries at once (an uncontended read pays no thread hand-off); callers that
arrive while a commit runs queue up and sleep; when the commit ends, the leader wakes the ones
it committed and hands leadership to the first one still queued, which commits everything
queued meanwhile (the write queue of LevelDB, group commit of PostgreSQL). Rows go through the
DB-API driver (``executemany`` of tuples), one transaction per batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from contextlib import nullcontext, suppress
from typing import Any

from sqlalchemy import Engine

from hygie.errors import AuditUnavailable
from hygie.ledger import audit
from hygie.ledger.audit import AuditEntry
from hygie.store.db import write_lock

log = logging.getLogger("hygie.audit")
MAX_BATCH = 2000
WAIT_SECONDS = 30.0

_WAITING, _LEAD, _DONE, _FAILED = range(4)


class _Waiter:
    __slots__ = ("entries", "state", "wake")

    def __init__(self, entries: list[AuditEntry]) -> None:
        self.entries = entries
        self.state = _WAITING
        self.wake = threading.Lock()
        self.wake.acquire()  # released once: done, failed, or made leader


class AuditAppender:
    """One per process and engine; thread-safe."""

    def __init__(self, engine: Engine, tenant: str) -> None:
        self.engine = engine
        self.tenant = tenant
        self._dialect = engine.dialect.name
        self._mu = threading.Lock()
        self._queue: deque[_Waiter] = deque()
        self._busy = False  # a leader is committing
        self._raw: Any = None  # SQLite: the DB-API connection batches are written with
        self._raw_pool: Any = None
        self.batches = 0  # for tests and benchmarks
        self.appended = 0

    def append(self, entries: list[AuditEntry]) -> None:
        """Block until ``entries`` are committed; AuditUnavailable if they cannot be."""
        if not entries:
            return
        me = _Waiter(entries)
        with self._mu:
            self._queue.append(me)
            lead = not self._busy
            if lead:
                self._busy = True
                me.state = _LEAD
        if not lead:
            if not me.wake.acquire(timeout=WAIT_SECONDS):
                with self._mu:
                    if me.state == _WAITING:  # still queued: withdraw, nobody will commit it
                        self._queue.remove(me)
                        raise AuditUnavailable("the audit trail cannot record this access")
                me.wake.acquire()  # released meanwhile (just now): take the outcome
            if me.state == _DONE:
                return
            if me.state == _FAILED:
                raise AuditUnavailable("the audit trail cannot record this access")
        self._lead(me)

    def _lead(self, me: _Waiter) -> None:
        """Commit the queue's head (``me`` first) as one batch; wake its waiters; hand over."""
        if len(self._queue) == 1:
            time.sleep(0)  # let runnable callers (holding no lock, waiting for the GIL) queue up
        with self._mu:
            batch = [self._queue.popleft()]  # me: the leader is always the queue's head
            count = len(me.entries)
            while self._queue and count < MAX_BATCH:
                item = self._queue.popleft()
                batch.append(item)
                count += len(item.entries)
        ok = True
        interrupted: BaseException | None = None
        try:
            self._commit([e for w in batch for e in w.entries])
        except BaseException as exc:  # every waiter must be woken, whatever happened
            ok = False
            if not isinstance(exc, Exception):
                interrupted = exc
            log.error("audit batch failed (%s): %d reads refused", type(exc).__name__,
                      len(batch))
        with self._mu:
            if ok:
                self.batches += 1
                self.appended += count
            for w in batch:
                w.state = _DONE if ok else _FAILED
                if w is not me:
                    w.wake.release()
            if self._queue:
                nxt = self._queue[0]
                nxt.state = _LEAD
                nxt.wake.release()
            else:
                self._busy = False
        if interrupted is not None:
            raise interrupted
        if not ok:
            raise AuditUnavailable("the audit trail cannot record this access")

    def _connection(self) -> Any:
        """The DB-API connection for a batch. SQLite: one kept by the appender (only the leader
        uses it; renewed when the engine's pool is replaced, e.g. by ``dispose()``), no pool
        checkout per batch. PostgreSQL: from the pool (pre-ping), returned after the batch."""
        if self._dialect != "sqlite":
            return self.engine.raw_connection()
        if self._raw is None or self._raw_pool is not self.engine.pool:
            self._drop()
            self._raw_pool = self.engine.pool
            self._raw = self.engine.raw_connection()
        return self._raw

    def _drop(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            with suppress(Exception):
                raw.invalidate()

    def _commit(self, entries: list[AuditEntry]) -> None:
        """One transaction through the driver (SQLite: under the store's write lock)."""
        rows = audit.rows_of(self.tenant, entries)
        lock = write_lock(self.engine)
        sqlite = self._dialect == "sqlite"
        with lock.held() if lock is not None else nullcontext():
            raw = self._connection()
            try:
                cur = raw.cursor()
                try:
                    if sqlite:
                        cur.execute("BEGIN IMMEDIATE")
                    audit.append_raw(cur, self._dialect, rows)
                    raw.commit()
                finally:
                    cur.close()
            except BaseException:
                if sqlite:
                    self._drop()  # a fresh connection for the next batch, no state carried
                else:
                    with suppress(Exception):
                        raw.rollback()
                raise
            finally:
                if not sqlite:
                    raw.close()
