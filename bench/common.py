"""Shared machinery of the HTTP benchmarks: instances, servers, a lean load generator, results.

Everything here drives the real thing: ``hygie init``, ``hygie client add`` and ``hygie serve``
run as subprocesses (the CLI in the virtualenv next to the running Python), the API is reached
over HTTP on 127.0.0.1 only, and PostgreSQL databases are created and dropped on the local
server (127.0.0.1:5432, user postgres, or ``$HYGIE_BENCH_PG``).

The load generator is raw asyncio streams on uvloop (no HTTP library): N clients, each with one
keep-alive HTTP/1.1 connection, each sending its next request as soon as the previous answer is
read (closed loop), for a fixed duration after a warm-up. It shares the machine's 2 cores with
the server, so it is kept lean and its own CPU use is measured and reported
(``loadgen_cpu_cores``). Loads are bounded in time and count and stop by themselves.

No health data is ever printed: errors are reported as HTTP status and OperationOutcome codes
only, never bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
BIN = Path(sys.executable).parent
HYGIE = str(BIN / "hygie")
HOST = "127.0.0.1"
PG_ADMIN = os.environ.get("HYGIE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
INS_NIR_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SYNTHEA_DIRS = (ROOT.parent / "shared" / "data" / "synthea",
                ROOT / "tests" / "fixtures" / "synthea")


# -- output -----------------------------------------------------------------------------------
def code_state() -> dict[str, Any]:
    """Which code was measured: the checked-out commit (read from .git, no git command) and a
    digest of src/ as it was on disk (the tree may hold uncommitted work)."""
    import hashlib

    head = None
    with contextlib.suppress(OSError):
        ref = (ROOT / ".git" / "HEAD").read_text().strip()
        if ref.startswith("ref: "):
            name = ref[5:]
            path = ROOT / ".git" / name
            if path.is_file():
                head = path.read_text().strip()
            else:
                for line in (ROOT / ".git" / "packed-refs").read_text().splitlines():
                    if line.endswith(" " + name):
                        head = line.split()[0]
        else:
            head = ref
    digest = hashlib.sha256()
    for f in sorted((ROOT / "src").rglob("*.py")):
        digest.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return {"head": head, "src_sha256": digest.hexdigest()[:16]}


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all processes, from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_at_start": list(os.getloadavg()),
            "code": code_state()}


def emit(prefix: str, figures: dict[str, Any]) -> None:
    """One ``name value unit`` line per figure (units come from the name's suffix)."""
    for name, value in figures.items():
        if value is None or isinstance(value, dict | list):
            continue
        print(f"{prefix}.{name} {value} {unit_of(name)}", flush=True)


def unit_of(name: str) -> str:
    last = name.rsplit(".", 1)[-1]
    if last.endswith("rps"):
        return "req/s"
    for suffix, unit in (("_ms", "ms"), ("_mb", "MB"), ("_per_s", "/s"), ("_s", "s"),
                         ("_cores", "cores"), ("_ratio", "x"), ("_pct", "%")):
        if last.endswith(suffix):
            return unit
    return "count"


def result_path(name: str, quick: bool = False) -> Path:
    """bench/results/<name>.json; smoke runs (--quick) go to bench/results/quick/ so they never
    overwrite the figures of a full run."""
    return (RESULTS / "quick" if quick else RESULTS) / f"{name}.json"


def write_result(name: str, doc: dict[str, Any], out: Path | None = None) -> Path:
    path = out or result_path(name, bool(doc.get("quick")))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


# -- synthetic French patients -----------------------------------------------------------------
_FAM_HEAD = ["Le", "La", "Du", "De", "Beau", "Mont", "Ro", "Ga", "Ber", "Fon", "Ma", "Vi",
             "Cha", "Bou", "Gi", "Pe", "Mer", "Lam", "Gau", "Fa", "Bro", "Che", "Mo", "Ri",
             "Thi", "Cou", "Bla", "Gre", "Ar", "Bé", "Le Gof", "Dau", "Sau", "Pi", "Ta", "Mé"]
_FAM_MID = ["b", "br", "c", "ch", "d", "f", "g", "gn", "l", "ll", "m", "n", "p", "r", "rr",
            "s", "ss", "t", "v", "", "rd", "rn", "nt", "lv"]
_FAM_TAIL = ["ier", "ard", "eau", "et", "in", "ot", "and", "ès", "y", "ault", "oux", "elle",
             "on", "ois", "ert", "aud", "ac", "ieu", "ée", "as", "ouin", "enne", "illard",
             "erre", "age", "iot", "art", "ède", "ançon", "ichon"]
_GIVEN = {
    "male": ["Jean", "Pierre", "Louis", "Lucas", "Hugo", "Gabriel", "Arthur", "Jules", "Léo",
             "Raphaël", "Nathan", "Théo", "Paul", "Antoine", "Mathis", "Noé", "Étienne",
             "François", "Olivier", "Nicolas", "Thomas", "Julien", "Yves", "Rémi", "Benoît"],
    "female": ["Marie", "Camille", "Léa", "Chloé", "Manon", "Inès", "Jade", "Louise", "Emma",
               "Alice", "Zoé", "Juliette", "Anaïs", "Élodie", "Sophie", "Claire", "Margaux",
               "Océane", "Hélène", "Agnès", "Céline", "Brigitte", "Mathilde", "Lucie", "Noémie"],
}
_CITIES = [("Paris", "75"), ("Lyon", "69"), ("Marseille", "13"), ("Toulouse", "31"),
           ("Nantes", "44"), ("Lille", "59"), ("Rennes", "35"), ("Bordeaux", "33"),
           ("Strasbourg", "67"), ("Dijon", "21"), ("Brest", "29"), ("Tours", "37")]


def fold(text: str) -> str:
    """Lower case, no accents (how a name is compared, here and by the server)."""
    t = unicodedata.normalize("NFKD", text)
    return "".join(c for c in t if not unicodedata.combining(c)).lower()


def family_pool(size: int, rng: random.Random) -> list[str]:
    """``size`` distinct French-looking family names, none a prefix of another (folded), so a
    prefix search (FHIR string search) for one name finds exactly that name's patients."""
    seen: dict[str, str] = {}
    attempts = 0
    while len(seen) < size * 2 and attempts < size * 200:
        attempts += 1
        name = rng.choice(_FAM_HEAD) + rng.choice(_FAM_MID) + rng.choice(_FAM_TAIL)
        if rng.random() < 0.15:
            name += "-" + rng.choice(_FAM_HEAD) + rng.choice(_FAM_MID) + rng.choice(_FAM_TAIL)
        seen.setdefault(fold(name), name)
    keys = sorted(seen)
    free = [k for i, k in enumerate(keys) if not (i + 1 < len(keys)
                                                   and keys[i + 1].startswith(k))]
    # a word-start prefix also matches ("le gof..." is found by "gof..."): drop names whose
    # later word starts another name's first word
    words = {k.replace("-", " ").split()[0] for k in free}
    free = [k for k in free
            if not any(w.startswith(x) or x.startswith(w) for w in
                       k.replace("-", " ").split()[1:] for x in words)]
    rng.shuffle(free)
    if len(free) < size:
        raise RuntimeError(f"could make only {len(free)} distinct family names")
    return [seen[k] for k in free[:size]]


def ins_nir(rng: random.Random, sex: int, year: int, month: int) -> str:
    """A valid INS-NIR: 13 digits then key = 97 - (first 13 mod 97), two digits."""
    dept = rng.choice(["01", "06", "13", "21", "29", "31", "33", "35", "44", "59", "67", "69",
                       "75", "92", "93", "94", "99"])
    first13 = f"{sex}{year % 100:02d}{month:02d}{dept}{rng.randint(1, 990):03d}" \
              f"{rng.randint(1, 999):03d}"
    return f"{first13}{97 - int(first13) % 97:02d}"


@dataclass
class PatientSet:
    """Synthetic patients and what a search for each should find."""

    bodies: list[dict[str, Any]]
    nirs: list[str]
    families: list[str]  # the distinct family names in use
    family_count: dict[str, int] = field(default_factory=dict)


def make_patients(n: int, seed: int = 1789, per_family: int = 10) -> PatientSet:
    rng = random.Random(seed)
    families = family_pool(max(1, n // per_family), rng)
    bodies: list[dict[str, Any]] = []
    nirs: list[str] = []
    used: set[str] = set()
    counts: Counter[str] = Counter()
    for _ in range(n):
        gender = rng.choice(("male", "female"))
        year, month, day = rng.randint(1930, 2020), rng.randint(1, 12), rng.randint(1, 28)
        nir = ins_nir(rng, 1 if gender == "male" else 2, year, month)
        while nir in used:
            nir = ins_nir(rng, 1 if gender == "male" else 2, year, month)
        used.add(nir)
        family = rng.choice(families)
        counts[family] += 1
        city, dept = rng.choice(_CITIES)
        bodies.append({
            "resourceType": "Patient",
            "identifier": [{"use": "official", "system": INS_NIR_SYSTEM, "value": nir}],
            "active": True,
            "name": [{"use": "official", "family": family, "given": [rng.choice(_GIVEN[gender])]}],
            "gender": gender,
            "birthDate": f"{year:04d}-{month:02d}-{day:02d}",
            "address": [{"city": city, "postalCode": f"{dept}{rng.randint(0, 999):03d}",
                         "country": "FR"}],
        })
        nirs.append(nir)
    return PatientSet(bodies, nirs, sorted(counts), dict(counts))


def transaction_bundle(bodies: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": b,
                       "request": {"method": "POST", "url": "Patient"}} for b in bodies]}


def search_path(param: str, value: str) -> str:
    return f"/fhir/Patient?{param}={quote(value, safe='')}"


def synthea_dir() -> Path:
    for d in SYNTHEA_DIRS:
        if d.is_dir() and any(d.glob("*.json")):
            return d
    raise SystemExit("no Synthea bundles in " + " or ".join(map(str, SYNTHEA_DIRS)))


# -- PostgreSQL -------------------------------------------------------------------------------
def pg_url(dbname: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{dbname}"


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def pg_in(dbname: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement in a bench database (autocommit); returns its rows."""
    import psycopg

    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + dbname
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(sql, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def pg_cancel_queries(dbname: str) -> int:
    """Cancel the running queries of a bench database (those our own server sent)."""
    rows = pg_in(dbname, "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = "
                 "%s AND state = 'active' AND pid <> pg_backend_pid()", (dbname,))
    return len(rows)


def pg_available() -> bool:
    try:
        pg_admin("SELECT 1")
        return True
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        log(f"PostgreSQL not available ({type(exc).__name__}): PostgreSQL runs are skipped")
        return False


# -- instances --------------------------------------------------------------------------------
def run_cli(*args: str, timeout: float = 600) -> str:
    proc = subprocess.run([HYGIE, *args], capture_output=True, text=True, timeout=timeout,
                          check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise RuntimeError(f"hygie {args[0]} failed ({proc.returncode}): {last[:300]}")
    return proc.stdout


@dataclass
class Instance:
    backend: str  # sqlite | postgresql
    data_dir: Path
    root: Path
    dbname: str | None = None

    def add_client(self, name: str = "bench") -> tuple[str, str]:
        doc = json.loads(run_cli("client", "add", name, "--data-dir", str(self.data_dir),
                                 "--json"))
        return doc["client_id"], doc["client_secret"]

    def drop(self) -> None:
        if self.dbname:
            with contextlib.suppress(Exception):
                pg_admin(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        shutil.rmtree(self.root, ignore_errors=True)


def create_instance(backend: str) -> Instance:
    """A fresh instance made with ``hygie init`` (PostgreSQL: in a new, empty database)."""
    root = Path(tempfile.mkdtemp(prefix=f"hygie-bench-{backend}-"))
    data = root / "data"
    args = ["init", "--data-dir", str(data), "--json"]
    dbname = None
    if backend == "postgresql":
        dbname = f"hygie_bench_{uuid.uuid4().hex[:10]}"
        pg_admin(f'CREATE DATABASE "{dbname}"')
        args += ["--database-url", pg_url(dbname)]
    inst = Instance(backend, data, root, dbname)
    try:
        run_cli(*args)
    except Exception:
        inst.drop()
        raise
    return inst


@contextlib.contextmanager
def instance(backend: str) -> Iterator[Instance]:
    inst = create_instance(backend)
    try:
        yield inst
    finally:
        inst.drop()


# -- processes: memory and CPU from /proc ------------------------------------------------------
def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def process_tree(pid: int) -> list[int]:
    kids = _children_map()
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(kids.get(p, []))
    return out


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def cpu_seconds(pids: Sequence[int]) -> float:
    return sum(_cpu_ticks(p) for p in pids) / CLK_TCK


def postgres_pids(dbname: str | None = None) -> list[int]:
    """PostgreSQL's processes: its shared ones (postmaster, WAL writer, checkpointer, ...) and
    the backends serving ``dbname`` (those of other databases are left out)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if Path(f"/proc/{entry}/comm").read_text().strip() != "postgres":
                continue
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
            parts = cmd.split(": ")
            # a backend reads "postgres: 15/main: USER DBNAME HOST(PORT) STATE"
            is_backend = len(parts) >= 3 and "(" in parts[2]
            if not is_backend or (dbname is not None and f" {dbname} " in f" {parts[2]}"):
                out.append(int(entry))
    return out


def memory_mb(pids: Sequence[int]) -> dict[str, float]:
    """Sum of RSS (and of PSS, which counts shared pages once) over ``pids``, in MB."""
    rss = pss = 0
    for p in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return {"rss_mb": round(rss / 1024, 1), "pss_mb": round(pss / 1024, 1)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Server:
    """A server subprocess on 127.0.0.1 (``hygie serve`` or the raw baseline), stopped on exit."""

    def __init__(self, argv: list[str], port: int, label: str,
                 env: dict[str, str] | None = None) -> None:
        self.argv, self.port, self.label = argv, port, label
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __exit__

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=self._err,
                                     env=self.env)
        self._wait_up()
        return self

    def _wait_up(self, timeout: float = 90) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited early: {self.stderr_tail()}")
            try:
                if httpx.get(f"{self.base}/fhir/metadata", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise RuntimeError(f"{self.label} did not answer within {timeout:.0f} s")
        # One worker answers; the others may still be building their app: wait until the
        # whole process tree is idle (under 0.05 CPU-second per 0.5 s).
        while time.monotonic() < deadline:
            before = self.cpu()
            time.sleep(0.5)
            if self.cpu() - before < 0.05:
                return

    def pids(self) -> list[int]:
        assert self.proc is not None
        return process_tree(self.proc.pid)

    def memory(self) -> dict[str, float]:
        return memory_mb(self.pids())

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def stderr_tail(self, lines: int = 5) -> str:
        """The last lines of the server's stderr (Hygie logs only codes and types there)."""
        self._err.seek(0)
        text = self._err.read().decode(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])[:600]

    def problems(self) -> dict[str, int]:
        """Counts of warning/error lines the server logged (no bodies: Hygie logs codes)."""
        self._err.seek(0)
        counts: Counter[str] = Counter()
        for line in self._err.read().decode(errors="replace").splitlines():
            low = line.lower()
            if "traceback" in low:
                counts["traceback"] += 1
            elif "request failed with" in low or "unexpected" in low or "database error" in low:
                counts[line.strip()[:120]] += 1
        return dict(counts)

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        pids = self.pids()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for p in pids[1:]:  # workers we started, if any outlived the supervisor
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGKILL)
        self._err.close()


def hygie_server(inst: Instance, workers: int = 2) -> Server:
    port = free_port()
    return Server([HYGIE, "serve", "--data-dir", str(inst.data_dir), "--port", str(port),
                   "--workers", str(workers)], port, f"hygie serve ({inst.backend})")


def raw_server(db_path: Path, workers: int = 2) -> Server:
    port = free_port()
    return Server([sys.executable, str(BENCH / "raw_server.py"), "--db", str(db_path),
                   "--port", str(port), "--workers", str(workers)], port, "raw sqlite server")


def get_token(base: str, client_id: str, secret: str) -> str:
    import httpx

    r = httpx.post(f"{base}/auth/token", data={"grant_type": "client_credentials"},
                   auth=(client_id, secret), timeout=30)
    r.raise_for_status()
    return str(r.json()["access_token"])


# -- the load generator -------------------------------------------------------------------------
class Request:
    """A prebuilt HTTP/1.1 request (bytes) and the statuses that count as success."""

    __slots__ = ("data", "ok")

    def __init__(self, data: bytes, ok: tuple[int, ...] = (200,)) -> None:
        self.data = data
        self.ok = ok


class RequestMaker:
    """Builds raw requests for one server (host header, bearer token)."""

    def __init__(self, port: int, token: str | None = None) -> None:
        head = f"Host: {HOST}:{port}\r\nAccept: application/fhir+json\r\n"
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        self._head = head.encode()

    def get(self, path: str) -> Request:
        return Request(b"GET " + path.encode() + b" HTTP/1.1\r\n" + self._head + b"\r\n")

    def send(self, method: str, path: str, body: bytes, ok: tuple[int, ...] = (200, 201)
             ) -> Request:
        return Request(method.encode() + b" " + path.encode() + b" HTTP/1.1\r\n" + self._head
                       + b"Content-Type: application/fhir+json\r\nContent-Length: "
                       + str(len(body)).encode() + b"\r\n\r\n" + body, ok)


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; responses need a Content-Length (uvicorn sends it)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def send(self, data: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        low = head.lower()
        i = low.find(b"\r\ncontent-length:")
        if i < 0:
            raise ConnectionError("response without Content-Length")
        j = low.find(b"\r\n", i + 2)
        body = await self.reader.readexactly(int(low[i + 17:j]))
        if b"\r\nconnection: close" in low:
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


def outcome_code(body: bytes) -> str:
    """The stable code of an OperationOutcome (details.coding code, else issue code)."""
    try:
        issue = orjson.loads(body)["issue"][0]
    except Exception:  # noqa: BLE001 - not an OperationOutcome
        return "no-outcome"
    try:
        return str(issue["details"]["coding"][0]["code"])
    except (KeyError, IndexError, TypeError):
        return str(issue.get("code", "unknown"))


@dataclass
class LoadResult:
    requests: int
    errors: int
    duration_s: float
    latencies_ns: list[int]
    error_codes: dict[str, int]
    loadgen_cpu_s: float
    server_cpu_s: float | None = None
    postgres_cpu_s: float | None = None
    failed_checks: int = 0
    machine_busy_s: float | None = None

    def figures(self, prefix: str = "") -> dict[str, Any]:
        lat = sorted(self.latencies_ns)
        p = prefix
        out: dict[str, Any] = {
            f"{p}rps": round(self.requests / self.duration_s, 1),
            f"{p}p50_ms": round(percentile(lat, 50) / 1e6, 2),
            f"{p}p90_ms": round(percentile(lat, 90) / 1e6, 2),
            f"{p}p99_ms": round(percentile(lat, 99) / 1e6, 2),
            f"{p}errors": self.errors,
            f"{p}loadgen_cpu_cores": round(self.loadgen_cpu_s / self.duration_s, 2),
        }
        if self.server_cpu_s is not None:
            out[f"{p}server_cpu_cores"] = round(self.server_cpu_s / self.duration_s, 2)
            if self.requests:
                out[f"{p}server_cpu_per_req_ms"] = round(self.server_cpu_s / self.requests * 1e3,
                                                         3)
        if self.postgres_cpu_s is not None:
            out[f"{p}postgres_cpu_cores"] = round(self.postgres_cpu_s / self.duration_s, 2)
        if self.machine_busy_s is not None:
            ours = self.loadgen_cpu_s + (self.server_cpu_s or 0) + (self.postgres_cpu_s or 0)
            out[f"{p}machine_busy_cores"] = round(self.machine_busy_s / self.duration_s, 2)
            # CPU used meanwhile by everything else on the machine: the noise
            out[f"{p}other_cpu_cores"] = round(max(0.0, self.machine_busy_s - ours)
                                               / self.duration_s, 2)
        return out


def percentile(sorted_values: Sequence[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


Maker = Callable[[int, int], Request]  # (client index, request number of that client)
Check = Callable[[Request, int, bytes], bool]  # sampled answers: is it right?


async def _client_loop(port: int, ci: int, make: Maker, deadline: float, record: bool,
                       lat: list[int], errors: Counter[str], counters: list[int],
                       check: Check | None, check_every: int, max_requests: int) -> None:
    """One client. Requests started before the deadline are measured (latency, errors) even
    if they end after it; only those that end before it count towards throughput."""
    conn = HttpConnection(port)
    n = 0
    perf = time.perf_counter_ns
    dl = int(deadline * 1e9)
    try:
        while n < max_requests:
            req = make(ci, n)
            n += 1
            t0 = perf()
            if t0 >= dl:
                break
            try:
                status, body = await asyncio.wait_for(conn.send(req.data), timeout=60)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ConnectionError, TimeoutError) as exc:
                await conn.close()
                if record:
                    errors[f"connection:{type(exc).__name__}"] += 1
                    counters[1] += 1
                continue
            t1 = perf()
            if not record:
                continue
            if status not in req.ok:
                errors[f"{status}:{outcome_code(body)}"] += 1
                counters[1] += 1
                continue
            if check is not None and n % check_every == 0 and not check(req, status, body):
                errors["wrong-answer"] += 1
                counters[1] += 1
                counters[2] += 1
                continue
            lat.append(t1 - t0)
            if t1 <= dl:
                counters[0] += 1
    finally:
        await conn.close()


def run_load(port: int, make: Maker, *, clients: int = 16, duration: float = 10.0,
             warmup: float = 2.0, server: Server | None = None, postgres: str | None = None,
             check: Check | None = None, check_every: int = 25, grace: float = 10.0,
             max_requests: int = 2_000_000) -> LoadResult:
    """Closed-loop load: ``clients`` connections for ``warmup`` then ``duration`` seconds.

    Requests still unanswered ``grace`` seconds after the end are abandoned and counted as
    errors (``unanswered-after-end``), so a load never runs longer than
    warmup + duration + 2 * grace seconds.
    """
    import uvloop

    async def phase(seconds: float, record: bool) -> tuple[list[int], Counter[str], list[int]]:
        lat: list[int] = []
        errors: Counter[str] = Counter()
        counters = [0, 0, 0]
        deadline = time.perf_counter() + seconds
        tasks = [asyncio.ensure_future(_client_loop(
            port, ci, make, deadline, record, lat, errors, counters, check, check_every,
            max_requests)) for ci in range(clients)]
        _, pending = await asyncio.wait(tasks, timeout=seconds + grace)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending)
            if record:
                errors["unanswered-after-end"] += len(pending)
                counters[1] += len(pending)
        return lat, errors, counters

    async def main() -> LoadResult:
        if warmup > 0:
            await phase(warmup, False)
        pids = server.pids() if server else []
        pg = postgres_pids(postgres) if postgres else []
        s0 = cpu_seconds(pids) if pids else None
        g0 = cpu_seconds(pg) if pg else None
        c0, t0, m0 = time.process_time(), time.perf_counter(), busy_cpu_seconds()
        lat, errors, counters = await phase(duration, True)
        gen = time.process_time() - c0
        busy = busy_cpu_seconds() - m0
        s1 = cpu_seconds(pids) if pids else None
        g1 = cpu_seconds(pg) if pg else None
        elapsed = max(min(time.perf_counter() - t0, duration), 1e-9)
        # CPU figures are over the whole phase (which may run past the window): scale them
        scale = elapsed / max(time.perf_counter() - t0, 1e-9)
        return LoadResult(counters[0], counters[1], elapsed, lat, dict(errors), gen * scale,
                          None if s0 is None or s1 is None else (s1 - s0) * scale,
                          None if g0 is None or g1 is None else (g1 - g0) * scale, counters[2],
                          busy * scale)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def run_requests(port: int, requests: Sequence[Request], *, concurrency: int = 2,
                 timeout: float = 600) -> tuple[list[tuple[int, bytes]], float]:
    """Send a fixed list of requests over ``concurrency`` connections; (answers, seconds)."""
    import uvloop

    answers: list[tuple[int, bytes]] = [(0, b"")] * len(requests)

    async def worker(queue: asyncio.Queue[int]) -> None:
        conn = HttpConnection(port)
        try:
            while not queue.empty():
                i = queue.get_nowait()
                answers[i] = await asyncio.wait_for(conn.send(requests[i].data), timeout=timeout)
        finally:
            await conn.close()

    async def main() -> float:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(requests)):
            queue.put_nowait(i)
        t0 = time.perf_counter()
        await asyncio.gather(*[worker(queue) for _ in range(concurrency)])
        return time.perf_counter() - t0

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        seconds = runner.run(main())
    return answers, seconds


def check_answers(answers: Sequence[tuple[int, bytes]], requests: Sequence[Request],
                  what: str) -> None:
    bad = Counter(f"{s}:{outcome_code(b)}" for (s, b), r in zip(answers, requests, strict=True)
                  if s not in r.ok)
    if bad:
        raise RuntimeError(f"{what}: {sum(bad.values())} failed request(s): {dict(bad)}")


def created_ids(transaction_response: bytes) -> list[str]:
    """Ids from a transaction-response Bundle (entry.response.location Type/id/_history/v)."""
    doc = orjson.loads(transaction_response)
    return [e["response"]["location"].split("/")[1] for e in doc["entry"]]


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None
