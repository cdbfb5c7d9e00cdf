"""Benchmark of the ledger's Merkle tree core (hygie.ledger.merkle) at 1,000,000 leaves.

Measures, on one core: the root of n random leaf hashes, building MerkleLevels, appending n
leaves to a CompactRange, and the time and size of inclusion and consistency proofs at size n
(mean over --proofs random proofs, each verified). Writes bench/results/merkle.json and prints
one ``merkle.<figure> <value>`` line per figure.

    .venv/bin/python bench/bench_merkle.py            # n = 1,000,000
    .venv/bin/python bench/bench_merkle.py --n 10000  # quicker
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hygie.ledger.merkle import (
    CompactRange,
    MerkleLevels,
    inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

RESULTS = Path(__file__).resolve().parent / "results" / "merkle.json"


def _label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def _best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise SystemExit(f"bench_merkle: {message}")


def run(n: int, proofs: int, seed: int, repeats: int) -> dict[str, Any]:
    if n < 2:
        raise SystemExit("--n must be at least 2")
    rng = random.Random(seed)
    blob = rng.randbytes(32 * n)
    hashes = [blob[i : i + 32] for i in range(0, 32 * n, 32)]
    del blob
    label = _label(n)
    log2n = (n - 1).bit_length()  # ceil(log2 n)
    figures: dict[str, Any] = {}

    root_s, root = _best_of(repeats, lambda: root_from_leaf_hashes(hashes))
    figures[f"root_{label}_s"] = round(root_s, 3)

    levels_s, levels = _best_of(1, lambda: MerkleLevels(hashes))
    _check(levels.root() == root, "MerkleLevels disagrees with root_from_leaf_hashes")
    figures[f"levels_build_{label}_s"] = round(levels_s, 3)
    figures["levels_memory_mb"] = round(2 * 32 * n / 1e6, 1)  # about 2n stored 32-byte nodes

    def append_all() -> CompactRange:
        state = CompactRange()
        for h in hashes:
            state.append(h)
        return state

    append_s, state = _best_of(1, append_all)
    _check(state.root() == root, "CompactRange disagrees with root_from_leaf_hashes")
    figures["compact_append_us"] = round(append_s / n * 1e6, 3)
    figures["compact_root_us"] = round(_best_of(repeats, state.root)[0] * 1e6, 1)

    # inclusion proofs at size n
    indexes = [rng.randrange(n) for _ in range(proofs)]
    start = time.perf_counter()
    inc = [levels.inclusion_proof(i, n) for i in indexes]
    inc_s = time.perf_counter() - start
    start = time.perf_counter()
    ok = all(verify_inclusion(hashes[i], i, n, p, root) for i, p in zip(indexes, inc, strict=True))
    _check(ok, "an inclusion proof did not verify")
    inc_verify_s = time.perf_counter() - start
    inc_sizes = [len(p) for p in inc]
    figures["inclusion_proof_ms"] = round(inc_s / proofs * 1e3, 4)
    figures["inclusion_verify_ms"] = round(inc_verify_s / proofs * 1e3, 4)
    figures["inclusion_hashes_mean"] = round(statistics.fmean(inc_sizes), 2)
    figures["inclusion_hashes_max"] = max(inc_sizes)
    figures["ceil_log2_n"] = log2n

    # consistency proofs from a random earlier size to size n
    firsts = [rng.randrange(1, n) for _ in range(proofs)]
    start = time.perf_counter()
    con = [levels.consistency_proof(m, n) for m in firsts]
    con_s = time.perf_counter() - start
    old_roots = [levels.root(m) for m in firsts]
    start = time.perf_counter()
    ok = all(
        verify_consistency(m, n, r, root, p) for m, r, p in zip(firsts, old_roots, con, strict=True)
    )
    _check(ok, "a consistency proof did not verify")
    con_verify_s = time.perf_counter() - start
    con_sizes = [len(p) for p in con]
    figures["consistency_proof_ms"] = round(con_s / proofs * 1e3, 4)
    figures["consistency_verify_ms"] = round(con_verify_s / proofs * 1e3, 4)
    figures["consistency_hashes_mean"] = round(statistics.fmean(con_sizes), 2)
    figures["consistency_hashes_max"] = max(con_sizes)

    # a root of a past size from the levels, and a proof without them (O(n)) for contrast
    sizes = [rng.randrange(1, n + 1) for _ in range(proofs)]
    start = time.perf_counter()
    for m in sizes:
        levels.root(m)
    figures["levels_past_root_ms"] = round((time.perf_counter() - start) / proofs * 1e3, 4)
    uncached_s, _ = _best_of(1, lambda: inclusion_proof(hashes, indexes[0], n))
    figures["inclusion_proof_uncached_ms"] = round(uncached_s * 1e3, 1)

    return {
        "benchmark": "merkle",
        "n": n,
        "proofs": proofs,
        "seed": seed,
        "repeats": repeats,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "figures": figures,
        "checks": {
            "inclusion_within_ceil_log2_n": max(inc_sizes) <= log2n,
            "consistency_within_ceil_log2_n": max(con_sizes) <= log2n,
            "consistency_within_ceil_log2_n_plus_1": max(con_sizes) <= log2n + 1,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="number of leaves")
    parser.add_argument("--proofs", type=int, default=1_000, help="random proofs per kind")
    parser.add_argument("--seed", type=int, default=6962)
    parser.add_argument("--repeats", type=int, default=3, help="best of N for root timings")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(args.n, args.proofs, args.seed, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, value in result["figures"].items():
        print(f"merkle.{name} {value}")
    for name, ok in result["checks"].items():
        print(f"merkle.check.{name} {'ok' if ok else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
