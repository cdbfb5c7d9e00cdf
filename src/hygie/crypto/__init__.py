"""Hygie's cryptography: safe, named recipes.

This package is the only place in Hygie that imports cryptographic primitives
(``cryptography``, ``argon2``). Everything else calls the operations below:

- :class:`Keyring` — versioned key-encryption keys (KEK), loaded from a key file or an
  environment variable; wraps and unwraps data keys; rotation is first-class.
- :class:`DataKey` — one AES-256-GCM data key (DEK): ``seal`` / ``open`` with associated
  data. Any failure to open is one :class:`~hygie.errors.IntegrityFailure`.
- :class:`BlindIndexer` — keyed HMAC of normalised values for searching encrypted data.
- ``hash_secret`` / ``verify_secret`` (argon2id), ``new_token`` / ``token_digest``,
  ``constant_time_equal``.
- :class:`SigningKey` — Ed25519 signing (ledger checkpoints, backup manifests).
"""

from hygie.crypto.blind_index import BlindIndexer
from hygie.crypto.envelope import DataKey, new_key_material
from hygie.crypto.keyring import Keyring, KeySource
from hygie.crypto.secrets import (
    constant_time_equal,
    hash_secret,
    new_token,
    token_digest,
    verify_secret,
)
from hygie.crypto.signing import SigningKey, verify_ed25519
from hygie.crypto.totp import new_totp_secret, provisioning_uri, totp_at, verify_totp

__all__ = [
    "BlindIndexer",
    "DataKey",
    "KeySource",
    "Keyring",
    "SigningKey",
    "constant_time_equal",
    "hash_secret",
    "new_key_material",
    "new_token",
    "new_totp_secret",
    "provisioning_uri",
    "token_digest",
    "totp_at",
    "verify_ed25519",
    "verify_secret",
    "verify_totp",
]
