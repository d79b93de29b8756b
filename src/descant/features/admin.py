"""Service administration (XEP-0133 1.3) as ad-hoc commands, for ``server.admins``.

Each command is sent to a served domain and acts on that domain's accounts and
sessions: add a user, delete users, change a user's password, the number and the
list of online users, an announcement to every online user (a headline from the
domain to each available session), and shutting down or restarting the whole
server. Shutdown and restart announce first (the ``announcement`` field), wait
the chosen ``delay``, then stop as SIGTERM does; restart then starts the same
command line again in the same process (cli.py). Accounts are made, changed and
removed by the register module (features/register.py): keys derived off the
event loop, a removed account's sessions ended and all its data deleted.

Forms carry FORM_TYPE ``http://jabber.org/protocol/admin`` and the field vars of
XEP-0133 §4 (``accountjid``, ``accountjids``, ``password``, ``password-verify``,
``max_items``, ``onlineusersnum``, ``onlineuserjids``, ``announcement``,
``delay``).
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable

from descant import forms
from descant.errors import StanzaError
from descant.features.adhoc import AdhocModule, Command, CommandSession, Response, bad_payload
from descant.features.register import AccountError, RegisterModule
from descant.jid import JID, InvalidJID, parse
from descant.modules import Module

log = logging.getLogger(__name__)

ADMIN = "http://jabber.org/protocol/admin"
MAX_ITEMS = ("25", "50", "75", "100", "150", "200", "all")
DELAYS = ("0", "30", "60", "90", "120", "180", "300", "600", "900", "1800", "3600")
# Announcements and shutdown notices are messages like any other: bounded alike.
MAX_ANNOUNCEMENT = 65536

Values = dict[str, list[str]]


def _form(title: str, fields: list[forms.Field], instructions: str = "") -> ET.Element:
    form = forms.build("form", ADMIN, fields, title)
    if instructions:
        ET.SubElement(form, f"{{{forms.DATA}}}instructions").text = instructions
    for f in form.iter(f"{{{forms.DATA}}}field"):
        if f.get("var") != "FORM_TYPE" and f.get("type") not in ("fixed", "hidden"):
            ET.SubElement(f, f"{{{forms.DATA}}}required")
    return form


def _result(fields: list[forms.Field]) -> ET.Element:
    return forms.build("result", ADMIN, fields)


def _done(text: str) -> Response:
    return Response("completed", notes=[("info", text)])


def _text(values: Values, var: str) -> str:
    return "\n".join(values.get(var, [])).strip()


class AdminCommand(Command):
    """A XEP-0133 command: one form (``fields``), then ``complete``."""

    title: str = ""
    fields: list[forms.Field] = []

    def __init__(self, admin: AdminModule) -> None:
        self.admin = admin

    def may_run(self, requester: JID) -> bool:
        return self.admin.is_admin(requester)

    async def run(self, session: CommandSession, values: Values | None) -> Response:
        if values is None:
            return Response("executing", _form(self.title, self.fields))
        if forms.single(values.get("FORM_TYPE", [])) not in ("", ADMIN):
            raise bad_payload(f"FORM_TYPE must be {ADMIN}")
        return await self.complete(values)

    async def complete(self, values: Values) -> Response:
        raise NotImplementedError

    def account(self, value: str, var: str) -> str:
        """The username of an account JID of this domain in a form field."""
        try:
            jid = parse(value.strip())
        except InvalidJID as exc:
            raise bad_payload(f"{var}: {exc}") from None
        if not jid.local or jid.resource:
            raise bad_payload(f"{var}: {value!r} is not an account JID (user@domain)")
        if jid.domain != self.admin.host.domain:
            raise bad_payload(f"{var}: send this command to {jid.domain} for its accounts")
        return jid.local


class AddUser(AdminCommand):
    node = f"{ADMIN}#add-user"
    name = "Add User"
    title = "Adding a User"
    fields = [
        ("accountjid", "jid-single", "The Jabber ID for the account to be added", []),
        ("password", "text-private", "The password for this account", []),
        ("password-verify", "text-private", "Retype password", []),
    ]

    async def complete(self, values: Values) -> Response:
        user = self.account(forms.single(values.get("accountjid", [])), "accountjid")
        password = forms.single(values.get("password", []))
        verify = values.get("password-verify")
        if verify is not None and forms.single(verify) != password:
            raise bad_payload("the passwords do not match")
        try:
            user = await self.admin.register.create_account(user, password)
        except AccountError as exc:
            raise StanzaError(exc.condition, exc.text) from None
        return _done(f"{user}@{self.admin.host.domain} added")


class DeleteUser(AdminCommand):
    node = f"{ADMIN}#delete-user"
    name = "Delete User"
    title = "Deleting a User"
    fields = [("accountjids", "jid-multi", "The Jabber ID(s) to delete", [])]

    async def complete(self, values: Values) -> Response:
        users = [self.account(v, "accountjids") for v in values.get("accountjids", []) if v]
        if not users:
            raise bad_payload("accountjids: name at least one account")
        domain = self.admin.host.domain
        gone: list[str] = []
        missing: list[str] = []
        for user in users:
            removed = await self.admin.register.remove_account(user, "the account was deleted")
            (gone if removed else missing).append(f"{user}@{domain}")
        notes = [("info", f"deleted {', '.join(gone)}")] if gone else []
        if missing:
            notes.append(("warn", f"no such account: {', '.join(missing)}"))
        return Response("completed", notes=notes)


class ChangeUserPassword(AdminCommand):
    node = f"{ADMIN}#change-user-password"
    name = "Change User Password"
    title = "Changing a User Password"
    fields = [
        ("accountjid", "jid-single", "The Jabber ID for this account", []),
        ("password", "text-private", "The password for this account", []),
    ]

    async def complete(self, values: Values) -> Response:
        user = self.account(forms.single(values.get("accountjid", [])), "accountjid")
        try:
            password = forms.single(values.get("password", []))
            await self.admin.register.change_password(user, password)
        except AccountError as exc:
            raise StanzaError(exc.condition, exc.text) from None
        return _done(f"password of {user}@{self.admin.host.domain} changed")


class OnlineUsersNum(AdminCommand):
    node = f"{ADMIN}#get-online-users-num"
    name = "Get Number of Online Users"

    async def run(self, session: CommandSession, values: Values | None) -> Response:
        count = len(self.admin.host.sessions.users())
        # Typed although a result form may omit it: clients (Profanity) show no value otherwise.
        field = ("onlineusersnum", "text-single", "The number of online users", [str(count)])
        return Response("completed", _result([field]))


class OnlineUsersList(AdminCommand):
    node = f"{ADMIN}#get-online-users-list"
    name = "Get List of Online Users"
    title = "Requesting List of Online Users"
    fields = [("max_items", "list-single", "Maximum number of items to report", ["25"])]

    async def run(self, session: CommandSession, values: Values | None) -> Response:
        response = await super().run(session, values)
        if response.form is not None and values is None:
            forms.add_options(response.form, "max_items", [(v, v) for v in MAX_ITEMS])
        return response

    async def complete(self, values: Values) -> Response:
        limit_s = forms.single(values.get("max_items", [])) or "all"
        if limit_s != "all" and not (limit_s.isascii() and limit_s.isdigit()):
            raise bad_payload("max_items: a number or 'all'")
        domain = self.admin.host.domain
        users = sorted(self.admin.host.sessions.users())
        if limit_s != "all":
            users = users[: int(limit_s)]
        jids = [f"{u}@{domain}" for u in users]
        field = ("onlineuserjids", "jid-multi", "The list of all online users", jids)
        return Response("completed", _result([field]))


class Announce(AdminCommand):
    node = f"{ADMIN}#announce"
    name = "Send Announcement to Online Users"
    title = "Making an Announcement"
    fields = [("announcement", "text-multi", "Announcement", [])]

    async def complete(self, values: Values) -> Response:
        text = _text(values, "announcement")
        if not text:
            raise bad_payload("announcement: write something")
        if len(text) > MAX_ANNOUNCEMENT:
            raise bad_payload(f"announcement: at most {MAX_ANNOUNCEMENT} characters")
        sent = self.admin.announce(text)
        return _done(f"announced to {sent} session(s)")


class Stop(AdminCommand):
    """Shutdown and restart: announce, wait the delay, stop cleanly."""

    restart = False
    verb = ""
    fields = [
        ("delay", "list-single", "Time delay before shutting down", ["0"]),
        ("announcement", "text-multi", "Announcement", []),
    ]

    async def run(self, session: CommandSession, values: Values | None) -> Response:
        response = await super().run(session, values)
        if response.form is not None and values is None:
            forms.add_options(response.form, "delay", [(d, f"{d} seconds") for d in DELAYS])
            # The announcement is optional.
            for f in response.form.iter(f"{{{forms.DATA}}}field"):
                if f.get("var") == "announcement":
                    f.remove(f.find(f"{{{forms.DATA}}}required"))  # type: ignore[arg-type]
        return response

    async def complete(self, values: Values) -> Response:
        delay_s = forms.single(values.get("delay", [])) or "0"
        if delay_s not in DELAYS:
            raise bad_payload(f"delay: one of {', '.join(DELAYS)} seconds")
        text = _text(values, "announcement")
        if len(text) > MAX_ANNOUNCEMENT:
            raise bad_payload(f"announcement: at most {MAX_ANNOUNCEMENT} characters")
        if text:
            self.admin.announce_everywhere(text)
        delay = int(delay_s)
        log.warning("%s requested in %d s by an administrator", self.verb, delay)
        self.admin.stop_later(delay, self.restart)
        return _done(f"the server {self.verb}s in {delay} seconds")


class Shutdown(Stop):
    node = f"{ADMIN}#shutdown"
    name = "Shut Down Service"
    title = "Shutting Down the Service"
    verb = "shut down"


class Restart(Stop):
    node = f"{ADMIN}#restart"
    name = "Restart Service"
    title = "Restarting the Service"
    verb = "restart"
    restart = True


COMMANDS: list[Callable[[AdminModule], AdminCommand]] = [
    AddUser,
    DeleteUser,
    ChangeUserPassword,
    OnlineUsersNum,
    OnlineUsersList,
    Announce,
    Restart,
    Shutdown,
]


class AdminModule(Module):
    name = "admin"

    def load(self) -> None:
        self.admins = frozenset(parse(a).bare for a in self.server.config.server.admins)
        self._stopping: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        adhoc = self.require(AdhocModule)  # every module is loaded by now
        for make in COMMANDS:
            adhoc.add(make(self))

    @property
    def register(self) -> RegisterModule:
        return self.require(RegisterModule)

    def is_admin(self, jid: JID) -> bool:
        return jid.bare in self.admins

    def announce(self, text: str) -> int:
        """A headline from the domain to every available session of it; how many."""
        sent = 0
        for session in self.host.sessions.all():
            if session.presence is None:
                continue  # not available: announcements are not stored (XEP-0133 §4.23)
            msg = ET.Element(
                "message", {"from": self.host.domain, "to": str(session.jid), "type": "headline"}
            )
            ET.SubElement(msg, "body").text = text
            session.send(msg)
            sent += 1
        return sent

    def announce_everywhere(self, text: str) -> None:
        """A server-wide notice (shutdown, restart): every served domain's users."""
        for domain in self.server.config.server.domains:
            host = self.server.hosts.get(domain)
            mod = host.modules.get(self.name) if host is not None else None
            if isinstance(mod, AdminModule):
                mod.announce(text)

    def stop_later(self, delay: float, restart: bool) -> None:
        """Stop the server after ``delay`` seconds, as SIGTERM would (a later request
        replaces an earlier one's delay)."""
        if self._stopping is not None:
            self._stopping.cancel()
        loop = asyncio.get_running_loop()
        self._stopping = loop.call_later(delay, self.server.request_stop, restart)

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.cancel()


__all__ = ["ADMIN", "AdminModule"]
