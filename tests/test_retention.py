"""Backup retention (issue 5, item 2): the policy as a pure function, and pruning real backups."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from hygie.api.app import open_runtime
from hygie.ledger.log import load_key, origin_for
from hygie.ledger.note import Signer, sign_note
from hygie.resilience.backup import MANIFEST, open_manifest
from hygie.resilience.retention import (
    JOURNAL,
    Dated,
    Policy,
    bucket,
    plan,
)
from hygie.store.tables import audit_event

from .conftest import Instance
from .test_backup import cli, flip, make_backup

T0 = datetime(2026, 3, 15, 2, 30, tzinfo=UTC)


# -- the policy (pure) ------------------------------------------------------------------------
@st.composite
def histories(draw: Any) -> list[Dated]:
    """Backups over up to ~2 years, several a day at times, unique names."""
    offsets = draw(st.lists(st.integers(min_value=0, max_value=2 * 365 * 24 * 60),
                            min_size=0, max_size=60))
    return [Dated(f"b{i:03d}", T0 - timedelta(minutes=m)) for i, m in enumerate(offsets)]


policies = st.builds(Policy, daily=st.integers(0, 10), weekly=st.integers(0, 6),
                     monthly=st.integers(0, 14), last=st.integers(0, 4))


def kept(decisions: list[Any]) -> set[str]:
    return {d.name for d in decisions if d.keep}


def newest_name(backups: list[Dated]) -> str:
    return max(backups, key=lambda b: (b.created_at, b.name)).name


@settings(max_examples=300, deadline=None)
@given(histories(), policies, st.data())
def test_policy_never_prunes_the_newest_nor_the_last_verified(
        backups: list[Dated], policy: Policy, data: Any) -> None:
    verified = data.draw(st.sampled_from([b.name for b in backups])) if backups else None
    decisions = plan(backups, policy, verified=verified)
    assert {d.name for d in decisions} == {b.name for b in backups}
    if backups:
        assert newest_name(backups) in kept(decisions)
        assert verified in kept(decisions)
    for d in decisions:
        assert d.keep == (d.reasons != ("expired",))


@settings(max_examples=300, deadline=None)
@given(histories(), policies, st.data())
def test_policy_is_idempotent(backups: list[Dated], policy: Policy, data: Any) -> None:
    verified = data.draw(st.sampled_from([b.name for b in backups])) if backups else None
    first = kept(plan(backups, policy, verified=verified))
    survivors = [b for b in backups if b.name in first]
    assert kept(plan(survivors, policy, verified=verified)) == first


@settings(max_examples=300, deadline=None)
@given(histories(), policies)
def test_policy_keeps_the_newest_of_the_most_recent_buckets_and_no_more(
        backups: list[Dated], policy: Policy) -> None:
    decisions = plan(backups, policy)
    assert len(kept(decisions)) <= policy.daily + policy.weekly + policy.monthly + policy.last + 1
    for rule in ("daily", "weekly", "monthly"):
        n = getattr(policy, rule)
        by_bucket: dict[str, list[Dated]] = {}
        for b in backups:
            by_bucket.setdefault(bucket(rule, b.created_at), []).append(b)
        recent = sorted(by_bucket, key=lambda k: max(b.created_at for b in by_bucket[k]),
                        reverse=True)[:n]
        expected = {newest_name(by_bucket[k]) for k in recent}
        tagged = [d for d in decisions if any(r.startswith(f"{rule} ") for r in d.reasons)]
        assert {d.name for d in tagged} == expected  # the newest of each, at most one a bucket
        assert len(tagged) == min(n, len(by_bucket))
    last = [d for d in decisions if any(r.startswith("last ") and r != "last verified"
                                        for r in d.reasons)]
    assert len(last) == min(policy.last, len(backups))


def test_policy_on_a_year_of_nightly_backups() -> None:
    nightly = [Dated(f"n{d:03d}", T0 - timedelta(days=d)) for d in range(400)]
    decisions = plan(nightly, Policy(daily=7, weekly=4, monthly=12))
    keep = [d for d in decisions if d.keep]
    # 7 days; weeks 2-4 beyond the first (whose newest is already the day's); months.
    ages = sorted((T0 - d.created_at).days for d in keep)
    assert ages[:7] == list(range(7))
    assert len(keep) == len(set(ages))
    assert max(ages) < 370 and len(keep) <= 7 + 4 + 12
    newest = decisions[0]
    assert newest.keep and newest.reasons[0] == "newest"
    assert "daily 2026-03-15" in newest.reasons and "weekly 2026-W11" in newest.reasons
    assert "monthly 2026-03" in newest.reasons
    # An empty policy keeps only the newest (and the verified one).
    decisions = plan(nightly, Policy(), verified="n200")
    assert kept(decisions) == {"n000", "n200"}
    with pytest.raises(ValueError):
        Policy(daily=-1)


# -- pruning real backups ---------------------------------------------------------------------
sqlite_only = pytest.mark.parametrize("instance", ["sqlite"], indirect=True)


def redate(instance: Instance, backup: Path, when: datetime, name_id: str) -> Path:
    """A copy of ``backup`` as if made at ``when``: its manifest re-signed with the instance's
    own ledger key (as create_backup does), so that it verifies like a real backup."""
    manifest, problem = open_manifest(backup)
    assert manifest is not None, problem
    manifest["created_at"] = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    copy = backup.parent / f"hygie-backup-{when.strftime('%Y%m%dT%H%M%SZ')}-{name_id}"
    shutil.copytree(backup, copy)
    body = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=True) + "\n"
    (copy / MANIFEST).write_text(sign_note(body, load_key(instance.data_dir)))
    return copy


@pytest.fixture
def history(instance: Instance, tmp_path: Path) -> Callable[[int], list[Path]]:
    """``days`` nightly backups (newest first), from one real backup of ``instance``."""
    target = tmp_path / "backups"

    def make(days: int) -> list[Path]:
        real = Path(make_backup(instance, target)["backup"])
        now = datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0)
        made = [redate(instance, real, now - timedelta(days=d), f"{d:08x}")
                for d in range(days)]
        shutil.rmtree(real)
        return made

    return make


def prune_json(*args: str) -> tuple[int, dict[str, Any], str]:
    result = cli("backup", "prune", *args, "--json")
    return result.exit_code, json.loads(result.stdout) if result.stdout else {}, result.stderr


@sqlite_only
def test_prune_keeps_the_policy_and_the_last_verified_and_nothing_else(
        instance: Instance, history: Callable[[int], list[Path]], tmp_path: Path) -> None:
    backups = history(70)
    target = backups[0].parent
    # Things that are not backups, or not usable ones, are never touched.
    (target / "notes.txt").write_text("not a backup")
    (target / "hygie-backup-by-hand").mkdir()
    (target / ".hygie-backup-20200101T000000Z-0000abcd.partial").mkdir()
    damaged = redate(instance, backups[0], datetime(2020, 1, 1, tzinfo=UTC), "dddddddd")
    flip(damaged / MANIFEST, 40)
    # An old backup verified by 'hygie backup verify' (the journal records it).
    old = backups[45]
    assert cli("backup", "verify", str(old)).exit_code == 0
    policy = ["--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "2"]
    code, dry, _ = prune_json("--from", str(target), *policy, "--dry-run")
    assert code == 0 and dry["dry_run"] is True
    assert all(p.is_dir() for p in backups)  # a dry run deletes nothing
    assert dry["last_verified"] == [old.name] and dry["verified_now"] == []
    reasons = {b["backup"]: b["reasons"] for b in dry["backups"]}
    assert "last verified" in reasons[old.name]
    assert reasons[backups[0].name][0] == "newest"
    assert {x["name"] for x in dry["left_alone"]} == {
        damaged.name, ".hygie-backup-20200101T000000Z-0000abcd.partial"}
    code, done, _ = prune_json("--from", str(target), *policy)
    assert code == 0
    assert done["pruned"] == dry["pruned"] and len(done["pruned"]) > 50
    left = {p.name for p in target.iterdir()}
    kept = {b["backup"] for b in done["backups"] if b["keep"]}
    assert left == kept | {"notes.txt", "hygie-backup-by-hand", damaged.name, JOURNAL,
                           ".hygie-backup-20200101T000000Z-0000abcd.partial"}
    assert {b.name for b in backups[:7]} <= kept and old.name in kept
    assert len(kept) <= 7 + 4 + 2 + 1
    # Pruning again prunes nothing more.
    code, again, _ = prune_json("--from", str(target), *policy)
    assert code == 0 and again["pruned"] == []
    # Once newer backups are verified, the old one is no longer the last verified: it goes.
    for name in sorted(kept):
        assert cli("backup", "verify", str(target / name)).exit_code == 0
    code, again, _ = prune_json("--from", str(target), *policy)
    assert code == 0 and again["pruned"] == [old.name]
    assert again["last_verified"] == [backups[0].name]


@sqlite_only
def test_without_a_journal_prune_protects_the_newest_backup_that_verifies(
        instance: Instance, history: Callable[[int], list[Path]]) -> None:
    backups = history(5)
    target = backups[0].parent
    flip(backups[0] / "database.sqlite", 100)  # the newest is damaged (its manifest is fine)
    (target / JOURNAL).write_text("garbage\n{\"backup\": 3}\n" + "x" * 5000 + "\n")
    code, report, _ = prune_json("--from", str(target), "--keep-last", "1")
    assert code == 0, report
    assert report["verified_now"] == [backups[1].name]
    assert report["last_verified"] == [backups[1].name]
    assert sorted(p.name for p in target.iterdir() if p.is_dir()) == sorted(
        [backups[0].name, backups[1].name])
    lines = (target / JOURNAL).read_text().splitlines()
    assert json.loads(lines[-1])["backup"] == backups[1].name
    # A journal line no longer matching the backup's manifest counts for nothing (here the
    # manifest was re-signed with another time, and the database damaged).
    when = datetime.now(UTC) - timedelta(days=1, seconds=1)
    resigned = redate(instance, backups[1], when, "eeeeeeee")
    shutil.rmtree(backups[1])
    resigned.rename(backups[1])
    flip(backups[1] / "database.sqlite", 100)
    code, _, stderr = prune_json("--from", str(target), "--keep-last", "1")
    assert code != 0 and "verifies; nothing was pruned" in stderr
    assert all(b.is_dir() for b in backups[:2])


@sqlite_only
def test_create_prunes_after_a_successful_backup_and_records_it(
        instance: Instance, history: Callable[[int], list[Path]]) -> None:
    backups = history(4)
    target = backups[0].parent
    assert cli("backup", "verify", str(backups[2])).exit_code == 0
    result = cli("backup", "create", "--data-dir", str(instance.data_dir), "--to", str(target),
                 "--keep-last", "2", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    new = Path(doc["backup"]).name
    assert sorted(doc["prune"]["pruned"]) == sorted([backups[1].name, backups[3].name])
    assert {p.name for p in target.iterdir() if p.is_dir()} == {
        new, backups[0].name, backups[2].name}
    rt = open_runtime(instance.settings)
    with rt.engine.connect() as conn:
        rows = conn.execute(select(audit_event.c.actor, audit_event.c.detail)
                            .where(audit_event.c.action == "backup-prune")).all()
    rt.engine.dispose()
    assert [tuple(r) for r in rows] == [("cli:backup", "pruned 2 kept 3")]


@sqlite_only
def test_prune_leaves_other_instances_backups_alone(
        instance: Instance, history: Callable[[int], list[Path]], tmp_path: Path) -> None:
    backups = history(3)
    target = backups[0].parent
    other_id = str(uuid.uuid4())
    signer = Signer.generate(origin_for(other_id))
    foreign = backups[2].parent / "hygie-backup-20200101T000000Z-0f0f0f0f"
    shutil.copytree(backups[2], foreign)
    manifest, _ = open_manifest(foreign)
    assert manifest is not None
    manifest["verifier_key"] = signer.verifier_key()
    manifest["instance_id"] = other_id
    body = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=True) + "\n"
    (foreign / MANIFEST).write_text(sign_note(body, signer))
    code, report, _ = prune_json("--from", str(target), "--keep-last", "1", "--data-dir",
                                 str(instance.data_dir))
    assert code == 0, report
    assert foreign.is_dir()
    assert [x["name"] for x in report["left_alone"]] == [foreign.name]
    assert sorted(report["pruned"]) == sorted(b.name for b in backups[1:])


def test_prune_needs_a_policy_and_a_target(tmp_path: Path) -> None:
    result = cli("backup", "prune", "--from", str(tmp_path))
    assert result.exit_code != 0 and "no retention policy" in result.stderr
    result = cli("backup", "prune", "--from", str(tmp_path / "missing"), "--keep-last", "1")
    assert result.exit_code != 0
    assert result.stderr.strip().splitlines() == [
        f"hygie: error: {tmp_path / 'missing'} does not exist"]
