"""Open an instance for work: engine, schema check, keyring check, gate and ledger.

Shared by the API (``api.app.create_app``) and the command line; it imports no web framework,
so CLI commands (backup, restore, ledger verify, ...) start without FastAPI.
"""

from __future__ import annotations

from hygie.api.state import Runtime
from hygie.crypto import Keyring
from hygie.errors import ConfigError
from hygie.gate import Gate
from hygie.ledger.log import Ledger, load_key
from hygie.settings import Settings
from hygie.store.db import current_revision, head_revision, make_engine, transaction

__all__ = ["Runtime", "open_runtime"]


def open_runtime(settings: Settings, keyring: Keyring | None = None) -> Runtime:
    """Engine, keyring check and gate for an instance (shared by the API and the CLI)."""
    engine = make_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    revision = current_revision(engine)
    if revision != head_revision():
        engine.dispose()
        raise ConfigError("the database schema is not initialised or not up to date "
                          "(run 'hygie init' for a new instance)")
    keyring = keyring or Keyring.load(settings.key_source)
    gate = Gate(engine, keyring, settings.tenant,
                break_glass_seconds=settings.break_glass_seconds)
    with transaction(engine) as conn:
        gate.keys.verify_keyring(conn)
        gate.keys.indexer(conn)
    ledger = Ledger(engine, settings.tenant, load_key(settings.data_dir))
    return Runtime(settings=settings, engine=engine, gate=gate, ledger=ledger)
