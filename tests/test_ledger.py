"""The ledger on a real data dir: signed checkpoints, proofs over the API, and tampering
(deleting, editing, reordering, truncating audit rows) detected by verify and by a witness."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from hygie.api.app import open_runtime
from hygie.cli.main import app as cli_app
from hygie.ledger.checkpoint import open_checkpoint
from hygie.ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from hygie.ledger.note import Verifier
from hygie.records.importer import run_import
from hygie.store.tables import audit_event, ledger_checkpoint, ledger_leaf

from .conftest import Instance, make_api
from .test_serve import free_port, wait_until_up

runner = CliRunner()
HYGIE = str(Path(sys.executable).parent / "hygie")


def cli(*args: str) -> Any:
    return runner.invoke(cli_app, list(args), catch_exceptions=False)


@pytest.fixture
def ledger_api(instance: Instance) -> Any:
    api, app = make_api(instance, scopes="system/*.* ledger/*.read")
    yield api
    api.client.close()
    app.state.runtime.engine.dispose()


def test_checkpoint_and_proofs_over_the_api(ledger_api: Any) -> None:
    api = ledger_api
    for _ in range(5):
        api.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "other"})
    key = api.get("/ledger/key").json()
    verifier = Verifier.from_verifier_key(key["verifier_key"])
    assert key["verifier_key"].startswith(key["origin"] + "+")
    first_note = api.get("/ledger/checkpoint")
    assert first_note.headers["content-type"].startswith("text/plain")
    first = open_checkpoint(first_note.text, verifier, key["origin"])
    assert first.size >= 6  # the token issuance and five creates
    api.get("/fhir/Patient")  # more entries
    second = open_checkpoint(api.get("/ledger/checkpoint").text, verifier, key["origin"])
    assert second.size > first.size
    entries = api.get(f"/ledger/entries?start=0&end={second.size}").json()["entries"]
    assert len(entries) == second.size
    leaf = json.loads(base64.b64decode(entries[1]))
    assert set(leaf) == {"seq", "time", "actor", "action", "target", "purpose", "decision",
                         "outcome", "break_glass", "request_id", "client_address"}
    assert leaf["action"] == "create" and leaf["decision"]["permit"] is True
    for index in (0, second.size // 2, second.size - 1):
        proof = api.get(f"/ledger/proof/inclusion?index={index}&tree_size={second.size}").json()
        path = [base64.b64decode(h) for h in proof["audit_path"]]
        assert verify_inclusion(leaf_hash(base64.b64decode(entries[index])), index,
                                second.size, path, second.root_hash)
    cons = api.get(f"/ledger/proof/consistency?first={first.size}&second={second.size}").json()
    assert verify_consistency(first.size, second.size, first.root_hash, second.root_hash,
                              [base64.b64decode(h) for h in cons["proof"]])
    assert api.get("/ledger/proof/inclusion?index=5&tree_size=999999").status_code == 400
    # Clients without the ledger scope are refused.
    plain, app2 = make_api_plain(api)
    assert plain.get("/ledger/checkpoint").status_code == 403


def make_api_plain(api: Any) -> Any:
    from hygie.access.clients import create_client
    from hygie.store.db import transaction

    from .conftest import get_token

    with transaction(api.engine) as conn:
        cid, secret = create_client(conn, tenant="default", name="plain", scopes="system/*.*")
    token = get_token(api.client, cid, secret).json()["access_token"]

    class Plain:
        def get(self, path: str) -> Any:
            return api.client.get(path, headers={"Authorization": f"Bearer {token}"})

    return Plain(), None


@pytest.fixture
def populated(instance: Instance, synthea_bundles: list[Path]) -> Instance:
    rt = open_runtime(instance.settings)
    run_import(rt.gate, synthea_bundles[0], page_max=1000)
    rt.ledger.checkpoint()
    rt.engine.dispose()
    return instance


def verify(instance: Instance) -> Any:
    return cli("ledger", "verify", "--data-dir", str(instance.data_dir), "--json")


def engine_of(instance: Instance) -> Any:
    return open_runtime(instance.settings).engine


def test_untouched_ledger_verifies(populated: Instance) -> None:
    result = verify(populated)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] and doc["entries"] >= 70 and doc["checkpoints"] == 1


def _seq(engine: Any, index: int) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(ledger_leaf.c.seq).where(ledger_leaf.c.idx == index))
                   .scalar_one())


def test_deleted_row_is_detected(populated: Instance) -> None:
    engine = engine_of(populated)
    seq = _seq(engine, 10)
    with engine.begin() as conn:
        conn.execute(delete(audit_event).where(audit_event.c.seq == seq))
    result = verify(populated)
    assert result.exit_code == 1
    assert "entry 10" in result.output and "deleted" in result.output


def test_edited_row_is_detected(populated: Instance) -> None:
    engine = engine_of(populated)
    seq = _seq(engine, 20)
    with engine.begin() as conn:
        conn.execute(update(audit_event).where(audit_event.c.seq == seq)
                     .values(actor="client:someone-else"))
    result = verify(populated)
    assert result.exit_code == 1
    assert "entry 20" in result.output and "altered" in result.output


def test_reordered_rows_are_detected(populated: Instance) -> None:
    engine = engine_of(populated)
    a, b = _seq(engine, 30), _seq(engine, 31)
    with engine.begin() as conn:
        conn.execute(update(audit_event).where(audit_event.c.seq == a).values(seq=-1))
        conn.execute(update(audit_event).where(audit_event.c.seq == b).values(seq=a))
        conn.execute(update(audit_event).where(audit_event.c.seq == -1).values(seq=b))
    result = verify(populated)
    assert result.exit_code == 1 and "entry 30" in result.output


def test_truncation_is_detected(populated: Instance) -> None:
    engine = engine_of(populated)
    cut = _seq(engine, 40)
    with engine.begin() as conn:
        conn.execute(delete(ledger_leaf).where(ledger_leaf.c.idx >= 40))
        conn.execute(delete(audit_event).where(audit_event.c.seq >= cut))
    result = verify(populated)
    assert result.exit_code == 1 and "truncated" in result.output


def test_rewritten_history_with_a_new_checkpoint_is_caught(populated: Instance) -> None:
    """An insider edits an entry AND rebuilds the leaves and a fresh signed checkpoint: verify
    still fails on the old checkpoint; a witness holding it would too (see below)."""
    engine = engine_of(populated)
    seq = _seq(engine, 5)
    with engine.begin() as conn:
        conn.execute(update(audit_event).where(audit_event.c.seq == seq)
                     .values(outcome="denied"))
        conn.execute(delete(ledger_leaf))
    rt = open_runtime(populated.settings)
    rt.ledger.checkpoint()
    result = verify(populated)
    assert result.exit_code == 1 and "rewritten" in result.output


def test_witness_detects_a_rewritten_ledger(instance: Instance, tmp_path: Path) -> None:
    d = str(instance.data_dir)
    creds = json.loads(cli("client", "add", "witness", "--data-dir", d, "--scope",
                           "system/*.* ledger/*.read", "--json").stdout)
    env = {**os.environ, "HYGIE_WITNESS_CLIENT_ID": creds["client_id"],
           "HYGIE_WITNESS_CLIENT_SECRET": creds["client_secret"]}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    state = tmp_path / "witness.json"

    def start() -> subprocess.Popen[bytes]:
        p = subprocess.Popen([HYGIE, "serve", "--data-dir", d, "--port", str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_up(base, p)
        return p

    proc = start()
    try:

        def witness() -> subprocess.CompletedProcess[str]:
            return subprocess.run([HYGIE, "ledger", "witness", base, "--state", str(state),
                                   "--json"], capture_output=True, text=True, env=env,
                                  timeout=60, check=False)

        first = witness()
        assert first.returncode == 0, first.stderr
        again = witness()  # the token request itself added entries: still consistent
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["size"] >= json.loads(first.stdout)["size"]
        # The administrator rewrites history and re-signs: the witness notices.
        engine = engine_of(instance)
        seq = _seq(engine, 0)
        with engine.begin() as conn:
            conn.execute(update(audit_event).where(audit_event.c.seq == seq)
                         .values(action="read"))
            conn.execute(delete(ledger_leaf))
            conn.execute(delete(ledger_checkpoint))
        proc.terminate()
        proc.wait(timeout=30)
        proc = start()  # restarted on the rewritten tables, it signs the forged history
        caught = witness()
        assert caught.returncode == 1
        assert "not consistent" in caught.stderr and "Traceback" not in caught.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_ledger_never_holds_content(ledger_api: Any) -> None:
    api = ledger_api
    api.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Secretus"}]})
    note = api.get("/ledger/checkpoint").text
    size = int(note.splitlines()[1])
    entries = api.get(f"/ledger/entries?start=0&end={size}").json()["entries"]
    assert all(b"Secretus" not in base64.b64decode(e) for e in entries)



def test_inserted_row_is_detected(populated: Instance) -> None:
    """An audit row slipped into sequenced history (a seq below the last leaf's, no leaf)."""
    engine = engine_of(populated)
    seq = _seq(engine, 3)
    with engine.begin() as conn:
        row = conn.execute(select(audit_event).where(audit_event.c.seq == seq)).one()._asdict()
        conn.execute(audit_event.insert().values({**row, "seq": -5}))
    result = verify(populated)
    assert result.exit_code == 1
    assert "audit seq -5" in result.output and "inserted" in result.output


def test_leaf_gap_is_detected(populated: Instance) -> None:
    engine = engine_of(populated)
    with engine.begin() as conn:
        conn.execute(delete(ledger_leaf).where(ledger_leaf.c.idx == 25))
    result = verify(populated)
    assert result.exit_code == 1 and "entry 25: missing" in result.output
    assert "jumps to 26" in result.output


def test_concurrent_sequencers_and_appenders_keep_one_log(instance: Instance) -> None:
    """Two sequencers (as two processes would: separate Ledger objects) integrate while 8
    threads append through the group commit: every entry gets exactly one leaf, in order."""
    import threading

    from hygie.ledger.audit import AuditEntry
    from hygie.ledger.log import Ledger
    from hygie.ledger.verify import verify_instance

    rt = open_runtime(instance.settings)
    other = Ledger(rt.engine, rt.ledger.tenant, rt.ledger.signer)
    stop = threading.Event()
    errors: list[str] = []

    def append(n: int) -> None:
        for i in range(60):
            rt.gate.appender.append([AuditEntry(actor=f"client:t{n}", actor_kind="client",
                                                action="read", outcome="success",
                                                request_id=f"{n}-{i}")])

    def sequence(ledger: Any) -> None:
        try:
            while not stop.is_set():
                ledger.integrate()
        except Exception as exc:  # noqa: BLE001 - reported below by type
            errors.append(type(exc).__name__)

    seqs = [threading.Thread(target=sequence, args=(lg,)) for lg in (rt.ledger, other)]
    apps = [threading.Thread(target=append, args=(n,)) for n in range(8)]
    for t in seqs + apps:
        t.start()
    for t in apps:
        t.join()
    stop.set()
    for t in seqs:
        t.join()
    assert not errors
    size = rt.ledger.integrate()
    rt.ledger.checkpoint()
    with rt.engine.connect() as conn:
        audit_rows = conn.execute(select(audit_event.c.seq)).all()
        leaves = conn.execute(select(ledger_leaf.c.idx, ledger_leaf.c.seq)
                              .order_by(ledger_leaf.c.idx)).all()
    assert size == len(audit_rows) == len(leaves)
    assert [leaf.idx for leaf in leaves] == list(range(size))
    assert [leaf.seq for leaf in leaves] == sorted(r.seq for r in audit_rows)
    report = verify_instance(rt.engine, rt.ledger.signer.verifier(), rt.ledger.origin)
    assert report.ok and report.entries == size and report.checkpoints == 1
    # proofs at a size the cache holds are served from it; a larger size refreshes it
    assert len(rt.ledger.inclusion(0, size)) == (size - 1).bit_length()
    rt.engine.dispose()


def test_group_commit_fails_closed_for_every_waiter(instance: Instance) -> None:
    """While the audit table refuses inserts, every concurrent caller gets AuditUnavailable
    (none hangs, none passes); once it accepts them again, appends succeed."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import text

    from hygie.errors import AuditUnavailable
    from hygie.ledger.audit import AuditEntry

    rt = open_runtime(instance.settings)
    appender = rt.gate.appender
    entry = AuditEntry(actor="client:x", actor_kind="client", action="read",
                       outcome="success")
    appender.append([entry])  # the appender's connection is open before the failure
    sqlite = instance.backend == "sqlite"
    with rt.engine.begin() as conn:
        if sqlite:
            conn.execute(text("CREATE TRIGGER no_audit BEFORE INSERT ON audit_event "
                              "BEGIN SELECT RAISE(ABORT, 'audit down'); END"))
        else:
            conn.execute(text("CREATE FUNCTION no_audit() RETURNS trigger AS $$ BEGIN "
                              "RAISE EXCEPTION 'audit down'; END $$ LANGUAGE plpgsql"))
            conn.execute(text("CREATE TRIGGER no_audit BEFORE INSERT ON audit_event "
                              "FOR EACH ROW EXECUTE FUNCTION no_audit()"))

    def attempt(_: int) -> str:
        try:
            appender.append([entry])
        except AuditUnavailable:
            return "refused"
        return "recorded"

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(attempt, range(40))) == ["refused"] * 40
    with rt.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER no_audit" + ("" if sqlite else " ON audit_event")))
    before = appender.appended
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(attempt, range(40))) == ["recorded"] * 40
    assert appender.appended == before + 40
    rt.engine.dispose()


def _moved_leaf(instance: Instance, index: int | None) -> Any:
    """Move leaf ``index`` (None: the last one) past the end of the leaf table, then record
    new audit entries that ``ledger verify`` sequences before it checks."""
    from hygie.ledger.audit import AuditEntry

    engine = engine_of(instance)
    with engine.begin() as conn:
        last = conn.execute(select(ledger_leaf.c.idx).order_by(ledger_leaf.c.idx.desc())
                            .limit(1)).scalar_one()
        moved = last if index is None else index
        conn.execute(update(ledger_leaf).where(ledger_leaf.c.idx == moved)
                     .values(idx=last + 5))
    rt = open_runtime(instance.settings)
    for i in range(3):
        rt.gate.appender.append([AuditEntry(actor="client:x", actor_kind="client",
                                            action="read", outcome="success",
                                            request_id=f"after-{i}")])
    rt.engine.dispose()
    engine.dispose()
    return moved


@pytest.mark.parametrize("which", ["middle", "last"])
def test_moved_leaf_is_reported_as_tampering(populated: Instance, which: str) -> None:
    """A leaf moved to a larger index: sequencing new entries after it collides with existing
    leaves; verify reports the tampering (exit 1, the first bad entry), not an internal
    error (exit 70)."""
    moved = _moved_leaf(populated, 12 if which == "middle" else None)
    result = verify(populated)
    assert result.exit_code == 1, result.output
    assert f"entry {moved}: missing from the ledger" in result.output
    assert "unexpected" not in result.output and "Traceback" not in result.output
    doc = json.loads(result.stdout)
    assert not doc["ok"] and doc["entries"] == moved
    plain = cli("ledger", "verify", "--data-dir", str(populated.data_dir))
    assert plain.exit_code == 1 and f"entry {moved}" in plain.output


def test_entries_needing_escapes_are_sequenced_and_verified(instance: Instance) -> None:
    """Entries whose leaf is not built by the database (non-ASCII, a quote, a backslash)
    are encoded in Python, by the sequencer and by verify, in their read transaction."""
    from hygie.ledger.audit import AuditEntry

    rt = open_runtime(instance.settings)
    rt.gate.appender.append([AuditEntry(actor=actor, actor_kind="client", action="read",
                                        outcome="success", request_id=f"r-{i}")
                             for i, actor in enumerate(["client:é", 'client:"q"',
                                                        "client:a\\b", "client:plain"])])
    size = rt.ledger.integrate()
    rt.ledger.checkpoint()
    rt.engine.dispose()
    result = verify(instance)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["entries"] == size


# -- verification in worker processes ----------------------------------------------------------
def _log_of_300(instance: Instance) -> None:
    """300 entries with checkpoints at sizes falling inside several ranges of 16 leaves."""
    from hygie.ledger.audit import AuditEntry

    rt = open_runtime(instance.settings)
    total = rt.ledger.integrate()
    for size in (50, 64, 131, 300):
        rt.gate.appender.append([AuditEntry(actor=f"client:c{i % 7}", actor_kind="client",
                                            action="read", outcome="success", rtype="Patient",
                                            rid=f"p{i}", request_id=f"req-{i}",
                                            actor_role=None if i % 3 else "practitioner")
                                 for i in range(total, size)])
        total = size
        rt.ledger.checkpoint()
    rt.engine.dispose()


def _swap_leaf_seqs(conn: Any, a: int, b: int) -> None:
    """Leaves a and b exchange their audit seqs and hashes: each still matches its row, but
    the leaf order no longer follows the audit order."""
    ra = conn.execute(select(ledger_leaf).where(ledger_leaf.c.idx == a)).one()
    rb = conn.execute(select(ledger_leaf).where(ledger_leaf.c.idx == b)).one()
    conn.execute(delete(ledger_leaf).where(ledger_leaf.c.idx.in_([a, b])))
    conn.execute(ledger_leaf.insert().values(idx=a, seq=rb.seq, hash=rb.hash))
    conn.execute(ledger_leaf.insert().values(idx=b, seq=ra.seq, hash=ra.hash))


def _seq_at(conn: Any, index: int) -> int:
    return int(conn.execute(select(ledger_leaf.c.seq).where(ledger_leaf.c.idx == index))
               .scalar_one())


TAMPERINGS: dict[str, Any] = {
    "none": lambda conn: None,
    "deleted at a range start": lambda conn: conn.execute(
        delete(audit_event).where(audit_event.c.seq == _seq_at(conn, 64))),
    "edited": lambda conn: conn.execute(
        update(audit_event).where(audit_event.c.seq == _seq_at(conn, 70))
        .values(actor="client:other")),
    "edited in the last range": lambda conn: conn.execute(
        update(audit_event).where(audit_event.c.seq == _seq_at(conn, 299))
        .values(outcome="denied")),
    "reordered across ranges": lambda conn: _swap_leaf_seqs(conn, 63, 64),
    "reordered within a range": lambda conn: _swap_leaf_seqs(conn, 100, 101),
    "gap inside a range": lambda conn: conn.execute(
        delete(ledger_leaf).where(ledger_leaf.c.idx == 40)),
    "gap at a range end": lambda conn: conn.execute(
        delete(ledger_leaf).where(ledger_leaf.c.idx == 47)),
    "first leaf gone": lambda conn: conn.execute(
        delete(ledger_leaf).where(ledger_leaf.c.idx == 0)),
    "truncated": lambda conn: conn.execute(delete(ledger_leaf).where(ledger_leaf.c.idx >= 100)),
    "leaf hash changed": lambda conn: conn.execute(
        update(ledger_leaf).where(ledger_leaf.c.idx == 200).values(hash=b"\x07" * 32)),
}


@pytest.mark.parametrize("tampering", list(TAMPERINGS))
def test_parallel_verify_finds_what_one_process_finds(instance: Instance, tampering: str
                                                      ) -> None:
    """Ranges of 16 leaves checked by 2 worker processes (each with its own connection; on
    PostgreSQL in the caller's exported snapshot) give the same report as one process: the
    same size, root and checkpoints, and the same first bad entry, whatever was tampered."""
    from hygie.ledger.verify import verify_instance

    _log_of_300(instance)
    engine = engine_of(instance)
    with engine.begin() as conn:
        TAMPERINGS[tampering](conn)
    rt = open_runtime(instance.settings)
    args = (rt.engine, rt.ledger.signer.verifier(), rt.ledger.origin)
    one = verify_instance(*args)
    two = verify_instance(*args, workers=2, span=16)
    rt.engine.dispose()
    engine.dispose()
    assert one.worker_ranges == 0
    assert two.worker_ranges >= 1 or tampering == "first leaf gone"  # found before any range
    assert (two.ok, two.entries, two.root, two.checkpoints, two.problems) == \
        (one.ok, one.entries, one.root, one.checkpoints, one.problems)
    assert one.ok == (tampering == "none") and one.checkpoints == 4
    if tampering == "none":
        assert one.entries == 300 and not one.problems and two.worker_ranges == 19


@pytest.mark.parametrize("sequenced", [True, False])
def test_undecodable_entry_is_reported_as_tampering(populated: Instance, sequenced: bool
                                                    ) -> None:
    """An audit column altered to bytes that are not UTF-8 (SQLite stores them as text; on
    PostgreSQL, which refuses them, to another value): verify names the entry, whether it
    was sequenced already (its leaf no longer matches) or not yet (it cannot be made into a
    leaf: sequencing stops, and verify still reports instead of failing internally)."""
    from sqlalchemy import text

    from hygie.ledger.audit import AuditEntry

    engine = engine_of(populated)
    if sequenced:
        seq = _seq(engine, 15)
    else:
        rt = open_runtime(populated.settings)
        rt.gate.appender.append([AuditEntry(actor="client:x", actor_kind="client",
                                            action="read", outcome="success")])
        rt.engine.dispose()
        with engine.connect() as conn:
            seq = int(conn.execute(select(audit_event.c.seq).order_by(audit_event.c.seq.desc())
                                   .limit(1)).scalar_one())
    bad = "CAST(x'c3ff' AS TEXT)" if populated.backend == "sqlite" else "'client:y'"
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE audit_event SET actor = {bad} WHERE seq = :s"), {"s": seq})
    engine.dispose()
    result = verify(populated)
    assert "unexpected" not in result.output and "Traceback" not in result.output
    if sequenced or populated.backend == "sqlite":
        assert result.exit_code == 1, result.output
        expected = "entry 15 (audit seq" if sequenced else f"audit seq {seq}"
        assert expected in result.output and "altered" in result.output
    else:  # altered before it was sequenced, to a valid value: sequenced as it now is
        assert result.exit_code == 0, result.output
