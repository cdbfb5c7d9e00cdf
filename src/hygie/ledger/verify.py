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
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select

from hygie.ledger.checkpoint import open_checkpoint
from hygie.ledger.log import dbapi_cursor
from hygie.ledger.merkle import EMPTY_ROOT, _hash_children, verify_consistency
from hygie.ledger.note import NoteError, Verifier
from hygie.ledger.ranges import CHUNK, Range, check_range, connect, in_snapshot, mark, run_ranges
from hygie.store.db import transaction
from hygie.store.tables import ledger_checkpoint


@dataclass
class Report:
    ok: bool = True
    entries: int = 0
    checkpoints: int = 0
    root: str = ""
    problems: list[str] = field(default_factory=list)
    worker_ranges: int = 0  # ranges of leaves checked in worker processes

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)


# The first audit row inside sequenced history that has no leaf.
_INSERTED = ("SELECT min(a.seq) FROM audit_event a WHERE a.seq < {m} AND NOT EXISTS "
             "(SELECT 1 FROM ledger_leaf l WHERE l.seq = a.seq)")
_BOUNDS = "SELECT min(idx), max(idx) FROM ledger_leaf"
PARALLEL_MIN = 131_072  # fewer entries: one process (starting workers would cost more)
_MAX_WORKERS = 8

def verify_instance(engine: Engine, verifier: Verifier, origin: str, *,
                    workers: int | None = None, span: int | None = None) -> Report:
    """Recompute every leaf and the tree from the database; check the checkpoints.

    The leaves joined to their audit rows are streamed through the driver's cursor in chunks
    (tuples; a server-side cursor on PostgreSQL), keeping only the frontier of the tree
    (O(log n) memory); the root at each checkpoint's size is taken as the stream passes it.
    Successive checkpoints whose roots both match are consistent by construction (both are
    roots of prefixes of the same verified leaves), so no proof is needed between them.

    From :data:`PARALLEL_MIN` leaves, ``workers`` processes (default: the usable CPUs, at
    most 8) check ranges of leaves that start at multiples of a power of two, so each range
    is a run of perfect subtrees and the caller combines their roots (RFC 6962). They read
    the caller's snapshot: the tree size and the checkpoints are fixed by the caller's read
    transaction, whose snapshot the workers import on PostgreSQL (``pg_export_snapshot``);
    on SQLite each worker reads its own, and checks only leaves below the size the caller
    fixed (leaves and sequenced audit rows are never rewritten; a tampering made while the
    check runs may be caught or not, as it would be a moment later). The first bad entry is
    the lowest one across ranges. ``span``: the leaves per range (a power of two; default
    about a quarter of each worker's share), with ``workers`` forces the parallel check
    whatever the size (tests).
    """
    if span is not None and (span < 1 or span & (span - 1)):
        raise ValueError("span must be a power of two")
    report = Report()
    roots: dict[int, bytes] = {0: EMPTY_ROOT}
    with _snapshot(engine) as (conn, snapshot), ExitStack() as side:
        other: list[Connection] = []

        def aside() -> Connection:
            """A second read transaction (same snapshot) for the rare rows whose leaf is
            rebuilt from their columns: the stream's connection is busy prefetching."""
            if not other:
                other.append(side.enter_context(in_snapshot(engine, snapshot)))
            return other[0]

        checkpoints = conn.execute(select(ledger_checkpoint)
                                   .order_by(ledger_checkpoint.c.size)).all()
        wanted = sorted({int(c.size) for c in checkpoints if c.size})
        cur = dbapi_cursor(conn)
        try:
            cur.execute(_BOUNDS)
            low, high = cur.fetchone()
        finally:
            cur.close()
        n = 0 if high is None else int(high) + 1
        count = _workers(workers, n, span)
        if low is not None and low != 0:
            results = [Range(0, 0, None, None, [], {}, f"entry 0: missing from the ledger "
                              f"(the leaf table jumps to {low})", "missing")]
        elif count <= 1:
            results = [check_range(conn, aside, 0, None, wanted)]
        else:
            span = span or _span(n, count)
            bounds = [(lo, min(lo + span, n)) for lo in range(0, n, span)]
            results = []
            for (lo, hi), r in zip(bounds, run_ranges(
                    engine.url.render_as_string(hide_password=False), snapshot, bounds,
                    wanted, count), strict=False):
                if r is None:  # a range no worker could check: check it here
                    r = check_range(conn, aside, lo, hi, [s for s in wanted if lo < s <= hi])
                else:
                    report.worker_ranges += 1
                results.append(r)
                if r.problem is not None:
                    break
        size, last_seq, frontier = _combine(results, report, roots)
        if report.ok and size:
            cur = dbapi_cursor(conn)
            try:
                cur.execute(_INSERTED.format(m=mark(conn)), (last_seq,))
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


def _workers(asked: int | None, n: int, span: int | None) -> int:
    if asked is not None:
        return max(1, asked) if n > (span or CHUNK) else 1
    if n < PARALLEL_MIN:
        return 1
    usable = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
              else os.cpu_count() or 1)
    return max(1, min(_MAX_WORKERS, usable))


@contextmanager
def _snapshot(engine: Engine) -> Iterator[tuple[Connection, str | None]]:
    """A read transaction and, on PostgreSQL, the id of its exported snapshot (REPEATABLE
    READ: every statement of the check sees the same database)."""
    if engine.dialect.name != "postgresql":
        with transaction(engine, readonly=True) as conn:
            yield conn, None
        return
    conn = connect(engine)
    try:
        with conn.begin():
            yield conn, str(conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one())
    finally:
        conn.close()


def _span(n: int, workers: int) -> int:
    """The leaves per range: a power of two (>= one chunk), 4 to 8 ranges per worker so
    that a worker slowed by other work on the machine does not hold the others up."""
    target = max(CHUNK, n // (4 * workers))
    return 1 << (target.bit_length() - 1)


def _combine(results: list[Range], report: Report, roots: dict[int, bytes]
             ) -> tuple[int, int, list[bytes]]:
    """Join the ranges' findings in order: the size of the good prefix, the audit seq of its
    last leaf, its frontier; ``roots`` at every wanted size reached; the first problem."""
    frontier: list[bytes] = []
    sizes: list[int] = []
    size, last_seq = 0, -1
    for r in results:
        boundary_first = r.problem is None or r.end > r.lo or r.kind == "altered"
        if r.lo and r.first_seq is not None and r.first_seq <= last_seq and boundary_first:
            report.fail(f"entry {r.lo} (audit seq {r.first_seq}): entries were reordered")
            return size, last_seq, frontier
        for s, local in r.roots.items():
            roots[s] = _fold(frontier + local)
        count = r.end - r.lo
        parts = [1 << b for b in reversed(range(count.bit_length())) if count >> b & 1]
        for h, part in zip(r.frontier, parts, strict=True):
            while sizes and sizes[-1] == part:  # two equal perfect subtrees side by side
                h = _hash_children(frontier.pop(), h)
                sizes.pop()
                part *= 2
            frontier.append(h)
            sizes.append(part)
        size = r.end
        if r.last_seq is not None:
            last_seq = r.last_seq
        if r.problem is not None:
            report.fail(r.problem)
            break
    return size, last_seq, frontier


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
