"""The ransomware scenario (issue 5, item 8), end to end with the real ``hygie`` command.

An instance is made and filled (``hygie init``, ``hygie import``, records written through the
API of a running ``hygie serve``), backed up while it serves, then every file of its data dir is
encrypted (AES-256-GCM under a key thrown away, through ``hygie.crypto``) and renamed
``*.locked``, and a ransom note is dropped; on PostgreSQL the database is wiped as well.
``hygie serve`` then refuses to start and prints the restore steps; the backup is verified and
restored into a new data dir with the key file kept apart; ``hygie serve`` answers again, every
record written before the backup reads back identical through the API, the record written after
it is gone (the recovery point), and ``hygie ledger verify`` passes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hygie.crypto import DataKey, new_key_material
from hygie.resilience.integrity import EXIT_CODE

from .conftest import FIXTURES, _pg_admin, _pg_url

pytestmark = pytest.mark.slow

HYGIE = str(Path(sys.executable).parent / "hygie")
BUNDLE = FIXTURES / "synthea" / "Clemente_Kreiger_1484a42d-0eaf-4654-9cbf-6b050a5cd73b.json"
FAMILIES = ["Rancon-Martin", "Rancon-Bernard", "Rancon-Petit", "Rancon-Moreau"]
RANSOM_NOTE = "LISEZ-MOI-POUR-RECUPERER-VOS-FICHIERS.txt"


def hygie(*args: str, env: dict[str, str] | None = None, ok: bool = True
          ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([HYGIE, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, check=False)
    if ok:
        assert proc.returncode == 0, (args, proc.stderr)
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``hygie serve`` in a subprocess, with an authenticated HTTP client."""

    def __init__(self, data_dir: Path, creds: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([HYGIE, "serve", "--data-dir", str(data_dir), "--port",
                                      str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 90
        while True:
            assert self.proc.poll() is None, "hygie serve exited early"
            try:
                if httpx.get(f"{self.base}/fhir/metadata", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "hygie serve did not answer within 90 s"
            time.sleep(0.2)
        token = httpx.post(f"{self.base}/auth/token", data={"grant_type": "client_credentials"},
                           auth=(creds["client_id"], creds["client_secret"])).json()
        self.http = httpx.Client(base_url=self.base, timeout=60, headers={
            "Authorization": f"Bearer {token['access_token']}",
            "Content-Type": "application/fhir+json"})

    def stop(self) -> str:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(timeout=60)
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode()

    def post(self, rtype: str, body: dict[str, Any]) -> dict[str, Any]:
        resp = self.http.post(f"/fhir/{rtype}", content=json.dumps(body))
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def everything(self, types: set[str]) -> dict[tuple[str, str], Any]:
        """Every current record of ``types``: found by search, then read one by one."""
        found: dict[tuple[str, str], Any] = {}
        for rtype in sorted(types):
            url: str | None = f"/fhir/{rtype}?_count=200"
            while url:
                page = self.http.get(url)
                assert page.status_code == 200, page.text
                doc = page.json()
                for entry in doc.get("entry", []):
                    rid = entry["resource"]["id"]
                    read = self.http.get(f"/fhir/{rtype}/{rid}")
                    assert read.status_code == 200, read.text
                    found[(rtype, rid)] = read.json()
                url = next((ln["url"].removeprefix(self.base) for ln in doc.get("link", [])
                            if ln["relation"] == "next"), None)
        return found


def ransomware(data_dir: Path) -> list[str]:
    """Encrypt every file of ``data_dir`` under a key nobody keeps; rename it ``*.locked``."""
    key = DataKey(new_key_material())
    hit = []
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        locked = path.with_name(path.name + ".locked")
        locked.write_bytes(key.seal(path.read_bytes(), b"ransom"))
        path.unlink()
        hit.append(path.name)
    (data_dir / RANSOM_NOTE).write_text("Vos fichiers sont chiffrés. Payez 5 BTC.\n")
    return hit


@pytest.fixture(params=["sqlite", "postgresql"])
def database_urls(request: pytest.FixtureRequest) -> Iterator[tuple[str | None, str | None]]:
    """(live database URL, empty database to restore into): None, None for SQLite."""
    if request.param == "sqlite":
        yield None, None
        return
    names = [f"hygie_rw_{uuid.uuid4().hex[:10]}", f"hygie_rr_{uuid.uuid4().hex[:10]}"]
    with _pg_admin() as admin:
        for name in names:
            admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(names[0]), _pg_url(names[1])
    finally:
        with _pg_admin() as admin:
            for name in names:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_ransomware_then_restore(tmp_path: Path,
                                 database_urls: tuple[str | None, str | None]) -> None:
    live_url, restore_url = database_urls
    live = tmp_path / "srv" / "hygie"
    backups = tmp_path / "offline-backups"  # another medium in real life (3-2-1)
    safe = tmp_path / "coffre"  # the key file's copy, kept apart from the backups
    live.parent.mkdir()

    # -- day 0: a working instance ------------------------------------------------------------
    hygie("init", "--data-dir", str(live), *(["--database-url", live_url] if live_url else []))
    with (live / "hygie.toml").open("a") as f:
        f.write(f'\n[backup]\ntarget = "{backups}"\n')
    safe.mkdir(mode=0o700)
    (safe / "kek.json").write_bytes((live / "kek.json").read_bytes())
    creds = json.loads(hygie("client", "add", "cabinet", "--data-dir", str(live),
                             "--json").stdout)
    hygie("import", str(BUNDLE), "--data-dir", str(live))
    types = {e["resource"]["resourceType"] for e in json.loads(BUNDLE.read_text())["entry"]}

    server = Server(live, creds)
    written = []
    for i, family in enumerate(FAMILIES):
        patient = server.post("Patient", {"resourceType": "Patient",
                                          "name": [{"family": family, "given": ["Camille"]}],
                                          "birthDate": f"19{60 + i}-0{i + 1}-1{i}"})
        written.append(patient["id"])
        server.post("Observation", {"resourceType": "Observation", "status": "final",
                                    "code": {"text": "tension artérielle"},
                                    "subject": {"reference": f"Patient/{patient['id']}"},
                                    "valueQuantity": {"value": 120 + i, "unit": "mmHg"}})
        server.post("Condition", {"resourceType": "Condition",
                                  "code": {"text": "hypertension"},
                                  "subject": {"reference": f"Patient/{patient['id']}"}})
    # A second version of one record: its history must come back too.
    first = server.http.get(f"/fhir/Patient/{written[0]}").json()
    first["telecom"] = [{"system": "phone", "value": "0102030405"}]
    assert server.http.put(f"/fhir/Patient/{written[0]}",
                           content=json.dumps(first)).status_code == 200
    types |= {"Patient", "Observation", "Condition"}
    before = server.everything(types)
    version_1 = server.http.get(f"/fhir/Patient/{written[0]}/_history/1").json()
    assert len(before) > 70

    # -- the nightly backup, taken while the server runs --------------------------------------
    made = json.loads(hygie("backup", "create", "--data-dir", str(live), "--to", str(backups),
                            "--json").stdout)
    backup = made["backup"]
    assert made["resources"] == len(before)
    # Work goes on after the backup: this record is past the recovery point.
    late = server.post("Patient", {"resourceType": "Patient", "name": [{"family": "Tardif"}]})

    # -- the attack: every file of the live data dir encrypted and renamed, while serving ----
    hit = ransomware(live)
    assert {"hygie.toml", "kek.json", "ledger.key"} <= set(hit)
    if live_url:  # the database server is hit too: its tables are gone
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE "{live_url.rsplit("/", 1)[1]}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{live_url.rsplit("/", 1)[1]}"')
    else:
        assert "hygie.db" in hit
    server.stop()

    # -- Hygie refuses to start on the damaged data dir, and says how to recover -------------
    port = free_port()
    refused = subprocess.run([HYGIE, "serve", "--data-dir", str(live), "--port", str(port)],
                             capture_output=True, text=True, timeout=120, check=False,
                             env={**os.environ, "HYGIE_BACKUP_TARGET": str(backups)})
    assert refused.returncode == EXIT_CODE, refused.stderr
    lines = refused.stderr.splitlines()
    assert lines[0] == ("hygie: error: integrity check failed: the configuration file "
                        "hygie.toml is missing (hygie.toml.locked is there instead: renamed by "
                        "ransomware?)")
    assert f"hygie backup verify {backup}" in refused.stderr
    assert f"hygie restore {backup} --data-dir NEWDIR --key-file KEYFILE" in refused.stderr
    assert "Traceback" not in refused.stderr
    with socket.socket() as s:  # the port was never bound
        s.bind(("127.0.0.1", port))
    check = hygie("check", "--data-dir", str(live), "--json", ok=False)
    assert check.returncode == EXIT_CODE and json.loads(check.stdout)["ok"] is False

    # -- recovery: verify the backup, restore it with the key file kept apart ---------------
    assert "backup verified" in hygie("backup", "verify", backup).stdout
    restored = tmp_path / "srv" / "hygie-restored"
    hygie("restore", backup, "--data-dir", str(restored), "--key-file", str(safe / "kek.json"),
          *(["--database-url", restore_url] if restore_url else []))
    assert "ledger verified" in hygie("ledger", "verify", "--data-dir", str(restored)).stdout
    assert "integrity check passed" in hygie("check", "--data-dir", str(restored)).stdout

    server = Server(restored, creds)  # the API client came back with the data
    try:
        after = server.everything(types)
        assert after == before  # every record identical: content, ids, versions, times
        assert server.http.get(f"/fhir/Patient/{written[0]}/_history/1").json() == version_1
        assert server.http.get(f"/fhir/Patient/{late['id']}").status_code == 404
        assert server.post("Patient", {"resourceType": "Patient",
                                       "name": [{"family": "Apres"}]})["id"]
    finally:
        err = server.stop()
    assert "integrity check passed" in err and "Traceback" not in err
    assert "ledger verified" in hygie("ledger", "verify", "--data-dir", str(restored)).stdout
    # Nothing secret or clinical in what the operator saw.
    kek = json.loads((safe / "kek.json").read_text())
    for out in (refused.stderr, check.stdout, err):
        for value in kek["keys"].values():
            assert value not in out
        for family in FAMILIES:
            assert family not in out
