"""The storage interface every backend implements.

Features never see SQL: they call these stores, which the memory, SQLite and
PostgreSQL backends implement with identical behaviour (one conformance suite in
tests/storage runs against all three).

Stanzas are stored as their serialized XML text (``str``); features parse them
back when needed. Times are timezone-aware UTC ``datetime`` values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class StorageError(Exception):
    """Base class of storage failures features may want to report."""


class AccountExists(StorageError):
    """An account with that host and username is already stored."""


class NoSuchAccount(StorageError):
    """The account named does not exist."""


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """SCRAM salted keys for one hash function (RFC 5802 §3); never a password."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


@dataclass(frozen=True, slots=True)
class Account:
    host: str
    username: str
    sha1: ScramCredentials
    sha256: ScramCredentials


SUBSCRIPTIONS = ("none", "to", "from", "both")


@dataclass(frozen=True, slots=True)
class RosterItem:
    """One roster entry (RFC 6121 §2.1.2).

    ``ask`` is the pending-out flag (``ask='subscribe'`` on the wire);
    ``approved`` records a subscription pre-approval (RFC 6121 §3.4).
    """

    jid: str
    name: str | None = None
    subscription: str = "none"
    ask: bool = False
    approved: bool = False
    groups: tuple[str, ...] = field(default_factory=tuple)


class AccountStore(Protocol):
    async def create(self, account: Account) -> None:
        """Store a new account; raise AccountExists if present."""

    async def get(self, host: str, username: str) -> Account | None: ...

    async def set_credentials(self, account: Account) -> None:
        """Replace an account's keys; raise NoSuchAccount if absent."""

    async def delete(self, host: str, username: str) -> bool:
        """Remove the account and all of the user's data; False if it did not exist."""

    async def list(self, host: str | None = None) -> list[tuple[str, str]]:
        """(host, username) pairs, sorted, optionally for one host."""


class RosterStore(Protocol):
    async def get_roster(self, host: str, user: str) -> tuple[str, dict[str, RosterItem]]:
        """The roster version string and the items keyed by bare JID."""

    async def get_item(self, host: str, user: str, jid: str) -> RosterItem | None: ...

    async def put_item(self, host: str, user: str, item: RosterItem) -> str:
        """Insert or replace an item; return the new roster version."""

    async def remove_item(self, host: str, user: str, jid: str) -> str:
        """Remove an item if present; return the new roster version."""

    async def get_version(self, host: str, user: str) -> str:
        """Current roster version (XEP-0237); "0" for a roster never written."""

    async def add_pending_in(self, host: str, user: str, contact: str, stanza: str) -> None:
        """Remember an inbound subscription request (replacing an older one)."""

    async def remove_pending_in(self, host: str, user: str, contact: str) -> bool: ...

    async def list_pending_in(self, host: str, user: str) -> list[tuple[str, str]]:
        """(contact bare JID, stored presence XML) in arrival order."""


class OfflineStore(Protocol):
    async def push(self, host: str, user: str, stanza: str, stamp: datetime) -> None: ...

    async def pop_all(self, host: str, user: str) -> list[tuple[str, datetime]]:
        """Return and delete every stored message, oldest first."""

    async def count(self, host: str, user: str) -> int: ...


class KeyValueStore(Protocol):
    """Small per-user documents (private XML, vCard, preferences)."""

    async def get(self, host: str, user: str, store: str, key: str) -> str | None: ...

    async def set(self, host: str, user: str, store: str, key: str, value: str | None) -> None:
        """Store a value; None deletes it."""


class UnknownArchiveId(StorageError):
    """An archive query named a message id the archive does not hold."""


@dataclass(frozen=True, slots=True)
class ArchivedMessage:
    """One archived groupchat message: its archive id (XEP-0359 stanza-id), time,
    the sender's nick and the message as the room reflected it (XML text)."""

    id: str
    stamp: datetime
    nick: str
    stanza: str


@dataclass(frozen=True, slots=True)
class ArchiveQuery:
    """Filters and one page of an archive query (XEP-0313, XEP-0059).

    ``after`` and ``before`` are archive ids; ``before=""`` asks for the last page.
    """

    start: datetime | None = None
    end: datetime | None = None
    nick: str | None = None
    after: str | None = None
    before: str | None = None
    limit: int = 50


class RoomStore(Protocol):
    """Persistent multi-user chat rooms (XEP-0045): configuration, affiliations and
    the message archive of rooms that log (XEP-0313).

    ``service`` is the MUC service domain (``conference.example.org``), ``room`` the
    room's localpart. The configuration is an opaque JSON text the MUC module owns.
    Affiliations are keyed by bare JID; "none" is never stored.
    """

    async def save_room(self, service: str, room: str, config: str) -> None:
        """Create the room or replace its configuration."""

    async def get_room(self, service: str, room: str) -> str | None:
        """The stored configuration, or None for a room not stored."""

    async def list_rooms(self, service: str | None = None) -> list[tuple[str, str]]:
        """(service, room) pairs, sorted, optionally for one service."""

    async def delete_room(self, service: str, room: str) -> bool:
        """Remove a room and its affiliations; False if it was not stored."""

    async def set_affiliation(self, service: str, room: str, jid: str, affiliation: str) -> None:
        """Set a bare JID's affiliation; "none" removes it."""

    async def get_affiliations(self, service: str, room: str) -> dict[str, str]:
        """Every stored affiliation of a room, bare JID → affiliation."""

    async def archive_add(self, service: str, room: str, message: ArchivedMessage) -> None:
        """Append a message to the room's archive (ids are unique per room)."""

    async def archive_query(
        self, service: str, room: str, query: ArchiveQuery
    ) -> tuple[list[ArchivedMessage], bool]:
        """Matching messages in archive order, at most ``query.limit`` of them, and
        whether the page reaches the end of the results in the paging direction.
        UnknownArchiveId if ``after`` or ``before`` names no message of the room."""


class Storage(Protocol):
    accounts: AccountStore
    roster: RosterStore
    offline: OfflineStore
    keyval: KeyValueStore
    rooms: RoomStore

    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None: ...
