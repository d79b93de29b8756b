"""In-memory storage: plain dicts, gone when the process exits.

For unit tests of features (no files, no event-loop threads) and for trying the server out.
It passes the same conformance suite as the SQL backends, so a feature tested against it
behaves the same on SQLite and PostgreSQL. Stored values are immutable (frozen dataclasses,
tuples, strings), so handing them out needs no copies.
"""

from __future__ import annotations

from datetime import datetime

from descant.storage.api import (
    Account,
    AccountExists,
    AccountStore,
    ArchivedMessage,
    ArchiveQuery,
    KeyValueStore,
    NoSuchAccount,
    OfflineStore,
    RoomStore,
    RosterItem,
    RosterStore,
    UnknownArchiveId,
)
from descant.storage.sql import require_utc

UserKey = tuple[str, str]


class _Data:
    """Every table, shared by the stores of one ``MemoryStorage``."""

    def __init__(self) -> None:
        self.accounts: dict[UserKey, Account] = {}
        self.roster: dict[UserKey, dict[str, RosterItem]] = {}
        self.roster_version: dict[UserKey, int] = {}
        # Dicts keep insertion order, which is the arrival order list_pending_in reports.
        self.pending_in: dict[UserKey, dict[str, str]] = {}
        self.offline: dict[UserKey, list[tuple[str, datetime]]] = {}
        self.keyval: dict[tuple[str, str, str, str], str] = {}
        self.rooms: dict[tuple[str, str], str] = {}
        self.room_affiliations: dict[tuple[str, str], dict[str, str]] = {}


class MemoryAccountStore:
    def __init__(self, data: _Data) -> None:
        self._data = data

    async def create(self, account: Account) -> None:
        key = (account.host, account.username)
        if key in self._data.accounts:
            raise AccountExists(f"{account.username}@{account.host}")
        self._data.accounts[key] = account

    async def get(self, host: str, username: str) -> Account | None:
        return self._data.accounts.get((host, username))

    async def set_credentials(self, account: Account) -> None:
        key = (account.host, account.username)
        if key not in self._data.accounts:
            raise NoSuchAccount(f"{account.username}@{account.host}")
        self._data.accounts[key] = account

    async def delete(self, host: str, username: str) -> bool:
        key = (host, username)
        data = self._data
        for table in (data.roster, data.roster_version, data.pending_in, data.offline):
            table.pop(key, None)
        for kv_key in [k for k in data.keyval if k[:2] == key]:
            del data.keyval[kv_key]
        return data.accounts.pop(key, None) is not None

    async def list(self, host: str | None = None) -> list[tuple[str, str]]:
        return sorted(key for key in self._data.accounts if host is None or key[0] == host)


class MemoryRosterStore:
    def __init__(self, data: _Data) -> None:
        self._data = data

    async def get_roster(self, host: str, user: str) -> tuple[str, dict[str, RosterItem]]:
        items = dict(self._data.roster.get((host, user), {}))
        return await self.get_version(host, user), items

    async def get_item(self, host: str, user: str, jid: str) -> RosterItem | None:
        return self._data.roster.get((host, user), {}).get(jid)

    async def put_item(self, host: str, user: str, item: RosterItem) -> str:
        self._data.roster.setdefault((host, user), {})[item.jid] = item
        return self._bump_version(host, user)

    async def remove_item(self, host: str, user: str, jid: str) -> str:
        self._data.roster.get((host, user), {}).pop(jid, None)
        return self._bump_version(host, user)

    def _bump_version(self, host: str, user: str) -> str:
        version = self._data.roster_version.get((host, user), 0) + 1
        self._data.roster_version[(host, user)] = version
        return str(version)

    async def get_version(self, host: str, user: str) -> str:
        return str(self._data.roster_version.get((host, user), 0))

    async def add_pending_in(self, host: str, user: str, contact: str, stanza: str) -> None:
        pending = self._data.pending_in.setdefault((host, user), {})
        pending.pop(contact, None)  # a repeated request moves to the end
        pending[contact] = stanza

    async def remove_pending_in(self, host: str, user: str, contact: str) -> bool:
        return self._data.pending_in.get((host, user), {}).pop(contact, None) is not None

    async def list_pending_in(self, host: str, user: str) -> list[tuple[str, str]]:
        return list(self._data.pending_in.get((host, user), {}).items())


class MemoryOfflineStore:
    def __init__(self, data: _Data) -> None:
        self._data = data

    async def push(self, host: str, user: str, stanza: str, stamp: datetime) -> None:
        self._data.offline.setdefault((host, user), []).append((stanza, require_utc(stamp)))

    async def pop_all(self, host: str, user: str) -> list[tuple[str, datetime]]:
        return self._data.offline.pop((host, user), [])

    async def count(self, host: str, user: str) -> int:
        return len(self._data.offline.get((host, user), []))


class MemoryKeyValueStore:
    def __init__(self, data: _Data) -> None:
        self._data = data

    async def get(self, host: str, user: str, store: str, key: str) -> str | None:
        return self._data.keyval.get((host, user, store, key))

    async def set(self, host: str, user: str, store: str, key: str, value: str | None) -> None:
        if value is None:
            self._data.keyval.pop((host, user, store, key), None)
        else:
            self._data.keyval[(host, user, store, key)] = value


class MemoryRoomStore:
    def __init__(self, data: _Data) -> None:
        self._data = data
        self._archive: dict[tuple[str, str], list[ArchivedMessage]] = {}

    async def save_room(self, service: str, room: str, config: str) -> None:
        self._data.rooms[(service, room)] = config

    async def get_room(self, service: str, room: str) -> str | None:
        return self._data.rooms.get((service, room))

    async def list_rooms(self, service: str | None = None) -> list[tuple[str, str]]:
        return sorted(k for k in self._data.rooms if service is None or k[0] == service)

    async def delete_room(self, service: str, room: str) -> bool:
        self._data.room_affiliations.pop((service, room), None)
        self._archive.pop((service, room), None)
        return self._data.rooms.pop((service, room), None) is not None

    async def set_affiliation(self, service: str, room: str, jid: str, affiliation: str) -> None:
        table = self._data.room_affiliations.setdefault((service, room), {})
        if affiliation == "none":
            table.pop(jid, None)
        else:
            table[jid] = affiliation

    async def get_affiliations(self, service: str, room: str) -> dict[str, str]:
        return dict(self._data.room_affiliations.get((service, room), {}))

    async def archive_add(self, service: str, room: str, message: ArchivedMessage) -> None:
        require_utc(message.stamp)
        self._archive.setdefault((service, room), []).append(message)

    async def archive_query(
        self, service: str, room: str, query: ArchiveQuery
    ) -> tuple[list[ArchivedMessage], bool]:
        items = self._archive.get((service, room), [])
        ids = [m.id for m in items]
        lo, hi = 0, len(items)
        for bound in (query.after, query.before or None):
            if bound is not None and bound not in ids:
                raise UnknownArchiveId(bound)
        if query.after is not None:
            lo = ids.index(query.after) + 1
        if query.before:
            hi = ids.index(query.before)
        found = [
            m
            for m in items[lo:hi]
            if (query.start is None or m.stamp >= query.start)
            and (query.end is None or m.stamp <= query.end)
            and (query.nick is None or m.nick == query.nick)
        ]
        if query.before is not None:
            page = found[-query.limit :] if query.limit else []
        else:
            page = found[: query.limit]
        return page, len(page) == len(found)


class MemoryStorage:
    def __init__(self) -> None:
        data = _Data()
        self.accounts: AccountStore = MemoryAccountStore(data)
        self.roster: RosterStore = MemoryRosterStore(data)
        self.offline: OfflineStore = MemoryOfflineStore(data)
        self.keyval: KeyValueStore = MemoryKeyValueStore(data)
        self.rooms: RoomStore = MemoryRoomStore(data)

    async def open(self) -> None:
        """Nothing to connect to or migrate."""

    async def close(self) -> None:
        """Nothing to release; the data stays until the object is dropped."""
