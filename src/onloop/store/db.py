"""The state database: one SQLite file in WAL mode under ONLOOP_HOME.

SQLite because it is boring, embedded and crash-safe: a write committed before a `kill -9` is there
after it. Every write that must survive a crash (an iteration's receipt together with the run's spend
counters, say) is one transaction. WAL lets `onloop status` and the dashboard read while a run writes.

Migrations are an ordered list of small named functions (`@migration("name")`); the `_migrations`
table records which ran. A subsystem adds its tables by registering its own migration in its module
(see `onloop.store.schema`); names are unique and order is registration order, which is import order
of `onloop.store.schema`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from onloop.errors import StoreError

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(name: str) -> Callable[[Migration], Migration]:
    def decorate(fn: Migration) -> Migration:
        if any(existing == name for existing, _ in MIGRATIONS):
            raise ValueError(f"duplicate migration name {name!r}")
        MIGRATIONS.append((name, fn))
        return fn

    return decorate


def onloop_home() -> Path:
    """Where all user state lives: $ONLOOP_HOME, else the per-user data dir (XDG on Linux)."""
    explicit = os.environ.get("ONLOOP_HOME")
    if explicit:
        return Path(explicit).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "onloop"


class Database:
    """A connection per thread to the state database, with migrations applied on first open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    @classmethod
    def open_default(cls) -> Database:
        return cls(onloop_home() / "onloop.db")

    @property
    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the state database {self.path}: {exc}") from exc
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of writes: all of it survives a crash, or none of it."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        else:
            if conn.in_transaction:  # a migration written with `executescript` commits by itself
                conn.execute("COMMIT")

    def _migrate(self) -> None:
        import onloop.store.schema  # noqa: F401 - registers the migrations

        conn = self.conn
        conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
        done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
        for name, fn in MIGRATIONS:
            if name in done:
                continue
            with self.transaction() as tx:
                if tx.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone():
                    continue  # another process applied it while we waited for the lock
                fn(tx)
                tx.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, datetime('now'))", (name,)
                )

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
