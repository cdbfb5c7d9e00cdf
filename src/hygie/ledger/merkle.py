"""Merkle tree core of the tamper-evident audit ledger (RFC 9162, compatible with RFC 6962).

Pure functions over bytes: no I/O, no state outside the objects you hold. Hashing is the one of
RFC 9162 §2.1.1 with SHA-256:

* leaf hash ``HASH(0x00 || leaf)``, node hash ``HASH(0x01 || left || right)``;
* the Merkle Tree Hash (MTH) of ``n > 1`` leaves splits at ``k``, the largest power of two
  smaller than ``n``: ``MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))``;
* the MTH of the empty tree is ``SHA-256("")``.

Everything below works on *leaf hashes* (32-byte values), never on raw entries: hash an entry
with :func:`leaf_hash` once, keep the hash.

Building blocks:

* :func:`root_from_leaf_hashes` — MTH of a list of leaf hashes, level by level (O(n) hashes).
* :func:`inclusion_proof` / :func:`verify_inclusion` — RFC 9162 §2.1.3.1 PATH and §2.1.3.2.
* :func:`consistency_proof` / :func:`verify_consistency` — §2.1.4.1 PROOF/SUBPROOF and §2.1.4.2.
* :class:`CompactRange` — the current tree head in O(log n) memory (the frontier of perfect
  subtree roots, the stack of §2.1.2), updated in amortised O(1) per appended leaf.
* :class:`MerkleLevels` — every perfect-subtree node hash, level by level, so that roots of past
  sizes and proofs cost O(log n) hashes instead of O(n).

Proof *generation* raises :class:`ValueError` on impossible arguments (index outside the tree,
``first > second``, a size larger than the leaves held). Proof *verification* never raises on
untrusted input of the right types: anything malformed (wrong proof length, index >= size,
hashes that are not 32 bytes, ...) simply fails verification (returns ``False``).

A size-0 consistency proof follows the policy of the C2SP CCTV test vectors: from size 0 only
the empty proof is accepted, and only if the first root is ``SHA-256("")`` (any tree extends
the empty tree). RFC 9162 defines consistency proofs for ``0 < first < second`` only; for
``first == second`` the proof is empty and both roots must be equal (RFC 6962 §2.1.2).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "MerkleLevels",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "leaf_hashes",
    "leaf_hashes_of_inputs",
    "node_hash",
    "root_from_leaf_hashes",
    "subtree_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Size in bytes of every hash handled here (SHA-256)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH of the empty tree: SHA-256 of the empty string (RFC 9162 §2.1.1)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256

# A function returning MTH(D[lo:hi]) for the tree being proved.
_RangeRoot = Callable[[int, int], bytes]


# --------------------------------------------------------------------------------------------
# Hashing (RFC 9162 §2.1.1)
# --------------------------------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """Return the leaf hash ``SHA-256(0x00 || data)`` of one entry (RFC 9162 §2.1.1)."""
    return _sha256(_LEAF_PREFIX + bytes(data)).digest()


def leaf_hashes(entries: Iterable[bytes]) -> list[bytes]:
    """:func:`leaf_hash` of each entry, in one pass (for bulk recomputation)."""
    sha = _sha256
    return [sha(_LEAF_PREFIX + d).digest() for d in entries]


def leaf_hashes_of_inputs(inputs: Iterable[bytes]) -> list[bytes]:
    """SHA-256 of each input, which is already ``0x00 || entry`` (the bytes a leaf hash is
    taken of, e.g. as built by a database): :func:`leaf_hashes` without the prefixing."""
    sha = _sha256
    return [sha(d).digest() for d in inputs]


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the interior node hash ``SHA-256(0x01 || left || right)`` (RFC 9162 §2.1.1).

    Both children must be 32-byte hashes; anything else raises :class:`ValueError` (a
    variable-length child would make the concatenation ambiguous).
    """
    _check_hash(left, "left")
    _check_hash(right, "right")
    return _sha256(_NODE_PREFIX + left + right).digest()


def _hash_children(left: bytes, right: bytes) -> bytes:
    """:func:`node_hash` without the checks, for inputs already known to be 32 bytes."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes | bytearray) and len(value) == HASH_SIZE


def _check_hash(value: object, what: str) -> None:
    if not _is_hash(value):
        raise ValueError(f"{what} must be a {HASH_SIZE}-byte hash")


def _check_leaf_hashes(hashes: Sequence[bytes]) -> None:
    lengths = set(map(len, hashes))
    if lengths and lengths != {HASH_SIZE}:
        raise ValueError(f"every leaf hash must be {HASH_SIZE} bytes long")


def _largest_power_of_two_below(n: int) -> int:
    """The split point ``k`` of RFC 9162 §2.1.1: the largest power of two smaller than n >= 2."""
    return 1 << ((n - 1).bit_length() - 1)


def _pair_level(level: Iterable[bytes]) -> list[bytes]:
    """Hash adjacent pairs of one level; a trailing unpaired node is dropped."""
    it = iter(level)
    sha = _sha256
    return [sha(_NODE_PREFIX + left + right).digest() for left, right in zip(it, it, strict=False)]


def _root_unchecked(hashes: Sequence[bytes]) -> bytes:
    """MTH of already-validated leaf hashes, computed level by level.

    Pairing adjacent nodes and promoting a trailing odd node unchanged to the next level
    builds exactly the left-balanced tree of RFC 9162 §2.1.1 (every left subtree is perfect).
    """
    n = len(hashes)
    if n == 0:
        return EMPTY_ROOT
    level: Sequence[bytes] = hashes
    while n > 1:
        nxt = _pair_level(level)
        if n & 1:
            nxt.append(level[-1])
        level = nxt
        n = len(nxt)
    return bytes(level[0])


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle Tree Hash of the given leaf hashes (RFC 9162 §2.1.1).

    Iterative, level by level: ``n - 1`` node hashes, O(n) time and memory, no recursion.
    The empty sequence gives :data:`EMPTY_ROOT`; one leaf hash is its own root.

    Raises :class:`ValueError` if a leaf hash is not 32 bytes long.
    """
    _check_leaf_hashes(hashes)
    return _root_unchecked(hashes)


def subtree_root(hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """Return ``MTH(D[start:end])``, the Merkle Tree Hash of a slice of the leaves.

    O(end - start) hashes; :meth:`MerkleLevels.subtree_root` answers the same question in
    O(log n) for the subtrees that appear in proofs. ``start == end`` gives :data:`EMPTY_ROOT`.
    """
    if not 0 <= start <= end <= len(hashes):
        raise ValueError(
            f"subtree range [{start}, {end}) is not within the {len(hashes)} leaves held"
        )
    part = hashes[start:end]
    _check_leaf_hashes(part)
    return _root_unchecked(part)


# --------------------------------------------------------------------------------------------
# Proof generation (RFC 9162 §2.1.3.1 and §2.1.4.1), over any MTH(D[lo:hi]) oracle
# --------------------------------------------------------------------------------------------


def _inclusion_path(range_root: _RangeRoot, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, iteratively (siblings from leaf to root).

    ``PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])`` if ``m < k``, else
    ``PATH(m - k, D[k:n]) : MTH(D[0:k])``; the recursion is unrolled top-down, collecting
    the siblings root-first, then reversed.
    """
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _largest_power_of_two_below(hi - lo)
        if index < mid:
            path.append(range_root(mid, hi))
            hi = mid
        else:
            path.append(range_root(lo, mid))
            lo = mid
    path.reverse()
    return path


def _consistency_path(range_root: _RangeRoot, first: int, second: int) -> list[bytes]:
    """PROOF(first, D[0:second]) = SUBPROOF(first, D[0:second], true), for 0 < first < second.

    RFC 9162 §2.1.4.1: ``SUBPROOF(m, D[m], true) = {}``, ``SUBPROOF(m, D[m], false) =
    {MTH(D[m])}``; for ``m < n``, with ``k`` the split point: if ``m <= k``,
    ``SUBPROOF(m, D[0:k], b) : MTH(D[k:n])``, else ``SUBPROOF(m - k, D[k:n], false) :
    MTH(D[0:k])``. Unrolled top-down and reversed, like :func:`_inclusion_path`.
    """
    proof: list[bytes] = []
    lo, hi, m, whole = 0, second, first, True
    while m != hi - lo:
        mid = lo + _largest_power_of_two_below(hi - lo)
        if m <= mid - lo:
            proof.append(range_root(mid, hi))
            hi = mid
        else:
            proof.append(range_root(lo, mid))
            m -= mid - lo
            lo = mid
            whole = False
    if not whole:
        proof.append(range_root(lo, hi))
    proof.reverse()
    return proof


def _check_inclusion_args(index: int, tree_size: int, available: int) -> None:
    if not 0 < tree_size <= available:
        raise ValueError(
            f"tree_size must be between 1 and the {available} leaves held, got {tree_size}"
        )
    if not 0 <= index < tree_size:
        raise ValueError(f"leaf index {index} is outside a tree of size {tree_size}")


def _check_consistency_args(first: int, second: int, available: int) -> None:
    if first < 0:
        raise ValueError(f"first tree size must not be negative, got {first}")
    if first > second:
        raise ValueError(f"first tree size {first} is larger than second tree size {second}")
    if second > available:
        raise ValueError(f"second tree size {second} is larger than the {available} leaves held")


def inclusion_proof(hashes: Sequence[bytes], index: int, tree_size: int) -> list[bytes]:
    """Return the inclusion proof (audit path) of leaf ``index`` in the tree of the first
    ``tree_size`` leaf hashes: ``PATH(index, D[0:tree_size])`` of RFC 9162 §2.1.3.1.

    The proof lists sibling hashes from the leaf up to the root. It costs O(tree_size)
    hashes (use :class:`MerkleLevels` for O(log n)).

    Raises :class:`ValueError` unless ``0 <= index < tree_size <= len(hashes)``.
    """
    _check_inclusion_args(index, tree_size, len(hashes))
    leaves = hashes[:tree_size]
    _check_leaf_hashes(leaves)
    return _inclusion_path(lambda lo, hi: _root_unchecked(leaves[lo:hi]), index, tree_size)


def consistency_proof(hashes: Sequence[bytes], first: int, second: int) -> list[bytes]:
    """Return the consistency proof between the trees of the first ``first`` and the first
    ``second`` leaf hashes: ``PROOF(first, D[0:second])`` of RFC 9162 §2.1.4.1.

    The proof is empty when ``first == 0`` or ``first == second``. It costs O(second)
    hashes (use :class:`MerkleLevels` for O(log n)).

    Raises :class:`ValueError` unless ``0 <= first <= second <= len(hashes)``.
    """
    _check_consistency_args(first, second, len(hashes))
    if first == 0 or first == second:
        return []
    leaves = hashes[:second]
    _check_leaf_hashes(leaves)
    return _consistency_path(lambda lo, hi: _root_unchecked(leaves[lo:hi]), first, second)


# --------------------------------------------------------------------------------------------
# Verification (RFC 9162 §2.1.3.2 and §2.1.4.2)
# --------------------------------------------------------------------------------------------


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of size ``tree_size`` whose
    Merkle Tree Hash is ``root``, given the inclusion proof ``proof`` (RFC 9162 §2.1.3.2).

    Returns ``False`` (never raises) for a wrong proof of any kind: an element changed, a proof
    too short or too long, ``index >= tree_size``, ``tree_size == 0``, a hash that is not
    32 bytes. Note that, as in the RFC, the tree size is bound only through the shape of the
    path: the caller must take ``(tree_size, root)`` from the same signed tree head.
    """
    proof = list(proof)  # read once, even if given an iterator
    if not (_is_hash(leaf_hash) and _is_hash(root)) or not all(map(_is_hash, proof)):
        return False
    if index < 0 or tree_size <= 0 or index >= tree_size:
        return False
    fn, sn = index, tree_size - 1
    r = bytes(leaf_hash)
    for p in proof:
        if sn == 0:  # proof longer than the path
            return False
        if fn & 1 or fn == sn:
            r = _hash_children(p, r)
            while not fn & 1 and fn != 0:  # skip levels where this node has no sibling
                fn >>= 1
                sn >>= 1
        else:
            r = _hash_children(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, root)


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check that the tree of size ``second`` with root ``second_root`` extends the tree of
    size ``first`` with root ``first_root``, given the consistency proof ``proof``
    (RFC 9162 §2.1.4.2).

    Edge cases: ``first == second`` needs an empty proof and equal roots; ``first == 0``
    needs an empty proof and ``first_root == SHA-256("")`` (policy of the CCTV vectors).
    Returns ``False`` (never raises) for a wrong proof of any kind: an element changed, a
    proof too short or too long, ``first > second``, negative sizes, a hash that is not
    32 bytes.
    """
    proof = list(proof)  # read once, even if given an iterator
    if not (_is_hash(first_root) and _is_hash(second_root)) or not all(map(_is_hash, proof)):
        return False
    if first < 0 or first > second:
        return False
    if first == second:
        ok = hmac.compare_digest(first_root, second_root)
        return ok and not proof and (first != 0 or hmac.compare_digest(first_root, EMPTY_ROOT))
    if first == 0:
        return not proof and hmac.compare_digest(first_root, EMPTY_ROOT)
    if not proof:  # step 1
        return False
    path = proof
    if first & (first - 1) == 0:  # step 2: first is an exact power of two
        path.insert(0, bytes(first_root))
    fn, sn = first - 1, second - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = bytes(path[0])  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _hash_children(c, fr)
            sr = _hash_children(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = _hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    # step 7
    return sn == 0 and hmac.compare_digest(fr, first_root) and hmac.compare_digest(sr, second_root)


# --------------------------------------------------------------------------------------------
# Incremental tree head: the frontier of perfect subtrees (RFC 9162 §2.1.2)
# --------------------------------------------------------------------------------------------


class CompactRange:
    """The current tree head of an append-only log, in O(log n) memory.

    Holds the roots of the perfect subtrees that make up the tree ``D[0:size]`` — one per set
    bit of ``size``, largest (leftmost) first. This is the stack of RFC 9162 §2.1.2 ("Verifying
    a Tree Head Given Entries"): :meth:`append` merges equal-sized subtrees (amortised O(1)
    hashes, at most ``log2 n``), :meth:`root` folds the frontier right to left
    (``popcount(size) - 1`` hashes). Persist ``(size, frontier)`` to resume without rehashing.
    """

    __slots__ = ("_frontier", "_size")

    def __init__(self, size: int = 0, frontier: Sequence[bytes] = ()) -> None:
        """Resume from a saved state; the default is the empty tree.

        ``frontier`` must hold exactly ``popcount(size)`` 32-byte hashes, largest subtree first.
        """
        if size < 0:
            raise ValueError(f"size must not be negative, got {size}")
        if len(frontier) != size.bit_count():
            raise ValueError(
                f"a tree of size {size} has {size.bit_count()} frontier hashes, got {len(frontier)}"
            )
        for h in frontier:
            _check_hash(h, "frontier hash")
        self._size = size
        self._frontier = [bytes(h) for h in frontier]

    @classmethod
    def from_leaf_hashes(cls, hashes: Sequence[bytes]) -> CompactRange:
        """Build the state of the tree of ``hashes`` (O(n) hashes, level by level)."""
        _check_leaf_hashes(hashes)
        frontier: list[bytes] = []
        start, n = 0, len(hashes)
        for bit in reversed(range(n.bit_length())):
            width = 1 << bit
            if n & width:
                frontier.append(_root_unchecked(hashes[start : start + width]))
                start += width
        return cls(n, frontier)

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def frontier(self) -> tuple[bytes, ...]:
        """Roots of the perfect subtrees covering ``D[0:size]``, largest (leftmost) first."""
        return tuple(self._frontier)

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._frontier == other._frontier

    __hash__ = None  # type: ignore[assignment]  # mutable

    def copy(self) -> CompactRange:
        """An independent copy of this state."""
        return CompactRange(self._size, self._frontier)

    def append(self, leaf_hash: bytes) -> int:
        """Append one leaf hash; return its index. Amortised O(1), at most log2(n) hashes."""
        _check_hash(leaf_hash, "leaf hash")
        index = self._size
        h = bytes(leaf_hash)
        frontier = self._frontier
        bits = index
        while bits & 1:  # merge the subtrees that the new leaf completes
            h = _hash_children(frontier.pop(), h)
            bits >>= 1
        frontier.append(h)
        self._size = index + 1
        return index

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append several leaf hashes, in order."""
        for h in leaf_hashes:
            self.append(h)

    def root(self) -> bytes:
        """The Merkle Tree Hash of ``D[0:size]`` (:data:`EMPTY_ROOT` when empty)."""
        if not self._frontier:
            return EMPTY_ROOT
        frontier = self._frontier
        r = frontier[-1]
        for h in reversed(frontier[:-1]):
            r = _hash_children(h, r)
        return r


# --------------------------------------------------------------------------------------------
# Every perfect subtree, level by level: O(log n) roots and proofs
# --------------------------------------------------------------------------------------------


class MerkleLevels:
    """All node hashes of the perfect subtrees of a tree, stored level by level.

    Level ``h`` holds, for every ``i`` with ``(i + 1) * 2**h <= size``, the root of the perfect
    subtree over leaves ``[i * 2**h, (i + 1) * 2**h)``; level 0 is the leaf hashes. Each level
    is one contiguous ``bytearray`` (32 bytes per node, about ``64 * n`` bytes in all).

    Every subtree that appears in a root, an inclusion proof or a consistency proof of any
    size ``<= n`` is made of at most ``log2 n`` of these perfect subtrees, so :meth:`root`,
    :meth:`inclusion_proof` and :meth:`consistency_proof` cost O(log n) hash operations.
    Building costs ``n - 1`` hashes; :meth:`append` keeps the levels up to date in amortised
    O(1). Not thread-safe: guard appends and reads with one lock if they run concurrently.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        """Build every level from the leaf hashes (``n - 1`` hashes)."""
        _check_leaf_hashes(leaf_hashes)
        current: Sequence[bytes] = leaf_hashes
        self._levels: list[bytearray] = [bytearray(b"".join(current))]
        while len(current) >= 2:
            current = _pair_level(current)
            self._levels.append(bytearray(b"".join(current)))

    @property
    def size(self) -> int:
        """Number of leaves held."""
        return len(self._levels[0]) // HASH_SIZE

    def __len__(self) -> int:
        return self.size

    @property
    def height(self) -> int:
        """Number of levels stored (``floor(log2 n) + 1``, 1 for the empty tree)."""
        return len(self._levels)

    def node(self, level: int, index: int) -> bytes:
        """Root of the perfect subtree over leaves ``[index * 2**level, (index + 1) * 2**level)``.

        Raises :class:`ValueError` if that subtree is not complete in the current tree.
        """
        if not 0 <= level < len(self._levels):
            raise ValueError(f"level {level} is not held (height {len(self._levels)})")
        buf = self._levels[level]
        if not 0 <= index < len(buf) // HASH_SIZE:
            raise ValueError(f"node {index} of level {level} is not a complete subtree")
        return bytes(buf[index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def leaf_hash(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        return self.node(0, index)

    def append(self, leaf_hash: bytes) -> int:
        """Append one leaf hash and the perfect subtrees it completes; return its index."""
        _check_hash(leaf_hash, "leaf hash")
        levels = self._levels
        h = bytes(leaf_hash)
        levels[0] += h
        index = len(levels[0]) // HASH_SIZE - 1
        first = index
        level = 0
        while index & 1:  # h completes a pair: its parent is a new perfect subtree
            off = (index - 1) * HASH_SIZE
            h = _hash_children(bytes(levels[level][off : off + HASH_SIZE]), h)
            level += 1
            if level == len(levels):
                levels.append(bytearray())
            levels[level] += h
            index >>= 1
        return first

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append several leaf hashes, in order."""
        for h in leaf_hashes:
            self.append(h)

    def _range_root(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) from the stored perfect subtrees.

        O(log n) when ``[lo, hi)`` is a node of some tree ``D[0:m]`` (the only ranges proofs
        and roots need: ``lo`` is then a multiple of the first split); an arbitrary unaligned
        range is still correct but may cost up to O(hi - lo).
        """
        n = hi - lo
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and lo & (n - 1) == 0:  # an aligned perfect subtree: stored
            level = n.bit_length() - 1
            off = (lo >> level) * HASH_SIZE
            return bytes(self._levels[level][off : off + HASH_SIZE])
        k = _largest_power_of_two_below(n)
        return _hash_children(self._range_root(lo, lo + k), self._range_root(lo + k, hi))

    def subtree_root(self, start: int, end: int) -> bytes:
        """``MTH(D[start:end])`` (see :meth:`_range_root` for the cost)."""
        if not 0 <= start <= end <= self.size:
            raise ValueError(
                f"subtree range [{start}, {end}) is not within the {self.size} leaves held"
            )
        return self._range_root(start, end)

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all); at most ``log2 n`` hashes."""
        n = self.size if size is None else size
        if not 0 <= n <= self.size:
            raise ValueError(f"tree size {n} is outside 0..{self.size}")
        return self._range_root(0, n)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.3.1 inclusion proof of leaf ``index`` in the tree of the first
        ``size`` leaves (default: all), in O(log n) hashes.

        Raises :class:`ValueError` unless ``0 <= index < size <= n``.
        """
        n = self.size if size is None else size
        _check_inclusion_args(index, n, self.size)
        return _inclusion_path(self._range_root, index, n)

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.4.1 consistency proof from size ``first`` to size ``second``
        (default: all leaves), in O(log n) hashes. Empty when ``first`` is 0 or ``second``.

        Raises :class:`ValueError` unless ``0 <= first <= second <= n``.
        """
        m = self.size if second is None else second
        _check_consistency_args(first, m, self.size)
        if first == 0 or first == m:
            return []
        return _consistency_path(self._range_root, first, m)

    def compact_range(self, size: int | None = None) -> CompactRange:
        """The :class:`CompactRange` of the first ``size`` leaves (default: all)."""
        n = self.size if size is None else size
        if not 0 <= n <= self.size:
            raise ValueError(f"tree size {n} is outside 0..{self.size}")
        frontier: list[bytes] = []
        start = 0
        for bit in reversed(range(n.bit_length())):
            if n >> bit & 1:
                frontier.append(self._range_root(start, start + (1 << bit)))
                start += 1 << bit
        return CompactRange(n, frontier)
