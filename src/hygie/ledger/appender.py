"""Group commit for audit entries of reads.

A read does not need a write transaction of its own: its audit entries are handed to this
appender, which writes every entry that queued up meanwhile in ONE transaction (one commit, one
disk flush), then wakes the readers. A read returns its data only after its entries are durable;
if the batch fails, every read in it fails (fail closed). Writes keep their audit entries in
their own transaction, atomically with the data.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future

from sqlalchemy import Engine

from hygie.errors import AuditUnavailable
from hygie.ledger import audit
from hygie.ledger.audit import AuditEntry
from hygie.store.db import transaction

log = logging.getLogger("hygie.audit")
MAX_BATCH = 2000
WAIT_SECONDS = 30.0

_Item = tuple[list[AuditEntry], "Future[None]"]


class AuditAppender:
    """One per process and engine; thread-safe."""

    def __init__(self, engine: Engine, tenant: str) -> None:
        self.engine = engine
        self.tenant = tenant
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0  # for tests and benchmarks
        self.appended = 0

    def append(self, entries: list[AuditEntry]) -> None:
        """Block until ``entries`` are committed; AuditUnavailable if they cannot be."""
        if not entries:
            return
        self._ensure_thread()
        done: Future[None] = Future()
        self._queue.put((entries, done))
        try:
            done.result(timeout=WAIT_SECONDS)
        except AuditUnavailable:
            raise
        except Exception:
            raise AuditUnavailable("the audit trail cannot record this access") from None

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._start_lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="hygie-audit",
                                                    daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            count = len(batch[0][0])
            while count < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
                count += len(item[0])
            try:
                with transaction(self.engine) as conn:
                    audit.append(conn, self.tenant, [e for es, _ in batch for e in es])
            except Exception as exc:  # noqa: BLE001 - every waiter must be woken
                log.error("audit batch failed (%s): %d reads refused", type(exc).__name__,
                          len(batch))
                for _, fut in batch:
                    fut.set_exception(AuditUnavailable("the audit trail cannot record "
                                                       "this access"))
                continue
            self.batches += 1
            self.appended += count
            for _, fut in batch:
                fut.set_result(None)
