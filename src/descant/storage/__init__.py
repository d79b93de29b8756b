"""Storage: the interface features use, and ``open_storage`` to pick a backend by URL.

URLs:

- ``memory://``: in memory, lost on exit (tests, trying things out).
- ``sqlite:///data/descant.db``: a SQLite file relative to the current directory;
  ``sqlite:////var/lib/descant/descant.db`` (four slashes) is absolute; ``sqlite://`` with
  no path means ``<data_dir>/descant.db``. Parent directories are created on open.
- ``postgresql://user@host:5432/dbname`` or ``postgres://...``: PostgreSQL; add
  ``?schema=NAME`` to keep the tables in their own schema (see postgres.py).

The returned object is not yet connected: call ``await storage.open()``, which also applies
pending migrations, and ``await storage.close()`` at the end. Engine drivers are imported
only for the backend chosen.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from descant.storage.api import (
    SUBSCRIPTIONS,
    Account,
    AccountExists,
    AccountStore,
    KeyValueStore,
    NoSuchAccount,
    OfflineStore,
    RosterItem,
    RosterStore,
    ScramCredentials,
    Storage,
    StorageError,
)

__all__ = [
    "SUBSCRIPTIONS",
    "Account",
    "AccountExists",
    "AccountStore",
    "KeyValueStore",
    "NoSuchAccount",
    "OfflineStore",
    "RosterItem",
    "RosterStore",
    "ScramCredentials",
    "Storage",
    "StorageError",
    "open_storage",
    "sqlite_path",
]

if TYPE_CHECKING:
    from descant.storage.sql import Database

SQLITE_DEFAULT_FILE = "descant.db"


def sqlite_path(url: str, data_dir: str) -> str:
    """The file a ``sqlite://`` URL names (see the module docstring)."""
    if url in ("sqlite://", "sqlite:///"):
        return os.path.join(data_dir, SQLITE_DEFAULT_FILE)
    if not url.startswith("sqlite:///"):
        raise ValueError(f"SQLite URL must start with sqlite:/// (got {url!r})")
    # What follows the third slash is the path as written: "data/x.db" is relative,
    # "/abs/x.db" (from four slashes) is absolute.
    return url[len("sqlite:///") :]


def open_storage(
    url: str,
    data_dir: str,
    observe: Callable[[str], Callable[[str, float], None] | None] | None = None,
) -> Storage:
    """A ``Storage`` for ``url``, not yet opened; ValueError for an unknown kind of URL.

    ``observe``: given "main" or "archive", what receives each call's (operation,
    seconds) on that database (metrics; storage/timed.py), or None for no timing."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "memory":
        from descant.storage.memory import MemoryStorage

        return MemoryStorage()
    if scheme == "sqlite":
        from descant.storage.sql import SqlStorage
        from descant.storage.sqlite import SqliteDatabase

        return SqlStorage(_timed(SqliteDatabase(sqlite_path(url, data_dir)), observe))
    if scheme in ("postgresql", "postgres"):
        from descant.storage.postgres import PostgresDatabase
        from descant.storage.sql import SqlStorage

        return SqlStorage(_timed(PostgresDatabase(url), observe))
    # The URL itself is not echoed: a PostgreSQL one may carry a password.
    raise ValueError(
        f"unknown storage URL scheme {scheme!r}: use memory://, sqlite:///path/to/file.db "
        "or postgresql://user@host/dbname"
    )


def _timed(
    db: Database, observe: Callable[[str], Callable[[str, float], None] | None] | None
) -> Database:
    if observe is None:
        return db
    main, archive = observe("main"), observe("archive")
    if main is None or archive is None:
        return db
    from descant.storage.timed import TimedDatabase

    return TimedDatabase(db, main, archive)
