"""Independent verification of the ledger: ``hygie ledger verify`` and ``hygie ledger witness``.

``verify_instance`` recomputes every leaf from the audit table, compares it with the stored
leaf hashes, recomputes the tree, checks every stored checkpoint's signature and root, and the
consistency between successive checkpoints; it names the first bad entry.

``witness`` is what an outside auditor runs: it fetches the latest checkpoint over HTTP, checks
its signature with a pinned verifier key, checks that it is consistent with the last checkpoint
it saw (so history was neither rewritten nor truncated), and keeps it.
"""

from __future__ import annotations

import base64
import json
import operator
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select

from hygie.ledger.checkpoint import open_checkpoint
from hygie.ledger.log import dbapi_cursor, leaf_from_sql, leaf_json_sql
from hygie.ledger.merkle import (
    EMPTY_ROOT,
    MerkleLevels,
    _hash_children,
    leaf_hash,
    leaf_hashes,
    root_from_leaf_hashes,
    verify_consistency,
)
from hygie.ledger.note import NoteError, Verifier
from hygie.store.db import transaction
from hygie.store.tables import ledger_checkpoint


@dataclass
class Report:
    ok: bool = True
    entries: int = 0
    checkpoints: int = 0
    root: str = ""
    problems: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)


# Every leaf joined to its audit row (NULL columns when the row is gone), in leaf order.
# (The leaf's JSON is built by the database, see hygie.ledger.log.leaf_from_sql.)
_LEAVES = ("SELECT l.idx, l.seq, l.hash, a.seq, a.at, {json} FROM ledger_leaf l "
           "LEFT JOIN audit_event a ON a.seq = l.seq ORDER BY l.idx")
# The first audit row inside sequenced history that has no leaf.
_INSERTED = ("SELECT min(a.seq) FROM audit_event a WHERE a.seq < {m} AND NOT EXISTS "
             "(SELECT 1 FROM ledger_leaf l WHERE l.seq = a.seq)")
_CHUNK = 16_384  # a power of two: each full chunk is one perfect subtree of the tree
_SAFE_INT = 2**53


def verify_instance(engine: Engine, verifier: Verifier, origin: str) -> Report:
    """Recompute every leaf and the tree from the database; check the checkpoints.

    Streams the leaves joined to their audit rows through the driver's cursor in chunks
    (tuples; a server-side cursor on PostgreSQL) and keeps only the frontier of the tree
    (O(log n) memory): the root at each checkpoint's size is taken as the stream passes it.
    Successive checkpoints whose roots both match are consistent by construction (both are
    roots of prefixes of the same verified leaves), so no proof is needed between them.
    """
    report = Report()
    with ExitStack() as side, transaction(engine, readonly=True) as conn:
        other: list[Connection] = []

        def aside() -> Connection:
            """A second read transaction for the rare rows whose leaf is rebuilt from their
            columns: the stream's connection is busy in the prefetching thread."""
            if not other:
                other.append(side.enter_context(transaction(engine, readonly=True)))
            return other[0]

        checkpoints = conn.execute(select(ledger_checkpoint)
                                   .order_by(ledger_checkpoint.c.size)).all()
        wanted = sorted({int(c.size) for c in checkpoints if c.size})
        roots: dict[int, bytes] = {0: EMPTY_ROOT}
        size, last_seq, frontier = _stream(conn, aside, report, wanted, roots)
        if report.ok and size:
            cur = dbapi_cursor(conn)
            try:
                cur.execute(_INSERTED.format(m="?" if conn.dialect.name == "sqlite" else "%s"),
                            (last_seq,))
                row = cur.fetchone()
            finally:
                cur.close()
            if row is not None and row[0] is not None:
                report.fail(f"audit seq {row[0]}: an entry was inserted into sequenced history")
    report.entries = size
    report.root = base64.b64encode(_fold(frontier)).decode()
    for cp_row in checkpoints:
        report.checkpoints += 1
        try:
            cp = open_checkpoint(cp_row.note, verifier, origin)
        except NoteError as exc:
            report.fail(f"checkpoint at size {cp_row.size}: bad signature or format ({exc})")
            continue
        if cp.size != cp_row.size or cp.root_hash != bytes(cp_row.root):
            report.fail(f"checkpoint at size {cp_row.size}: its row does not match its note")
            continue
        if cp.size > size:
            report.fail(f"checkpoint at size {cp.size}: the ledger now holds only "
                        f"{size} entries (truncated)")
            continue
        if roots[cp.size] != cp.root_hash:
            report.fail(f"checkpoint at size {cp.size}: the entries no longer give the "
                        "signed root (history was rewritten)")
    return report


def _stream(conn: Connection, aside: Callable[[], Connection], report: Report,
            wanted: list[int], roots: dict[int, bytes]) -> tuple[int, int, list[bytes]]:
    """Check every leaf against its audit row, in order, until the first bad one. Returns the
    number of good leaves, the audit seq of the last one, and the tree's frontier; fills
    ``roots`` with the root at each size of ``wanted`` (ascending) that is reached."""
    frontier: list[bytes] = []
    pending = iter(wanted)
    next_root = next(pending, -1)
    size, previous_seq = 0, -1
    cur = dbapi_cursor(conn, name="hygie_verify")
    try:
        cur.execute(_LEAVES.format(json=leaf_json_sql(conn.dialect.name)))
        for chunk in _prefetched(cur, _CHUNK):
            hashes = _chunk_hashes(chunk, size, previous_seq)
            if hashes is not None:  # the whole chunk is good: hash it as subtrees
                end = size + len(chunk)
                levels = None
                while 0 < next_root <= end:
                    levels = levels or MerkleLevels(hashes)
                    roots[next_root] = _fold(
                        frontier + list(levels.compact_range(next_root - size).frontier))
                    next_root = next(pending, -1)
                if len(chunk) == _CHUNK and size % _CHUNK == 0:  # one perfect subtree
                    h = levels.root() if levels else root_from_leaf_hashes(hashes)
                    i = size // _CHUNK
                    while i & 1:
                        h = _hash_children(frontier.pop(), h)
                        i >>= 1
                    frontier.append(h)
                else:
                    _append(frontier, size, hashes)
                size, previous_seq = end, chunk[-1][1]
                continue
            for row in chunk:  # a row needs a closer look: one at a time, name the bad one
                idx, seq, stored = row[0], row[1], bytes(row[2])
                where = f"entry {size}"
                if idx != size:
                    report.fail(f"{where}: missing from the ledger (the leaf table jumps to "
                                f"{idx})")
                    return size, previous_seq, frontier
                if row[3] is None:
                    report.fail(f"{where} (audit seq {seq}): the audit entry was deleted")
                    return size, previous_seq, frontier
                if seq <= previous_seq:
                    report.fail(f"{where} (audit seq {seq}): entries were reordered")
                    return size, previous_seq, frontier
                if leaf_hash(leaf_from_sql(aside, seq, row[4], row[5])) != stored:
                    report.fail(f"{where} (audit seq {seq}): the audit entry was altered")
                    return size, previous_seq, frontier
                previous_seq = seq
                _append(frontier, size, [stored])
                size += 1
                if size == next_root:
                    roots[size] = _fold(frontier)
                    next_root = next(pending, -1)
    finally:
        cur.close()
    return size, previous_seq, frontier


def _append(frontier: list[bytes], size: int, hashes: list[bytes]) -> None:
    """Append leaf hashes to the frontier of a tree of ``size`` leaves."""
    for h in hashes:
        i = size
        while i & 1:  # merge the perfect subtrees this leaf completes
            h = _hash_children(frontier.pop(), h)
            i >>= 1
        frontier.append(h)
        size += 1


def _chunk_hashes(chunk: list[Any], size: int, previous_seq: int) -> list[bytes] | None:
    """The leaf hashes of a chunk of (idx, seq, hash, audit seq, at, leaf JSON) rows if every
    row is good and takes the fast path (checked in bulk); None if any needs a closer look."""
    n = len(chunk)
    if chunk[0][0] != size or chunk[-1][0] != size + n - 1:  # idx: unique, ordered
        return None
    seqs = [r[1] for r in chunk]
    ats = [r[4] for r in chunk]
    texts = [r[5] for r in chunk]
    if seqs[0] <= previous_seq or not all(map(operator.lt, seqs, seqs[1:])):
        return None
    if set(map(type, seqs)) != {int} or set(map(type, ats)) != {int}:
        return None  # a row is missing (None) or an integer is not one
    if min(seqs) <= -_SAFE_INT or max(seqs) >= _SAFE_INT or min(ats) <= -_SAFE_INT \
            or max(ats) >= _SAFE_INT or None in texts:
        return None
    joined = "".join(texts)
    if not joined.isascii() or "\\" in joined:
        return None
    hashes = leaf_hashes([t.encode() for t in texts])
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


def _fold(frontier: list[bytes]) -> bytes:
    """The root of the tree whose perfect subtrees are ``frontier`` (largest first)."""
    if not frontier:
        return EMPTY_ROOT
    r = frontier[-1]
    for h in reversed(frontier[:-1]):
        r = _hash_children(h, r)
    return r


# -- witness ---------------------------------------------------------------------------------
class WitnessError(Exception):
    pass


def witness(base_url: str, state_file: Path, *, token: str,
            verifier_key: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """Fetch, check and remember the latest checkpoint of the ledger at ``base_url``."""
    import httpx

    state: dict[str, Any] = {}
    if state_file.exists():
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            raise WitnessError(f"cannot read the witness state {state_file}") from None
    headers = {"Authorization": f"Bearer {token}"}
    base = base_url.rstrip("/")
    with httpx.Client(timeout=timeout, headers=headers) as http:
        def get(path: str, **params: Any) -> httpx.Response:
            resp = http.get(f"{base}{path}", params=params)
            if resp.status_code != 200:
                raise WitnessError(f"GET {path} answered {resp.status_code}")
            return resp

        key_doc = get("/ledger/key").json()
        pinned = verifier_key or state.get("verifier_key")
        if pinned and pinned != key_doc["verifier_key"]:
            raise WitnessError("the server's ledger key is not the pinned one")
        vkey = pinned or key_doc["verifier_key"]
        origin = state.get("origin") or key_doc["origin"]
        note = get("/ledger/checkpoint").text
        try:
            cp = open_checkpoint(note, Verifier.from_verifier_key(vkey), origin)
        except NoteError as exc:
            raise WitnessError(f"the checkpoint does not verify: {exc}") from None
        old_size = int(state.get("size", 0))
        if cp.size < old_size:
            raise WitnessError(f"the ledger shrank from {old_size} to {cp.size} entries")
        if old_size:
            old_root = base64.b64decode(state["root"])
            proof = [base64.b64decode(h) for h in get(
                "/ledger/proof/consistency", first=old_size, second=cp.size).json()["proof"]]
            if not verify_consistency(old_size, cp.size, old_root, cp.root_hash, proof):
                raise WitnessError(f"checkpoint {cp.size} is not consistent with the one "
                                   f"seen before ({old_size}): history was rewritten")
    new_state = {"origin": origin, "verifier_key": vkey, "size": cp.size,
                 "root": base64.b64encode(cp.root_hash).decode(), "checkpoint": note}
    tmp = state_file.with_name(state_file.name + ".tmp")
    tmp.write_text(json.dumps(new_state, indent=1) + "\n")
    tmp.replace(state_file)
    return {"size": cp.size, "previous_size": old_size, "root": new_state["root"]}
