"""Data keys (DEKs): one per patient, one for the tenant's other resources, one for the blind index.

Each DEK is stored wrapped by the active key-encryption key (KEK) with associated data naming
its owner, so a wrapped key moved to another owner does not unwrap. Rotation re-wraps every DEK
under a new KEK version without touching the data. Destroying a patient's DEK
(crypto-shredding) makes every copy of that patient's data unreadable, backups included.
"""

from __future__ import annotations

import threading

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from hygie.crypto import BlindIndexer, DataKey, Keyring, new_key_material
from hygie.errors import Erased, KeyFailure
from hygie.store.db import now_us
from hygie.store.tables import data_key, kek_version

TENANT_OWNER = "tenant"
INDEX_OWNER = "index"


def patient_owner(patient_id: str) -> str:
    return f"patient:{patient_id}"


class KeyStore:
    """Unwraps and caches data keys for one tenant. Thread-safe; one per process."""

    def __init__(self, keyring: Keyring, tenant: str) -> None:
        self.keyring = keyring
        self.tenant = tenant
        self._cache: dict[int, DataKey] = {}
        self._indexer: BlindIndexer | None = None
        self._lock = threading.Lock()

    def _context(self, owner: str) -> bytes:
        return f"hygie/dek/1\x00{self.tenant}\x00{owner}".encode()

    # -- the KEK itself ---------------------------------------------------------------------
    def record_keyring(self, conn: Connection) -> None:
        """Store the check value of every keyring version not yet known (init, rotation)."""
        known = {r.version for r in conn.execute(select(kek_version.c.version))}
        for v in self.keyring.versions:
            if v not in known:
                conn.execute(kek_version.insert().values(
                    version=v, check_value=self.keyring.check_value(v), created_at=now_us()))

    def verify_keyring(self, conn: Connection) -> None:
        """Refuse a keyring that is not the one this database was created with."""
        rows = conn.execute(select(kek_version).where(kek_version.c.retired_at.is_(None))).all()
        if not rows:
            raise KeyFailure("the database records no key-encryption key: is it initialised?")
        for row in rows:
            if not self.keyring.has_version(row.version):
                raise KeyFailure(f"key-encryption key version {row.version} is missing from the "
                                 "keyring")
            from hygie.crypto import constant_time_equal

            if not constant_time_equal(self.keyring.check_value(row.version), row.check_value):
                raise KeyFailure("the keyring does not match this database (wrong key file?)")

    # -- data keys ----------------------------------------------------------------------------
    def ensure(self, conn: Connection, owner: str) -> tuple[int, DataKey]:
        """The DEK of ``owner``, created on first use. Raises Erased if it was destroyed."""
        row = self._select(conn, owner)
        if row is None:
            material = new_key_material()
            version, wrapped = self.keyring.wrap(material, self._context(owner))
            values = dict(tenant=self.tenant, owner=owner, kek_version=version, wrapped=wrapped,
                          created_at=now_us())
            dialect = conn.dialect.name
            ins = (postgresql.insert(data_key) if dialect == "postgresql"
                   else sqlite.insert(data_key))
            conn.execute(ins.values(**values).on_conflict_do_nothing())
            row = self._select(conn, owner)
            if row is None:  # pragma: no cover - the insert above guarantees a row
                raise KeyFailure("data key could not be created")
        if row.wrapped is None:
            raise Erased("this patient's data was erased")
        return row.id, self.open(row.id, row.kek_version, row.wrapped, owner)

    def _select(self, conn: Connection, owner: str):  # type: ignore[no-untyped-def]
        return conn.execute(
            select(data_key.c.id, data_key.c.kek_version, data_key.c.wrapped)
            .where(data_key.c.tenant == self.tenant, data_key.c.owner == owner)
        ).first()

    def open(self, dek_id: int, version: int, wrapped: bytes | None, owner: str) -> DataKey:
        key = self._cache.get(dek_id)
        if key is not None:
            return key
        if wrapped is None:
            raise Erased("this patient's data was erased")
        key = DataKey(self.keyring.unwrap(version, wrapped, self._context(owner)))
        with self._lock:
            self._cache[dek_id] = key
        return key

    def indexer(self, conn: Connection) -> BlindIndexer:
        """The tenant's blind-index key (its material is the HMAC key)."""
        if self._indexer is None:
            row = self._select(conn, INDEX_OWNER)
            if row is None:
                self.ensure(conn, INDEX_OWNER)
                row = self._select(conn, INDEX_OWNER)
            ctx = self._context(INDEX_OWNER)
            self._indexer = BlindIndexer(self.keyring.unwrap(row.kek_version, row.wrapped, ctx))
        return self._indexer

    def destroy(self, conn: Connection, owner: str) -> bool:
        """Crypto-shredding: erase the wrapped DEK. Returns False if there was none."""
        result = conn.execute(
            update(data_key)
            .where(data_key.c.tenant == self.tenant, data_key.c.owner == owner,
                   data_key.c.wrapped.is_not(None))
            .values(wrapped=None, destroyed_at=now_us())
        )
        with self._lock:
            self._cache.clear()
        return bool(result.rowcount)

    # -- rotation -----------------------------------------------------------------------------
    def rewrap_all(self, conn: Connection, new: Keyring) -> int:
        """Re-wrap every live DEK under ``new``'s active KEK. Data is not re-encrypted."""
        count = 0
        rows = conn.execute(
            select(data_key.c.id, data_key.c.owner, data_key.c.kek_version, data_key.c.wrapped)
            .where(data_key.c.tenant == self.tenant, data_key.c.wrapped.is_not(None))
        ).all()
        for row in rows:
            ctx = self._context(row.owner)
            material = self.keyring.unwrap(row.kek_version, row.wrapped, ctx)
            version, wrapped = new.wrap(material, ctx)
            conn.execute(update(data_key).where(data_key.c.id == row.id)
                         .values(kek_version=version, wrapped=wrapped))
            count += 1
        return count

    def versions_in_use(self, conn: Connection) -> dict[int, int]:
        from sqlalchemy import func

        rows = conn.execute(
            select(data_key.c.kek_version, func.count())
            .where(data_key.c.wrapped.is_not(None)).group_by(data_key.c.kek_version)
        ).all()
        return {int(r[0]): int(r[1]) for r in rows}
