"""Instance settings, read from the data directory's ``hygie.toml`` and the environment.

Build the application from a :class:`Settings` (``create_app(settings)``), never at import time,
so tests can run as many instances as they need.

Environment overrides (documented in docs/operations.md):
``HYGIE_DATA_DIR``, ``HYGIE_DATABASE_URL``, ``HYGIE_KEY_SOURCE``.
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
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{config_file} is incomplete or invalid ({exc})") from None


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
    )
