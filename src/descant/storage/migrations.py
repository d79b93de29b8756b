"""Numbered schema migrations, applied when storage opens.

Files in the ``migrations/`` directory next to this module are named
``NNNN_description.sql`` (portable SQL, run on every engine) or
``NNNN_description.<dialect>.sql`` (``sqlite`` or ``postgres``) when the engines need
different text; a dialect file wins over a portable one of the same number. Statements are
split on a ``;`` that ends a line, so a migration must not hold one inside a literal.

The ``schema_version`` table records each applied number. All pending migrations run in one
transaction: a failure leaves the schema as it was, and a second process opening the same
database at the same moment waits (SQLite write lock, PostgreSQL advisory lock) and then
finds nothing left to do.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING

from descant.storage.api import StorageError

if TYPE_CHECKING:
    from descant.storage.sql import Database

log = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^(\d{4})_(\w+?)(?:\.(sqlite|postgres))?\.sql$")

# Any constant shared by every Descant process; serializes concurrent migrations.
_POSTGRES_LOCK_KEY = 0x44455343  # "DESC"

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        lines = [line for line in self.sql.splitlines() if not line.lstrip().startswith("--")]
        chunks = re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE)
        return [chunk.strip() for chunk in chunks if chunk.strip()]


def load(dialect: str) -> list[Migration]:
    """The migrations for one dialect, in order, from the package's SQL files."""
    chosen: dict[int, tuple[bool, str, str]] = {}
    directory = resources.files("descant.storage") / "migrations"
    for entry in directory.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None or match.group(3) not in (None, dialect):
            continue
        version, specific = int(match.group(1)), match.group(3) is not None
        previous = chosen.get(version)
        if previous is not None and previous[0] == specific:
            raise StorageError(f"two migrations numbered {version:04d} for {dialect}")
        if previous is None or specific:
            chosen[version] = (specific, match.group(2), entry.read_text(encoding="utf-8"))
    versions = sorted(chosen)
    if versions != list(range(1, len(versions) + 1)):
        raise StorageError(f"migration numbers for {dialect} must run 1..n, found {versions}")
    return [Migration(v, chosen[v][1], chosen[v][2]) for v in versions]


async def current_version(db: Database) -> int:
    """The highest applied migration; 0 for an empty database."""
    row = await db.fetchone("SELECT MAX(version) FROM schema_version")
    return 0 if row is None or row[0] is None else int(row[0])


async def migrate(db: Database) -> list[int]:
    """Apply pending migrations in one transaction; return the numbers applied."""
    known = load(db.dialect.name)
    async with db.transaction() as tx:
        if db.dialect.name == "postgres":
            await tx.execute(f"SELECT pg_advisory_xact_lock({_POSTGRES_LOCK_KEY})")
        await tx.execute(_VERSION_TABLE)
        row = await tx.fetchone("SELECT MAX(version) FROM schema_version")
        current = 0 if row is None or row[0] is None else int(row[0])
        if current > len(known):
            raise StorageError(
                f"database schema version {current} is newer than this Descant "
                f"(knows {len(known)}); upgrade Descant"
            )
        applied = []
        for migration in known[current:]:
            for statement in migration.statements():
                await tx.execute(statement)
            await tx.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                migration.version,
                migration.name,
                datetime.now(UTC).isoformat(timespec="seconds"),
            )
            applied.append(migration.version)
    if applied:
        log.info("storage migrated", extra={"dialect": db.dialect.name, "applied": applied})
    return applied
