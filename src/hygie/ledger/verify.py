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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from hygie.ledger.checkpoint import open_checkpoint
from hygie.ledger.log import leaf_bytes
from hygie.ledger.merkle import EMPTY_ROOT, MerkleLevels, leaf_hash, verify_consistency
from hygie.ledger.note import NoteError, Verifier
from hygie.store.db import transaction
from hygie.store.tables import audit_event, ledger_checkpoint, ledger_leaf


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


def verify_instance(engine: Engine, verifier: Verifier, origin: str) -> Report:
    report = Report()
    with transaction(engine, readonly=True) as conn:
        rows = {r.seq: r for r in conn.execute(select(audit_event).order_by(audit_event.c.seq))}
        leaves = conn.execute(select(ledger_leaf).order_by(ledger_leaf.c.idx)).all()
        checkpoints = conn.execute(select(ledger_checkpoint)
                                   .order_by(ledger_checkpoint.c.size)).all()
    hashes: list[bytes] = []
    previous_seq = -1
    for expected, leaf in enumerate(leaves):
        where = f"entry {expected}"
        if leaf.idx != expected:
            report.fail(f"{where}: missing from the ledger (the leaf table jumps to {leaf.idx})")
            break
        row = rows.get(leaf.seq)
        if row is None:
            report.fail(f"{where} (audit seq {leaf.seq}): the audit entry was deleted")
            break
        if leaf.seq <= previous_seq:
            report.fail(f"{where} (audit seq {leaf.seq}): entries were reordered")
            break
        if leaf_hash(leaf_bytes(row)) != bytes(leaf.hash):
            report.fail(f"{where} (audit seq {leaf.seq}): the audit entry was altered")
            break
        previous_seq = leaf.seq
        hashes.append(bytes(leaf.hash))
    report.entries = len(hashes)
    if report.ok and leaves:
        sequenced = {leaf.seq for leaf in leaves}
        inserted = [s for s in rows if s < leaves[-1].seq and s not in sequenced]
        if inserted:
            report.fail(f"audit seq {inserted[0]}: an entry was inserted into sequenced history")
    levels = MerkleLevels(hashes)
    report.root = base64.b64encode(levels.root() if hashes else EMPTY_ROOT).decode()
    last: tuple[int, bytes] | None = None
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
        if cp.size > levels.size:
            report.fail(f"checkpoint at size {cp.size}: the ledger now holds only "
                        f"{levels.size} entries (truncated)")
            continue
        root = levels.root(cp.size) if cp.size else EMPTY_ROOT
        if root != cp.root_hash:
            report.fail(f"checkpoint at size {cp.size}: the entries no longer give the "
                        "signed root (history was rewritten)")
            continue
        if last is not None and last[0] <= cp.size:
            proof = levels.consistency_proof(last[0], cp.size) if last[0] else []
            if last[0] and not verify_consistency(last[0], cp.size, last[1], cp.root_hash,
                                                  proof):
                report.fail(f"checkpoints {last[0]} → {cp.size}: not consistent")
        last = (cp.size, cp.root_hash)
    return report


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
