"""The fast leaf encoding gives exactly the RFC 8785 (JCS) bytes of the reference library."""

from __future__ import annotations

from types import SimpleNamespace

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from hygie.ledger.log import leaf_bytes, leaf_entry

text = st.one_of(st.none(), st.text(max_size=40),
                 st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                         max_size=40))


@settings(max_examples=300)
@given(seq=st.integers(0, 2**53 - 1), at=st.integers(0, 2**53 - 1), actor=st.text(max_size=60),
       kind=text, role=text, action=st.text(max_size=20), rtype=text, rid=text, patient=text,
       code=text, outcome=st.sampled_from(["success", "denied", "error"]), detail=text,
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
