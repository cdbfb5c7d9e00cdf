"""The real server: ``hygie serve`` with several workers, over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from hygie.instance import init_instance

from .conftest import Instance

HYGIE = str(Path(sys.executable).parent / "hygie")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "hygie serve exited early"
        try:
            if httpx.get(f"{base}/fhir/metadata", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError("hygie serve did not answer within 60 s")


def test_serve_with_two_workers(instance: Instance) -> None:
    d = str(instance.data_dir)
    creds = json.loads(subprocess.run([HYGIE, "client", "add", "srv", "--data-dir", d, "--json"],
                                      capture_output=True, text=True, check=True).stdout)
    port = free_port()
    proc = subprocess.Popen([HYGIE, "serve", "--data-dir", d, "--port", str(port),
                             "--workers", "2"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ})
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, proc)
        token = httpx.post(f"{base}/auth/token", data={"grant_type": "client_credentials"},
                           auth=(creds["client_id"], creds["client_secret"])).json()
        headers = {"Authorization": f"Bearer {token['access_token']}",
                   "Content-Type": "application/fhir+json"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            made = [client.post("/fhir/Patient", content=json.dumps(
                {"resourceType": "Patient", "name": [{"family": f"Serve{i}"}]}))
                for i in range(20)]
            assert all(r.status_code == 201 for r in made)
            for r in made:
                assert client.get(r.headers["location"].split("/_history")[0]).status_code == 200
            assert client.get("/fhir/Patient?family=serve").json()["total"] == 20
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert "Traceback" not in err and "Serve1" not in err


def test_demo_loader(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    init_instance(data)
    proc = subprocess.run([sys.executable, "-m", "hygie.demo", "--data-dir", str(data),
                           "--patients", "2"], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    creds = json.loads((data / "demo-client.json").read_text())
    assert creds["client_id"].startswith("hyg_")
    assert (data / "demo-client.json").stat().st_mode & 0o777 == 0o600
    assert "resources imported" in proc.stdout
