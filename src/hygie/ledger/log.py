"""The tamper-evident ledger: a Merkle log (RFC 6962/9162) over the audit trail.

- Every audit entry becomes a leaf. Leaf bytes are the canonical JSON (RFC 8785 JCS) of the
  entry (:func:`leaf_bytes`): ids, roles, actions, outcomes — never content or names.
- The sequencer (:meth:`Ledger.integrate`) gives new entries consecutive leaf indexes in commit
  order and stores their leaf hashes; a tree head is signed as a C2SP ``tlog-checkpoint`` in a
  C2SP ``signed-note`` with the instance's Ed25519 ledger key (:meth:`Ledger.checkpoint`).
- Proofs are served from an in-process cache of every perfect subtree (``MerkleLevels``),
  extended as leaves are added, so inclusion and consistency proofs cost O(log n) hashes.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import rfc8785
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import IntegrityError

from hygie.errors import IntegrityFailure, InvalidRequest, KeyFailure
from hygie.ledger.audit import LEDGER_LOCK
from hygie.ledger.merkle import EMPTY_ROOT, MerkleLevels, leaf_hash
from hygie.store.db import now_us, transaction
from hygie.store.tables import audit_event, ledger_checkpoint, ledger_leaf

if TYPE_CHECKING:
    from hygie.ledger.note import Signer

# Signing (hygie.crypto) is imported where it is used: the verification workers import this
# module for the leaf functions alone, and start faster without it.

KEY_FILE = "ledger.key"
BATCH = 10_000


def leaf_entry(row: Any) -> dict[str, Any]:
    """The ledger's view of an audit entry (issue-independent field names, documented)."""
    permit = row.outcome == "success"
    return {
        "seq": int(row.seq),
        "time": int(row.at),
        "actor": {"id": row.actor, "kind": row.actor_kind, "role": row.actor_role},
        "action": row.action,
        "target": {"type": row.rtype, "id": row.rid, "patient": row.patient},
        "purpose": "BTG" if row.code == "break-glass" or row.action == "break-glass" else None,
        "decision": {"permit": permit, "reason": row.code},
        "outcome": row.outcome,
        "break_glass": row.detail if row.action == "break-glass" else None,
        "request_id": row.request_id,
        "client_address": row.client_address,
    }


# The audit columns a leaf is made of, in the order :func:`leaf_bytes_of` takes them.
LEAF_COLUMNS = ("seq", "at", "actor", "actor_kind", "actor_role", "action", "rtype", "rid",
                "patient", "outcome", "code", "request_id", "client_address", "detail")
LEAF_SELECT = ", ".join(f"a.{c}" for c in LEAF_COLUMNS)
_SAFE_INT = 2**53


def leaf_bytes_of(seq: int, at: int, actor: str, actor_kind: str, actor_role: str | None,
                  action: str, rtype: str | None, rid: str | None, patient: str | None,
                  outcome: str, code: str | None, request_id: str | None,
                  client_address: str | None, detail: str | None) -> bytes:
    """RFC 8785 (JCS) bytes of the entry made of these audit columns (:data:`LEAF_COLUMNS`).

    Fast path: orjson on a dict whose keys are written in JCS order (sorted by code unit:
    all keys are ASCII), accepted when its output is ASCII with no backslash (so no string
    needed an escape: printable ASCII is written verbatim by both) and both integers are
    within +-2**53 (written alike). That output is then exactly the JCS bytes
    (tests/test_ledger_jcs.py proves it against the reference implementation). Anything
    else goes through the reference implementation (rfc8785).
    """
    break_glass = action == "break-glass"
    entry = {  # keys in JCS (sorted) order
        "action": action,
        "actor": {"id": actor, "kind": actor_kind, "role": actor_role},
        "break_glass": detail if break_glass else None,
        "client_address": client_address,
        "decision": {"permit": outcome == "success", "reason": code},
        "outcome": outcome,
        "purpose": "BTG" if code == "break-glass" or break_glass else None,
        "request_id": request_id,
        "seq": seq,
        "target": {"id": rid, "patient": patient, "type": rtype},
        "time": at,
    }
    if (type(seq) is int and type(at) is int and -_SAFE_INT < seq < _SAFE_INT
            and -_SAFE_INT < at < _SAFE_INT):
        try:
            out = orjson.dumps(entry)
        except orjson.JSONEncodeError:
            out = b"\\"
        if out.isascii() and b"\\" not in out:
            return out
    return bytes(rfc8785.dumps(leaf_entry_of(entry)))


def leaf_entry_of(entry: dict[str, Any]) -> dict[str, Any]:
    """Integers as ``int`` (a database may hand back another integer type)."""
    return {**entry, "seq": int(entry["seq"]), "time": int(entry["time"])}


def leaf_bytes(row: Any) -> bytes:
    """RFC 8785 (JCS) bytes of the entry of an audit row (anything with the column names as
    attributes); see :func:`leaf_bytes_of`."""
    return leaf_bytes_of(*(getattr(row, c) for c in LEAF_COLUMNS))


def dbapi_cursor(conn: Connection, *, name: str | None = None) -> Any:
    """A DB-API cursor in the transaction of ``conn`` (tuples, no SQLAlchemy rows). ``name``:
    a PostgreSQL server-side cursor that streams its rows (SQLite cursors always stream)."""
    dbapi = conn.connection.dbapi_connection
    if dbapi is None:
        raise KeyFailure("the database connection is closed")
    if name is not None and conn.dialect.name == "postgresql":
        return dbapi.cursor(name=name)
    return dbapi.cursor()


def leaf_json_sql(dialect: str) -> str:
    """A SQL expression giving the leaf's JSON text built by the database (keys in JCS
    order, strings quoted by ``json_object`` / ``to_json``). It is used only where it equals
    :func:`leaf_bytes_of`: when the text is ASCII with no backslash (no string needed an
    escape) and both integers are within +-2**53 (:func:`leaf_from_sql`); tests compare the
    two on both databases (tests/test_ledger_jcs.py)."""
    if dialect == "sqlite":
        # One json_object call per level (no spaces, keys in the order given): about a
        # quarter cheaper than concatenating json_quote() of every column.
        def q(c: str) -> str:
            return f"CAST(a.{c} AS TEXT)"
        return ("json_object('action'," + q("action")
                + ",'actor',json_object('id'," + q("actor") + ",'kind'," + q("actor_kind")
                + ",'role'," + q("actor_role") + ")"
                + ",'break_glass',CASE WHEN a.action = 'break-glass' THEN " + q("detail")
                + " END,'client_address'," + q("client_address")
                + ",'decision',json_object('permit',json(CASE WHEN a.outcome = 'success' "
                "THEN 'true' ELSE 'false' END),'reason'," + q("code") + ")"
                + ",'outcome'," + q("outcome")
                + ",'purpose',CASE WHEN a.code = 'break-glass' OR a.action = 'break-glass' "
                "THEN 'BTG' END,'request_id'," + q("request_id")
                + ",'seq',a.seq,'target',json_object('id'," + q("rid") + ",'patient',"
                + q("patient") + ",'type'," + q("rtype") + "),'time',a.at)")

    def pq(c: str) -> str:
        return f"coalesce(to_json(a.{c})::text, 'null')"
    seq, at = "a.seq::text", "a.at::text"
    parts = [
        "'{\"action\":'", pq("action"),
        "',\"actor\":{\"id\":'", pq("actor"), "',\"kind\":'", pq("actor_kind"),
        "',\"role\":'", pq("actor_role"),
        "'},\"break_glass\":'",
        f"CASE WHEN a.action = 'break-glass' THEN {pq('detail')} ELSE 'null' END",
        "',\"client_address\":'", pq("client_address"),
        "',\"decision\":{\"permit\":'",
        "CASE WHEN a.outcome = 'success' THEN 'true' ELSE 'false' END",
        "',\"reason\":'", pq("code"),
        "'},\"outcome\":'", pq("outcome"),
        "',\"purpose\":'",
        "CASE WHEN a.code = 'break-glass' OR a.action = 'break-glass' THEN '\"BTG\"' "
        "ELSE 'null' END",
        "',\"request_id\":'", pq("request_id"),
        "',\"seq\":'", seq,
        "',\"target\":{\"id\":'", pq("rid"), "',\"patient\":'", pq("patient"),
        "',\"type\":'", pq("rtype"),
        "'},\"time\":'", at, "'}'",
    ]
    return " || ".join(parts)


def leaf_input_sql(dialect: str) -> str:
    """A SQL expression giving the bytes a leaf hash is taken of, built by the database:
    0x00 followed by :func:`leaf_json_sql` as UTF-8 (a BLOB / bytea). Verification hashes it
    as it comes (no decoding, no re-encoding, no prefixing in Python) under the same
    acceptance rule as :func:`leaf_from_sql` (ASCII, no backslash, integers within +-2**53)."""
    if dialect == "sqlite":
        return f"CAST(x'00' || {leaf_json_sql(dialect)} AS BLOB)"
    return f"'\\x00'::bytea || convert_to({leaf_json_sql(dialect)}, 'UTF8')"


def leaf_from_sql(conn: Connection | Callable[[], Connection], seq: Any, at: Any,
                  text: str | bytes | None) -> bytes:
    """The leaf bytes of audit row ``seq`` from the JSON the database built
    (:func:`leaf_json_sql`; text, or UTF-8 bytes) when it is the JCS text, else from the
    row's columns (read through ``conn``, or the connection that ``conn()`` returns).

    Raises ValueError (or TypeError) when the row cannot be made into a leaf: a column holds
    a value of the wrong type, or (SQLite) text that is not UTF-8."""
    data = text.encode() if isinstance(text, str) else None if text is None else bytes(text)
    if (data is not None and type(seq) is int and type(at) is int
            and -_SAFE_INT < seq < _SAFE_INT and -_SAFE_INT < at < _SAFE_INT
            and data.isascii() and b"\\" not in data):
        return data
    if not isinstance(conn, Connection):
        conn = conn()
    cur = dbapi_cursor(conn)
    try:
        cur.execute(sql(conn, "audit_row"), (seq,))
        row = cur.fetchone()
    finally:
        cur.close()
    if row is None:
        raise KeyFailure("an audit entry vanished while it was being read")
    # SQLite hands text columns over as bytes (see _AUDIT_ROW_SQLITE): decoded strictly here
    return leaf_bytes_of(*(v.decode() if isinstance(v, bytes) else v for v in row))


def _leaf_of_new_entry(conn: Connection, seq: Any, at: Any, text: str | bytes | None
                       ) -> bytes:
    """:func:`leaf_from_sql` for the sequencer: a row that cannot be made into a leaf (a
    column altered to a value of the wrong type) is an integrity failure, not a crash."""
    try:
        return leaf_from_sql(conn, seq, at, text)
    except (ValueError, TypeError, OverflowError):
        raise IntegrityFailure(f"audit seq {seq}: the entry cannot be made into a ledger leaf "
                               "(altered)") from None


# Driver-level statements, written with qmark parameters (sqlite3) and given to psycopg with
# format parameters. Constants only: no value is ever formatted into them.
_QMARK_SQL = {
    "tail": "SELECT idx, seq FROM ledger_leaf ORDER BY idx DESC LIMIT 1",
    "audit_after": "SELECT a.seq, a.at, {json} FROM audit_event a WHERE a.seq > ? "
                   "ORDER BY a.seq LIMIT ?",
    "audit_row": f"SELECT {LEAF_SELECT} FROM audit_event a WHERE a.seq = ?",  # noqa: S608
    "leaf_insert": "INSERT INTO ledger_leaf (idx, seq, hash) VALUES (?, ?, ?)",
    "leaf_hash_at": "SELECT hash FROM ledger_leaf WHERE idx = ?",
    "leaf_hashes_from": "SELECT idx, hash FROM ledger_leaf WHERE idx >= ? ORDER BY idx",
}
# On SQLite, text is read as bytes (CAST ... AS BLOB) where a row is made into a leaf: a text
# value that is not UTF-8 (only a tampered row holds one) then fails as a ValueError in
# leaf_from_sql, instead of the driver failing the whole fetch.
_AUDIT_ROW_SQLITE = ("SELECT a.seq, a.at, "  # noqa: S608 - constants
                     + ", ".join(f"CAST(a.{c} AS BLOB)" for c in LEAF_COLUMNS[2:])
                     + " FROM audit_event a WHERE a.seq = ?")
_SQL = {"sqlite": {k: v.replace("{json}", f"CAST({leaf_json_sql('sqlite')} AS BLOB)")
                   if k == "audit_after" else v.replace("{json}", leaf_json_sql("sqlite"))
                   for k, v in {**_QMARK_SQL, "audit_row": _AUDIT_ROW_SQLITE}.items()},
        "postgresql": {k: v.replace("?", "%s").replace("{json}", leaf_json_sql("postgresql"))
                       for k, v in _QMARK_SQL.items()}}


def sql(conn: Connection, name: str) -> str:
    """The driver-level statement ``name`` in the parameter style of ``conn``'s driver."""
    return _SQL[conn.dialect.name][name]


def origin_for(instance_id: str) -> str:
    return f"hygie.local/ledger/{instance_id}"


def create_key(data_dir: Path, origin: str) -> Signer:
    from hygie.crypto.keyring import write_secret_file
    from hygie.ledger.note import Signer

    signer = Signer.generate(origin)
    write_secret_file(data_dir / KEY_FILE, signer.signing_key_string() + "\n")
    return signer


def load_key(data_dir: Path) -> Signer:
    from hygie.ledger.note import Signer

    try:
        return Signer.from_signing_key_string((data_dir / KEY_FILE).read_text().strip())
    except OSError:
        raise KeyFailure(f"the ledger key {data_dir / KEY_FILE} cannot be read") from None
    except ValueError:
        raise KeyFailure("the ledger key file is not a valid signing key") from None


class Ledger:
    """One per process. Thread-safe."""

    def __init__(self, engine: Engine, tenant: str, signer: Signer) -> None:
        self.engine = engine
        self.tenant = tenant
        self.signer = signer
        self.origin = signer.name
        self._levels = MerkleLevels([])
        self._lock = threading.Lock()
        self._seq_lock = threading.Lock()

    # -- sequencing -----------------------------------------------------------------------
    def integrate(self) -> int:
        """Give leaf indexes to new audit entries (one sequencer at a time). Returns the size.

        New entries are read and hashed in a read-only transaction; their leaves are then
        written in a short write transaction that first checks that the log's tail is still
        the one the hashes follow (else another sequencer got there first: start again). The
        write lock (SQLite) is held for the inserts only, never for the hashing.
        """
        with self._seq_lock:
            while True:
                with transaction(self.engine, readonly=True) as conn:
                    size, after = self._tail(conn)
                    rows = self._audit_after(conn, after, BATCH)
                    # in the read transaction: a row off the fast path is re-read through it
                    leaves = [(size + i, r[0], leaf_hash(_leaf_of_new_entry(conn, *r)))
                              for i, r in enumerate(rows)]
                if not rows:
                    return size
                with transaction(self.engine) as conn:
                    if conn.dialect.name == "postgresql":
                        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)",
                                             (LEDGER_LOCK + 1,))
                    if self._tail(conn) != (size, after):
                        continue  # sequenced meanwhile by another process: read again
                    try:
                        conn.exec_driver_sql(sql(conn, "leaf_insert"),
                                             leaves)  # type: ignore[arg-type]
                    except IntegrityError:
                        # The stored tail is not where the log ends (a leaf was moved or
                        # altered): new leaves collide with existing ones.
                        raise IntegrityFailure(
                            "the ledger's stored leaves were changed: new entries cannot be "
                            "sequenced after them") from None
                if len(rows) < BATCH:
                    return size + len(rows)

    @staticmethod
    def _tail(conn: Connection) -> tuple[int, int]:
        """(size, audit seq of the last leaf or -1) of the stored log."""
        cur = dbapi_cursor(conn)
        try:
            cur.execute(sql(conn, "tail"))
            last = cur.fetchone()
        finally:
            cur.close()
        return (0, -1) if last is None else (int(last[0]) + 1, int(last[1]))

    @staticmethod
    def _audit_after(conn: Connection, after: int, limit: int) -> list[tuple[Any, ...]]:
        """Up to ``limit`` audit rows after seq ``after``, as :data:`LEAF_COLUMNS` tuples."""
        cur = dbapi_cursor(conn)
        try:
            cur.execute(sql(conn, "audit_after"), (after, limit))
            return list(cur.fetchall())
        finally:
            cur.close()

    # -- the tree -------------------------------------------------------------------------
    def levels(self, conn: Connection | None = None, *, at_least: int | None = None
               ) -> MerkleLevels:
        """The cached tree, extended with the leaves stored since the last call. With
        ``at_least``: no database round trip when the cache already holds that many leaves."""
        with self._lock:
            if at_least is not None and at_least <= self._levels.size:
                return self._levels
            have = self._levels.size
            if conn is None:
                with transaction(self.engine, readonly=True) as c:
                    hashes = self._hashes_from(c, have)
            else:
                hashes = self._hashes_from(conn, have)
            if hashes:
                if have:
                    self._levels.extend(hashes)
                else:  # cold start: every level at once
                    self._levels = MerkleLevels(hashes)
            return self._levels

    def _hashes_from(self, conn: Connection, start: int) -> list[bytes]:
        cur = dbapi_cursor(conn)
        try:
            if start:
                # The stored tail must still be the one this process already hashed.
                cur.execute(sql(conn, "leaf_hash_at"), (start - 1,))
                last = cur.fetchone()
                if last is None or bytes(last[0]) != self._levels.leaf_hash(start - 1):
                    raise IntegrityFailure("the ledger's stored leaves were changed or removed")
            cur.execute(sql(conn, "leaf_hashes_from"), (start,))
            rows = cur.fetchall()
        finally:
            cur.close()
        # idx is the primary key: ordered and unique, so contiguous iff first/last fit.
        if rows and (rows[0][0] != start or rows[-1][0] != start + len(rows) - 1):
            raise KeyFailure("the ledger's leaf table has a gap")
        return [bytes(r[1]) for r in rows]

    # -- checkpoints ----------------------------------------------------------------------
    def checkpoint(self) -> str:
        """Integrate new entries and sign a checkpoint if the tree grew; return the latest."""
        from hygie.ledger.checkpoint import Checkpoint, sign_checkpoint

        self.integrate()
        levels = self.levels()
        size = levels.size
        with transaction(self.engine) as conn:
            latest = conn.execute(select(ledger_checkpoint)
                                  .order_by(ledger_checkpoint.c.size.desc()).limit(1)).first()
            if latest is not None and latest.size >= size:
                return str(latest.note)
            root = levels.root(size) if size else EMPTY_ROOT
            note = sign_checkpoint(Checkpoint(self.origin, size, root), self.signer)
            conn.execute(ledger_checkpoint.insert().values(
                size=size, root=root, note=note, created_at=now_us()))
            return note

    def latest_checkpoint(self) -> str | None:
        with transaction(self.engine, readonly=True) as conn:
            row = conn.execute(select(ledger_checkpoint.c.note)
                               .order_by(ledger_checkpoint.c.size.desc()).limit(1)).first()
        return None if row is None else str(row.note)

    # -- reading --------------------------------------------------------------------------
    def size(self) -> int:
        with transaction(self.engine, readonly=True) as conn:
            return int(conn.execute(select(func.count()).select_from(ledger_leaf)).scalar_one())

    def entries(self, start: int, end: int) -> list[str]:
        """Base64 leaf bytes for leaves [start, end)."""
        if start < 0 or end < start:
            raise InvalidRequest("entries need 0 <= start <= end")
        with transaction(self.engine, readonly=True) as conn:
            rows = conn.execute(
                select(audit_event).join(ledger_leaf, ledger_leaf.c.seq == audit_event.c.seq)
                .where(ledger_leaf.c.idx >= start, ledger_leaf.c.idx < end)
                .order_by(ledger_leaf.c.idx)).all()
        return [base64.b64encode(leaf_bytes(r)).decode() for r in rows]

    def inclusion(self, index: int, tree_size: int) -> list[str]:
        levels = self.levels(at_least=tree_size)
        if not 0 <= index < tree_size <= levels.size:
            raise InvalidRequest(f"need 0 <= index < tree_size <= {levels.size}")
        return [base64.b64encode(h).decode() for h in levels.inclusion_proof(index, tree_size)]

    def consistency(self, first: int, second: int) -> list[str]:
        levels = self.levels(at_least=second)
        if not 0 <= first <= second <= levels.size:
            raise InvalidRequest(f"need 0 <= first <= second <= {levels.size}")
        return [base64.b64encode(h).decode() for h in levels.consistency_proof(first, second)]
