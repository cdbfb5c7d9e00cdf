"""Instance settings, read from the data directory's ``hygie.toml`` and the environment.

Build the application from a :class:`Settings` (``create_app(settings)``), never at import time,
so tests can run as many instances as they need.

Environment overrides (documented in docs/operations.md):
``HYGIE_DATA_DIR``, ``HYGIE_DATABASE_URL``, ``HYGIE_KEY_SOURCE``, ``HYGIE_BACKUP_TARGET``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from hygie.crypto import KeySource
from hygie.errors import ConfigError, DataDirError

CONFIG_NAME = "hygie.toml"
KEY_FILE_NAME = "kek.json"
DB_FILE_NAME = "hygie.db"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    key_source: KeySource
    instance_id: str
    tenant: str = "default"
    max_body_bytes: int = 10 * 1024 * 1024
    token_ttl_seconds: int = 3600
    page_size_default: int = 50
    page_size_max: int = 1000
    sqlite_synchronous: str = "NORMAL"
    # [auth]: people's sign-in (docs/operations.md)
    session_idle_seconds: int = 900
    session_absolute_seconds: int = 43200
    access_token_seconds: int = 900
    lockout_threshold: int = 5
    lockout_address_threshold: int = 20
    lockout_seconds: int = 900
    login_delay_ms: int = 250
    activation_days: int = 7
    cookie_secure: str = "auto"
    # [access]: break-glass grants last this long (docs/security-model.md)
    break_glass_seconds: int = 14400
    # [ledger]: a new signed checkpoint at least this often (0: only on demand)
    ledger_checkpoint_seconds: int = 10
    # [backup]: where backups go; the start-up integrity check names the latest one found there
    backup_target: Path | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.data_dir / CONFIG_NAME


def resolve_data_dir(data_dir: Path | str | None) -> Path:
    if data_dir is None or str(data_dir) == "":
        env = os.environ.get("HYGIE_DATA_DIR")
        if not env:
            raise DataDirError("no data directory: pass --data-dir DIR or set HYGIE_DATA_DIR")
        data_dir = env
    return Path(data_dir).expanduser().resolve()


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / DB_FILE_NAME}"


def load_settings(data_dir: Path | str | None) -> Settings:
    """Settings of an initialised data directory (``hygie init``)."""
    path = resolve_data_dir(data_dir)
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise DataDirError(f"{path} is not a Hygie data directory (no {CONFIG_NAME}); "
                           "create one with 'hygie init --data-dir DIR'")
    try:
        doc = tomllib.loads(config_file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {config_file}: {exc}") from None
    try:
        hygie = doc["hygie"]
        database_url = os.environ.get("HYGIE_DATABASE_URL") or hygie["database_url"]
        key_source = KeySource.parse(os.environ.get("HYGIE_KEY_SOURCE") or hygie["key_source"])
        limits = doc.get("limits", {})
        auth = doc.get("auth", {})
        cookie_secure = str(auth.get("cookie_secure", "auto"))
        if cookie_secure not in ("auto", "always"):
            raise ValueError("auth.cookie_secure must be 'auto' or 'always'")
        return Settings(
            data_dir=path,
            database_url=database_url,
            key_source=key_source,
            instance_id=hygie["instance_id"],
            tenant=hygie.get("tenant", "default"),
            max_body_bytes=int(limits.get("max_body_bytes", 10 * 1024 * 1024)),
            token_ttl_seconds=int(limits.get("token_ttl_seconds", 3600)),
            page_size_default=int(limits.get("page_size_default", 50)),
            page_size_max=int(limits.get("page_size_max", 1000)),
            sqlite_synchronous=str(hygie.get("sqlite_synchronous", "NORMAL")).upper(),
            session_idle_seconds=_positive(auth, "session_idle_seconds", 900),
            session_absolute_seconds=_positive(auth, "session_absolute_seconds", 43200),
            access_token_seconds=_positive(auth, "access_token_seconds", 900),
            lockout_threshold=_positive(auth, "lockout_threshold", 5),
            lockout_address_threshold=_positive(auth, "lockout_address_threshold", 20),
            lockout_seconds=_positive(auth, "lockout_seconds", 900),
            login_delay_ms=_positive(auth, "login_delay_ms", 250, zero=True),
            activation_days=_positive(auth, "activation_days", 7),
            break_glass_seconds=_positive(doc.get("access", {}), "break_glass_seconds",
                                          14400, section="access"),
            ledger_checkpoint_seconds=_positive(doc.get("ledger", {}), "checkpoint_seconds",
                                                10, zero=True, section="ledger"),
            cookie_secure=cookie_secure,
            backup_target=_backup_target(doc.get("backup", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{config_file} is incomplete or invalid ({exc})") from None


def _backup_target(table: dict[str, object]) -> Path | None:
    value = os.environ.get("HYGIE_BACKUP_TARGET") or table.get("target")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("backup.target must be a directory path")
    return Path(value).expanduser()


def _positive(table: dict[str, object], key: str, default: int, *, zero: bool = False,
              section: str = "auth") -> int:
    value = int(str(table.get(key, default)))
    if value < 0 or (value == 0 and not zero):
        raise ValueError(f"{section}.{key} must be a positive number")
    return value


def render_config(*, instance_id: str, database_url: str, key_source: KeySource) -> str:
    return (
        "# Hygie instance configuration. Secrets never go here: the key-encryption keyring\n"
        "# lives in the key source below (a 0600 file or an environment variable).\n"
        "[hygie]\n"
        f'instance_id = "{instance_id}"\n'
        'tenant = "default"\n'
        f'database_url = "{database_url}"\n'
        f'key_source = "{key_source}"\n'
        '# NORMAL (default) or FULL: FULL also survives power loss at every commit.\n'
        'sqlite_synchronous = "NORMAL"\n'
        "\n[limits]\n"
        "max_body_bytes = 10485760\n"
        "token_ttl_seconds = 3600\n"
        "page_size_default = 50\n"
        "page_size_max = 1000\n"
        "\n[auth]\n"
        "# People's sign-in: sessions end after this much inactivity, and at the latest after\n"
        "# the absolute lifetime; access tokens are renewed with the refresh token.\n"
        "session_idle_seconds = 900\n"
        "session_absolute_seconds = 43200\n"
        "access_token_seconds = 900\n"
        "# Lockout after repeated failures, per username and per client address.\n"
        "lockout_threshold = 5\n"
        "lockout_address_threshold = 20\n"
        "lockout_seconds = 900\n"
        "# Failed sign-ins are answered after a delay doubling from this value (0: none).\n"
        "login_delay_ms = 250\n"
        "activation_days = 7\n"
        '# "auto": the session cookie is Secure when the request came over https;\n'
        '# "always": behind a TLS-terminating proxy that talks plain HTTP to Hygie.\n'
        'cookie_secure = "auto"\n'
        "\n[access]\n"
        "# An emergency (break-glass) opening of a record lasts this long (4 hours).\n"
        "break_glass_seconds = 14400\n"
        "\n[ledger]\n"
        "# Sign a new checkpoint of the audit ledger at least this often (0: only on demand).\n"
        "checkpoint_seconds = 10\n"
        "\n# [backup]\n"
        "# The directory your backups go to ('hygie backup create --to'): when damaged data stops\n"
        "# 'hygie serve', the latest backup found there is named in the restore steps.\n"
        '# target = "/mnt/hygie-backups"\n'
    )
