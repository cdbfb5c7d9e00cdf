"""Database engines (SQLite embedded default, PostgreSQL in production) and migrations."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from hygie.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"
# Execution option for connections that only read (SQLite: deferred BEGIN, no write lock).
READONLY = "hygie_readonly"


def now_us() -> int:
    """Current time in epoch microseconds (the unit of every stored timestamp)."""
    return time.time_ns() // 1000


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, *, synchronous: str = "NORMAL", pool: bool = True) -> Engine:
    """An engine configured for Hygie.

    SQLite: WAL journal, ``busy_timeout``, and ``BEGIN IMMEDIATE`` for every transaction — each
    gate transaction writes (at least its audit entry), so taking the write lock up front avoids
    lock-upgrade deadlocks between concurrent requests.
    """
    if is_sqlite(url):
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigError("sqlite_synchronous must be NORMAL or FULL")
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            readonly = conn.get_execution_options().get(READONLY, False)
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql"):
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if not pool:
            kwargs = {"poolclass": NullPool}
        else:
            kwargs.update(pool_size=20, max_overflow=20)
        return create_engine(url, **kwargs)
    raise ConfigError("database_url must be sqlite:///PATH or postgresql+psycopg://...")


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the database schema to the latest revision (``alembic upgrade head``)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def older_revisions() -> set[str]:
    """Every revision before the head: a database at one of them can be migrated."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    return {r.revision for r in script.walk_revisions() if r.revision != head}


class WriteLock:
    """Serialises SQLite write transactions across threads and processes.

    Every gate transaction writes (at least its audit entry). Left to SQLite, concurrent
    writers poll the database lock with sleeps of up to 100 ms (the busy handler), which wrecks
    tail latency under load. A kernel file lock (``flock``) queues them instead and wakes the
    next one as soon as the lock is released; a thread lock does the same within a process.
    """

    def __init__(self, path: str) -> None:
        self._thread_lock = threading.Lock()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._thread_lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


_WRITE_LOCKS: dict[str, WriteLock] = {}
_REGISTRY_LOCK = threading.Lock()


def write_lock(engine: Engine) -> WriteLock | None:
    """The write lock of a file-backed SQLite engine (None for PostgreSQL)."""
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return None
    path = engine.url.database + ".lock"
    with _REGISTRY_LOCK:
        lock = _WRITE_LOCKS.get(path)
        if lock is None:
            lock = _WRITE_LOCKS[path] = WriteLock(path)
        return lock


@contextmanager
def transaction(engine: Engine, *, readonly: bool = False) -> Iterator[Connection]:
    """One transaction: committed when the block ends, rolled back on any error."""
    lock = None if readonly else write_lock(engine)
    with lock.held() if lock is not None else nullcontext():
        try:
            conn = engine.connect()
            if readonly:
                conn = conn.execution_options(**{READONLY: True})
        except OperationalError as exc:
            raise ConfigError(
                f"cannot connect to the database ({type(exc.orig).__name__})") from None
        try:
            with conn.begin():
                yield conn
        finally:
            conn.close()
