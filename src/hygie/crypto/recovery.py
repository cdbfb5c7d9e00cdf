"""Key shares: the keyring split with Shamir's secret sharing (SLIP-0039) for trusted people.

``hygie keys export-recovery`` splits the key-encryption keyring into *n* shares, any *k* of
which rebuild it (``hygie keys recover``); fewer than *k* reveal nothing about it.

The sharing itself is SLIP-0039 ("Shamir's Secret-Sharing for Mnemonic Codes", GF(256)) through
``shamir-mnemonic``, SatoshiLabs' reference implementation (checked against the official test
vectors in tests/test_key_recovery.py). One group, member threshold *k* of *n*, no passphrase.
Each share is a list of words from a fixed 1024-word list, with an RS1024 checksum (a mistyped
or damaged share is detected) and the set's random 15-bit identifier (shares of two different
sets are never mixed).

What is shared (the SLIP-0039 "master secret") describes the whole keyring, so that the words
alone — typed back from paper, or scanned from the QR code — rebuild ``kek.json`` exactly::

    0x01 | n (1 byte) | active version (2 bytes) | n x version (2 bytes) | n x 32-byte key

(big-endian; 4 + 34 n bytes, always an even length of at least 38 bytes as SLIP-0039 wants).

A share file (``share-N.txt``) is a printable page: a French and English notice, then a block
between ``-----BEGIN HYGIE KEY SHARE-----`` and ``-----END HYGIE KEY SHARE-----`` holding
non-secret facts in clear (instance, share number, threshold, set, date, active version and the
keys' public check values) and the numbered words. ``recover`` reads that block, or a file that
holds nothing but the words. The check values let it prove that the rebuilt keyring is the one
the shares were made from (they are the fingerprints already stored in the database and in
every backup manifest; they reveal nothing about the keys).

Fewer than *k* shares: Shamir's scheme over GF(256) leaves every possible secret equally likely
given *k - 1* shares. SLIP-0039 adds a 4-byte digest of the secret inside the sharing (to
detect wrong shares); someone holding *k - 1* shares could use it to test a *guessed* keyring,
with a false-positive rate of 1 in 2^32 — useless against random 256-bit keys.
"""

from __future__ import annotations

import io
import re
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shamir_mnemonic import MnemonicError, Share
from shamir_mnemonic.shamir import ShareGroup, generate_mnemonics, recover_ems
from shamir_mnemonic.wordlist import WORD_INDEX_MAP

from hygie.crypto.envelope import KEY_BYTES
from hygie.crypto.keyring import Keyring
from hygie.crypto.secrets import constant_time_equal
from hygie.errors import KeyFailure

SHARE_FORMAT = "hygie-key-share/1"
BEGIN = "-----BEGIN HYGIE KEY SHARE-----"
END = "-----END HYGIE KEY SHARE-----"
MAX_SHARES = 16  # SLIP-0039's limit per group
LAYOUT = 1
_META = re.compile(r"^([a-z][a-z0-9-]*):[ \t]*(.*)$")
_NUMBER = re.compile(r"^\d+[.):]?$")


# -- the shared secret ------------------------------------------------------------------------
def _encode(keyring: Keyring) -> bytes:
    versions = keyring.versions
    head = bytes([LAYOUT, len(versions)]) + keyring.active_version.to_bytes(2, "big")
    head += b"".join(v.to_bytes(2, "big") for v in versions)
    return head + b"".join(keyring._key(v) for v in versions)


def _decode(secret: bytes) -> Keyring:
    bad = KeyFailure("the shares rebuild something that is not a Hygie keyring")
    if len(secret) < 4 or secret[0] != LAYOUT or secret[1] == 0:
        raise bad
    n = secret[1]
    if len(secret) != 4 + n * (2 + KEY_BYTES):
        raise bad
    active = int.from_bytes(secret[2:4], "big")
    versions = [int.from_bytes(secret[4 + 2 * i: 6 + 2 * i], "big") for i in range(n)]
    start = 4 + 2 * n
    keys = {v: secret[start + i * KEY_BYTES: start + (i + 1) * KEY_BYTES]
            for i, v in enumerate(versions)}
    if len(keys) != n or active not in keys:
        raise bad
    return Keyring(keys, active)


# -- split ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShareSet:
    """``count`` shares of a keyring, any ``threshold`` of which rebuild it. ``repr`` hides them."""

    instance_id: str
    threshold: int
    count: int
    set_id: str
    created_at: str
    active: int
    check_values: dict[int, str]
    mnemonics: list[str] = field(repr=False)


def split_keyring(keyring: Keyring, *, threshold: int, shares: int, instance_id: str
                  ) -> ShareSet:
    """Split ``keyring`` into ``shares`` SLIP-0039 shares with threshold ``threshold``."""
    if not 2 <= shares <= MAX_SHARES:
        raise KeyFailure(f"--shares must be between 2 and {MAX_SHARES}")
    if not 2 <= threshold <= shares:
        raise KeyFailure("--threshold must be at least 2 and at most --shares "
                         "(with 1, every share would be the whole key)")
    mnemonics = generate_mnemonics(1, [(threshold, shares)], _encode(keyring))[0]
    first = Share.from_mnemonic(mnemonics[0])
    return ShareSet(
        instance_id=instance_id, threshold=threshold, count=shares,
        set_id=f"{first.identifier:04x}",
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        active=keyring.active_version,
        check_values={v: keyring.check_value(v) for v in keyring.versions},
        mnemonics=list(mnemonics))


def _word_grid(words: list[str], columns: int = 4) -> list[str]:
    cells = [f"{i:>2}. {w:<10}" for i, w in enumerate(words, 1)]
    return ["  ".join(cells[r: r + columns]).rstrip() for r in range(0, len(cells), columns)]


def _para(text: str) -> list[str]:
    return textwrap.wrap(text, 92)


def render_share_text(share_set: ShareSet, number: int) -> str:
    """The printable page of share ``number`` (1-based): notice, facts in clear, the words."""
    s = share_set
    words = s.mnemonics[number - 1].split()
    k, n = s.threshold, s.count
    lines = [
        "HYGIE — PART DE SECOURS DE LA CLÉ DE CHIFFREMENT",
        "HYGIE — KEY RECOVERY SHARE",
        "=" * 48,
        "",
        f"Part n° {number} sur {n} — il faut {k} parts pour reconstituer la clé.",
        f"Share {number} of {n} — any {k} shares rebuild the key.",
        "",
        f"Instance : {s.instance_id}",
        f"Jeu de parts / share set : {s.set_id}",
        f"Créée le / created on : {s.created_at}",
        "Détenteur / holder : ____________________________________",
        "",
        *_para("FR — Ce document est une part de la clé qui déchiffre les données de santé de "
               "l'instance Hygie ci-dessus. Seule, ou avec moins de "
               f"{k} parts, elle ne révèle rien de la clé ; {k} parts du même jeu la "
               "reconstituent. Gardez-la sous enveloppe scellée, dans un coffre ou un lieu sûr, "
               "à l'écart des sauvegardes et des autres parts. Ne la photographiez pas, ne "
               "l'envoyez ni par courriel ni par messagerie. Ne la remettez qu'en main propre à "
               "la personne chargée de la restauration, le jour où la clé doit être "
               "reconstituée, puis rangez-la à nouveau sous enveloppe scellée."),
        "",
        *_para("EN — This page is one share of the key that decrypts the health data of the "
               f"Hygie instance above. On its own, or with fewer than {k} shares, it reveals "
               f"nothing about the key; {k} shares of the same set rebuild it. Keep it in a "
               "sealed envelope, in a safe or another secure place, away from the backups and "
               "from the other shares. Do not photograph it, e-mail it or send it by message. "
               "Hand it over only in person to whoever restores the instance, on the day the key "
               "must be rebuilt, then seal it again."),
        "",
        "Reconstituer la clé / to rebuild the key:",
        f"  hygie keys recover share-A.txt share-B.txt ... ({k} parts) --out kek.json",
        "  hygie restore BACKUP --data-dir NEWDIR --key-file kek.json",
        *_para(f"Les {len(words)} mots recopiés à la main dans l'ordre, ou lus dans le QR code, "
               "dans un simple fichier texte, suffisent. / The "
               f"{len(words)} words copied by hand in order, or read from the QR code, in a "
               "plain text file, are enough."),
        "",
        BEGIN,
        f"format: {SHARE_FORMAT}",
        f"instance: {s.instance_id}",
        f"share: {number}",
        f"shares: {n}",
        f"threshold: {k}",
        f"set: {s.set_id}",
        f"created: {s.created_at}",
        f"active: {s.active}",
        *(f"check-{v}: {cv}" for v, cv in sorted(s.check_values.items())),
        "",
        *_word_grid(words),
        END,
        "",
    ]
    return "\n".join(lines)


def render_share_qr(share_set: ShareSet, number: int) -> bytes:
    """A PNG QR code of share ``number``'s words (upper case: the compact alphanumeric mode)."""
    import segno

    qr = segno.make(share_set.mnemonics[number - 1].upper(), error="q", micro=False)
    buf = io.BytesIO()
    qr.save(buf, kind="png", scale=5, border=4)
    return buf.getvalue()


# -- read -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShareFile:
    """One share as read from a file: its words and the facts written beside them."""

    name: str
    share: Share = field(repr=False)
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def number(self) -> int:
        return self.share.index + 1

    @property
    def set_id(self) -> str:
        return f"{self.share.identifier:04x}"


def parse_share(text: str, name: str) -> ShareFile:
    """Read a share file written by ``export-recovery``, or a file holding only the words."""
    lines = text.splitlines()
    stripped = [ln.strip() for ln in lines]
    meta: dict[str, str] = {}
    if BEGIN in stripped:
        start = stripped.index(BEGIN) + 1
        if END not in stripped[start:]:
            raise KeyFailure(f"share file {name} is damaged: its block has no end line")
        body = stripped[start: stripped.index(END, start)]
    else:
        body = stripped
    tokens: list[str] = []
    for ln in body:
        m = _META.match(ln)
        if m and m.group(1) not in WORD_INDEX_MAP:
            meta[m.group(1)] = m.group(2).strip()
            continue
        tokens += [t.lower() for t in ln.split() if not _NUMBER.match(t)]
    if "format" in meta and meta["format"] != SHARE_FORMAT:
        raise KeyFailure(f"share file {name} has an unknown format")
    if not tokens:
        raise KeyFailure(f"share file {name} holds no share words")
    for i, token in enumerate(tokens, 1):
        if token not in WORD_INDEX_MAP:  # the word itself is never echoed: it is secret
            raise KeyFailure(f"share file {name}: word {i} is not a share word "
                             "(check its spelling)")
    try:
        share = Share.from_mnemonic(" ".join(tokens))
    except MnemonicError:
        raise KeyFailure(f"share file {name} is damaged or mistyped: its words fail their "
                         "checksum (check each word and the number of words)") from None
    if share.group_count != 1 or share.group_threshold != 1:
        raise KeyFailure(f"share file {name} is not a Hygie key share (several groups)")
    return ShareFile(name, share, meta)


@dataclass(frozen=True)
class Recovered:
    keyring: Keyring
    instance_id: str | None
    set_id: str
    threshold: int
    used: list[int]
    checked_values: int


def recover_keyring(files: list[ShareFile]) -> Recovered:
    """Rebuild the keyring from ``threshold`` or more shares of one set; fail clearly else."""
    if not files:
        raise KeyFailure("no share file given")
    sets = sorted({f.set_id for f in files})
    if len(sets) > 1 or len({f.share.common_parameters() for f in files}) > 1:
        raise KeyFailure(f"the shares come from different share sets ({', '.join(sets)}): use "
                         "shares made together by one 'hygie keys export-recovery'")
    thresholds = {f.share.member_threshold for f in files}
    if len(thresholds) > 1:
        raise KeyFailure("the shares disagree on their threshold: one of them is not genuine")
    threshold = thresholds.pop()
    instances = {f.meta["instance"] for f in files if f.meta.get("instance")}
    if len(instances) > 1:
        raise KeyFailure("the share files name different instances")
    by_index: dict[int, ShareFile] = {}
    for f in files:
        seen = by_index.get(f.share.index)
        if seen is not None and not constant_time_equal(seen.share.value, f.share.value):
            raise KeyFailure(f"{seen.name} and {f.name} are two different shares numbered "
                             f"{f.number}: one of them is not genuine")
        by_index.setdefault(f.share.index, f)
    distinct = [by_index[i] for i in sorted(by_index)]
    if len(distinct) < threshold:
        raise KeyFailure(f"need {threshold} shares, got {len(distinct)}"
                         + (" different ones" if len(files) != len(distinct) else "")
                         + f" (set {sets[0]}); fewer than {threshold} reveal nothing about "
                         "the key")
    # Recover from the first `threshold` shares, then from windows that bring in each further
    # share: every share given must agree with the same key (a forged extra share is named).
    windows = [distinct[:threshold]]
    for extra in range(threshold, len(distinct)):
        windows.append([*distinct[: threshold - 1], distinct[extra]])
    ems = None
    for window in windows:
        group = ShareGroup()
        for f in window:
            group.add(f.share)
        try:
            got = recover_ems({0: group})
        except MnemonicError:
            raise KeyFailure("the shares do not rebuild the key: one of them is wrong or "
                             "forged") from None
        if ems is not None and not constant_time_equal(got.ciphertext, ems.ciphertext):
            raise KeyFailure("the shares do not all rebuild the same key: one of them is wrong "
                             "or forged")
        ems = ems or got
    assert ems is not None
    keyring = _decode(ems.decrypt(b""))
    checked = 0
    for f in files:
        for key, value in f.meta.items():
            if not key.startswith("check-"):
                continue
            try:
                version = int(key.removeprefix("check-"))
            except ValueError:
                continue
            if not keyring.has_version(version) or not constant_time_equal(
                    keyring.check_value(version), value):
                raise KeyFailure(f"the rebuilt keyring does not match the check value of key "
                                 f"version {version} written in {f.name}")
            checked += 1
    active = {f.meta["active"] for f in files if f.meta.get("active")}
    if active and active != {str(keyring.active_version)}:
        raise KeyFailure("the rebuilt keyring's active version differs from the share files'")
    return Recovered(keyring, instances.pop() if instances else None, sets[0], threshold,
                     [f.number for f in distinct], checked)
