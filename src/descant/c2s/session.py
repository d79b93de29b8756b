"""One client-to-server session over an asyncio stream (RFC 6120).

State machine (one ordered task reads, parses and handles every element):

    CONNECTED --header--> OPEN --starttls--> (TLS, restart) --header--> OPEN
    OPEN --SASL success (§6)--> (restart) --header--> AUTHENTICATED
    AUTHENTICATED --bind (§7)--> BOUND --</stream>, error, EOF--> CLOSED

Before TLS, when ``c2s.require_tls`` is on, only <starttls/> is accepted; before
authentication only SASL; before binding only the bind and legacy session iqs
(§7.1). Once bound, every stanza is checked (kind, ``to``), stamped with the
session's full JID as ``from`` (never the client's own, §8.1.2.1) and routed.
Stream errors are sent with a header first when none was sent (§4.9.1.1) and
close the stream.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import logging
import secrets
import time
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from descant.c2s import features
from descant.c2s.sasl import SCRAM_MECHANISMS, Challenge, Failure, PlainAuth, ScramAuth, Step
from descant.errors import StanzaError, StreamError
from descant.jid import JID, InvalidJID, parse, prep_resource
from descant.net.connection import StreamConnection
from descant.stanza import STANZA_KINDS, error_reply, iq_result, valid_iq
from descant.stream.protocol import StreamClosed, StreamOpened
from descant.xml import ns

if TYPE_CHECKING:
    from descant.host import Host
    from descant.server import Server

log = logging.getLogger(__name__)

# Beyond this much unsent output the client is not reading: drop it rather
# than buffer without bound.
MAX_WRITE_BUFFER = 16 * 1024 * 1024


class State(enum.Enum):
    CONNECTED = "connected"
    OPEN = "open"
    AUTHENTICATED = "authenticated"
    BOUND = "bound"
    CLOSED = "closed"


class C2SSession(StreamConnection):
    # Thousands of these live at once; slots keep an idle session small.
    __slots__ = (
        "_budget_bytes",
        "_budget_start",
        "_host",
        "_out",
        "auth_failures",
        "data",
        "directed",
        "interested",
        "ip",
        "jid",
        "jid_str",
        "presence",
        "priority",
        "sasl",
        "secure",
        "state",
        "username",
    )

    def __init__(
        self,
        server: Server,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direct_tls: bool = False,
    ) -> None:
        super().__init__(server, reader, writer, ns.CLIENT)
        self.state = State.CONNECTED
        self.secure = direct_tls
        peer = writer.get_extra_info("peername")
        self.ip: str = peer[0] if peer else "?"
        self._host: Host | None = None
        self.username: str | None = None
        self.jid: JID = JID("", "", "")
        self.jid_str = ""
        self.priority = 0
        self.presence: ET.Element | None = None
        self.interested = False
        self.directed: set[JID] = set()
        self.sasl: ScramAuth | PlainAuth | None = None
        self.auth_failures = 0
        self._budget_start = time.monotonic()
        self._budget_bytes = 0
        self.data: dict[str, object] = {}  # per-session state owned by feature modules
        self._out: list[str] = []  # serialized stanzas not yet written (send, _flush)

    @property
    def host(self) -> Host:
        """The domain this stream is for (known once the header arrived)."""
        assert self._host is not None
        return self._host

    # -- output ---------------------------------------------------------------

    def write(self, text: str) -> None:
        self._flush()  # what send() queued goes first
        super().write(text)

    def send(self, stanza: ET.Element) -> None:
        """Queue a stanza for the client (the only delivery path).

        Stanzas queued during one turn of the event loop leave in one write (one
        system call rather than one each, bench/README.md), at the end of that turn.
        """
        if self.writer.transport.is_closing():
            return
        self._out.append(self.stream.element(stanza))
        if len(self._out) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        if not self._out:
            return
        data = "".join(self._out).encode("utf-8")
        self._out.clear()
        transport = self.writer.transport
        if transport.is_closing():
            return
        transport.write(data)
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning("%s: output buffer full, closing", self.jid_str or self.ip)
            asyncio.get_running_loop().create_task(self.close("policy-violation"))

    async def _teardown(self) -> None:
        self.state = State.CLOSED
        await self._unbind()
        self._flush()
        await super()._teardown()

    def _our_name(self) -> str:
        return self._host.domain if self._host is not None else self.server.default_domain

    def _label(self) -> str:
        return self.jid_str or self.ip

    # -- the task ---------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.call_later(self.server.config.c2s.auth_timeout, self._auth_timeout)
        try:
            await super().run()
        finally:
            deadline.cancel()

    async def _read(self) -> bytes:
        data = await super()._read()
        # Floods: past c2s_rate bytes/s, stop reading until the rate is back.
        rate = self.server.config.limits.c2s_rate
        self._budget_bytes += len(data)
        elapsed = time.monotonic() - self._budget_start
        if elapsed >= 1.0:
            self._budget_start, self._budget_bytes = time.monotonic(), len(data)
        elif self._budget_bytes > rate:
            await asyncio.sleep(self._budget_bytes / rate - elapsed)
        return data

    def _auth_timeout(self) -> None:
        if self.state in (State.CONNECTED, State.OPEN) and not self.closing:
            asyncio.get_running_loop().create_task(self.close("connection-timeout"))

    async def _handle(self, ev: object) -> None:
        if isinstance(ev, ET.Element):
            if self.state is State.BOUND:
                await self._stanza(ev)
            elif self.state is State.AUTHENTICATED:
                await self._pre_bind(ev)
            elif self.state is State.OPEN:
                await self._negotiate(ev)
            return
        if isinstance(ev, StreamOpened):
            await self._open(ev)
        elif isinstance(ev, StreamClosed):
            await self.close()

    # -- stream header and features ------------------------------------------------

    async def _open(self, ev: StreamOpened) -> None:
        to = ev.attrs.get("to")
        host = self.server.host_for(to) if to else None
        if host is not None and host.domain not in self.server.config.server.domains:
            host = None  # a service (e.g. MUC) has no accounts to log in to
        if host is None and not to and len(self.server.config.server.domains) == 1:
            # One served domain: it is the default (service hosts such as MUC do not count).
            host = self.server.hosts.get(self.server.default_domain)
        if self._host is not None and host is not self._host:
            raise StreamError("host-unknown", "the domain changed on restart")
        if host is None:
            self.write(self.stream.header(self.server.default_domain))
            raise StreamError("host-unknown", f"{to!r} is not served here")
        self._host = host
        frm = ev.attrs.get("from")
        lang = ev.attrs.get(ns.XML_LANG) or "en"
        self.write(self.stream.header(host.domain, frm if frm and "@" in frm else None, lang))
        self.stream.check_header(ev)
        if self.state is State.CONNECTED:
            self.state = State.OPEN
        feats = features.build(self)
        self.write(self.stream.element(feats))

    @property
    def tls_required(self) -> bool:
        return self.server.config.c2s.require_tls and not self.secure

    def mechanisms(self) -> list[str]:
        if self.tls_required:
            return []
        mechs = [m for m in SCRAM_MECHANISMS if self.secure or not m.endswith("PLUS")]
        if self.secure or self.server.config.c2s.allow_plain_without_tls:
            mechs.append("PLAIN")
        return mechs

    # -- before authentication: STARTTLS and SASL ---------------------------------------

    async def _negotiate(self, el: ET.Element) -> None:
        tag = el.tag
        if tag == "{%s}starttls" % ns.TLS:
            await self._starttls()
        elif tag.startswith("{%s}" % ns.SASL):
            if self.tls_required:
                self._sasl_failure(Failure("encryption-required"))
                return
            await self._sasl(el)
        elif self.tls_required:
            raise StreamError("policy-violation", "STARTTLS is required")
        else:
            raise StreamError("not-authorized", "authenticate first")

    async def _starttls(self) -> None:
        if self.secure:
            raise StreamError("policy-violation", "TLS is already in place")
        self.write("<proceed xmlns='%s'/>" % ns.TLS)
        await self.writer.drain()
        assert self.server.tls_context is not None
        try:
            await self.writer.start_tls(self.server.tls_context)
        except (TimeoutError, OSError, ConnectionError) as exc:
            log.info("%s: TLS handshake failed: %s", self.ip, exc)
            self.closing = True
            await self._teardown()
            return
        self.secure = True
        self.stream.restart()

    async def _sasl(self, el: ET.Element) -> None:
        local = el.tag.rpartition("}")[2]
        if local == "abort":
            self.sasl = None
            self._sasl_failure(Failure("aborted"))
            return
        if local == "auth":
            if self.server.auth_throttled(self.ip):
                self._sasl_failure(Failure("temporary-auth-failure", "too many failed attempts"))
                return
            mech = el.get("mechanism", "")
            if mech not in self.mechanisms():
                # PLAIN and the -PLUS variants exist here but are offered only over
                # TLS: asking for them on a plain stream is §6.5.6, not §6.5.5.
                known = mech == "PLAIN" or mech in SCRAM_MECHANISMS
                need_tls = known and not self.secure
                self._sasl_failure(
                    Failure("encryption-required" if need_tls else "invalid-mechanism")
                )
                return
            accounts = self.server.storage.accounts
            if mech == "PLAIN":
                self.sasl = PlainAuth(self.host.domain, accounts)
            else:
                cb = ("tls-server-end-point", self.server.cb_data) if self.secure else None
                self.sasl = ScramAuth(mech, self.host.domain, accounts, cb)
            initial = self._decode(el.text)
            if initial is None:
                return
            await self._sasl_step(await self.sasl.start(initial if el.text else None))
        elif local == "response":
            if self.sasl is None:
                self._sasl_failure(Failure("malformed-request", "no exchange in progress"))
                return
            data = self._decode(el.text)
            if data is not None:
                await self._sasl_step(await self.sasl.step(data))
        else:
            # §4.9.3.24: a first-level element the server does not understand
            # (unsupported-feature is about features the server itself requires).
            raise StreamError("unsupported-stanza-type", f"unknown SASL element {local}")

    def _decode(self, text: str | None) -> bytes | None:
        text = (text or "").strip()
        if text in ("", "="):
            return b""
        try:
            return base64.b64decode(text, validate=True)
        except ValueError:
            self.sasl = None
            self._sasl_failure(Failure("incorrect-encoding"))
            return None

    async def _sasl_step(self, step: Step) -> None:
        if isinstance(step, Challenge):
            data = base64.b64encode(step.data).decode() if step.data else "="
            self.write(f"<challenge xmlns='{ns.SASL}'>{data}</challenge>")
            return
        self.sasl = None
        if isinstance(step, Failure):
            if step.condition == "not-authorized":
                self.server.auth_failed(self.ip)
                self.auth_failures += 1
            self._sasl_failure(step)
            if self.auth_failures >= self.server.config.limits.max_auth_failures:
                await self.close("policy-violation", "too many failed authentication attempts")
            return
        data = base64.b64encode(step.data).decode() if step.data else ""
        self.write(f"<success xmlns='{ns.SASL}'>{data}</success>")
        self.username = step.username
        self.jid = JID(step.username, self.host.domain, "")
        self.state = State.AUTHENTICATED
        self.stream.restart()
        log.info("%s authenticated from %s", self.jid, self.ip)

    def _sasl_failure(self, f: Failure) -> None:
        el = ET.Element("{%s}failure" % ns.SASL)
        ET.SubElement(el, "{%s}%s" % (ns.SASL, f.condition))
        if f.text:
            ET.SubElement(el, "{%s}text" % ns.SASL).text = f.text
        self.write(self.stream.element(el))

    # -- after authentication: resource binding (RFC 6120 §7) --------------------------------

    async def _pre_bind(self, el: ET.Element) -> None:
        if el.tag != "iq" or not el.get("id"):
            raise StreamError("not-authorized", "bind a resource first")
        payload = el[0] if len(el) else None
        if el.get("type") == "set" and payload is not None and payload.tag == "{%s}bind" % ns.BIND:
            await self._bind(el, payload)
        elif payload is not None and payload.tag == "{%s}session" % ns.SESSION:
            self.write(self.stream.element(iq_result(el)))
        else:
            self.send(error_reply(el, StanzaError("not-authorized", "bind a resource first")))

    async def _bind(self, iq: ET.Element, bind: ET.Element) -> None:
        assert self.username is not None
        # Only XML whitespace is trimmed: str.strip() would also eat U+2028 and
        # friends, turning a resource Resourceprep must refuse into "none requested".
        requested = (bind.findtext("{%s}resource" % ns.BIND) or "").strip(" \t\r\n")
        try:
            resource = prep_resource(requested) if requested else secrets.token_hex(6)
        except InvalidJID as exc:
            self.send(error_reply(iq, StanzaError("bad-request", str(exc))))
            return
        self.jid = JID(self.username, self.host.domain, resource)
        self.jid_str = str(self.jid)
        old = self.host.sessions.get(self.username, resource)
        if old is not None:
            # RFC 6120 §7.7.2.2: the newer session wins; the older one is told why
            # and leaves as on logout (its contacts see it go unavailable).
            await old.close("conflict", "replaced by a new session")
        self.host.sessions.add(self)
        self.state = State.BOUND
        result = ET.Element("{%s}bind" % ns.BIND)
        ET.SubElement(result, "{%s}jid" % ns.BIND).text = self.jid_str
        self.send(iq_result(iq, result))
        await self.host.events.fire("resource-bound", self)

    async def _unbind(self) -> None:
        host = self._host
        if host is None or self.state is not State.CLOSED or not self.jid.resource:
            return
        if host.sessions.remove(self):
            try:
                await host.events.fire("resource-unbound", self)
            except Exception:
                log.exception("%s: error while unbinding", self.jid_str)
        self.jid = JID(self.jid.local, self.jid.domain, "")

    # -- bound: stanzas ------------------------------------------------------------------

    async def _stanza(self, el: ET.Element) -> None:
        kind = el.tag
        if kind not in STANZA_KINDS:
            raise StreamError("unsupported-stanza-type", f"<{kind}/> is not a stanza")
        type_ = el.get("type")
        # Errors, and iq results, are never answered (RFC 6120 §8.3.1, §8.2.3):
        # a malformed one is dropped.
        silent = type_ == "error" or (kind == "iq" and type_ == "result")
        to = el.get("to")
        if to is not None:
            try:
                parse(to)
            except InvalidJID as exc:
                el.set("from", self.jid_str)
                if not silent:
                    self.send(self._local_error(el, StanzaError("jid-malformed", str(exc))))
                return
        if kind == "iq" and not valid_iq(el):
            el.set("from", self.jid_str)
            if not silent:
                err = StanzaError("bad-request", "an iq needs an id, a type, and get/set one child")
                self.send(self._local_error(el, err))
            return
        el.set("from", self.jid_str)
        await self.server.router.route(el, self)

    def _local_error(self, el: ET.Element, err: StanzaError) -> ET.Element:
        reply = error_reply(el, err)
        reply.attrib.pop("from", None)
        reply.set("to", self.jid_str)
        return reply
