"""Account invitations on one domain: making them, redeeming them, befriending.

An invitation (storage ``invites``) is made by the operator (``descant invite``), by
an administrator or, with ``invites.who = "users"``, any account of the domain with
the XEP-0401 ad-hoc command ``urn:xmpp:invite#invite`` (administrators also have
``urn:xmpp:invite#create-account``, an invitation without an inviter unless asked).
Each is usable once, until it expires; one account holds at most
``invites.max_per_user`` unused ones.

It is redeemed two ways, both creating the account through the register module (keys
derived off the event loop, the per-address limit of in-band registration):

- in band (XEP-0445): before authentication the client sends
  ``<iq type='set'><preauth xmlns='urn:xmpp:pars:0' token='…'/></iq>``; a valid token
  is remembered for that stream (``item-not-found`` otherwise), and the stream may then
  register once with XEP-0077 even while ``registration.open`` is false. The token is
  claimed only when the account is made (and given back if that fails); its expiry is
  checked only at the preauth (§5);
- on the landing page (page.py), which calls :meth:`InviteModule.redeem`.

Then the inviter, if any, and the new account are subscribed to each other (both
roster items ``subscription='both'``, pushed to the inviter's sessions: XEP-0401 §5.5).
The stream features ``<register xmlns='urn:xmpp:invite'/>`` (what Conversations looks
for) and ``<register xmlns='urn:xmpp:ibr-token:0'/>`` (XEP-0445 0.2) are offered before
authentication; the XEP-0077 ``<register/>`` feature only while registration is open, so
that clients do not offer people a registration that would be refused.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from descant import forms
from descant.errors import StanzaError
from descant.features.adhoc import AdhocModule, Command, CommandSession, Response
from descant.features.admin import AdminModule
from descant.features.invites import links
from descant.features.register import RegisterModule
from descant.features.roster import RosterModule
from descant.jid import JID
from descant.modules import Module
from descant.stamps import format_stamp
from descant.storage.api import Invite, InviteStore, RosterItem

if TYPE_CHECKING:
    from descant.c2s.stream import ClientStream, NonzaEvent

PARS = "urn:xmpp:pars:0"
INVITE = "urn:xmpp:invite"
IBR_TOKEN = "urn:xmpp:ibr-token:0"
FORM_TYPE = "urn:xmpp:invite#invitation"
# Streams whose preauth token was accepted; they end within c2s.auth_timeout anyway.
MAX_PREAUTH_STREAMS = 10_000


class InviteError(Exception):
    """Why an invitation cannot be redeemed: ``unknown``, ``used`` or ``expired``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class InviteTicket:
    """A stream's accepted invitation, as the register module uses it (Ticket)."""

    module: InviteModule
    invite: Invite

    async def claim(self) -> bool:
        return await self.module.storage.claim(self.invite.token)

    async def release(self) -> None:
        await self.module.storage.release(self.invite.token)

    async def complete(self, user: str) -> None:
        await self.module.completed(self.invite, user)


class InviteModule(Module):
    name = "invites"

    def load(self) -> None:
        self.cfg = self.server.config.invites
        self._preauth: dict[int, tuple[ClientStream, Invite]] = {}
        if not self.cfg.enabled:
            return
        features = self.host.pre_auth_features
        for uri in (INVITE, IBR_TOKEN):
            features.append(ET.Element("{%s}register" % uri))
        self.hook(f"iq-preauth/{PARS}:preauth", self.on_preauth)
        self.hook("register-ticket", self.ticket)

    async def start(self) -> None:
        if self.cfg.enabled:
            adhoc = self.require(AdhocModule)
            adhoc.add(InviteCommand(self))
            adhoc.add(CreateAccountCommand(self))

    @property
    def storage(self) -> InviteStore:
        return self.host.storage.invites

    # -- making invitations ---------------------------------------------------------------

    def may_invite(self, requester: JID) -> bool:
        if not self.cfg.enabled or requester.domain != self.host.domain or not requester.local:
            return False
        admin = self.host.modules.get(AdminModule.name)
        if isinstance(admin, AdminModule) and admin.is_admin(requester):
            return True
        return self.cfg.who == "users"

    async def create(self, creator: str) -> Invite:
        """A new invitation from ``creator`` ("" for none); StanzaError past
        ``invites.max_per_user``."""
        now = _now()
        if creator and await self.storage.pending(self.host.domain, creator, now) >= (
            self.cfg.max_per_user
        ):
            raise StanzaError(
                "resource-constraint",
                f"you have {self.cfg.max_per_user} unused invitations already",
            )
        invite = await links.create(
            self.host.storage, self.host.domain, creator, now, links.expiry(self.server.config, now)
        )
        self.log.info(
            "invitation created on %s by %s", self.host.domain, creator or "an administrator"
        )
        return invite

    def result_form(self, invite: Invite) -> ET.Element:
        """The XEP-0401 §5.1 result: uri, landing-url, expire."""
        fields: list[forms.Field] = [
            ("uri", "text-single", "Invitation URI", [links.xmpp_uri(invite)])
        ]
        url = links.landing_url(self.server.config, invite)
        if url:
            fields.append(("landing-url", "text-single", "Invitation web page", [url]))
        if invite.expires is not None:
            fields.append(("expire", "text-single", "Valid until", [format_stamp(invite.expires)]))
        return forms.build("result", FORM_TYPE, fields)

    # -- redeeming them -------------------------------------------------------------------

    async def valid(self, token: str) -> Invite:
        """The usable invitation of this domain with that token; InviteError otherwise."""
        invite = await self.storage.get(token) if token else None
        if invite is None or invite.host != self.host.domain:
            raise InviteError("unknown")
        reason = links.state(invite, _now())
        if reason != "valid":
            raise InviteError(reason)
        return invite

    async def redeem(self, token: str, username: str, password: str) -> str:
        """Register an account with an invitation (the landing page); its username.
        Raises InviteError, or AccountError (the invitation stays usable)."""
        invite = await self.valid(token)
        if not await self.storage.claim(token):
            raise InviteError("used")
        register = self.require(RegisterModule)
        try:
            user = await register.create_account(username, password)
        except BaseException:
            await self.storage.release(token)
            raise
        await self.completed(invite, user)
        return user

    async def completed(self, invite: Invite, user: str) -> None:
        """An account was made with ``invite``: record it, befriend the inviter."""
        await self.storage.complete(invite.token, user)
        self.log.info("%s@%s registered with an invitation", user, self.host.domain)
        if invite.creator and invite.creator != user:
            await self.befriend(invite.creator, user)

    async def befriend(self, a: str, b: str) -> None:
        """Subscribe ``a`` and ``b`` (accounts of this domain) to each other both ways
        (XEP-0379), pushing the new items to their sessions."""
        if await self.host.storage.accounts.get(self.host.domain, a) is None:
            return  # the inviter's account went meanwhile
        roster = self.require(RosterModule)
        domain = self.host.domain
        for user, contact in ((a, f"{b}@{domain}"), (b, f"{a}@{domain}")):
            async with roster.lock(user):
                old = await roster.get_item(user, contact)
                if old is None and await roster.full(user):
                    continue
                item = RosterItem(
                    jid=contact,
                    name=old.name if old else None,
                    subscription="both",
                    groups=old.groups if old else (),
                )
                await roster.set_item(user, item)

    # -- XEP-0445 before authentication ----------------------------------------------------

    async def on_preauth(self, ev: NonzaEvent) -> bool:
        stream, iq = ev.stream, ev.element
        answer = ET.Element("iq", {"id": iq.get("id", "")})
        try:
            if iq.get("type") != "set":
                raise StanzaError("bad-request", "send the token in an iq set")
            invite = await self.valid(iq[0].get("token", ""))
        except InviteError:
            self.log.info("%s: preauth with an unusable invitation", stream.ip)
            answer.set("type", "error")
            answer.append(
                StanzaError("item-not-found", "the invitation is invalid or expired").to_element()
            )
        except StanzaError as err:
            answer.set("type", "error")
            answer.append(err.to_element())
        else:
            self._remember(stream, invite)
            answer.set("type", "result")
        stream.write(stream.stream.element(answer))
        return True

    def _remember(self, stream: ClientStream, invite: Invite) -> None:
        table = self._preauth
        if len(table) >= MAX_PREAUTH_STREAMS:
            for key in [k for k, (s, _) in table.items() if s.closing or s.username]:
                del table[key]
            while len(table) >= MAX_PREAUTH_STREAMS:
                del table[next(iter(table))]
        table[id(stream)] = (stream, invite)

    async def ticket(self, stream: ClientStream) -> InviteTicket | None:
        """The ``register-ticket`` event: the stream's accepted invitation, taken (one
        registration per preauth)."""
        entry = self._preauth.get(id(stream))
        if entry is None or entry[0] is not stream:
            return None
        del self._preauth[id(stream)]
        return InviteTicket(self, entry[1])


class InviteCommand(Command):
    """XEP-0401 §5.1: a User Invitation link, at once (no form)."""

    node = f"{INVITE}#invite"
    name = "Invite user"

    def __init__(self, module: InviteModule) -> None:
        self.module = module

    def may_run(self, requester: JID) -> bool:
        return self.module.may_invite(requester)

    async def run(self, session: CommandSession, values: dict[str, list[str]] | None) -> Response:
        invite = await self.module.create(session.ev.frm.local)
        return Response("completed", self.module.result_form(invite))


class CreateAccountCommand(Command):
    """XEP-0401 §5.4 for administrators: an Account Creation link; with
    ``roster-subscription`` the new account and the administrator become contacts.
    Pre-defined usernames are not offered (the form has no ``username``)."""

    node = f"{INVITE}#create-account"
    name = "Create account"

    def __init__(self, module: InviteModule) -> None:
        self.module = module

    def may_run(self, requester: JID) -> bool:
        admin = self.module.host.modules.get(AdminModule.name)
        return (
            self.module.cfg.enabled
            and isinstance(admin, AdminModule)
            and admin.is_admin(requester)
            and requester.domain == self.module.host.domain
        )

    async def run(self, session: CommandSession, values: dict[str, list[str]] | None) -> Response:
        if values is None:
            form = forms.build(
                "form",
                FORM_TYPE,
                [("roster-subscription", "boolean", "Add me as a contact", ["0"])],
                "Create an account invitation",
            )
            return Response("executing", form)
        befriend = forms.boolean(values.get("roster-subscription", []), "roster-subscription")
        invite = await self.module.create(session.ev.frm.local if befriend else "")
        return Response("completed", self.module.result_form(invite))
