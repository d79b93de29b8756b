"""The one SQL implementation of every store, over a small ``Database`` abstraction.

SQLite (sqlite.py) and PostgreSQL (postgres.py) differ only in how they connect, run a
statement and hold a transaction; the stores below are written once, with ``?``
placeholders and SQL both engines accept (``INSERT ... ON CONFLICT``, ``RETURNING``).
What the engines disagree on lives in ``Dialect``: placeholder style and how a time is
stored. Schema differences (BLOB vs BYTEA, autoincrement) live in the per-dialect
migration files (migrations.py). The account archive's store, whose full-text search
differs by engine, is in mam_sql.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol

from descant.storage import migrations
from descant.storage.api import (
    Account,
    AccountExists,
    AccountStore,
    ArchivedMessage,
    ArchiveQuery,
    Invite,
    InviteStore,
    KeyValueStore,
    MamStore,
    NoSuchAccount,
    OfflineStore,
    PubsubItem,
    PubsubStore,
    RoomStore,
    RosterItem,
    RosterStore,
    ScramCredentials,
    UnknownArchiveId,
    Upload,
    UploadStore,
)
from descant.storage.mam_sql import SqlMamStore

Row = tuple[Any, ...]
Statement = tuple[str, tuple[object, ...]]  # SQL with ``?`` placeholders, and its parameters


class Executor(Protocol):
    """Runs statements written with ``?`` placeholders."""

    async def execute(self, sql: str, *params: object) -> int:
        """Run a statement; return the number of rows it changed."""

    async def fetchone(self, sql: str, *params: object) -> Row | None: ...

    async def fetchall(self, sql: str, *params: object) -> list[Row]: ...


class Database(Executor, Protocol):
    """One engine: connection handling plus the ``Executor`` calls.

    Statements issued on the database itself each run on their own (autocommit);
    ``transaction()`` yields an ``Executor`` whose statements commit together, or roll back
    if the block raises. Transactions do not nest.
    """

    dialect: Dialect

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[Executor]: ...

    async def script(self, statements: Sequence[Statement]) -> list[list[Row]]:
        """Run independent statements in one transaction and return each one's rows
        (``RETURNING``); in one hand-off where the engine allows (SQLite)."""

    def sibling(self) -> Database:
        """A handle on the same database whose statements do not queue behind this
        one's (the account archive's): on SQLite a second connection on a thread of its
        own, on PostgreSQL this object (its pool already runs statements side by side).
        Not yet connected; the caller connects and closes it when it is not ``self``."""


def require_utc(stamp: datetime) -> datetime:
    """The same instant in UTC; naive times are refused since their zone is a guess."""
    if stamp.tzinfo is None or stamp.utcoffset() is None:
        raise ValueError(f"timezone-aware datetime required, got naive {stamp!r}")
    return stamp.astimezone(UTC)


@lru_cache(maxsize=256)
def _numbered(sql: str) -> str:
    # Our statements never hold a literal "?", so a plain scan is safe.
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between engines, kept in one place.

    ``name`` selects the migration files; ``numbered_params`` turns ``?`` into ``$1..$n``
    (asyncpg); ``native_time`` means the driver stores aware datetimes itself
    (TIMESTAMPTZ), otherwise times are ISO 8601 text in UTC, which sorts correctly.
    """

    name: str
    numbered_params: bool
    native_time: bool

    def sql(self, statement: str) -> str:
        return _numbered(statement) if self.numbered_params else statement

    def encode_time(self, stamp: datetime) -> object:
        utc = require_utc(stamp)
        return utc if self.native_time else utc.isoformat(timespec="microseconds")

    def decode_time(self, value: Any) -> datetime:
        stamp = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        return require_utc(stamp)


SQLITE = Dialect(name="sqlite", numbered_params=False, native_time=False)
POSTGRES = Dialect(name="postgres", numbered_params=True, native_time=True)


def _scram(row: Row, start: int) -> ScramCredentials:
    return ScramCredentials(
        salt=bytes(row[start]),
        iterations=int(row[start + 1]),
        stored_key=bytes(row[start + 2]),
        server_key=bytes(row[start + 3]),
    )


def _scram_params(account: Account) -> tuple[object, ...]:
    return tuple(
        value
        for creds in (account.sha1, account.sha256)
        for value in (creds.salt, creds.iterations, creds.stored_key, creds.server_key)
    )


_KEY_COLUMNS = (
    "sha1_salt, sha1_iterations, sha1_stored_key, sha1_server_key, "
    "sha256_salt, sha256_iterations, sha256_stored_key, sha256_server_key"
)

# Every table besides accounts holding per-user rows; deleting an account empties them all.
# (An account's upload rows go too; the upload service's sweep removes the files.)
USER_DATA_TABLES = (
    "roster",
    "roster_version",
    "roster_pending_in",
    "offline",
    "keyval",
    "uploads",
    "invites",
)

# Every table of pubsub rows, keyed by (service, node). An account's PEP service is the
# account's bare JID, so deleting the account empties these for that service too.
PUBSUB_TABLES = ("pubsub_items", "pubsub_affiliations", "pubsub_subscriptions", "pubsub_nodes")


# First key of the PostgreSQL advisory locks serializing publishes to one node (the second
# is a hash of service and node); two-key locks never clash with migrations' one-key lock.
_PUBSUB_LOCK_CLASS = 0x50554253  # "PUBS"


async def _delete_pubsub_service(tx: Executor, service: str) -> None:
    for table in PUBSUB_TABLES:
        await tx.execute(f"DELETE FROM {table} WHERE service = ?", service)


class SqlAccountStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, account: Account) -> None:
        # ON CONFLICT DO NOTHING + rowcount instead of catching each driver's own
        # unique-violation exception.
        changed = await self._db.execute(
            f"INSERT INTO accounts (host, username, {_KEY_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (host, username) DO NOTHING",
            account.host,
            account.username,
            *_scram_params(account),
        )
        if not changed:
            raise AccountExists(f"{account.username}@{account.host}")

    async def get(self, host: str, username: str) -> Account | None:
        row = await self._db.fetchone(
            f"SELECT {_KEY_COLUMNS} FROM accounts WHERE host = ? AND username = ?",
            host,
            username,
        )
        if row is None:
            return None
        return Account(host=host, username=username, sha1=_scram(row, 0), sha256=_scram(row, 4))

    async def set_credentials(self, account: Account) -> None:
        assignments = ", ".join(f"{column} = ?" for column in _KEY_COLUMNS.split(", "))
        changed = await self._db.execute(
            f"UPDATE accounts SET {assignments} WHERE host = ? AND username = ?",
            *_scram_params(account),
            account.host,
            account.username,
        )
        if not changed:
            raise NoSuchAccount(f"{account.username}@{account.host}")

    async def delete(self, host: str, username: str) -> bool:
        async with self._db.transaction() as tx:
            for table in USER_DATA_TABLES:
                await tx.execute(
                    f"DELETE FROM {table} WHERE host = ? AND username = ?", host, username
                )
            # On SQLite this transaction is on the main connection, not the archive's,
            # and simply takes the file's write lock. The archive's mam_owners row stays,
            # so the archive store's cached key for it stays right (mam_sql.py).
            await tx.execute(
                "DELETE FROM mam WHERE owner IN "
                "(SELECT key FROM mam_owners WHERE host = ? AND owner = ?)",
                host,
                username,
            )
            bare = f"{username}@{host}"
            await _delete_pubsub_service(tx, bare)
            # And what it held on other services (a new account of that name must not
            # inherit them). substr, not LIKE: "_" and "%" may be in a localpart.
            await tx.execute("DELETE FROM pubsub_affiliations WHERE jid = ?", bare)
            await tx.execute(
                "DELETE FROM pubsub_subscriptions WHERE jid = ? OR substr(jid, 1, ?) = ?",
                bare,
                len(bare) + 1,
                bare + "/",
            )
            changed = await tx.execute(
                "DELETE FROM accounts WHERE host = ? AND username = ?", host, username
            )
        return changed > 0

    async def list(self, host: str | None = None) -> list[tuple[str, str]]:
        if host is None:
            rows = await self._db.fetchall("SELECT host, username FROM accounts")
        else:
            rows = await self._db.fetchall(
                "SELECT host, username FROM accounts WHERE host = ?", host
            )
        # Sorted in Python: SQL ORDER BY follows the database collation, which differs
        # between engines and locales; code point order is the same everywhere.
        return sorted((str(h), str(u)) for h, u in rows)


_ROSTER_COLUMNS = "jid, name, subscription, ask, approved, groups_json"


def _roster_item(row: Row) -> RosterItem:
    jid, name, subscription, ask, approved, groups_json = row
    return RosterItem(
        jid=jid,
        name=name,
        subscription=subscription,
        ask=bool(ask),
        approved=bool(approved),
        groups=tuple(json.loads(groups_json)),
    )


class SqlRosterStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_roster(self, host: str, user: str) -> tuple[str, dict[str, RosterItem]]:
        # Version first: a write racing between the two reads then pairs newer items with
        # an older version, and the client merely receives that change again as a push.
        version = await self.get_version(host, user)
        rows = await self._db.fetchall(
            f"SELECT {_ROSTER_COLUMNS} FROM roster WHERE host = ? AND username = ?", host, user
        )
        items = (_roster_item(row) for row in rows)
        return version, {item.jid: item for item in items}

    async def get_item(self, host: str, user: str, jid: str) -> RosterItem | None:
        row = await self._db.fetchone(
            f"SELECT {_ROSTER_COLUMNS} FROM roster WHERE host = ? AND username = ? AND jid = ?",
            host,
            user,
            jid,
        )
        return None if row is None else _roster_item(row)

    async def put_item(self, host: str, user: str, item: RosterItem) -> str:
        async with self._db.transaction() as tx:
            await tx.execute(
                f"INSERT INTO roster (host, username, {_ROSTER_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (host, username, jid) DO UPDATE SET "
                "name = excluded.name, subscription = excluded.subscription, "
                "ask = excluded.ask, approved = excluded.approved, "
                "groups_json = excluded.groups_json",
                host,
                user,
                item.jid,
                item.name,
                item.subscription,
                item.ask,
                item.approved,
                json.dumps(list(item.groups), ensure_ascii=False),
            )
            return await self._bump_version(tx, host, user)

    async def remove_item(self, host: str, user: str, jid: str) -> str:
        async with self._db.transaction() as tx:
            await tx.execute(
                "DELETE FROM roster WHERE host = ? AND username = ? AND jid = ?", host, user, jid
            )
            return await self._bump_version(tx, host, user)

    @staticmethod
    async def _bump_version(tx: Executor, host: str, user: str) -> str:
        row = await tx.fetchone(
            "INSERT INTO roster_version (host, username, version) VALUES (?, ?, 1) "
            "ON CONFLICT (host, username) DO UPDATE "
            "SET version = roster_version.version + 1 RETURNING version",
            host,
            user,
        )
        assert row is not None  # RETURNING always yields the upserted row
        return str(row[0])

    async def get_version(self, host: str, user: str) -> str:
        row = await self._db.fetchone(
            "SELECT version FROM roster_version WHERE host = ? AND username = ?", host, user
        )
        return "0" if row is None else str(row[0])

    async def add_pending_in(self, host: str, user: str, contact: str, stanza: str) -> None:
        # Delete then insert, so a repeated request takes a new place in arrival order.
        async with self._db.transaction() as tx:
            await tx.execute(
                "DELETE FROM roster_pending_in WHERE host = ? AND username = ? AND contact = ?",
                host,
                user,
                contact,
            )
            await tx.execute(
                "INSERT INTO roster_pending_in (host, username, contact, stanza) "
                "VALUES (?, ?, ?, ?)",
                host,
                user,
                contact,
                stanza,
            )

    async def remove_pending_in(self, host: str, user: str, contact: str) -> bool:
        changed = await self._db.execute(
            "DELETE FROM roster_pending_in WHERE host = ? AND username = ? AND contact = ?",
            host,
            user,
            contact,
        )
        return changed > 0

    async def list_pending_in(self, host: str, user: str) -> list[tuple[str, str]]:
        rows = await self._db.fetchall(
            "SELECT contact, stanza FROM roster_pending_in "
            "WHERE host = ? AND username = ? ORDER BY id",
            host,
            user,
        )
        return [(str(contact), str(stanza)) for contact, stanza in rows]


class SqlOfflineStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def push(self, host: str, user: str, stanza: str, stamp: datetime) -> None:
        await self._db.execute(
            "INSERT INTO offline (host, username, stanza, stamp) VALUES (?, ?, ?, ?)",
            host,
            user,
            stanza,
            self._db.dialect.encode_time(stamp),
        )

    async def pop_all(self, host: str, user: str) -> list[tuple[str, datetime]]:
        # One DELETE ... RETURNING is atomic, so two sessions popping at once cannot both
        # receive a message. RETURNING has no defined order; sort by id afterwards.
        rows = await self._db.fetchall(
            "DELETE FROM offline WHERE host = ? AND username = ? RETURNING id, stanza, stamp",
            host,
            user,
        )
        decode = self._db.dialect.decode_time
        return [(str(stanza), decode(stamp)) for _, stanza, stamp in sorted(rows)]

    async def count(self, host: str, user: str) -> int:
        row = await self._db.fetchone(
            "SELECT COUNT(*) FROM offline WHERE host = ? AND username = ?", host, user
        )
        return 0 if row is None else int(row[0])


class SqlKeyValueStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, host: str, user: str, store: str, key: str) -> str | None:
        row = await self._db.fetchone(
            "SELECT value FROM keyval WHERE host = ? AND username = ? AND store = ? AND key = ?",
            host,
            user,
            store,
            key,
        )
        return None if row is None else str(row[0])

    async def set(self, host: str, user: str, store: str, key: str, value: str | None) -> None:
        if value is None:
            await self._db.execute(
                "DELETE FROM keyval WHERE host = ? AND username = ? AND store = ? AND key = ?",
                host,
                user,
                store,
                key,
            )
            return
        await self._db.execute(
            "INSERT INTO keyval (host, username, store, key, value) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (host, username, store, key) DO UPDATE SET value = excluded.value",
            host,
            user,
            store,
            key,
            value,
        )

    async def count(self, host: str, user: str, store: str) -> int:
        row = await self._db.fetchone(
            "SELECT COUNT(*) FROM keyval WHERE host = ? AND username = ? AND store = ?",
            host,
            user,
            store,
        )
        return 0 if row is None else int(row[0])


class SqlRoomStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def save_room(self, service: str, room: str, config: str) -> None:
        await self._db.execute(
            "INSERT INTO rooms (service, room, config) VALUES (?, ?, ?) "
            "ON CONFLICT (service, room) DO UPDATE SET config = excluded.config",
            service,
            room,
            config,
        )

    async def get_room(self, service: str, room: str) -> str | None:
        row = await self._db.fetchone(
            "SELECT config FROM rooms WHERE service = ? AND room = ?", service, room
        )
        return None if row is None else str(row[0])

    async def list_rooms(self, service: str | None = None) -> list[tuple[str, str]]:
        if service is None:
            rows = await self._db.fetchall("SELECT service, room FROM rooms")
        else:
            rows = await self._db.fetchall(
                "SELECT service, room FROM rooms WHERE service = ?", service
            )
        return sorted((str(s), str(r)) for s, r in rows)

    async def delete_room(self, service: str, room: str) -> bool:
        async with self._db.transaction() as tx:
            for table in ("room_affiliations", "room_archive"):
                await tx.execute(
                    f"DELETE FROM {table} WHERE service = ? AND room = ?", service, room
                )
            changed = await tx.execute(
                "DELETE FROM rooms WHERE service = ? AND room = ?", service, room
            )
        return changed > 0

    async def set_affiliation(self, service: str, room: str, jid: str, affiliation: str) -> None:
        if affiliation == "none":
            await self._db.execute(
                "DELETE FROM room_affiliations WHERE service = ? AND room = ? AND jid = ?",
                service,
                room,
                jid,
            )
            return
        await self._db.execute(
            "INSERT INTO room_affiliations (service, room, jid, affiliation) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (service, room, jid) DO UPDATE SET affiliation = excluded.affiliation",
            service,
            room,
            jid,
            affiliation,
        )

    async def get_affiliations(self, service: str, room: str) -> dict[str, str]:
        rows = await self._db.fetchall(
            "SELECT jid, affiliation FROM room_affiliations WHERE service = ? AND room = ?",
            service,
            room,
        )
        return {str(j): str(a) for j, a in rows}

    async def archive_add(self, service: str, room: str, message: ArchivedMessage) -> None:
        await self._db.execute(
            "INSERT INTO room_archive (service, room, id, stamp, nick, stanza) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            service,
            room,
            message.id,
            self._db.dialect.encode_time(message.stamp),
            message.nick,
            message.stanza,
        )

    async def _seq(self, service: str, room: str, id_: str) -> int:
        row = await self._db.fetchone(
            "SELECT seq FROM room_archive WHERE service = ? AND room = ? AND id = ?",
            service,
            room,
            id_,
        )
        if row is None:
            raise UnknownArchiveId(id_)
        return int(row[0])

    async def archive_query(
        self, service: str, room: str, query: ArchiveQuery
    ) -> tuple[list[ArchivedMessage], bool]:
        conds = ["service = ?", "room = ?"]
        params: list[object] = [service, room]
        encode = self._db.dialect.encode_time
        if query.start is not None:
            conds.append("stamp >= ?")
            params.append(encode(query.start))
        if query.end is not None:
            conds.append("stamp <= ?")
            params.append(encode(query.end))
        if query.nick is not None:
            conds.append("nick = ?")
            params.append(query.nick)
        if query.after is not None:
            conds.append("seq > ?")
            params.append(await self._seq(service, room, query.after))
        if query.before:
            conds.append("seq < ?")
            params.append(await self._seq(service, room, query.before))
        backwards = query.before is not None
        rows = await self._db.fetchall(
            "SELECT id, stamp, nick, stanza FROM room_archive WHERE "
            + " AND ".join(conds)
            + f" ORDER BY seq {'DESC' if backwards else 'ASC'} LIMIT ?",
            *params,
            query.limit + 1,
        )
        complete = len(rows) <= query.limit
        rows = rows[: query.limit]
        if backwards:
            rows.reverse()
        decode = self._db.dialect.decode_time
        return [ArchivedMessage(str(i), decode(t), str(n), str(s)) for i, t, n, s in rows], complete

    async def archive_get(self, service: str, room: str, id: str) -> ArchivedMessage | None:
        row = await self._db.fetchone(
            "SELECT id, stamp, nick, stanza FROM room_archive "
            "WHERE service = ? AND room = ? AND id = ?",
            service,
            room,
            id,
        )
        if row is None:
            return None
        i, t, n, s = row
        return ArchivedMessage(str(i), self._db.dialect.decode_time(t), str(n), str(s))

    async def archive_replace(self, service: str, room: str, id: str, stanza: str) -> bool:
        changed = await self._db.execute(
            "UPDATE room_archive SET stanza = ? WHERE service = ? AND room = ? AND id = ?",
            stanza,
            service,
            room,
            id,
        )
        return bool(changed)


class SqlPubsubStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_node(self, service: str, node: str, config: str) -> bool:
        changed = await self._db.execute(
            "INSERT INTO pubsub_nodes (service, node, config) VALUES (?, ?, ?) "
            "ON CONFLICT (service, node) DO NOTHING",
            service,
            node,
            config,
        )
        return changed > 0

    async def get_node(self, service: str, node: str) -> str | None:
        row = await self._db.fetchone(
            "SELECT config FROM pubsub_nodes WHERE service = ? AND node = ?", service, node
        )
        return None if row is None else str(row[0])

    async def set_node_config(self, service: str, node: str, config: str) -> bool:
        changed = await self._db.execute(
            "UPDATE pubsub_nodes SET config = ? WHERE service = ? AND node = ?",
            config,
            service,
            node,
        )
        return changed > 0

    async def list_nodes(self, service: str) -> list[str]:
        rows = await self._db.fetchall("SELECT node FROM pubsub_nodes WHERE service = ?", service)
        return sorted(str(n) for (n,) in rows)

    async def delete_node(self, service: str, node: str) -> bool:
        async with self._db.transaction() as tx:
            changed = 0
            for table in PUBSUB_TABLES:
                changed = await tx.execute(
                    f"DELETE FROM {table} WHERE service = ? AND node = ?", service, node
                )
        # PUBSUB_TABLES ends with pubsub_nodes, so this counts the node itself.
        return changed > 0

    async def delete_service(self, service: str) -> None:
        async with self._db.transaction() as tx:
            await _delete_pubsub_service(tx, service)

    async def publish(self, service: str, node: str, item: PubsubItem, max_items: int) -> list[str]:
        statements: list[Statement] = []
        if self._db.dialect.name == "postgres":
            # Publishes to one node take turns (SQLite transactions always do). Under
            # READ COMMITTED two would each trim without seeing the other's new item,
            # or both insert the same id.
            lock = (
                "SELECT pg_advisory_xact_lock(?, hashtext(?))",
                (_PUBSUB_LOCK_CLASS, f"{service}\n{node}"),
            )
            statements.append(lock)
        statements += [
            # Delete then insert, so a republished id takes a new seq: it becomes the newest.
            (
                "DELETE FROM pubsub_items WHERE service = ? AND node = ? AND id = ?",
                (service, node, item.id),
            ),
            (
                "INSERT INTO pubsub_items (service, node, id, publisher, stamp, payload) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    service,
                    node,
                    item.id,
                    item.publisher,
                    self._db.dialect.encode_time(item.stamp),
                    item.payload,
                ),
            ),
            # The newest item beyond max_items, and everything older, go (with none
            # beyond, the subquery is NULL and nothing matches).
            (
                "DELETE FROM pubsub_items WHERE service = ? AND node = ? AND seq <= ("
                "SELECT seq FROM pubsub_items WHERE service = ? AND node = ? "
                "ORDER BY seq DESC LIMIT 1 OFFSET ?) RETURNING seq, id",
                (service, node, service, node, max_items),
            ),
        ]
        rows = (await self._db.script(statements))[-1]
        return [str(item_id) for _, item_id in sorted(rows)]

    async def get_items(
        self, service: str, node: str, ids: Sequence[str] = (), limit: int | None = None
    ) -> list[PubsubItem]:
        sql = (
            "SELECT id, publisher, stamp, payload FROM pubsub_items WHERE service = ? AND node = ?"
        )
        params: list[object] = [service, node]
        if ids:
            sql += f" AND id IN ({', '.join('?' * len(ids))})"
            params.extend(ids)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = await self._db.fetchall(sql, *params)
        decode = self._db.dialect.decode_time
        return [PubsubItem(str(i), str(p), decode(t), str(d)) for i, p, t, d in rows]

    async def retract(self, service: str, node: str, item_id: str) -> bool:
        changed = await self._db.execute(
            "DELETE FROM pubsub_items WHERE service = ? AND node = ? AND id = ?",
            service,
            node,
            item_id,
        )
        return changed > 0

    async def purge(self, service: str, node: str) -> int:
        return await self._db.execute(
            "DELETE FROM pubsub_items WHERE service = ? AND node = ?", service, node
        )

    async def set_affiliation(self, service: str, node: str, jid: str, affiliation: str) -> None:
        if affiliation == "none":
            await self._db.execute(
                "DELETE FROM pubsub_affiliations WHERE service = ? AND node = ? AND jid = ?",
                service,
                node,
                jid,
            )
            return
        await self._db.execute(
            "INSERT INTO pubsub_affiliations (service, node, jid, affiliation) "
            "VALUES (?, ?, ?, ?) "
            "ON CONFLICT (service, node, jid) DO UPDATE SET affiliation = excluded.affiliation",
            service,
            node,
            jid,
            affiliation,
        )

    async def get_affiliations(self, service: str, node: str) -> dict[str, str]:
        rows = await self._db.fetchall(
            "SELECT jid, affiliation FROM pubsub_affiliations WHERE service = ? AND node = ?",
            service,
            node,
        )
        return {str(j): str(a) for j, a in rows}

    async def affiliations_of(self, service: str, jid: str) -> dict[str, str]:
        rows = await self._db.fetchall(
            "SELECT node, affiliation FROM pubsub_affiliations WHERE service = ? AND jid = ?",
            service,
            jid,
        )
        return {str(n): str(a) for n, a in rows}

    async def set_subscription(self, service: str, node: str, jid: str, state: str | None) -> None:
        if state is None:
            await self._db.execute(
                "DELETE FROM pubsub_subscriptions WHERE service = ? AND node = ? AND jid = ?",
                service,
                node,
                jid,
            )
            return
        await self._db.execute(
            "INSERT INTO pubsub_subscriptions (service, node, jid, state) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (service, node, jid) DO UPDATE SET state = excluded.state",
            service,
            node,
            jid,
            state,
        )

    async def get_subscriptions(self, service: str, node: str) -> dict[str, str]:
        rows = await self._db.fetchall(
            "SELECT jid, state FROM pubsub_subscriptions WHERE service = ? AND node = ?",
            service,
            node,
        )
        return {str(j): str(s) for j, s in rows}

    async def subscriptions_of(self, service: str, jid: str) -> dict[str, str]:
        rows = await self._db.fetchall(
            "SELECT node, state FROM pubsub_subscriptions WHERE service = ? AND jid = ?",
            service,
            jid,
        )
        return {str(n): str(s) for n, s in rows}


_UPLOAD_COLUMNS = "id, token, host, username, filename, size, content_type, created, stored"


class SqlUploadStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, upload: Upload) -> None:
        await self._db.execute(
            f"INSERT INTO uploads ({_UPLOAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            upload.id,
            upload.token,
            upload.host,
            upload.username,
            upload.filename,
            upload.size,
            upload.content_type,
            self._db.dialect.encode_time(upload.created),
            int(upload.stored),
        )

    async def get(self, id: str) -> Upload | None:
        row = await self._db.fetchone(f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE id = ?", id)
        if row is None:
            return None
        id_, token, host, username, filename, size, ctype, created, stored = row
        return Upload(
            str(id_),
            str(token),
            str(host),
            str(username),
            str(filename),
            int(size),
            str(ctype),
            self._db.dialect.decode_time(created),
            bool(stored),
        )

    async def mark_stored(self, id: str, content_type: str) -> bool:
        changed = await self._db.execute(
            "UPDATE uploads SET stored = 1, content_type = ? WHERE id = ? AND stored = 0",
            content_type,
            id,
        )
        return changed > 0

    async def usage(self, host: str, username: str, pending_since: datetime) -> tuple[int, int]:
        since = self._db.dialect.encode_time(pending_since)
        row = await self._db.fetchone(
            "SELECT COALESCE(SUM(size), 0), COALESCE(SUM(1 - stored), 0) FROM uploads "
            "WHERE host = ? AND username = ? AND (stored = 1 OR created >= ?)",
            host,
            username,
            since,
        )
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    async def expired(
        self, stored_before: datetime, pending_before: datetime, limit: int
    ) -> list[str]:
        encode = self._db.dialect.encode_time
        # Two index range scans (uploads_age), merged by age.
        rows = await self._db.fetchall(
            "SELECT id, created FROM uploads WHERE stored = 1 AND created < ? "
            "UNION ALL SELECT id, created FROM uploads WHERE stored = 0 AND created < ? "
            "ORDER BY created LIMIT ?",
            encode(stored_before),
            encode(pending_before),
            limit,
        )
        return [str(r[0]) for r in rows]

    async def delete(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        marks = ", ".join("?" * len(ids))
        return await self._db.execute(f"DELETE FROM uploads WHERE id IN ({marks})", *ids)

    async def existing(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        marks = ", ".join("?" * len(ids))
        rows = await self._db.fetchall(f"SELECT id FROM uploads WHERE id IN ({marks})", *ids)
        return {str(r[0]) for r in rows}


_INVITE_COLUMNS = "token, host, username, created, expires, used, used_by"


class SqlInviteStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _invite(self, row: Row) -> Invite:
        token, host, username, created, expires, used, used_by = row
        decode = self._db.dialect.decode_time
        return Invite(
            str(token),
            str(host),
            str(username),
            decode(created),
            None if expires is None else decode(expires),
            bool(used),
            str(used_by),
        )

    async def add(self, invite: Invite) -> None:
        encode = self._db.dialect.encode_time
        await self._db.execute(
            f"INSERT INTO invites ({_INVITE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            invite.token,
            invite.host,
            invite.creator,
            encode(invite.created),
            None if invite.expires is None else encode(invite.expires),
            int(invite.used),
            invite.used_by,
        )

    async def get(self, token: str) -> Invite | None:
        row = await self._db.fetchone(
            f"SELECT {_INVITE_COLUMNS} FROM invites WHERE token = ?", token
        )
        return None if row is None else self._invite(row)

    async def list(self, host: str | None = None) -> list[Invite]:
        sql = f"SELECT {_INVITE_COLUMNS} FROM invites"
        params: tuple[object, ...] = ()
        if host is not None:
            sql += " WHERE host = ?"
            params = (host,)
        rows = await self._db.fetchall(sql + " ORDER BY created, token", *params)
        return [self._invite(r) for r in rows]

    async def claim(self, token: str) -> bool:
        changed = await self._db.execute(
            "UPDATE invites SET used = 1 WHERE token = ? AND used = 0", token
        )
        return changed > 0

    async def release(self, token: str) -> bool:
        changed = await self._db.execute(
            "UPDATE invites SET used = 0 WHERE token = ? AND used = 1 AND used_by = ''", token
        )
        return changed > 0

    async def complete(self, token: str, username: str) -> None:
        await self._db.execute(
            "UPDATE invites SET used = 1, used_by = ? WHERE token = ?", username, token
        )

    async def delete(self, token: str) -> bool:
        return await self._db.execute("DELETE FROM invites WHERE token = ?", token) > 0

    async def pending(self, host: str, creator: str, now: datetime) -> int:
        row = await self._db.fetchone(
            "SELECT COUNT(*) FROM invites WHERE host = ? AND username = ? AND used = 0 "
            "AND (expires IS NULL OR expires > ?)",
            host,
            creator,
            self._db.dialect.encode_time(now),
        )
        return 0 if row is None else int(row[0])

    async def expire(self, before: datetime, limit: int) -> int:
        return await self._db.execute(
            "DELETE FROM invites WHERE token IN "
            "(SELECT token FROM invites WHERE expires < ? ORDER BY expires LIMIT ?)",
            self._db.dialect.encode_time(before),
            limit,
        )


class SqlStorage:
    """``Storage`` over any ``Database``; ``open()`` connects and migrates.

    The account archive runs on ``mam_db``, the database's ``sibling()``: on SQLite a
    second connection with a thread of its own (see sqlite.py), on PostgreSQL the same
    pool. It is connected after the migrations and closed before the main database.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.mam_db = db.sibling()
        self.mam: MamStore = SqlMamStore(self.mam_db)
        self.accounts: AccountStore = SqlAccountStore(db)
        self.roster: RosterStore = SqlRosterStore(db)
        self.offline: OfflineStore = SqlOfflineStore(db)
        self.keyval: KeyValueStore = SqlKeyValueStore(db)
        self.rooms: RoomStore = SqlRoomStore(db)
        self.pubsub: PubsubStore = SqlPubsubStore(db)
        self.uploads: UploadStore = SqlUploadStore(db)
        self.invites: InviteStore = SqlInviteStore(db)

    async def open(self) -> None:
        await self.db.connect()
        try:
            await migrations.migrate(self.db)
            if self.mam_db is not self.db:
                await self.mam_db.connect()
        except BaseException:
            await self.db.close()
            raise

    async def ping(self) -> None:
        await self.db.fetchone("SELECT 1")

    async def close(self) -> None:
        try:
            if self.mam_db is not self.db:
                await self.mam_db.close()
        finally:
            await self.db.close()
