"""Ad-hoc commands (XEP-0050 1.3) on the server's JID, and their sessions.

Modules register :class:`Command` objects with :meth:`AdhocModule.add`; the
admin commands (XEP-0133, features/admin.py) are the first. A requester sees
(disco#items on the ``http://jabber.org/protocol/commands`` node) and runs only
the commands whose ``may_run`` accepts it; others are ``<item-not-found/>`` in
disco and ``<forbidden/>`` to execute.

A session, per execution:

    (none) --execute--> EXECUTING (a form shown; a sessionid) --next/complete with
    the form--> EXECUTING (another form) or COMPLETED (session gone)
    EXECUTING --prev--> the form before; --cancel--> CANCELED (session gone)
    any error --> gone

Errors (§4.6): an unknown action is ``<bad-request/><malformed-action/>``, one
the stage does not offer ``<bad-request/><bad-action/>``, a sessionid that is not
the requester's open session ``<bad-request/><bad-sessionid/>`` (or
``<not-allowed/><session-expired/>`` if it timed out), a form that lacks what
the command needs ``<bad-request/><bad-payload/>``. Sessions are bounded per
requester and in all, and expire after ``SESSION_TIMEOUT`` seconds unused.
"""

from __future__ import annotations

import logging
import secrets
import time
import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar

from descant import forms
from descant.errors import StanzaError
from descant.features.disco import NodeRequest
from descant.jid import JID
from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.stanza import error_reply, iq_result
from descant.xml import ns

log = logging.getLogger(__name__)

_C = "{%s}" % ns.COMMANDS
ACTIONS = frozenset({"execute", "next", "prev", "complete", "cancel"})
# Seconds a session may wait for the requester's next step.
SESSION_TIMEOUT = 600.0
MAX_SESSIONS_PER_REQUESTER = 10
MAX_SESSIONS = 1000
# Ids of timed-out sessions remembered, to answer <session-expired/> rather than
# <bad-sessionid/>.
MAX_EXPIRED = 1000


def command_error(condition: str, specific: str, text: str | None = None) -> StanzaError:
    """A stanza error with an XEP-0050 application condition (§4.6)."""
    return StanzaError(condition, text, app=ET.Element(f"{_C}{specific}"))


def bad_payload(text: str) -> StanzaError:
    return command_error("bad-request", "bad-payload", text)


@dataclass
class Response:
    """What one stage of a command answers: ``executing`` with a form (and the actions
    it offers), or ``completed`` with an optional result form; notes are
    (type, text) with type info, warn or error."""

    status: str
    form: ET.Element | None = None
    actions: tuple[str, ...] = ("complete",)
    notes: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class CommandSession:
    id: str
    node: str
    requester: str  # the full JID that started it
    ev: StanzaEvent  # the request of the current step
    stage: int = 0  # forms submitted so far
    data: dict[str, Any] = field(default_factory=dict)  # the command's own
    shown: list[Response] = field(default_factory=list)  # forms shown, for prev
    used: float = 0.0


class Command:
    """One ad-hoc command. ``run`` is called with ``values`` None on execute, then with
    the submitted form's values; it returns a Response or raises StanzaError."""

    node: ClassVar[str] = ""
    name: ClassVar[str] = ""

    def may_run(self, requester: JID) -> bool:
        return False

    async def run(self, session: CommandSession, values: dict[str, list[str]] | None) -> Response:
        raise NotImplementedError


class AdhocModule(Module):
    name = "adhoc"

    def load(self) -> None:
        self.commands: dict[str, Command] = {}
        self.sessions: OrderedDict[str, CommandSession] = OrderedDict()  # least recent first
        self._expired: OrderedDict[str, str] = OrderedDict()  # id → requester
        self.host.add_feature(ns.COMMANDS)
        self.hook_iq("set", "host", f"{ns.COMMANDS}:command", self.on_command)
        self.hook("disco-node-items", self.node_items)
        self.hook("disco-node-info", self.node_info)

    def add(self, command: Command) -> None:
        self.commands[command.node] = command

    # -- discovery (§2) -------------------------------------------------------------------

    async def node_items(self, req: NodeRequest) -> ET.Element | None:
        if req.node != ns.COMMANDS:
            return None
        query = ET.Element("{%s}query" % ns.DISCO_ITEMS)
        for cmd in self.commands.values():
            if cmd.may_run(req.ev.frm):
                attrs = {"jid": self.host.domain, "node": cmd.node, "name": cmd.name}
                ET.SubElement(query, "{%s}item" % ns.DISCO_ITEMS, attrs)
        return query

    async def node_info(self, req: NodeRequest) -> ET.Element | None:
        query = ET.Element("{%s}query" % ns.DISCO_INFO)
        if req.node == ns.COMMANDS:
            identity = {"category": "automation", "type": "command-list", "name": "Commands"}
        else:
            cmd = self.commands.get(req.node)
            if cmd is None or not cmd.may_run(req.ev.frm):
                return None  # not even its existence is told to those who may not run it
            identity = {"category": "automation", "type": "command-node", "name": cmd.name}
        ET.SubElement(query, "{%s}identity" % ns.DISCO_INFO, identity)
        for feature in (ns.COMMANDS, forms.DATA):
            ET.SubElement(query, "{%s}feature" % ns.DISCO_INFO, {"var": feature})
        return query

    # -- execution (§3, §4) -----------------------------------------------------------------

    async def on_command(self, ev: StanzaEvent) -> bool:
        try:
            response, session = await self._step(ev)
        except StanzaError as err:
            return await self.answer(ev, error_reply(ev.stanza, err))
        return await self.answer(ev, iq_result(ev.stanza, self._element(response, session)))

    async def _step(self, ev: StanzaEvent) -> tuple[Response, CommandSession]:
        el = ev.stanza[0]
        node = el.get("node", "")
        action = el.get("action", "execute")
        sid = el.get("sessionid")
        if action not in ACTIONS:
            raise command_error("bad-request", "malformed-action", f"unknown action {action!r}")
        cmd = self.commands.get(node)
        if cmd is None:
            raise StanzaError("item-not-found", "no such command")
        if not cmd.may_run(ev.frm):
            raise StanzaError("forbidden", "you may not run this command")
        self._expire()
        if sid is None:
            if action != "execute":
                raise command_error("bad-request", "bad-sessionid", "no session to continue")
            session = self._new_session(ev, node)
            return await self._run(cmd, session, None), session
        session = self._session(ev, sid, node)
        session.ev = ev
        if action == "cancel":
            self._drop(session)
            return Response("canceled"), session
        form = el.find(f"{{{forms.DATA}}}x")
        if form is not None and form.get("type") == "cancel":
            self._drop(session)
            return Response("canceled"), session
        offered = session.shown[-1].actions if session.shown else ()
        if action == "execute":
            action = offered[0] if offered else "complete"
        if action == "prev":
            if len(session.shown) < 2:
                raise command_error("bad-request", "bad-action", "there is no previous stage")
            session.shown.pop()
            session.stage -= 1
            return session.shown[-1], session
        # COMPAT: clients whose flows always say "next" (slixmpp's continue_command)
        # get a one-form command completed, as "complete" would.
        if action not in offered and not (action == "next" and "complete" in offered):
            raise command_error("bad-request", "bad-action", f"{action!r} is not offered now")
        if form is None or form.get("type") != "submit":
            self._drop(session)
            raise bad_payload("submit the form")
        session.stage += 1
        return await self._run(cmd, session, forms.values(form)), session

    async def _run(
        self, cmd: Command, session: CommandSession, values: dict[str, list[str]] | None
    ) -> Response:
        try:
            response = await cmd.run(session, values)
        except BaseException:
            self._drop(session)  # an error ends the session (§4.6)
            raise
        if response.status == "executing":
            session.shown.append(response)
            session.used = time.monotonic()
            self.sessions[session.id] = session
            self.sessions.move_to_end(session.id)
        else:
            self._drop(session)
        return response

    def _element(self, response: Response, session: CommandSession) -> ET.Element:
        out = ET.Element(
            f"{_C}command",
            {"node": session.node, "sessionid": session.id, "status": response.status},
        )
        if response.status == "executing":
            actions = ET.SubElement(out, f"{_C}actions", {"execute": response.actions[0]})
            offered = list(response.actions)
            if len(session.shown) > 1:
                offered.insert(0, "prev")
            for name in offered:
                ET.SubElement(actions, f"{_C}{name}")
        for type_, text in response.notes:
            ET.SubElement(out, f"{_C}note", {"type": type_}).text = text
        if response.form is not None:
            out.append(response.form)
        return out

    # -- sessions ------------------------------------------------------------------------

    def _new_session(self, ev: StanzaEvent, node: str) -> CommandSession:
        requester = str(ev.frm)
        mine = sum(1 for s in self.sessions.values() if s.requester == requester)
        if mine >= MAX_SESSIONS_PER_REQUESTER or len(self.sessions) >= MAX_SESSIONS:
            raise StanzaError("resource-constraint", "too many commands in progress")
        return CommandSession(secrets.token_urlsafe(12), node, requester, ev)

    def _session(self, ev: StanzaEvent, sid: str, node: str) -> CommandSession:
        requester = str(ev.frm)
        session = self.sessions.get(sid)
        if session is None or session.requester != requester or session.node != node:
            if session is None and self._expired.get(sid) == requester:
                raise command_error("not-allowed", "session-expired", "the session timed out")
            # Another requester's session is not told apart from none at all.
            raise command_error("bad-request", "bad-sessionid", "no such session")
        return session

    def _drop(self, session: CommandSession) -> None:
        self.sessions.pop(session.id, None)

    def _expire(self) -> None:
        """Sessions unused for SESSION_TIMEOUT go (least recently used first)."""
        now = time.monotonic()
        while self.sessions:
            sid, session = next(iter(self.sessions.items()))
            if now - session.used < SESSION_TIMEOUT:
                break
            del self.sessions[sid]
            self._expired[sid] = session.requester
            if len(self._expired) > MAX_EXPIRED:
                self._expired.popitem(last=False)
