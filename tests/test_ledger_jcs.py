"""The fast leaf encoding gives exactly the RFC 8785 (JCS) bytes of the reference library."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from hygie.ledger.log import LEAF_COLUMNS, leaf_bytes, leaf_entry

ascii_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
text = st.one_of(st.none(), st.text(max_size=40), ascii_text)
# the values that change the entry's shape (purpose, break_glass, permit)
action_text = st.one_of(st.sampled_from(["read", "break-glass", "search"]), st.text(max_size=20))
code_text = st.one_of(st.sampled_from(["break-glass", "not-found"]), text)


@settings(max_examples=500)
@given(seq=st.integers(-(2**53) + 1, 2**53 - 1), at=st.integers(0, 2**53 - 1),
       actor=st.one_of(st.text(max_size=60), ascii_text), kind=text, role=text,
       action=action_text, rtype=text, rid=text, patient=text, code=code_text,
       outcome=st.sampled_from(["success", "denied", "error"]), detail=text,
       request_id=text, address=text)
def test_leaf_bytes_are_jcs(seq: int, at: int, actor: str, kind: str | None,
                            role: str | None, action: str, rtype: str | None, rid: str | None,
                            patient: str | None, code: str | None, outcome: str,
                            detail: str | None, request_id: str | None,
                            address: str | None) -> None:
    row = SimpleNamespace(seq=seq, at=at, actor=actor, actor_kind=kind, actor_role=role,
                          action=action, rtype=rtype, rid=rid, patient=patient, code=code,
                          outcome=outcome, detail=detail, request_id=request_id,
                          client_address=address)
    assert leaf_bytes(row) == bytes(rfc8785.dumps(leaf_entry(row)))


def test_fast_path_and_fallback_agree_on_edge_cases() -> None:
    base = {"seq": 7, "at": 1795390000000000, "actor": "user:a", "actor_kind": "user",
            "actor_role": "practitioner", "action": "break-glass", "rtype": "Patient",
            "rid": "p1", "patient": "p1", "code": "break-glass", "outcome": "success",
            "detail": "g1", "request_id": "r", "client_address": "10.0.0.7"}
    for change in ({}, {"actor": 'quote"d'}, {"rid": "back\\slash"}, {"patient": "é"},
                   {"detail": "\x7f"}, {"code": "tab\t"}, {"seq": 2**53 - 1},
                   {"seq": -(2**53) + 1}, {"client_address": None, "actor_role": None}):
        row = SimpleNamespace(**{**base, **change})
        assert leaf_bytes(row) == bytes(rfc8785.dumps(leaf_entry(row)))


# The leaf JSON the database builds (integrate and verify read it instead of every column) is
# the same as leaf_bytes, on both databases: plain rows take the fast path, others fall back.
_TRICKY = ['quote"d', "back\\slash", "é accent", "tab\there", "\x7f", "", "  ", "{}", "null",
           "a'b", "日本", "emoji \U0001f600", "line\nbreak", "%s %(x)s", "?"]


def test_database_built_leaves_equal_leaf_bytes(instance: Any) -> None:
    import random

    from hygie.api.app import open_runtime
    from hygie.ledger import audit
    from hygie.ledger.audit import AuditEntry
    from hygie.ledger.log import leaf_bytes_of, leaf_from_sql, leaf_input_sql, sql
    from hygie.store.db import transaction

    rng = random.Random(8785)

    def pick(plain: str) -> str | None:
        return rng.choice([plain, plain, None, rng.choice(_TRICKY)])

    entries = []
    for i in range(300):
        action = rng.choice(["read", "break-glass", "search", rng.choice(_TRICKY)])
        entries.append(AuditEntry(
            actor=rng.choice([f"user:{i}", rng.choice(_TRICKY)]), actor_kind="user",
            action=action, outcome=rng.choice(["success", "denied", "error"]),
            rtype=pick("Observation"), rid=pick(f"r{i}"), patient=pick(f"p{i}"),
            code=rng.choice([None, "break-glass", "not-found", rng.choice(_TRICKY)]),
            request_id=pick(f"req-{i}"), client_address=pick("10.0.0.7"),
            detail=pick(f"grant-{i}"), actor_role=pick("practitioner")))
    rt = open_runtime(instance.settings)
    try:
        with transaction(rt.engine) as conn:
            audit.append(conn, "default", entries)
        fast = 0
        with transaction(rt.engine, readonly=True) as conn:
            rows = conn.exec_driver_sql(sql(conn, "audit_after"), (-1, 10_000)).all()
            # (SQLite hands the text columns, and the JSON, over as UTF-8 bytes)
            cols = {r[0]: tuple(v.decode() if isinstance(v, bytes) else v for v in r)
                    for r in conn.exec_driver_sql(sql(conn, "audit_row").replace(
                        "a.seq = ?" if conn.dialect.name == "sqlite" else "a.seq = %s",
                        "a.seq > -1"))}
            for seq, at, raw in rows:
                text = raw if isinstance(raw, str) else bytes(raw).decode()
                expected = leaf_bytes_of(*cols[seq])
                assert expected == bytes(rfc8785.dumps(leaf_entry(SimpleNamespace(
                    **dict(zip(LEAF_COLUMNS, cols[seq], strict=True))))))
                assert leaf_from_sql(conn, seq, at, raw) == expected
                if text.isascii() and "\\" not in text:  # the fast path
                    fast += 1
            # what verify hashes: 0x00 || the same JSON, built by the database as bytes; taken
            # under the same rule (ASCII, no backslash), where it is 0x00 || the JCS bytes
            inputs = conn.exec_driver_sql(
                f"SELECT a.seq, {leaf_input_sql(conn.dialect.name)} FROM audit_event a").all()
            taken = 0
            for seq, data in inputs:
                data = bytes(data)
                assert data[:1] == b"\x00"
                if data.isascii() and b"\\" not in data:
                    assert data[1:] == leaf_bytes_of(*cols[seq])
                    taken += 1
        assert len(rows) >= 300 and 0 < fast < len(rows)  # both paths were taken
        assert len(inputs) == len(rows) and taken == fast
    finally:
        rt.engine.dispose()
