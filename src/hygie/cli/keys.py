"""``hygie keys export|export-recovery|recover``: keeping the keyring safe (docs/operations.md).

Registered on ``keys_app`` of :mod:`hygie.cli.main`. Every command records a system event in
the instance's ledger (``key-export``, ``key-shares-export``, ``key-recover``) that names no
secret: versions, the share set and its threshold only.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer

from hygie.cli.main import DataDir, JsonOpt, _runtime, boundary, emit_json, keys_app, out
from hygie.errors import DataDirError, KeyFailure
from hygie.fsutil import fsync_dir, write_new

ACTOR = "cli:keys"


def _refuse_existing_key_file(path: Path, hint: str = "choose another --out") -> None:
    if path.exists() or path.is_symlink():
        raise KeyFailure(f"{path} already exists; Hygie never overwrites a key file ({hint})")


def _print(text: str) -> None:
    out.print(text, markup=False, highlight=False, soft_wrap=True)


# -- export -----------------------------------------------------------------------------------
@keys_app.command("export")
@boundary
def keys_export(
    out_file: Annotated[Path, typer.Option(
        "--out", help="New file receiving a copy of the keyring (0600); never overwritten.")],
    data_dir: DataDir = None,
    json_out: JsonOpt = False,
) -> None:
    """Copy the key-encryption keyring (from its file or env: source) for safekeeping."""
    from hygie.ledger import audit

    target = out_file.expanduser().absolute()
    _refuse_existing_key_file(target)
    rt = _runtime(data_dir)  # the keyring is checked against the database first
    try:
        keyring = rt.gate.keys.keyring
        audit.record_system_event(rt.engine, rt.settings.tenant, "key-export", actor=ACTOR,
                                  detail=f"versions {','.join(map(str, keyring.versions))}")
        write_new(target, keyring.serialize().encode())
    finally:
        rt.engine.dispose()
    if json_out:
        emit_json({"key_file": str(target), "versions": keyring.versions,
                   "active_version": keyring.active_version})
        return
    _print(f"Keyring copied to {target} (0600): versions {keyring.versions}, active "
           f"{keyring.active_version}.")
    _print("Keep it offline, away from the backups; it opens every backup of this instance.")


# -- export-recovery --------------------------------------------------------------------------
@keys_app.command("export-recovery")
@boundary
def keys_export_recovery(
    out_dir: Annotated[Path, typer.Option(
        "--out", help="New (or empty) folder receiving share-N.txt and share-N.png.")],
    data_dir: DataDir = None,
    shares: Annotated[int, typer.Option(
        "--shares", help="How many shares (people) to make, 2 to 16.")] = 5,
    threshold: Annotated[int, typer.Option(
        "--threshold", help="How many shares rebuild the key (fewer reveal nothing).")] = 3,
    json_out: JsonOpt = False,
) -> None:
    """Split the keyring into printable Shamir shares (SLIP-0039) for trusted people."""
    from hygie.crypto.recovery import render_share_qr, render_share_text, split_keyring
    from hygie.ledger import audit

    target = out_dir.expanduser().absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DataDirError(f"{target} already exists and is not empty; Hygie never overwrites "
                           "key shares")
    rt = _runtime(data_dir)  # the keyring is checked against the database first
    try:
        share_set = split_keyring(rt.gate.keys.keyring, threshold=threshold, shares=shares,
                                  instance_id=rt.settings.instance_id)
        # Recorded before any share is written: no share set leaves unrecorded.
        audit.record_system_event(
            rt.engine, rt.settings.tenant, "key-shares-export", actor=ACTOR,
            detail=f"{threshold}-of-{shares} set {share_set.set_id}")
    finally:
        rt.engine.dispose()
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.partial-{secrets.token_hex(4)}"
    partial.mkdir(mode=0o700)
    files = []
    try:
        for n in range(1, shares + 1):
            write_new(partial / f"share-{n}.txt", render_share_text(share_set, n).encode())
            write_new(partial / f"share-{n}.png", render_share_qr(share_set, n))
            files += [f"share-{n}.txt", f"share-{n}.png"]
        fsync_dir(partial)
        if target.exists():
            target.rmdir()  # empty (checked above)
        os.rename(partial, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if json_out:
        emit_json({"out": str(target), "files": files, "shares": shares,
                   "threshold": threshold, "set": share_set.set_id,
                   "instance_id": share_set.instance_id})
        return
    _print(f"{shares} shares of set {share_set.set_id} written to {target}; any {threshold} "
           "rebuild the key, fewer reveal nothing.")
    _print("Print each share-N.txt (and its QR code share-N.png), give each page to a different "
           "trusted person in a sealed envelope, then delete this folder.")
    _print("After every 'hygie keys rotate', make a new set and destroy the old one.")


# -- recover ----------------------------------------------------------------------------------
@keys_app.command("recover")
@boundary
def keys_recover(
    share_files: Annotated[list[Path], typer.Argument(
        help="Share files (share-N.txt, or text files holding only a share's words).")],
    out_file: Annotated[Path, typer.Option(
        "--out", help="File receiving the rebuilt keyring (0600), for 'hygie restore "
        "--key-file'.")],
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing --out file.")] = False,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="An instance whose database the rebuilt keyring must open; the "
        "recovery is then recorded in its ledger. Without it, the restore that follows is "
        "what gets recorded.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Rebuild the keyring from enough shares of one set (from 'keys export-recovery')."""
    from hygie.crypto.keyring import write_secret_file
    from hygie.crypto.recovery import parse_share, recover_keyring

    target = out_file.expanduser().absolute()
    if not force:
        _refuse_existing_key_file(target, "pass --force to replace it")
    parsed = []
    for path in share_files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise KeyFailure(f"share file {path} cannot be read") from None
        parsed.append(parse_share(text, str(path)))
    result = recover_keyring(parsed)
    keyring = result.keyring
    recorded = False
    if data_dir is not None:
        recorded = _check_and_record(data_dir, keyring, result)
    if force:
        write_secret_file(target, keyring.serialize())
    else:
        write_new(target, keyring.serialize().encode())
    doc: dict[str, Any] = {
        "key_file": str(target), "instance_id": result.instance_id, "set": result.set_id,
        "threshold": result.threshold, "shares_used": result.used,
        "versions": keyring.versions, "active_version": keyring.active_version,
        "check_values_verified": result.checked_values, "recorded": recorded}
    if json_out:
        emit_json(doc)
        return
    _print(f"Keyring rebuilt from shares {', '.join(map(str, result.used))} of set "
           f"{result.set_id} (threshold {result.threshold}): versions {keyring.versions}, "
           f"active {keyring.active_version}; written to {target} (0600).")
    if data_dir is not None:
        _print(f"It opens the instance in {data_dir}; the recovery is recorded in its ledger.")
    else:
        _print(f"Next: hygie restore BACKUP --data-dir NEWDIR --key-file {target}")


def _check_and_record(data_dir: Path, keyring: Any, result: Any) -> bool:
    """The rebuilt keyring must open ``data_dir``'s database; record the recovery there."""
    from hygie.ledger import audit
    from hygie.settings import load_settings
    from hygie.store.db import make_engine, transaction
    from hygie.store.keys import KeyStore

    settings = load_settings(data_dir)
    if result.instance_id and result.instance_id != settings.instance_id:
        raise KeyFailure(f"these shares belong to instance {result.instance_id}, not to the "
                         f"instance in {settings.data_dir}")
    engine = make_engine(settings.database_url, pool=False)
    try:
        with transaction(engine) as conn:
            KeyStore(keyring, settings.tenant).verify_keyring(conn)
        audit.record_system_event(engine, settings.tenant, "key-recover", actor=ACTOR,
                                  detail=f"set {result.set_id} shares "
                                         f"{','.join(map(str, result.used))}"[:64])
    finally:
        engine.dispose()
    return True
