"""Resilience: backups, their verification and restores (docs/operations.md, "Backups")."""
