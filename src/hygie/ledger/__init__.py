"""Traceability: the audit trail (and the Merkle ledger that will replace it)."""
