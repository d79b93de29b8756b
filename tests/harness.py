"""An in-process server for feature tests: XML in, XML out, no sockets.

``Harness`` builds a real :class:`descant.server.Server` (memory storage, the
given domains) and loads modules on its hosts exactly as ``Server.start`` does,
but opens no listener and makes no certificate. Clients are ``FakeSession``
objects implementing the :class:`descant.routing.sessions.Session` protocol:
what the server sends them is collected in a list.

Typical use (``h`` is the fixture in tests/features/conftest.py)::

    alice = await h.bind("alice@localhost/phone")   # account created if missing
    await h.send(alice, "<presence/>")              # stamped and routed like c2s does
    got = alice.take()                              # what alice received, cleared
    assert one(got, "presence", from_="alice@localhost/phone")

Stanzas are written without ``jabber:client`` (as the parser delivers them):
``<presence/>``, ``<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>``.
``h.inject(xml)`` routes a stanza with any ``from`` as if another server sent it;
stanzas for domains not served are collected in ``h.remote``.
"""

from __future__ import annotations

import dataclasses
import itertools
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from descant.accounts import make_account
from descant.config import Config, ServerConfig, StorageConfig
from descant.errors import StanzaError
from descant.host import Host
from descant.jid import JID, InvalidJID, parse
from descant.modules import Module
from descant.server import Server
from descant.stanza import error_reply
from descant.storage import open_storage
from descant.xml.serialize import serialize

DOMAINS = ("localhost", "example.org")
_ids = itertools.count(1)


class FakeSession:
    """A bound client session that records what it is sent.

    Like ``ClientSession`` it has an output ``filter`` (client state indication)
    in front of :meth:`deliver`, and can pretend to have lost its transport
    (``hibernated``: delivered stanzas then wait in ``held`` until ``resume()``).
    """

    def __init__(self, host: Host, jid: JID) -> None:
        self.jid = jid
        self.jid_str = str(jid)
        self.host = host
        self.priority = 0
        self.presence: ET.Element | None = None
        self.interested = False
        self.directed: set[JID] = set()
        self.data: dict[str, object] = {}
        self.received: list[ET.Element] = []
        self.closed: str | None = None  # the condition (or "") once closed
        self.filter: Callable[[FakeSession, ET.Element], bool] | None = None
        self.hibernated = False
        self.held: list[ET.Element] = []
        self._holding: list[ET.Element] | None = None  # hold() … release()
        self._ahead: list[ET.Element] = []

    def hold(self) -> None:
        if self._holding is None:
            self._holding = []

    def send_ahead(self, stanza: ET.Element) -> None:
        if self._holding is None:
            self.send(stanza)
        else:
            self._ahead.append(stanza)

    def release(self) -> None:
        held, ahead = self._holding or [], self._ahead
        self._holding, self._ahead = None, []
        for stanza in ahead + held:
            self.send(stanza)

    def send(self, stanza: ET.Element) -> None:
        if self._holding is not None:
            self._holding.append(stanza)
            return
        f = self.filter
        if f is not None and f(self, stanza):
            return
        self.deliver(stanza)

    def deliver(self, stanza: ET.Element) -> None:
        (self.held if self.hibernated else self.received).append(stanza)

    async def hibernate(self) -> None:
        """As if the transport were lost with resumption on (``session-hibernated``)."""
        self.hibernated = True
        await self.host.events.fire("session-hibernated", self)

    async def resume(self) -> None:
        """As if the client resumed (``session-resumed``): what waited arrives first."""
        self.hibernated = False
        self.received.extend(self.held)
        self.held.clear()
        await self.host.events.fire("session-resumed", self)

    async def close(self, condition: str | None = None, text: str | None = None) -> None:
        """Close like a c2s session: unregister, then ``resource-unbound`` if it was current."""
        if self.closed is not None:
            return
        self.closed = condition or ""
        if self.host.sessions.remove(self):
            await self.host.events.fire("resource-unbound", self)

    def take(self) -> list[ET.Element]:
        """Everything received since the last take, oldest first."""
        out, self.received = self.received, []
        return out

    def __repr__(self) -> str:
        return f"<FakeSession {self.jid}>"


class Harness:
    """A Server with hosts and modules but no listeners; see the module docstring."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.remote: list[ET.Element] = []
        server.events.hook("route/remote", self._remote)

    @classmethod
    async def create(
        cls,
        tmp_path: Path,
        domains: Sequence[str] = DOMAINS,
        modules: list[type[Module]] | None = None,
        storage_url: str = "memory://",
        **sections: object,
    ) -> Harness:
        """Build and start a server; ``sections`` replace Config sections (e.g. limits=).

        ``storage_url`` may name a real backend, e.g. ``f"sqlite:///{tmp_path}/d.db"``.
        """
        with_muc = modules is None  # the MUC service, as Server.start adds it
        if modules is None:
            from descant.features import DEFAULT_MODULES

            modules = DEFAULT_MODULES
        config = dataclasses.replace(
            Config(),
            server=ServerConfig(domains=list(domains), data_dir=str(tmp_path)),
            storage=StorageConfig(url=storage_url),
            **sections,  # type: ignore[arg-type]
        )
        storage = open_storage(storage_url, str(tmp_path))
        await storage.open()
        server = Server(config, storage)
        # What Server.start does for hosts, without TLS or listeners.
        for domain in domains:
            host = Host(server, domain)
            host.load(modules)
            server.hosts[domain] = host
        if with_muc:
            from descant.features.muc import add_services

            add_services(server)
            from descant.features.pubsub import add_services as add_pubsub

            add_pubsub(server)
            from descant.features.upload import add_services as add_upload

            add_upload(server)
        for host in server.hosts.values():
            await host.start()
        return cls(server)

    async def stop(self) -> None:
        for host in self.server.hosts.values():
            await host.stop()
        await self.server.storage.close()

    def host(self, domain: str = DOMAINS[0]) -> Host:
        return self.server.hosts[domain]

    def module(self, name: str, domain: str = DOMAINS[0]) -> Module:
        return self.server.hosts[domain].modules[name]

    # -- accounts and sessions -------------------------------------------------------

    async def account(self, user: str, password: str = "secret") -> JID:
        """Create ``user`` ("alice" on the first domain, or "bob@example.org") if missing."""
        jid = parse(user if "@" in user else f"{user}@{DOMAINS[0]}")
        accounts = self.server.storage.accounts
        if await accounts.get(jid.domain, jid.local) is None:
            await accounts.create(make_account(jid.domain, jid.local, password))
        return jid.bare

    async def bind(self, full_jid: str, create: bool = True) -> FakeSession:
        """Bind a session as c2s does: register (replacing a holder of the same
        resource, which is closed with <conflict/>), then fire ``resource-bound``."""
        jid = parse(full_jid)
        assert jid.resource, "bind needs a full JID"
        if create:
            await self.account(str(jid.bare))
        host = self.server.hosts[jid.domain]
        session = FakeSession(host, jid)
        old = host.sessions.add(session)
        if old is not None:
            await old.close("conflict")
        await host.events.fire("resource-bound", session)
        return session

    async def online(self, full_jid: str, presence: str = "<presence/>") -> FakeSession:
        """Bind, send initial presence, and clear what that brought in."""
        session = await self.bind(full_jid)
        await self.send(session, presence)
        session.take()
        return session

    # -- stanzas ------------------------------------------------------------------------

    async def send(self, session: FakeSession, xml: str | ET.Element) -> None:
        """What C2SSession._stanza does: check 'to', stamp 'from', route with origin."""
        el = ET.fromstring(xml) if isinstance(xml, str) else xml
        to = el.get("to")
        el.set("from", str(session.jid))
        if to is not None:
            try:
                parse(to)
            except InvalidJID as exc:
                if el.get("type") != "error":
                    reply = error_reply(el, StanzaError("jid-malformed", str(exc)))
                    reply.attrib.pop("from", None)
                    reply.set("to", str(session.jid))
                    session.send(reply)
                return
        await self.server.router.route(el, session)

    async def inject(self, xml: str | ET.Element) -> None:
        """Route a stanza whose 'from' is trusted as is (e.g. from a remote server)."""
        el = ET.fromstring(xml) if isinstance(xml, str) else xml
        await self.server.router.route(el)

    async def iq(self, session: FakeSession, xml: str) -> ET.Element:
        """Send an iq (an id is added if missing) and return the answer to it; other
        stanzas received meanwhile stay in ``session.received``."""
        el = ET.fromstring(xml)
        id_ = el.get("id") or f"h{next(_ids)}"
        el.set("id", id_)
        await self.send(session, el)
        for i, got in enumerate(session.received):
            if got.tag == "iq" and got.get("id") == id_ and got.get("type") in ("result", "error"):
                del session.received[i]
                return got
        raise AssertionError(f"no answer to iq {id_}; received: {dump(session.received)}")

    async def _remote(self, routed: tuple[ET.Element, JID, JID]) -> bool:
        self.remote.append(routed[0])
        return True

    def take_remote(self) -> list[ET.Element]:
        out, self.remote = self.remote, []
        return out


# -- assertions ----------------------------------------------------------------------------


def _matches(el: ET.Element, tag: str | None, attrs: dict[str, str | None]) -> bool:
    if tag is not None and el.tag != tag:
        return False
    return all(el.get(k.rstrip("_")) == v for k, v in attrs.items())


def find(
    stanzas: Iterable[ET.Element],
    tag: str | None = None,
    child: str | None = None,
    **attrs: str | None,
) -> list[ET.Element]:
    """Stanzas with this tag and these attributes (``from_=`` for 'from'; a value of
    None means the attribute is absent), having a ``child`` (ElementPath) if given."""
    return [
        el
        for el in stanzas
        if _matches(el, tag, attrs) and (child is None or el.find(child) is not None)
    ]


def one(
    stanzas: Iterable[ET.Element],
    tag: str | None = None,
    child: str | None = None,
    **attrs: str | None,
) -> ET.Element:
    """The only stanza matching (as :func:`find`); fails with a dump otherwise."""
    stanzas = list(stanzas)
    found = find(stanzas, tag, child, **attrs)
    assert len(found) == 1, f"expected one {tag} {attrs} {child or ''}, got {dump(stanzas)}"
    return found[0]


def error_condition(stanza: ET.Element) -> str | None:
    """The defined condition of an error stanza ('bad-request', …), else None."""
    err = stanza.find("error")
    if err is None:
        return None
    for c in err:
        if c.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}") and not c.tag.endswith(
            "}text"
        ):
            return c.tag.rpartition("}")[2]
    return None


def dump(stanzas: Iterable[ET.Element]) -> str:
    return "\n".join(serialize(el) for el in stanzas) or "(nothing)"
