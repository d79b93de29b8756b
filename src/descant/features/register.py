"""In-band registration (XEP-0077 2.4): new accounts, password changes, removal.

Before authentication, ``jabber:iq:register`` iqs reach this module from the
client stream as ``iq-preauth/jabber:iq:register:query`` events (c2s/stream.py),
over TLS only when ``c2s.require_tls`` is on. With ``registration.open``:

- get: the fields (``<username/>``, ``<password/>``), and the ``<register/>``
  stream feature is offered (§8);
- set: the account is made — ``<conflict/>`` if it exists, ``<not-acceptable/>``
  for a name PRECIS refuses or an empty password (§3.1), ``<resource-constraint/>``
  past ``registration.per_ip_per_hour`` from one address (a bounded table).

Closed, every pre-authentication register iq is ``<service-unavailable/>`` (§3.1),
except on a stream that holds an invitation: the ``register-ticket`` event (the
invites module, XEP-0445) may answer with a :class:`Ticket`, which is claimed before
the account is made (once), released if that fails, and completed after.
After authentication, whatever the setting, an account may

- change its password: a set with ``<username/>`` (its own) and ``<password/>``
  (§3.3; ``<bad-request/>`` otherwise, and the password is kept);
- remove itself: a set with only ``<remove/>`` (§3.2). Every piece of its data
  goes, the asking session gets the result and then, like every other session of
  the account, the ``<not-authorized/>`` stream error.

Errors never echo the request: it holds a password (§3.3). Keys are derived on
the key-derivation pool (accounts.py), never on the event loop. The admin
commands (features/admin.py) create, change and remove accounts through the
same methods.
"""

from __future__ import annotations

import collections
import logging
import time
import xml.etree.ElementTree as ET
from typing import Protocol

import scramp

from descant.accounts import derive_account
from descant.c2s.stream import NonzaEvent
from descant.errors import StanzaError
from descant.jid import InvalidJID, prep_local
from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.stanza import iq_result
from descant.storage.api import Account, AccountExists, NoSuchAccount
from descant.xml import ns

log = logging.getLogger(__name__)

# Addresses whose recent registrations are remembered (registration.per_ip_per_hour).
MAX_ADDRESSES = 10_000
WINDOW = 3600.0
# Longer passwords are refused: the key derivation runs over all of it.
MAX_PASSWORD = 1024

_Q = "{%s}" % ns.REGISTER


def _error(iq: ET.Element, condition: str, text: str | None = None) -> ET.Element:
    """The error answer without the request's payload, which may hold a password."""
    attrib = {"type": "error", "id": iq.get("id", "")}
    if iq.get("from"):
        attrib["to"] = iq.get("from", "")
    if iq.get("to"):
        attrib["from"] = iq.get("to", "")
    out = ET.Element("iq", attrib)
    out.append(StanzaError(condition, text).to_element())
    return out


class AccountError(Exception):
    """Why an account could not be made or changed: a stanza error condition."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text


class RegistrationWindow:
    """Registrations per address within the last hour; the table holds at most
    ``MAX_ADDRESSES`` addresses, those whose entries all expired going first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: dict[str, collections.deque[float]] = {}

    def allowed(self, ip: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        q = self._seen.get(ip)
        if q is None:
            return True
        while q and now - q[0] > WINDOW:
            q.popleft()
        if not q:
            del self._seen[ip]
            return True
        return len(q) < self.limit

    def count(self, ip: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        q = self._seen.pop(ip, None) or collections.deque(maxlen=self.limit)
        q.append(now)
        self._seen[ip] = q  # most recent last: the oldest go first below
        if len(self._seen) > MAX_ADDRESSES:
            for old in [a for a, d in self._seen.items() if now - d[-1] > WINDOW]:
                del self._seen[old]
            while len(self._seen) > MAX_ADDRESSES:
                del self._seen[next(iter(self._seen))]

    def __len__(self) -> int:
        return len(self._seen)


class Ticket(Protocol):
    """What lets one stream register while registration is closed (an invitation)."""

    async def claim(self) -> bool:
        """Take it for this registration; False if it can no longer be used."""

    async def release(self) -> None:
        """The registration failed: it may be used again."""

    async def complete(self, user: str) -> None:
        """The account ``user`` was made with it."""


def check_password(password: str) -> None:
    if not password:
        raise AccountError("not-acceptable", "the password is empty")
    if len(password) > MAX_PASSWORD:
        raise AccountError("not-acceptable", f"the password is longer than {MAX_PASSWORD}")


class RegisterModule(Module):
    name = "register"

    def load(self) -> None:
        options = self.server.config.registration
        self.open = options.open
        self.window = RegistrationWindow(options.per_ip_per_hour)
        self.host.add_feature(ns.REGISTER)
        if self.open:
            self.host.pre_auth_features.append(ET.Element("{%s}register" % ns.REGISTER_FEATURE))
        self.hook(f"iq-preauth/{ns.REGISTER}:query", self.pre_auth)
        self.hook_iq("get", "self,host", f"{ns.REGISTER}:query", self.get)
        self.hook_iq("set", "self,host", f"{ns.REGISTER}:query", self.set)

    # -- accounts (also for the admin commands) ---------------------------------------------

    async def create_account(self, username: str, password: str) -> str:
        """Make an account; returns its prepared username. Raises AccountError."""
        try:
            user = prep_local(username)
        except InvalidJID as exc:
            raise AccountError("not-acceptable", f"not a valid username: {exc}") from None
        check_password(password)
        accounts = self.host.storage.accounts
        if await accounts.get(self.host.domain, user) is not None:
            raise AccountError("conflict", "the username is taken")
        account = await self._derive(user, password)
        try:
            await accounts.create(account)
        except AccountExists:  # taken meanwhile
            raise AccountError("conflict", "the username is taken") from None
        log.info("account %s@%s created", user, self.host.domain)
        return user

    async def change_password(self, user: str, password: str) -> None:
        """Replace an account's keys. Raises AccountError (item-not-found if absent)."""
        check_password(password)
        accounts = self.host.storage.accounts
        if await accounts.get(self.host.domain, user) is None:
            raise AccountError("item-not-found", "no such account")
        account = await self._derive(user, password)
        try:
            await accounts.set_credentials(account)
        except NoSuchAccount:
            raise AccountError("item-not-found", "no such account") from None
        log.info("password of %s@%s changed", user, self.host.domain)

    async def _derive(self, user: str, password: str) -> Account:
        try:
            account = await derive_account(self.host.domain, user, password)
        except scramp.ScramException as exc:  # a password SASLprep refuses
            raise AccountError("not-acceptable", f"the password cannot be used: {exc}") from None
        if account is None:
            raise AccountError("resource-constraint", "the server is busy; try again later")
        return account

    async def remove_account(self, user: str, text: str = "the account was removed") -> bool:
        """Remove an account and all its data and end its sessions with <not-authorized/>;
        False if there was no such account."""
        host = self.host
        accounts = host.storage.accounts
        removed = await accounts.delete(host.domain, user)
        for session in host.sessions.of_user(user):
            await session.close("not-authorized", text)
        # Modules drop what they keep of it (archive writes in flight, caches) …
        await host.events.fire("account-removed", user)
        # … and what ending its sessions stored meanwhile (offline copies of what its
        # clients had not acknowledged) goes too, or an account later registered under
        # the same name would inherit it.
        await accounts.delete(host.domain, user)
        if removed:
            log.info("account %s@%s removed", user, host.domain)
        return removed

    # -- before authentication (§3.1) -------------------------------------------------------

    async def pre_auth(self, ev: NonzaEvent) -> bool:
        stream = ev.stream
        ticket = await self.host.events.fire("register-ticket", stream)
        answer = await self._pre_auth_answer(ev.element, stream.ip, ticket)
        answer.attrib.pop("to", None)  # the client has no address yet
        stream.write(stream.stream.element(answer))
        return True

    async def _pre_auth_answer(
        self, iq: ET.Element, ip: str, ticket: Ticket | None = None
    ) -> ET.Element:
        if not self.open and ticket is None:
            return _error(iq, "service-unavailable", "in-band registration is closed")
        query = iq[0]
        if iq.get("type") == "get":
            out = ET.Element(f"{_Q}query")
            ET.SubElement(
                out, f"{_Q}instructions"
            ).text = "Choose a username and password for an account on this server."
            ET.SubElement(out, f"{_Q}username")
            ET.SubElement(out, f"{_Q}password")
            return _pre_auth_result(iq, out)
        if query.find(f"{_Q}remove") is not None:
            # §3.2 table: not registered, so not authenticated, with nothing to remove.
            return _error(iq, "registration-required", "log in to remove an account")
        username = query.findtext(f"{_Q}username")
        password = query.findtext(f"{_Q}password")
        if username is None or password is None:
            return _error(iq, "not-acceptable", "a username and a password are required")
        if not self.window.allowed(ip):
            log.info("%s: registration refused, over registration.per_ip_per_hour", ip)
            return _error(iq, "resource-constraint", "too many registrations from your address")
        if ticket is not None and not await ticket.claim():
            if not self.open:
                return _error(iq, "not-allowed", "the invitation was used meanwhile")
            ticket = None
        try:
            user = await self.create_account(username.strip(" \t\r\n"), password)
        except AccountError as exc:
            if ticket is not None:
                await ticket.release()
            if exc.condition == "conflict":
                # Counted: asking name after name would tell which accounts exist.
                self.window.count(ip)
            return _error(iq, exc.condition, exc.text)
        self.window.count(ip)
        if ticket is not None:
            await ticket.complete(user)
        log.info("%s@%s registered from %s", user, self.host.domain, ip)
        return _pre_auth_result(iq)

    # -- after authentication (§3.2, §3.3) --------------------------------------------------

    def _own(self, ev: StanzaEvent) -> bool:
        return ev.frm.domain == self.host.domain and bool(ev.frm.local)

    async def get(self, ev: StanzaEvent) -> bool:
        if not self._own(ev):
            return await self.answer(ev, _error(ev.stanza, "service-unavailable"))
        out = ET.Element(f"{_Q}query")
        ET.SubElement(out, f"{_Q}registered")
        ET.SubElement(out, f"{_Q}username").text = ev.frm.local
        ET.SubElement(out, f"{_Q}password")
        return await self.answer(ev, iq_result(ev.stanza, out))

    async def set(self, ev: StanzaEvent) -> bool:
        iq = ev.stanza
        if not self._own(ev):
            # Registration is for people who connect here, not for remote entities.
            return await self.answer(ev, _error(iq, "service-unavailable"))
        query = iq[0]
        user = ev.frm.local
        if query.find(f"{_Q}remove") is not None:
            if len(query) != 1:
                return await self.answer(
                    ev, _error(iq, "bad-request", "<remove/> must be the only element")
                )
            # §3.2: the result first, then the stream error and the end of every session
            # (answer() queues it on the asking stream, which writes it before closing).
            if await self.host.storage.accounts.get(self.host.domain, user) is None:
                return await self.answer(ev, _error(iq, "registration-required"))
            await self.answer(ev, iq_result(iq))
            await self.remove_account(user)
            return True
        username = query.findtext(f"{_Q}username")
        password = query.findtext(f"{_Q}password")
        if username is None or password is None:
            return await self.answer(
                ev, _error(iq, "bad-request", "a username and a new password are required")
            )
        try:
            mine = prep_local(username.strip(" \t\r\n")) == user
        except InvalidJID:
            mine = False
        if not mine:
            return await self.answer(ev, _error(iq, "bad-request", "that is not your username"))
        if not password:
            # §3.3: never an empty password; the old one stays.
            return await self.answer(ev, _error(iq, "bad-request", "the password is empty"))
        try:
            await self.change_password(user, password)
        except AccountError as exc:
            condition = "bad-request" if exc.condition == "not-acceptable" else exc.condition
            return await self.answer(ev, _error(iq, condition, exc.text))
        return await self.answer(ev, iq_result(iq))


def _pre_auth_result(iq: ET.Element, payload: ET.Element | None = None) -> ET.Element:
    """A result on a stream not yet authenticated: no addresses (the client has none
    yet, and the stream itself is with the server)."""
    out = ET.Element("iq", {"type": "result", "id": iq.get("id", "")})
    if payload is not None:
        out.append(payload)
    return out
