"""In-memory storage: plain dicts, gone when the process exits.

For unit tests of features (no files, no event-loop threads) and for trying the server out.
It passes the same conformance suite as the SQL backends, so a feature tested against it
behaves the same on SQLite and PostgreSQL. Stored values are immutable (frozen dataclasses,
tuples, strings), so handing them out needs no copies.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from descant.storage.api import (
    Account,
    AccountExists,
    AccountStore,
    ArchivedMessage,
    ArchiveQuery,
    Invite,
    InviteStore,
    KeyValueStore,
    MamEntry,
    MamQuery,
    MamStore,
    NoSuchAccount,
    OfflineStore,
    PubsubItem,
    PubsubStore,
    RoomStore,
    RosterItem,
    RosterStore,
    UnknownArchiveId,
    Upload,
    UploadStore,
    mam_entry_key,
    mam_key,
    mam_key_range,
    mam_micros,
    mam_stamp,
)
from descant.storage.sql import require_utc

UserKey = tuple[str, str]
NodeKey = tuple[str, str]


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
        self.pubsub_nodes: dict[NodeKey, str] = {}
        self.uploads: dict[str, Upload] = {}
        self.invites: dict[str, Invite] = {}
        # Items by id in publish order, oldest first (insertion order again).
        self.pubsub_items: dict[NodeKey, dict[str, PubsubItem]] = {}
        self.pubsub_affiliations: dict[NodeKey, dict[str, str]] = {}
        self.pubsub_subscriptions: dict[NodeKey, dict[str, str]] = {}
        # Each account's archive as (key, entry) in key order, and every key's archive.
        self.mam: dict[UserKey, list[tuple[int, MamEntry]]] = {}
        self.mam_keys: dict[int, UserKey] = {}

    def drop_archive(self, key: UserKey) -> int:
        """Remove an account's archive; how many messages it held."""
        rows = self.mam.pop(key, [])
        for k, _ in rows:
            del self.mam_keys[k]
        return len(rows)

    def delete_pubsub_node(self, key: NodeKey) -> bool:
        """Drop a node's rows from every pubsub table; whether the node itself existed."""
        self.pubsub_items.pop(key, None)
        self.pubsub_affiliations.pop(key, None)
        self.pubsub_subscriptions.pop(key, None)
        return self.pubsub_nodes.pop(key, None) is not None

    def delete_pubsub_service(self, service: str) -> None:
        # Items, affiliations and subscriptions may exist for a node never created.
        tables = (
            self.pubsub_nodes,
            self.pubsub_items,
            self.pubsub_affiliations,
            self.pubsub_subscriptions,
        )
        for key in {k for table in tables for k in table if k[0] == service}:
            self.delete_pubsub_node(key)


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
        data.drop_archive(key)
        for kv_key in [k for k in data.keyval if k[:2] == key]:
            del data.keyval[kv_key]
        for upload_id in [i for i, u in data.uploads.items() if (u.host, u.username) == key]:
            del data.uploads[upload_id]
        for token in [t for t, i in data.invites.items() if (i.host, i.creator) == key]:
            del data.invites[token]
        bare = f"{username}@{host}"
        data.delete_pubsub_service(bare)
        for affs in data.pubsub_affiliations.values():
            affs.pop(bare, None)
        for subs in data.pubsub_subscriptions.values():
            for jid in [j for j in subs if j == bare or j.startswith(bare + "/")]:
                del subs[jid]
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

    async def count(self, host: str, user: str, store: str) -> int:
        return sum(1 for k in self._data.keyval if k[:3] == (host, user, store))


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

    async def archive_get(self, service: str, room: str, id: str) -> ArchivedMessage | None:
        return next((m for m in self._archive.get((service, room), []) if m.id == id), None)

    async def archive_replace(self, service: str, room: str, id: str, stanza: str) -> bool:
        items = self._archive.get((service, room), [])
        for i, m in enumerate(items):
            if m.id == id:
                items[i] = replace(m, stanza=stanza)
                return True
        return False


class MemoryPubsubStore:
    def __init__(self, data: _Data) -> None:
        self._data = data

    async def create_node(self, service: str, node: str, config: str) -> bool:
        if (service, node) in self._data.pubsub_nodes:
            return False
        self._data.pubsub_nodes[(service, node)] = config
        return True

    async def get_node(self, service: str, node: str) -> str | None:
        return self._data.pubsub_nodes.get((service, node))

    async def set_node_config(self, service: str, node: str, config: str) -> bool:
        if (service, node) not in self._data.pubsub_nodes:
            return False
        self._data.pubsub_nodes[(service, node)] = config
        return True

    async def list_nodes(self, service: str) -> list[str]:
        return sorted(n for s, n in self._data.pubsub_nodes if s == service)

    async def delete_node(self, service: str, node: str) -> bool:
        return self._data.delete_pubsub_node((service, node))

    async def delete_service(self, service: str) -> None:
        self._data.delete_pubsub_service(service)

    async def publish(self, service: str, node: str, item: PubsubItem, max_items: int) -> list[str]:
        stored = replace(item, stamp=require_utc(item.stamp))
        items = self._data.pubsub_items.setdefault((service, node), {})
        items.pop(item.id, None)  # a republished id moves to the end
        items[item.id] = stored
        dropped = list(items)[: max(len(items) - max_items, 0)]
        for item_id in dropped:
            del items[item_id]
        return dropped

    async def get_items(
        self, service: str, node: str, ids: Sequence[str] = (), limit: int | None = None
    ) -> list[PubsubItem]:
        newest_first = reversed(self._data.pubsub_items.get((service, node), {}).values())
        wanted = set(ids)
        found = [item for item in newest_first if not wanted or item.id in wanted]
        return found if limit is None else found[:limit]

    async def retract(self, service: str, node: str, item_id: str) -> bool:
        items = self._data.pubsub_items.get((service, node), {})
        return items.pop(item_id, None) is not None

    async def purge(self, service: str, node: str) -> int:
        return len(self._data.pubsub_items.pop((service, node), {}))

    async def set_affiliation(self, service: str, node: str, jid: str, affiliation: str) -> None:
        table = self._data.pubsub_affiliations.setdefault((service, node), {})
        if affiliation == "none":
            table.pop(jid, None)
        else:
            table[jid] = affiliation

    async def get_affiliations(self, service: str, node: str) -> dict[str, str]:
        return dict(self._data.pubsub_affiliations.get((service, node), {}))

    async def affiliations_of(self, service: str, jid: str) -> dict[str, str]:
        return _node_values(self._data.pubsub_affiliations, service, jid)

    async def set_subscription(self, service: str, node: str, jid: str, state: str | None) -> None:
        table = self._data.pubsub_subscriptions.setdefault((service, node), {})
        if state is None:
            table.pop(jid, None)
        else:
            table[jid] = state

    async def get_subscriptions(self, service: str, node: str) -> dict[str, str]:
        return dict(self._data.pubsub_subscriptions.get((service, node), {}))

    async def subscriptions_of(self, service: str, jid: str) -> dict[str, str]:
        return _node_values(self._data.pubsub_subscriptions, service, jid)


def _node_values(table: dict[NodeKey, dict[str, str]], service: str, jid: str) -> dict[str, str]:
    """One JID's entry in every node of a service, node → value."""
    return {n: by_jid[jid] for (s, n), by_jid in table.items() if s == service and jid in by_jid}


def _words(text: str) -> set[str]:
    """Full-text search words: runs of letters and digits (``_`` separates, as in the
    SQL engines' tokenizers), lower-cased."""
    return {w.casefold() for w in re.findall(r"[^\W_]+", text)}


class MemoryMamStore:
    def __init__(self, data: _Data) -> None:
        self._data = data

    async def add(self, entries: Sequence[tuple[str, str, MamEntry]]) -> None:
        data = self._data
        keyed = [(host, owner, mam_entry_key(e), e) for host, owner, e in entries]
        keys = [k for _, _, k, _ in keyed]
        if len(set(keys)) < len(keys) or any(k in data.mam_keys for k in keys):
            raise ValueError("archive id already used")
        for host, owner, key, entry in keyed:
            stored = replace(entry, stamp=mam_stamp(key))
            bisect.insort(data.mam.setdefault((host, owner), []), (key, stored), key=_key)
            data.mam_keys[key] = (host, owner)

    def _position(self, rows: list[tuple[int, MamEntry]], id: str) -> int:
        """Where the message ``id`` is in an archive; UnknownArchiveId if not there."""
        key = mam_key(id)
        i = -1 if key is None else bisect.bisect_left(rows, key, key=_key)
        if i < 0 or i == len(rows) or rows[i][0] != key:
            raise UnknownArchiveId(id)
        return i

    async def query(self, host: str, owner: str, query: MamQuery) -> tuple[list[MamEntry], bool]:
        rows = self._data.mam.get((host, owner), [])
        lo, hi = 0, len(rows)
        # Both ids are looked up (and may be unknown) even for a page that would be empty.
        if query.after is not None:
            lo = self._position(rows, query.after) + 1
        if query.before:
            hi = self._position(rows, query.before)
        low, high = mam_key_range(query)
        wanted = {mam_key(i) for i in query.ids}
        words = _words(query.text)
        found = [
            m
            for key, m in rows[lo:hi]
            if (query.with_jid is None or m.with_jid == query.with_jid)
            and (query.with_resource is None or m.with_resource == query.with_resource)
            and (low is None or key >= low)
            and (high is None or key <= high)
            and (not query.ids or key in wanted)
            and (not words or words <= _words(m.text))
        ]
        if query.before is not None:
            page = found[-query.limit :] if query.limit else []
        else:
            page = found[: query.limit]
        return page, len(page) == len(found)

    async def bounds(self, host: str, owner: str) -> tuple[MamEntry, MamEntry] | None:
        rows = self._data.mam.get((host, owner))
        return (rows[0][1], rows[-1][1]) if rows else None

    async def find_origin(
        self, host: str, owner: str, with_jid: str, origin_id: str, outgoing: bool
    ) -> MamEntry | None:
        for _, e in reversed(self._data.mam.get((host, owner), [])):
            if e.origin_id == origin_id and e.with_jid == with_jid and e.outgoing == outgoing:
                return e
        return None

    async def replace(self, host: str, owner: str, id: str, stanza: str) -> bool:
        rows = self._data.mam.get((host, owner), [])
        try:
            i = self._position(rows, id)
        except UnknownArchiveId:
            return False
        key, e = rows[i]
        rows[i] = (key, replace(e, stanza=stanza, text=""))
        return True

    async def delete_owner(self, host: str, owner: str) -> int:
        return self._data.drop_archive((host, owner))

    async def expire(self, before: datetime, limit: int) -> int:
        data = self._data
        cutoff = mam_micros(before) << 8
        old = sorted(k for k in data.mam_keys if k < cutoff)[:limit]
        doomed: dict[UserKey, set[int]] = {}
        for key in old:
            doomed.setdefault(data.mam_keys.pop(key), set()).add(key)
        for archive, keys in doomed.items():
            data.mam[archive] = [r for r in data.mam[archive] if r[0] not in keys]
        return len(old)


def _key(row: tuple[int, MamEntry]) -> int:
    return row[0]


class MemoryUploadStore:
    def __init__(self, data: _Data) -> None:
        self._data = data

    async def add(self, upload: Upload) -> None:
        upload = replace(upload, created=require_utc(upload.created))
        self._data.uploads[upload.id] = upload

    async def get(self, id: str) -> Upload | None:
        return self._data.uploads.get(id)

    async def mark_stored(self, id: str, content_type: str) -> bool:
        upload = self._data.uploads.get(id)
        if upload is None or upload.stored:
            return False
        self._data.uploads[id] = replace(upload, stored=True, content_type=content_type)
        return True

    async def usage(self, host: str, username: str, pending_since: datetime) -> tuple[int, int]:
        since = require_utc(pending_since)
        total = pending = 0
        for u in self._data.uploads.values():
            if (u.host, u.username) != (host, username):
                continue
            if u.stored:
                total += u.size
            elif u.created >= since:
                total += u.size
                pending += 1
        return total, pending

    async def expired(
        self, stored_before: datetime, pending_before: datetime, limit: int
    ) -> list[str]:
        stored_cut, pending_cut = require_utc(stored_before), require_utc(pending_before)
        old = [
            u
            for u in self._data.uploads.values()
            if u.created < (stored_cut if u.stored else pending_cut)
        ]
        old.sort(key=lambda u: u.created)
        return [u.id for u in old[:limit]]

    async def delete(self, ids: Sequence[str]) -> int:
        return sum(self._data.uploads.pop(i, None) is not None for i in set(ids))

    async def existing(self, ids: Sequence[str]) -> set[str]:
        return {i for i in ids if i in self._data.uploads}


class MemoryInviteStore:
    def __init__(self, data: _Data) -> None:
        self._data = data

    async def add(self, invite: Invite) -> None:
        expires = None if invite.expires is None else require_utc(invite.expires)
        invite = replace(invite, created=require_utc(invite.created), expires=expires)
        self._data.invites[invite.token] = invite

    async def get(self, token: str) -> Invite | None:
        return self._data.invites.get(token)

    async def list(self, host: str | None = None) -> list[Invite]:
        found = [i for i in self._data.invites.values() if host is None or i.host == host]
        return sorted(found, key=lambda i: (i.created, i.token))

    async def claim(self, token: str) -> bool:
        invite = self._data.invites.get(token)
        if invite is None or invite.used:
            return False
        self._data.invites[token] = replace(invite, used=True)
        return True

    async def release(self, token: str) -> bool:
        invite = self._data.invites.get(token)
        if invite is None or not invite.used or invite.used_by:
            return False
        self._data.invites[token] = replace(invite, used=False)
        return True

    async def complete(self, token: str, username: str) -> None:
        invite = self._data.invites.get(token)
        if invite is not None:
            self._data.invites[token] = replace(invite, used=True, used_by=username)

    async def delete(self, token: str) -> bool:
        return self._data.invites.pop(token, None) is not None

    async def pending(self, host: str, creator: str, now: datetime) -> int:
        now = require_utc(now)
        return sum(
            1
            for i in self._data.invites.values()
            if (i.host, i.creator) == (host, creator)
            and not i.used
            and (i.expires is None or i.expires > now)
        )

    async def expire(self, before: datetime, limit: int) -> int:
        cut = require_utc(before)
        old = [i for i in self._data.invites.values() if i.expires is not None and i.expires < cut]
        old.sort(key=lambda i: i.expires or cut)
        for i in old[:limit]:
            del self._data.invites[i.token]
        return len(old[:limit])


class MemoryStorage:
    def __init__(self) -> None:
        data = _Data()
        self.accounts: AccountStore = MemoryAccountStore(data)
        self.roster: RosterStore = MemoryRosterStore(data)
        self.offline: OfflineStore = MemoryOfflineStore(data)
        self.keyval: KeyValueStore = MemoryKeyValueStore(data)
        self.rooms: RoomStore = MemoryRoomStore(data)
        self.pubsub: PubsubStore = MemoryPubsubStore(data)
        self.mam: MamStore = MemoryMamStore(data)
        self.uploads: UploadStore = MemoryUploadStore(data)
        self.invites: InviteStore = MemoryInviteStore(data)

    async def open(self) -> None:
        """Nothing to connect to or migrate."""

    async def close(self) -> None:
        """Nothing to release; the data stays until the object is dropped."""

    async def ping(self) -> None:
        """Always answers: the data is in this process."""
