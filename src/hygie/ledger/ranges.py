"""Checking a range of the ledger's leaves, in this process or in worker processes.

Used by :func:`hygie.ledger.verify.verify_instance`. A range [lo, hi) starts at a multiple of
a power of two >= its length, so its leaves are a run of perfect subtrees of the whole tree:
its check returns the roots of those subtrees (and, at each checkpoint size inside it, the
subtrees up to that size), and the caller combines them (RFC 6962 / 9162).

Workers are plain ``python -c`` processes started here (nothing of the caller, its threads or
its connections, is inherited, and the caller's main module is not re-imported as with
``multiprocessing``'s spawn): each reads tasks as JSON lines on its stdin and answers one JSON
line per task, with a read-only connection of its own (on PostgreSQL in the snapshot the
caller exported). The database URL goes through the pipe, never on a command line.
"""

from __future__ import annotations

import json
import math
import operator
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from hygie.errors import ConfigError
from hygie.ledger.log import (
    LEAF_COLUMNS,
    dbapi_cursor,
    leaf_bytes_of,
    leaf_from_sql,
    leaf_input_sql,
)
from hygie.ledger.merkle import (
    MerkleLevels,
    _hash_children,
    leaf_hash,
    leaf_hashes_of_inputs,
    root_from_leaf_hashes,
)
from hygie.store.db import make_engine, transaction

# Leaves [lo, hi) joined to their audit rows (NULL columns when the row is gone), in leaf
# order: (idx, seq, hash, audit seq, at, what the leaf is made of). On SQLite, the bytes the
# leaf hash is taken of, built by the database (0x00 || JSON, see
# hygie.ledger.log.leaf_input_sql): its JSON functions are cheaper than handing 12 text
# columns to Python. On PostgreSQL, the audit columns, encoded here with
# hygie.ledger.log.leaf_bytes_of (~1.3 us a row, where to_json and concatenation cost the
# server ~5 us): the workers share that work instead of one backend per range doing more.
_LEAVES = ("SELECT l.idx, l.seq, l.hash, a.seq, a.at, {leaf} FROM ledger_leaf l "
           "LEFT JOIN audit_event a ON a.seq = l.seq WHERE l.idx >= {m} {upper}ORDER BY l.idx")
_COLUMNS = ", ".join(f"a.{c}" for c in LEAF_COLUMNS[2:])  # after seq and at
_NEXT_IDX = "SELECT min(idx) FROM ledger_leaf WHERE idx > {m}"
CHUNK = 16_384  # a power of two: each full chunk is one perfect subtree of the tree
_SAFE_INT = 2**53
_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f]+-[0-9A-Fa-f]+(-[0-9]+)?")

@dataclass
class Range:
    """What checking the leaves [lo, hi) found (in a worker process, or in the caller)."""
    lo: int
    end: int  # the index after the last good leaf
    first_seq: int | None  # audit seq of the leaf at index lo, if it is there
    last_seq: int | None  # audit seq of the last good leaf
    frontier: list[bytes]  # perfect subtrees of the good leaves [lo, end), largest first
    roots: dict[int, list[bytes]]  # at each wanted size in (lo, end]: the subtrees of [lo, size)
    problem: str | None = None  # the first bad leaf (index ``end``), if any
    kind: str | None = None  # missing | deleted | reordered | altered


def mark(conn: Connection) -> str:
    return "?" if conn.dialect.name == "sqlite" else "%s"


def connect(engine: Engine) -> Connection:
    try:
        return engine.connect().execution_options(isolation_level="REPEATABLE READ",
                                                  postgresql_readonly=True)
    except OperationalError as exc:
        raise ConfigError(
            f"cannot connect to the database ({type(exc.orig).__name__})") from None


@contextmanager
def in_snapshot(engine: Engine, snapshot: str | None) -> Iterator[Connection]:
    """A read transaction in the snapshot ``snapshot`` (PostgreSQL), or a new one (SQLite)."""
    if engine.dialect.name != "postgresql" or snapshot is None:
        with transaction(engine, readonly=True) as conn:
            yield conn
        return
    if not _SNAPSHOT_ID.fullmatch(snapshot):
        raise ValueError("not a snapshot id")
    conn = connect(engine)
    try:
        with conn.begin():
            # must be the transaction's first statement; the id is checked above
            conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            yield conn
    finally:
        conn.close()


def check_range(conn: Connection, aside: Callable[[], Connection], lo: int, hi: int | None,
                 wanted: list[int]) -> Range:
    """Check every leaf of [lo, hi) (hi None: to the end) against its audit row, in order,
    until the first bad one. ``lo`` is a multiple of a power of two >= hi - lo (so [lo, hi)
    is a run of perfect subtrees of the whole tree) and of :data:`CHUNK`."""
    frontier: list[bytes] = []
    result = Range(lo, lo, None, None, frontier, {})
    pending = iter(wanted)
    next_root = next(pending, -1)
    size = lo
    previous_seq: float = -1 if lo == 0 else -math.inf  # the caller checks across ranges
    dialect = conn.dialect.name
    upper = "" if hi is None else f"AND l.idx < {int(hi)} "
    cur = dbapi_cursor(conn, name="hygie_verify")
    try:
        columns = dialect == "postgresql"
        cur.execute(_LEAVES.format(leaf=_COLUMNS if columns else leaf_input_sql(dialect),
                                   m=mark(conn), upper=upper), (lo,))
        for chunk in _prefetched(cur, CHUNK):
            if size == lo and chunk[0][0] == lo:
                result.first_seq = chunk[0][1]
            hashes = _chunk_hashes(chunk, size, previous_seq, columns)
            if hashes is not None:  # the whole chunk is good: hash it as subtrees
                end = size + len(chunk)
                levels = None
                while 0 < next_root <= end:
                    levels = levels or MerkleLevels(hashes)
                    result.roots[next_root] = frontier + list(
                        levels.compact_range(next_root - size).frontier)
                    next_root = next(pending, -1)
                if len(chunk) == CHUNK and (size - lo) % CHUNK == 0:  # one perfect subtree
                    h = levels.root() if levels else root_from_leaf_hashes(hashes)
                    i = (size - lo) // CHUNK
                    while i & 1:
                        h = _hash_children(frontier.pop(), h)
                        i >>= 1
                    frontier.append(h)
                else:
                    _append(frontier, size - lo, hashes)
                size, previous_seq = end, chunk[-1][1]
                result.end, result.last_seq = size, chunk[-1][1]
                continue
            for row in chunk:  # a row needs a closer look: one at a time, name the bad one
                idx, seq, stored = row[0], row[1], bytes(row[2])
                where = f"entry {size}"
                if idx != size:
                    return _bad(result, f"{where}: missing from the ledger (the leaf table "
                                        f"jumps to {idx})", "missing")
                if row[3] is None:
                    return _bad(result, f"{where} (audit seq {seq}): the audit entry was "
                                        "deleted", "deleted")
                if seq <= previous_seq:
                    return _bad(result, f"{where} (audit seq {seq}): entries were reordered",
                                "reordered")
                if _leaf_hash_of_row(aside, row, columns) != stored:
                    return _bad(result, f"{where} (audit seq {seq}): the audit entry was "
                                        "altered", "altered")
                previous_seq = seq
                _append(frontier, size - lo, [stored])
                size += 1
                result.end, result.last_seq = size, seq
                if size == next_root:
                    result.roots[size] = list(frontier)
                    next_root = next(pending, -1)
    finally:
        cur.close()
    if hi is not None and size < hi:  # the range's leaves ran out before its end
        cur = dbapi_cursor(conn)
        try:
            cur.execute(_NEXT_IDX.format(m=mark(conn)), (size,))
            nxt = cur.fetchone()[0]
        finally:
            cur.close()
        return _bad(result, f"entry {size}: missing from the ledger (the leaf table "
                            f"{'ends' if nxt is None else f'jumps to {nxt}'})", "missing")
    return result


def _bad(result: Range, problem: str, kind: str) -> Range:
    result.problem, result.kind = problem, kind
    return result


def _leaf_hash_of_row(aside: Callable[[], Connection], row: Any, columns: bool
                      ) -> bytes | None:
    """The leaf hash of a row of :data:`_LEAVES`: from its columns (``columns``), or from the
    bytes the database built when they are the JCS bytes, else rebuilt from the audit row's
    columns; None if they cannot make a leaf (a value of the wrong type, text that is not
    UTF-8: altered)."""
    seq, at = row[1], row[4]
    try:
        if columns:
            return leaf_hash(leaf_bytes_of(seq, at, *row[5:]))
        data = None if row[5] is None else bytes(row[5])
        if (data is not None and type(seq) is int and type(at) is int
                and -_SAFE_INT < seq < _SAFE_INT and -_SAFE_INT < at < _SAFE_INT
                and data.isascii() and b"\\" not in data and data[:1] == b"\x00"):
            return leaf_hashes_of_inputs([data])[0]
        return leaf_hash(leaf_from_sql(aside, seq, at, None))
    except (ValueError, TypeError, OverflowError):
        return None


def _append(frontier: list[bytes], size: int, hashes: list[bytes]) -> None:
    """Append leaf hashes to the frontier of a tree of ``size`` leaves."""
    for h in hashes:
        i = size
        while i & 1:  # merge the perfect subtrees this leaf completes
            h = _hash_children(frontier.pop(), h)
            i >>= 1
        frontier.append(h)
        size += 1


def _chunk_hashes(chunk: list[Any], size: int, previous_seq: float, columns: bool
                  ) -> list[bytes] | None:
    """The leaf hashes of a chunk of :data:`_LEAVES` rows if every row is good and takes the
    fast path (checked in bulk); None if any needs a closer look."""
    n = len(chunk)
    if chunk[0][0] != size or chunk[-1][0] != size + n - 1:  # idx: unique, ordered
        return None
    seqs = [r[1] for r in chunk]
    ats = [r[4] for r in chunk]
    if seqs[0] <= previous_seq or not all(map(operator.lt, seqs, seqs[1:])):
        return None
    if set(map(type, seqs)) != {int} or set(map(type, ats)) != {int}:
        return None  # a row is missing (None), an integer is not one
    if min(seqs) <= -_SAFE_INT or max(seqs) >= _SAFE_INT or min(ats) <= -_SAFE_INT \
            or max(ats) >= _SAFE_INT:
        return None
    if columns:  # 0x00 || the JCS bytes of the audit columns
        try:
            data = [b"\x00" + leaf_bytes_of(r[1], r[4], *r[5:]) for r in chunk]
        except (ValueError, TypeError, OverflowError):
            return None
    else:  # 0x00 || leaf JSON, built by the database: taken when it is the JCS bytes
        data = [r[5] for r in chunk]
        if set(map(type, data)) != {bytes}:
            return None
        joined = b"".join(data)
        if not joined.isascii() or b"\\" in joined:
            return None
    hashes = leaf_hashes_of_inputs(data)
    if hashes != [r[2] for r in chunk]:
        return None
    return hashes


def _prefetched(cur: Any, size: int) -> Iterator[list[Any]]:
    """The cursor's rows in chunks, fetched one chunk ahead by a thread: the database's work
    (and the driver's, which releases the GIL) overlaps the hashing of the previous chunk."""
    chunks: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def fetch() -> None:
        try:
            while not stop.is_set():
                chunk = cur.fetchmany(size)
                chunks.put(chunk)
                if not chunk:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            chunks.put(exc)

    thread = threading.Thread(target=fetch, name="hygie-verify-fetch", daemon=True)
    thread.start()
    try:
        while True:
            item = chunks.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a pending put, then let it end
            with suppress(queue.Empty):
                chunks.get(timeout=0.05)
        thread.join()



# -- worker processes ------------------------------------------------------------------------
_WORKER_CODE = "from hygie.ledger.ranges import worker_main; worker_main()"


def run_ranges(url: str, snapshot: str | None, bounds: list[tuple[int, int]],
               wanted: list[int], workers: int) -> list[Range | None]:
    """Check the ranges ``bounds`` (in leaf order) in ``workers`` processes, handed out lowest
    first. Returns their results in order, up to the first range with a problem (the ranges
    after it are not started); None for a range a worker could not check (the caller checks
    it itself)."""
    todo = iter(range(len(bounds)))
    results: dict[int, Range | None] = {}
    first_bad = [len(bounds)]
    lock = threading.Lock()
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])  # so that the worker imports this hygie
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)

    def drive() -> None:
        try:
            proc = subprocess.Popen([sys.executable, "-P", "-c", _WORKER_CODE],  # noqa: S603
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, env=env, text=True)
        except OSError:
            proc = None
        try:
            while True:
                with lock:
                    i = next(todo, None)
                    if i is None or i > first_bad[0]:
                        return
                lo, hi = bounds[i]
                result = None
                if proc is not None and proc.poll() is None:
                    result = _ask(proc, {"url": url, "snapshot": snapshot, "lo": lo, "hi": hi,
                                         "wanted": [s for s in wanted if lo < s <= hi]})
                with lock:
                    results[i] = result
                    if result is not None and result.problem is not None:
                        first_bad[0] = min(first_bad[0], i)
        finally:
            if proc is not None:
                with suppress(OSError):
                    proc.stdin.close()  # type: ignore[union-attr]
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    threads = [threading.Thread(target=drive, name=f"hygie-verify-{k}", daemon=True)
               for k in range(min(workers, len(bounds)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    last = min(first_bad[0], len(bounds) - 1)
    return [results.get(i) for i in range(last + 1)]


def _ask(proc: subprocess.Popen[str], task: dict[str, Any]) -> Range | None:
    """One task to a worker and its answer; None if the worker failed (stops it)."""
    try:
        proc.stdin.write(json.dumps(task) + "\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        line = proc.stdout.readline()  # type: ignore[union-attr]
        doc = json.loads(line) if line else None
    except (OSError, ValueError):
        doc = None
    if not isinstance(doc, dict) or "range" not in doc:
        proc.kill()
        return None
    return _range_from(doc["range"])


def _range_to(r: Range) -> dict[str, Any]:
    doc = asdict(r)
    doc["frontier"] = [h.hex() for h in r.frontier]
    doc["roots"] = [[s, [h.hex() for h in hs]] for s, hs in r.roots.items()]
    return doc


def _range_from(doc: dict[str, Any]) -> Range:
    return Range(lo=int(doc["lo"]), end=int(doc["end"]), first_seq=doc["first_seq"],
                 last_seq=doc["last_seq"], frontier=[bytes.fromhex(h) for h in doc["frontier"]],
                 roots={int(s): [bytes.fromhex(h) for h in hs] for s, hs in doc["roots"]},
                 problem=doc["problem"], kind=doc["kind"])


def worker_main() -> None:
    """A worker process: check the ranges asked on stdin (JSON lines), answer on stdout.
    Any failure answers ``{"error": <type>}`` (never a message: it could quote a value)."""
    engines: dict[str, Engine] = {}
    try:
        for line in sys.stdin:
            try:
                task = json.loads(line)
                url = task["url"]
                if url not in engines:
                    engines[url] = make_engine(url, pool=False)
                answer: dict[str, Any] = {"range": _range_to(_check_task(
                    engines[url], task["snapshot"], int(task["lo"]), int(task["hi"]),
                    [int(s) for s in task["wanted"]]))}
            except Exception as exc:  # noqa: BLE001 - reported by type; the caller takes over
                answer = {"error": type(exc).__name__}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
    finally:
        for engine in engines.values():
            engine.dispose()


def _check_task(engine: Engine, snapshot: str | None, lo: int, hi: int,
                wanted: list[int]) -> Range:
    with ExitStack() as side, in_snapshot(engine, snapshot) as conn:
        other: list[Connection] = []

        def aside() -> Connection:
            if not other:
                other.append(side.enter_context(in_snapshot(engine, snapshot)))
            return other[0]

        return check_range(conn, aside, lo, hi, wanted)
