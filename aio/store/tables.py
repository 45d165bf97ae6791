"""LanceDB tables that several processes create and write at once without duplicating a key.

Lance commits optimistically: two ``merge_insert`` calls that add the same new keys at the
same instant each see the keys absent and each append them (measured on lancedb 0.40:
4 processes writing the same 300 rows to a fresh path ended with 1,200 rows). A table that
one process is creating can also be listed by another before it can be opened ("Table
'patterns' was not found"). So:

* creating or opening a table happens under one lock per database (``.locks/create.lock``);
* every write (and compaction / index build) of a table happens under that table's lock
  (``.locks/<table>.lock``) on the table's latest version.

The locks are ``fcntl.flock`` on files in the database folder: the kernel drops them when a
writer dies, so a killed writer never leaves a stale lock. Readers take no lock: Lance
readers only ever see committed versions.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Any, Iterator

import lancedb
import pyarrow as pa

LOCK_DIR = ".locks"


class LockedDB:
    """A LanceDB folder whose tables are written through :meth:`upsert` (the only write path)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / LOCK_DIR).mkdir(exist_ok=True)
        self.db = lancedb.connect(str(self.path))
        self._tables: dict[str, Any] = {}
        self._names: list[str] | None = None

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Exclusive lock on table ``name`` (``"create"``: the table list) across processes."""
        fd = os.open(self.path / LOCK_DIR / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def names(self, fresh: bool = False) -> list[str]:
        """The tables (as listed when first asked, or after :meth:`refresh`; ``fresh``: list now)."""
        if self._names is None or fresh:
            self._names = self._list()
        return self._names

    def _list(self) -> list[str]:
        out, token = [], None
        while True:
            page = self.db.list_tables(page_token=token)
            out.extend(page.tables)
            token = page.page_token
            if not token:
                return sorted(out)

    def open(self, name: str) -> Any | None:
        """The table, or None when it does not exist (yet)."""
        tbl = self._tables.get(name)
        if tbl is not None:
            return tbl
        if name not in self.names():
            return None
        with self.lock("create"):  # never open a table another process is still creating
            tbl = self.db.open_table(name)
        self._tables[name] = tbl
        return tbl

    def create(self, name: str, schema: pa.Schema) -> Any:
        """Open ``name``, creating it empty with ``schema`` when absent (once, whoever races)."""
        tbl = self._tables.get(name)
        if tbl is not None:
            return tbl
        with self.lock("create"):
            if name in self.names(fresh=True):
                tbl = self.db.open_table(name)
            else:
                tbl = self.db.create_table(name, schema=schema)
                self._names = None
        self._tables[name] = tbl
        return tbl

    def upsert(self, name: str, data: pa.Table, key: str, schema: pa.Schema, update: bool = True) -> tuple[int, int, int]:
        """Merge ``data`` into ``name`` on the deterministic ``key`` as one transaction.

        Returns (inserted, updated, version). Rows whose key exists are overwritten
        (``update``) or kept. Exactly one row per key whatever other processes write.
        """
        tbl = self.create(name, schema)
        if data.num_rows == 0:
            return 0, 0, int(tbl.version)
        with self.lock(name):
            tbl.checkout_latest()  # merge against what other processes committed
            builder = tbl.merge_insert(key)
            if update:
                builder = builder.when_matched_update_all()
            res = builder.when_not_matched_insert_all().execute(data)
        return int(res.num_inserted_rows), int(res.num_updated_rows), int(res.version)

    def drop(self, name: str) -> None:
        with self.lock("create"):
            if name in self.names(fresh=True):
                self.db.drop_table(name)
        self._tables.pop(name, None)
        self._names = None

    def refresh(self) -> None:
        self._names = None
        for tbl in self._tables.values():
            tbl.checkout_latest()
