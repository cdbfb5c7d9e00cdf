"""Backup retention: which backups of a target to keep, and pruning the others.

:func:`plan` is a pure function with the semantics of restic's and borg's ``forget``: for
each rule (``last``, ``daily``, ``weekly``, ``monthly``) the backups are walked from the
newest; the newest backup of each period ("bucket": a UTC day, an ISO week, a month) is kept,
for the N most recent buckets that hold a backup. On top of the rules, the newest backup and the
last verified backup are always kept. Times come from the signed manifests, never from file
times (which anyone who can write to the target can change).

"Verified" is read from the target's append-only journal ``hygie-verifications.jsonl`` (one
JSON line per ``backup verify``, ``backup drill`` or prune-time verification: backup name,
time, result, SHA-256 of the manifest), so that a backup is never edited in place to mark it.
A line only counts while the backup's manifest still has the digest it records. A missing or
garbled journal means "nothing verified": prune then verifies the backups from the newest
down, protects the first one that verifies (and journals it), and prunes nothing at all if
none does.

Prune deletes only directories named like a Hygie backup whose signed manifest it could read
(it renames each to ``.<name>.pruning`` first, then removes it). Anything else in the target,
and every backup whose manifest is missing, damaged or signed by another key, is reported and
left alone: a backup that cannot be dated cannot be said to have expired.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hygie.fsutil import fsync_dir
from hygie.resilience.backup import (
    MANIFEST,
    BackupError,
    created_at,
    open_manifest,
    verify_backup,
)

NAME_RE = re.compile(r"^hygie-backup-(\d{8}T\d{6}Z)-([0-9a-f]{8})$")
PARTIAL_RE = re.compile(r"^\.hygie-backup-\d{8}T\d{6}Z-[0-9a-f]{8}\.partial$")
PRUNING_RE = re.compile(r"^\.hygie-backup-\d{8}T\d{6}Z-[0-9a-f]{8}\.pruning$")
JOURNAL = "hygie-verifications.jsonl"
_JOURNAL_LINE_MAX = 4096
RULES = ("last", "daily", "weekly", "monthly")


# -- the policy (pure) ------------------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    """How many of the most recent backups / days / weeks / months to keep."""

    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    last: int = 0

    def __post_init__(self) -> None:
        for rule in RULES:
            if getattr(self, rule) < 0:
                raise ValueError(f"keep-{rule} must be 0 or more")

    @property
    def empty(self) -> bool:
        return not any(getattr(self, rule) for rule in RULES)

    def describe(self) -> str:
        return " ".join(f"--keep-{r} {getattr(self, r)}" for r in RULES if getattr(self, r))


@dataclass(frozen=True)
class Dated:
    """A backup as the policy sees it: its name and its (signed) creation time."""

    name: str
    created_at: datetime


@dataclass(frozen=True)
class Decision:
    name: str
    created_at: datetime
    keep: bool
    reasons: tuple[str, ...]


def bucket(rule: str, at: datetime) -> str:
    """The period of ``at`` (UTC) for ``rule``: a day, an ISO week or a month."""
    at = at.astimezone(UTC)
    if rule == "daily":
        return at.strftime("%Y-%m-%d")
    if rule == "weekly":
        year, week, _ = at.isocalendar()
        return f"{year}-W{week:02d}"
    if rule == "monthly":
        return at.strftime("%Y-%m")
    raise ValueError(rule)


def plan(backups: Iterable[Dated], policy: Policy, *, verified: str | None = None
         ) -> list[Decision]:
    """Keep or prune each backup, with the reasons; newest first.

    Never prunes the newest backup, nor ``verified`` (the last verified backup's name)."""
    ordered = sorted(backups, key=lambda b: (b.created_at, b.name), reverse=True)
    reasons: dict[str, list[str]] = {b.name: [] for b in ordered}
    if ordered:
        reasons[ordered[0].name].append("newest")
    if verified is not None and verified in reasons:
        reasons[verified].append("last verified")
    for i, b in enumerate(ordered[: policy.last]):
        reasons[b.name].append(f"last {i + 1}")
    for rule in ("daily", "weekly", "monthly"):
        wanted = getattr(policy, rule)
        seen: str | None = None
        kept = 0
        for b in ordered:
            if kept >= wanted:
                break
            key = bucket(rule, b.created_at)
            if key != seen:
                seen = key
                kept += 1
                reasons[b.name].append(f"{rule} {key}")
    return [Decision(b.name, b.created_at, bool(reasons[b.name]),
                     tuple(reasons[b.name]) or ("expired",)) for b in ordered]


# -- the verification journal -----------------------------------------------------------------
def manifest_digest(backup: Path) -> str | None:
    try:
        return hashlib.sha256((backup / MANIFEST).read_bytes()).hexdigest()
    except OSError:
        return None


def record_verification(target: Path, backup: Path, *, check: str, ok: bool) -> None:
    """Append one line to the target's journal (created 0600; O_APPEND; fsynced)."""
    line = json.dumps({
        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "backup": backup.name,
        "check": check,
        "ok": ok,
        "manifest_sha256": manifest_digest(backup),
    }, sort_keys=True) + "\n"
    fd = os.open(target / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_journal(target: Path) -> list[dict[str, Any]]:
    """The journal's well-formed lines (anything else is ignored: it proves nothing)."""
    try:
        raw = (target / JOURNAL).read_bytes()
    except OSError:
        return []
    lines = []
    for chunk in raw.split(b"\n"):
        if not chunk or len(chunk) > _JOURNAL_LINE_MAX:
            continue
        try:
            doc = json.loads(chunk)
        except ValueError:
            continue
        if (isinstance(doc, dict) and isinstance(doc.get("backup"), str)
                and doc.get("ok") is True and isinstance(doc.get("manifest_sha256"), str)):
            lines.append(doc)
    return lines


# -- scanning a target ------------------------------------------------------------------------
@dataclass
class Found:
    """A directory of the target named like a backup, and what its manifest says."""

    name: str
    path: Path
    created_at: datetime | None = None
    instance_id: str | None = None
    problem: str | None = None  # why it cannot be dated (then it is never pruned)


@dataclass
class Scan:
    backups: list[Found] = field(default_factory=list)  # readable, signed manifests
    damaged: list[Found] = field(default_factory=list)  # named like a backup, not readable
    foreign: list[Found] = field(default_factory=list)  # signed by another key
    partial: list[str] = field(default_factory=list)  # interrupted backups (.partial)


def scan(target: Path, *, verifier_key: str | None = None) -> Scan:
    """The backups in ``target`` (only its direct sub-directories named like backups)."""
    result = Scan()
    try:
        entries = sorted(target.iterdir())
    except FileNotFoundError:
        raise BackupError(f"{target} does not exist") from None
    except NotADirectoryError:
        raise BackupError(f"{target} is not a directory") from None
    for path in entries:
        if PARTIAL_RE.match(path.name):
            result.partial.append(path.name)
            continue
        if not NAME_RE.match(path.name):
            continue
        found = Found(path.name, path)
        if path.is_symlink() or not path.is_dir():
            found.problem = "not a directory"
            result.damaged.append(found)
            continue
        manifest, problem = open_manifest(path)
        if manifest is None:
            found.problem = problem
            result.damaged.append(found)
            continue
        try:
            found.created_at = created_at(manifest)
        except BackupError as exc:
            found.problem = exc.message
            result.damaged.append(found)
            continue
        found.instance_id = str(manifest.get("instance_id"))
        if verifier_key is not None and manifest.get("verifier_key") != verifier_key:
            found.problem = "signed by another ledger key (another instance?)"
            result.foreign.append(found)
            continue
        result.backups.append(found)
    return result


def newest(backups: Sequence[Found]) -> Found | None:
    dated = [b for b in backups if b.created_at is not None]
    return max(dated, key=lambda b: (b.created_at, b.name), default=None)


def last_verified(backups: Sequence[Found], journal: list[dict[str, Any]]) -> Found | None:
    """The newest backup with a successful journal line matching its manifest as it is now."""
    ok = {(str(d["backup"]), str(d["manifest_sha256"])) for d in journal}
    candidates = [b for b in backups if (b.name, manifest_digest(b.path)) in ok]
    return newest(candidates)


# -- prune ------------------------------------------------------------------------------------
@dataclass
class PruneReport:
    target: Path
    policy: Policy
    dry_run: bool
    decisions: list[tuple[Found, Decision]] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)  # protected as last verified
    verified_now: list[str] = field(default_factory=list)  # verified by this prune
    left_alone: list[tuple[str, str]] = field(default_factory=list)  # (name, why)

    @property
    def pruned(self) -> list[str]:
        return [f.name for f, d in self.decisions if not d.keep]

    @property
    def kept(self) -> list[str]:
        return [f.name for f, d in self.decisions if d.keep]

    def as_json(self) -> dict[str, Any]:
        return {
            "target": str(self.target),
            "policy": {r: getattr(self.policy, r) for r in RULES},
            "dry_run": self.dry_run,
            "backups": [{"backup": f.name, "instance_id": f.instance_id,
                         "created_at": d.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "keep": d.keep, "reasons": list(d.reasons)}
                        for f, d in self.decisions],
            "pruned": self.pruned,
            "last_verified": self.verified,
            "verified_now": self.verified_now,
            "left_alone": [{"name": n, "reason": why} for n, why in self.left_alone],
        }


def _remove(target: Path, name: str) -> None:
    """Rename the backup out of the way (atomic), then delete it."""
    if not NAME_RE.match(name):  # defence in depth: never anything but a backup
        raise BackupError(f"{name} is not a backup name; not deleted")
    path = target / name
    if path.is_symlink() or not path.is_dir():
        raise BackupError(f"{path} is not a backup directory; not deleted")
    doomed = target / f".{name}.pruning"
    os.rename(path, doomed)
    fsync_dir(target)
    shutil.rmtree(doomed)


def prune(target: Path | str, policy: Policy, *, dry_run: bool = False,
          verifier_key: str | None = None,
          before_delete: Callable[[PruneReport], None] | None = None) -> PruneReport:
    """Apply ``policy`` to the backups of ``target``, one instance at a time.

    ``before_delete`` (e.g. recording the prune in the ledger) runs once the decisions are
    made and before anything is deleted; if it raises, nothing is."""
    target_dir = Path(target).expanduser().resolve()
    report = PruneReport(target_dir, policy, dry_run)
    found = scan(target_dir, verifier_key=verifier_key)
    report.left_alone += [(f.name, f"damaged: {f.problem}") for f in found.damaged]
    report.left_alone += [(f.name, str(f.problem)) for f in found.foreign]
    report.left_alone += [(n, "interrupted backup (delete it by hand)") for n in found.partial]
    journal = read_journal(target_dir)
    groups: dict[str, list[Found]] = {}
    for f in found.backups:
        groups.setdefault(str(f.instance_id), []).append(f)
    for backups in groups.values():
        protected = last_verified(backups, journal)
        if protected is None:
            protected = _verify_newest_first(target_dir, backups, verifier_key, report)
        report.verified.append(protected.name)
        by_name = {f.name: f for f in backups}
        decisions = plan([Dated(f.name, f.created_at) for f in backups
                          if f.created_at is not None], policy, verified=protected.name)
        report.decisions += [(by_name[d.name], d) for d in decisions]
    if dry_run:
        return report
    if before_delete is not None:
        before_delete(report)
    for leftover in target_dir.iterdir():
        if PRUNING_RE.match(leftover.name) and not leftover.is_symlink():
            shutil.rmtree(leftover)  # a prune interrupted after its rename
    for name in report.pruned:
        _remove(target_dir, name)
    if report.pruned:
        fsync_dir(target_dir)
    return report


def _verify_newest_first(target: Path, backups: list[Found], verifier_key: str | None,
                         report: PruneReport) -> Found:
    """No journal says which backup is good: find the newest that verifies now."""
    ordered = sorted(backups, key=lambda b: (b.created_at, b.name), reverse=True)
    for f in ordered:
        if verify_backup(f.path, verifier_key=verifier_key).ok:
            if not report.dry_run:
                record_verification(target, f.path, check="prune", ok=True)
            report.verified_now.append(f.name)
            return f
    raise BackupError(f"no backup of instance {ordered[0].instance_id} in {target} verifies; "
                      "nothing was pruned")
