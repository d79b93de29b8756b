"""The storage interface every backend implements.

Features never see SQL: they call these stores, which the memory, SQLite and
PostgreSQL backends implement with identical behaviour (one conformance suite in
tests/storage runs against all three).

Stanzas are stored as their serialized XML text (``str``); features parse them
back when needed. Times are timezone-aware UTC ``datetime`` values.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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

    async def count(self, host: str, user: str, store: str) -> int:
        """How many keys the user has in ``store``."""


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

    async def archive_get(self, service: str, room: str, id: str) -> ArchivedMessage | None:
        """One archived message by its id, or None."""

    async def archive_replace(self, service: str, room: str, id: str, stanza: str) -> bool:
        """Replace an archived message's stanza (a retraction's tombstone); False if
        the room's archive holds no such id."""


@dataclass(frozen=True, slots=True)
class PubsubItem:
    """One published item (XEP-0060): its id, the publisher's JID, when it was
    published, and its payload as XML text ("" for an item without one)."""

    id: str
    publisher: str
    stamp: datetime
    payload: str


class PubsubStore(Protocol):
    """Publish-subscribe nodes (XEP-0060) of every service: an account's PEP service
    (XEP-0163; ``service`` is its bare JID) and pubsub services (``service`` is their
    domain). A node's configuration is an opaque JSON text the pubsub module owns.
    Affiliations are keyed by bare JID ("none" is never stored); subscriptions by the
    JID that subscribed (bare or full), one per JID and node.
    """

    async def create_node(self, service: str, node: str, config: str) -> bool:
        """Create a node; False (and nothing changed) if it exists."""

    async def get_node(self, service: str, node: str) -> str | None:
        """The node's configuration, or None for a node that does not exist."""

    async def set_node_config(self, service: str, node: str, config: str) -> bool:
        """Replace a node's configuration; False if the node does not exist."""

    async def list_nodes(self, service: str) -> list[str]:
        """The service's node names, sorted."""

    async def delete_node(self, service: str, node: str) -> bool:
        """Remove a node with its items, affiliations and subscriptions; False if absent."""

    async def delete_service(self, service: str) -> None:
        """Remove every node of a service (an account's PEP data goes with the account)."""

    async def publish(self, service: str, node: str, item: PubsubItem, max_items: int) -> list[str]:
        """Store an item (one with the same id is replaced and the new one becomes the
        newest), then drop the oldest beyond ``max_items``; return the ids dropped."""

    async def get_items(
        self, service: str, node: str, ids: Sequence[str] = (), limit: int | None = None
    ) -> list[PubsubItem]:
        """Items newest first: all, or those named in ``ids``; at most ``limit``."""

    async def retract(self, service: str, node: str, item_id: str) -> bool:
        """Remove one item; False if the node holds no item with that id."""

    async def purge(self, service: str, node: str) -> int:
        """Remove every item of a node; return how many there were."""

    async def set_affiliation(self, service: str, node: str, jid: str, affiliation: str) -> None:
        """Set a bare JID's affiliation (owner, publisher, publish-only, member,
        outcast); "none" removes it."""

    async def get_affiliations(self, service: str, node: str) -> dict[str, str]:
        """Every stored affiliation of a node, bare JID → affiliation."""

    async def affiliations_of(self, service: str, jid: str) -> dict[str, str]:
        """A bare JID's affiliations on a service, node → affiliation."""

    async def set_subscription(self, service: str, node: str, jid: str, state: str | None) -> None:
        """Set a JID's subscription state ("subscribed", "pending", "unconfigured");
        None removes it."""

    async def get_subscriptions(self, service: str, node: str) -> dict[str, str]:
        """Every subscription to a node, JID → state."""

    async def subscriptions_of(self, service: str, jid: str) -> dict[str, str]:
        """A JID's subscriptions on a service, node → state."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_KEY = re.compile(r"[0-7][0-9a-f]{15}")


def mam_micros(when: datetime) -> int:
    """Microseconds since the epoch; ValueError for a naive time (its zone is a guess)."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"timezone-aware datetime required, got naive {when!r}")
    return (when - _EPOCH) // _MICROSECOND


def mam_key(id: str) -> int | None:
    """The archive key an archive id names, or None unless the id is one: exactly 16
    lower-case hex digits, below 2**63 (a signed 64-bit integer in SQL)."""
    return int(id, 16) if _KEY.fullmatch(id) else None


def mam_stamp(key: int) -> datetime:
    """The time of an archive key: its microseconds since the epoch, in UTC."""
    return _EPOCH + timedelta(microseconds=key >> 8)


def mam_id(key: int) -> str:
    """The archive id of a key: 16 lower-case hex digits."""
    return f"{key:016x}"


class MamIds:
    """Archive ids (XEP-0359 stanza-ids) in time order.

    An id is a 64-bit key written as 16 lower-case hex digits: microseconds since the
    epoch shifted left by 8, plus 8 random bits, and always above the last key this
    allocator gave (so monotonic within the process even if the clock steps back or
    many messages share a microsecond). The archive's order is key order, and a
    message's stamp is its key's time (``mam_stamp``). The random bits make two
    processes archiving into one database at the same microsecond unlikely to collide;
    within a process, keys never repeat. Ids are guessable, and need not be otherwise:
    every lookup by id is confined to the asking account's own archive.
    """

    def __init__(self) -> None:
        self._last = 0

    def next(self, now: datetime) -> str:
        """A new id for a message archived at ``now`` (aware); its stamp is
        ``mam_stamp(mam_key(id))``, ``now`` unless the key had to be raised above the
        last one."""
        return mam_id(self._raise(mam_micros(now) << 8 | random.getrandbits(8)))

    def next_key(self) -> int:
        """A new key for a message archived now (the clock read here, cheaply: this
        runs for every message archived)."""
        return self._raise((time.time_ns() // 1000) << 8 | random.getrandbits(8))

    def _raise(self, key: int) -> int:
        if key <= self._last:
            key = self._last + 1
        self._last = key
        return key


@dataclass(slots=True)  # not frozen: built for every message archived, and a frozen
class MamEntry:  # dataclass's __init__ costs several times more; treat it as immutable
    """One message in an account's archive (XEP-0313).

    ``id`` is its archive id (XEP-0359 stanza-id), a key from ``MamIds``, unique across
    every archive; ``stamp`` is that key's time (``mam_stamp``); ``with_jid``
    the other party's bare JID and ``with_resource`` its resource ("" when none);
    ``outgoing`` whether the owner sent it; ``origin_id`` the sender's XEP-0359
    origin-id ("" when none), by which a sender retracts it (XEP-0424); ``text`` the
    words full-text search looks in (the body; "" when none); ``stanza`` the message
    as archived (XML text).
    """

    id: str
    stamp: datetime
    with_jid: str
    with_resource: str
    outgoing: bool
    origin_id: str
    text: str
    stanza: str


@dataclass(frozen=True, slots=True)
class MamQuery:
    """Filters and one page of a query on an account's archive (XEP-0313 with
    ``urn:xmpp:mam:2#extended``, XEP-0059 paging).

    ``with_jid`` is a bare JID; with ``with_resource`` set only that full JID
    matches. ``start``/``end`` are inclusive. ``after``/``before`` are archive ids
    (exclusive bounds); ``before=""`` asks for the last page. ``ids`` (when given)
    keeps only those messages. ``text`` keeps messages whose ``text`` matches every
    word of it (full-text search; backend word rules, case-insensitive).
    """

    with_jid: str | None = None
    with_resource: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    after: str | None = None
    before: str | None = None
    ids: tuple[str, ...] = ()
    text: str = ""
    limit: int = 50


def mam_entry_key(entry: MamEntry) -> int:
    """The key of an entry to store: ValueError unless its id is a key and its stamp
    (aware) is that key's time."""
    # mam_key and mam_micros inline: this runs for every message archived.
    id_, stamp = entry.id, entry.stamp
    if _KEY.fullmatch(id_) is None:
        raise ValueError(f"archive id {id_!r} is not a key (see MamIds)")
    key = int(id_, 16)
    if stamp.utcoffset() is None:
        raise ValueError(f"timezone-aware datetime required, got naive {stamp!r}")
    if (stamp - _EPOCH) // _MICROSECOND != key >> 8:
        raise ValueError(f"archive id {id_!r}: stamp {stamp} is not its key's time")
    return key


def mam_key_range(query: MamQuery) -> tuple[int | None, int | None]:
    """The lowest and highest keys ``query.start``/``end`` allow (inclusive), or None."""
    low = None if query.start is None else mam_micros(query.start) << 8
    high = None if query.end is None else mam_micros(query.end) << 8 | 0xFF
    return low, high


class MamStore(Protocol):
    """Every account's message archive, in archive order: the order of the entries'
    keys (``mam_key`` of their ids), which is their stamps' order.

    ``owner`` is the account's username on ``host``. The key decides both a message's
    place and its stamp; ``add`` refuses (ValueError) an entry whose id is not a key or
    whose stamp is not its key's time, and reads return the key's time as the stamp.
    An id that is not a key (``mam_key`` is None) names no message: as ``after`` or
    ``before`` it raises UnknownArchiveId, in ``ids`` it matches nothing.
    """

    async def add(self, entries: Sequence[tuple[str, str, MamEntry]]) -> None:
        """Store (host, owner, entry) triples, in one transaction. ValueError for an
        entry whose id is not a key or whose stamp is not its key's time; an id used
        before (in any archive) fails the whole batch."""

    async def query(self, host: str, owner: str, query: MamQuery) -> tuple[list[MamEntry], bool]:
        """Matching messages in archive order, at most ``query.limit`` of them, and
        whether the page reaches the end of the results in the paging direction
        (towards the newest; towards the oldest when ``before`` is given).
        UnknownArchiveId if ``after`` or ``before`` names no message of the owner's."""

    async def bounds(self, host: str, owner: str) -> tuple[MamEntry, MamEntry] | None:
        """The oldest and newest messages of the archive (XEP-0313 metadata), or
        None for an empty one."""

    async def find_origin(
        self, host: str, owner: str, with_jid: str, origin_id: str, outgoing: bool
    ) -> MamEntry | None:
        """The newest message exchanged with ``with_jid`` in that direction carrying
        that origin-id, or None."""

    async def replace(self, host: str, owner: str, id: str, stanza: str) -> bool:
        """Replace a message's stored stanza (a retraction's tombstone) and clear its
        search text; False if the archive holds no such id."""

    async def delete_owner(self, host: str, owner: str) -> int:
        """Remove an account's whole archive; return how many messages there were."""

    async def expire(self, before: datetime, limit: int) -> int:
        """Remove at most ``limit`` messages older than ``before`` (oldest first, any
        owner); return how many were removed. ValueError for a naive time."""


@dataclass(frozen=True, slots=True)
class Upload:
    """An HTTP upload slot (XEP-0363) and, once ``stored``, the file put in it.

    ``id`` names the file on disk and in its URLs; ``token`` is the secret of its PUT
    URL. ``host``/``username`` is the uploading account; ``filename`` the sanitized name
    shown in the URL (never a path); ``size`` the announced size in bytes;
    ``content_type`` the announced type ("" when none was given).
    """

    id: str
    token: str
    host: str
    username: str
    filename: str
    size: int
    content_type: str
    created: datetime
    stored: bool = False


class UploadStore(Protocol):
    """Upload slots and stored files' metadata; the files live in data_dir/uploads/.
    Deleting an account deletes its rows."""

    async def add(self, upload: Upload) -> None:
        """Store a new slot; ValueError for a naive ``created``."""

    async def get(self, id: str) -> Upload | None: ...

    async def mark_stored(self, id: str, content_type: str) -> bool:
        """A pending slot's PUT completed (with this content type); False if the slot is
        gone or was already stored."""

    async def usage(self, host: str, username: str, pending_since: datetime) -> tuple[int, int]:
        """(bytes, pending): the sizes of an account's stored files and of its pending
        slots created at or after ``pending_since`` summed, and how many such slots."""

    async def expired(
        self, stored_before: datetime, pending_before: datetime, limit: int
    ) -> list[str]:
        """Ids of at most ``limit`` stored files created before ``stored_before`` and
        pending slots created before ``pending_before``, oldest first."""

    async def delete(self, ids: Sequence[str]) -> int:
        """Remove these rows; how many there were."""

    async def existing(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored rows (pending or not)."""


@dataclass(frozen=True, slots=True)
class Invite:
    """An account invitation (XEP-0401, XEP-0445): ``token`` is its secret; ``host`` the
    domain the invitee registers on; ``creator`` the inviting account's username on
    ``host`` ("" when the operator made it); ``expires`` None for one that never expires;
    ``used`` once a registration claimed it, ``used_by`` the account made with it ("" while
    that registration is under way)."""

    token: str
    host: str
    creator: str
    created: datetime
    expires: datetime | None = None
    used: bool = False
    used_by: str = ""


class InviteStore(Protocol):
    """Account invitations. Deleting the inviting account deletes its invitations."""

    async def add(self, invite: Invite) -> None:
        """Store a new invitation; ValueError for a naive time."""

    async def get(self, token: str) -> Invite | None: ...

    async def list(self, host: str | None = None) -> list[Invite]:
        """Every invitation (of one host), oldest first."""

    async def claim(self, token: str) -> bool:
        """Mark an unused invitation used, atomically: True for the one caller that did
        (expiry is the caller's to check); False if it is gone or already used."""

    async def release(self, token: str) -> bool:
        """Undo a claim whose registration failed (only while ``used_by`` is empty)."""

    async def complete(self, token: str, username: str) -> None:
        """Record the account a claimed invitation made."""

    async def delete(self, token: str) -> bool:
        """Remove an invitation (revoke it); False if there was none."""

    async def pending(self, host: str, creator: str, now: datetime) -> int:
        """How many unused, unexpired invitations ``creator`` has on ``host``."""

    async def expire(self, before: datetime, limit: int) -> int:
        """Remove at most ``limit`` invitations that expired before ``before``."""


class Storage(Protocol):
    accounts: AccountStore
    roster: RosterStore
    offline: OfflineStore
    keyval: KeyValueStore
    rooms: RoomStore
    pubsub: PubsubStore
    mam: MamStore
    uploads: UploadStore
    invites: InviteStore

    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """A trivial query (``/health``): returns when the storage answers, raises if not."""
