"""One client-to-server stream over any transport: negotiation, then a session (RFC 6120).

State machine (one ordered task takes and handles every event):

    CONNECTED --header--> OPEN --<starttls/> (TCP only)--> (TLS, restart) --header--> OPEN
    OPEN --SASL success (§6)--> (restart) --header--> AUTHENTICATED
    AUTHENTICATED --bind (§7), or <resume/> (XEP-0198)--> BOUND, a ClientSession attached
    any --</stream>, error, EOF--> CLOSED

The same machine runs on TCP (``<stream:stream>``), WebSocket (RFC 7395
``<open/>``) and BOSH (XEP-0206): the transport only moves bytes or frames.
Before TLS, when ``c2s.require_tls`` is on, only <starttls/> is accepted, and a
transport that cannot start TLS and is not already secure is refused. Before
authentication only SASL; SCRAM-PLUS is offered only where this transport ends
TLS itself. Before binding only the bind and legacy session iqs (§7.1) and the
nonzas modules take (stream resumption). Once bound, every stanza is checked
(kind, ``to``), stamped with the session's full JID as ``from`` (never the
client's own, §8.1.2.1) and routed; other top-level elements are nonzas,
offered to modules as ``nonza/<ns>:<tag>`` events (stream management, client
state indication). A handler failing on one stanza answers it
<internal-server-error/>; the stream goes on.

Layer switches (STARTTLS, SASL success) restart the stream protocol, which
drops whatever was received before the switch (stream/protocol.py).

When the stream ends, the session ends with it, except when the transport was
lost without a close and the client asked for resumption: the session then
hibernates (c2s/session.py).
"""

from __future__ import annotations

import asyncio
import base64
import enum
import logging
import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING

from descant.c2s import features
from descant.c2s.sasl import SCRAM_MECHANISMS, Challenge, Failure, PlainAuth, ScramAuth, Step
from descant.c2s.session import ClientSession
from descant.c2s.sm import REQUEST, StreamManagement
from descant.errors import StanzaError, StreamError
from descant.jid import JID, InvalidJID, parse, prep_resource
from descant.net.connection import StreamConnection
from descant.net.transport import Transport
from descant.stanza import STANZA_KINDS, error_reply, iq_result, payload_key, valid_iq
from descant.stream.protocol import TCP, StreamClosed, StreamOpened
from descant.xml import ns

if TYPE_CHECKING:
    from descant.host import Host
    from descant.server import Server

log = logging.getLogger(__name__)

# Stream management (XEP-0198 §4): unacknowledged stanzas that make the server ask
# for an ack at once; fewer wait ACK_DELAY seconds. Each request costs the client a
# reply (over BOSH, a whole HTTP request), so asking after every stanza is too eager.
ACK_BATCH = 5
ACK_DELAY = 2.0


class State(enum.Enum):
    CONNECTED = "connected"
    OPEN = "open"
    AUTHENTICATED = "authenticated"
    BOUND = "bound"
    CLOSED = "closed"


@dataclass(slots=True)
class NonzaEvent:
    """A top-level element that is not a stanza (``nonza/<ns>:<tag>``)."""

    element: ET.Element
    stream: ClientStream
    session: ClientSession | None  # None before binding (e.g. <resume/>)


_NONZA_NAMES: dict[str, str] = {}  # tag → event name: acks arrive every few stanzas


def nonza_key(el: ET.Element) -> str:
    """``nonza/<ns>:<tag>``, the event a nonza is offered on."""
    tag = el.tag
    name = _NONZA_NAMES.get(tag)
    if name is None:
        if tag[0] == "{":
            uri, _, local = tag[1:].partition("}")
            name = f"nonza/{uri}:{local}"
        else:
            name = f"nonza/{ns.CLIENT}:{tag}"
        if len(_NONZA_NAMES) < 256:  # tags are the client's choice: bounded
            _NONZA_NAMES[tag] = name
    return name


class ClientStream(StreamConnection):
    __slots__ = (
        "_ack_timer",
        "_deadline",
        "_host",
        "_loop",
        "_out",
        "_rate",
        "_sent",
        "_throttled",
        "_window",
        "auth_failures",
        "ip",
        "sasl",
        "session",
        "state",
        "username",
    )

    def __init__(self, server: Server, transport: Transport, framing: str = TCP) -> None:
        super().__init__(server, transport, ns.CLIENT, framing)
        self.state = State.CONNECTED
        self.ip = transport.ip
        self._host: Host | None = None
        self.username: str | None = None
        self.session: ClientSession | None = None
        self.sasl: ScramAuth | PlainAuth | None = None
        self.auth_failures = 0
        self._out: list[str] = []  # serialized stanzas not yet written (send, _flush)
        self._loop = asyncio.get_running_loop()
        self._deadline: asyncio.TimerHandle | None = None
        self._ack_timer: asyncio.TimerHandle | None = None
        # Stanza rate (limits.c2s_stanza_rate): stanzas counted in one-second windows,
        # the clock read once per window's worth rather than per stanza.
        self._rate = server.config.limits.c2s_stanza_rate
        self._sent = 0
        self._window = self._loop.time()
        self._throttled = False

    @property
    def host(self) -> Host:
        """The domain this stream is for (known once the header arrived)."""
        assert self._host is not None
        return self._host

    @property
    def tls_required(self) -> bool:
        return self.server.config.c2s.require_tls and not self.transport.secure

    def mechanisms(self) -> list[str]:
        if self.tls_required:
            return []
        tls_here = self.transport.tls_here
        mechs = [m for m in SCRAM_MECHANISMS if tls_here or not m.endswith("PLUS")]
        if self.transport.secure or self.server.config.c2s.allow_plain_without_tls:
            mechs.append("PLAIN")
        return mechs

    # -- output ---------------------------------------------------------------------------

    def write_parts(self, parts: list[str]) -> None:
        if self._out:
            self._flush()  # what send() queued goes first
        super().write_parts(parts)

    def send(self, stanza: ET.Element) -> None:
        """Queue a stanza for the client.

        Stanzas queued during one turn of the event loop leave in one write (one
        system call rather than one each, bench/README.md), at the end of that turn.
        """
        if self.closing:
            return
        out = self._out
        out.append(self.stream.element(stanza))
        if len(out) == 1:
            self._loop.call_soon(self._flush)

    def send_text(self, text: str) -> None:
        """Queue text already serialized for this stream (a stanza, or a nonza such as
        an ack) to leave with this turn's output; ``send`` does the same inline."""
        if self.closing:
            return
        out = self._out
        out.append(text)
        if len(out) == 1:
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        out = self._out
        session = self.session
        if session is not None and session.sm is not None and self._ack_due(session.sm):
            out.append(REQUEST)
        if not out:
            return
        self._out = []
        StreamConnection.write_parts(self, out)

    def _ack_due(self, sm: StreamManagement) -> bool:
        """Whether to ask for an ack now; otherwise a delayed request is armed while
        anything is unacknowledged. One request is out at a time (XEP-0198 §4)."""
        if sm.awaiting or not sm.unacked:
            return False
        if sm.unacked >= ACK_BATCH:
            sm.awaiting = True
            return True
        if self._ack_timer is None:
            self._ack_timer = self._loop.call_later(ACK_DELAY, self._delayed_ack)
        return False

    def _delayed_ack(self) -> None:
        self._ack_timer = None
        session = self.session
        sm = session.sm if session is not None else None
        if sm is not None and not self.closing and not sm.awaiting and sm.unacked:
            sm.awaiting = True
            self.write(REQUEST)

    def acked(self, sm: StreamManagement) -> None:
        """After an ack: what is still unacknowledged is asked about with the next
        output, or at the latest after the delay (one timer, not one per ack)."""
        if self._ack_timer is None and sm.unacked and not sm.awaiting:
            self._ack_timer = self._loop.call_later(ACK_DELAY, self._delayed_ack)

    def _our_name(self) -> str:
        return self._host.domain if self._host is not None else self.server.default_domain

    def _label(self) -> str:
        return self.session.jid_str if self.session is not None else self.ip

    # -- the task -------------------------------------------------------------------------

    async def run(self) -> None:
        self._deadline = self._loop.call_later(
            self.server.config.c2s.auth_timeout, self._auth_timeout
        )
        try:
            await super().run()
        finally:
            self._deadline.cancel()

    def _auth_timeout(self) -> None:
        if self.state in (State.CONNECTED, State.OPEN) and not self.closing:
            self.server.c2s.tasks.spawn(self.close("connection-timeout"))

    async def _teardown(self) -> None:
        self.state = State.CLOSED
        self._flush()
        if self._ack_timer is not None:
            self._ack_timer.cancel()
        session = self.session
        if session is not None:
            session.detach()
            await session.end()
        await super()._teardown()

    async def _input_ended(self) -> None:
        """The transport went away without a close: hibernate a resumable session."""
        session = self.session
        sm = session.sm if session is not None else None
        if (
            session is None
            or sm is None
            or not sm.resumable
            or self.overflowed  # a client that stopped reading gets no second chance
            or self.server.c2s.stopping
        ):
            await self._teardown()
            return
        self.state = State.CLOSED
        self._out.clear()
        if self._ack_timer is not None:
            self._ack_timer.cancel()
        await session.hibernate()
        await super()._teardown()

    async def _handle(self, ev: object) -> None:
        if isinstance(ev, ET.Element):
            if not self.stream.header_sent:
                # Framed transports deliver elements whole, so nothing but this check
                # keeps them from arriving before the (restarted) stream is open.
                raise StreamError("not-authorized", "open the stream first")
            if self.state is State.BOUND:
                if ev.tag in STANZA_KINDS:
                    await self._stanza(ev)
                else:
                    await self._nonza(ev)
            elif self.state is State.AUTHENTICATED:
                await self._pre_bind(ev)
            elif self.state is State.OPEN:
                await self._negotiate(ev)
            return
        if isinstance(ev, StreamOpened):
            if self.stream.header_sent:
                # A WebSocket <open/> (or BOSH restart) when no restart is due.
                raise StreamError("bad-format", "the stream is already open")
            await self._open(ev)
        elif isinstance(ev, StreamClosed):
            await self.close()

    # -- stream header and features ------------------------------------------------

    async def _open(self, ev: StreamOpened) -> None:
        to = ev.attrs.get("to")
        server = self.server
        host = server.host_for(to) if to else None
        if host is not None and host.domain not in server.config.server.domains:
            host = None  # a service (e.g. MUC) has no accounts to log in to
        if host is None and not to and len(server.config.server.domains) == 1:
            # One served domain: it is the default (service hosts such as MUC do not count).
            host = server.hosts.get(server.default_domain)
        if self._host is not None and host is not self._host:
            raise StreamError("host-unknown", "the domain changed on restart")
        if host is None:
            self.write(self.stream.header(server.default_domain))
            raise StreamError("host-unknown", f"{to!r} is not served here")
        self._host = host
        frm = ev.attrs.get("from")
        lang = ev.attrs.get(ns.XML_LANG) or "en"
        header = self.stream.header(host.domain, frm if frm and "@" in frm else None, lang)
        if header:
            self.write(header)
        self.stream.check_header(ev)
        if self.state is State.CONNECTED:
            self.state = State.OPEN
        if self.tls_required and not self.transport.can_starttls:
            raise StreamError("policy-violation", "TLS is required: connect over TLS (https)")
        self.write(self.stream.element(features.build(self)))

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
        elif tag == "iq":
            await self._pre_auth_iq(el)
        else:
            raise StreamError("not-authorized", "authenticate first")

    async def _pre_auth_iq(self, iq: ET.Element) -> None:
        """An iq before authentication is offered to modules as ``iq-preauth/<ns>:<tag>``
        (in-band registration, XEP-0077 §3.1), which answer on the stream themselves;
        one nobody takes ends the stream as any other element would (RFC 6120 §6.4.1)."""
        key = payload_key(iq) if valid_iq(iq) and iq.get("type") in ("get", "set") else None
        name = f"iq-preauth/{key}"
        events = self.host.events
        if key is None or not events.has(name):
            raise StreamError("not-authorized", "authenticate first")
        if await events.fire(name, NonzaEvent(iq, self, None)) is None:
            raise StreamError("not-authorized", "authenticate first")

    async def _starttls(self) -> None:
        transport = self.transport
        if transport.secure and not transport.can_starttls:
            raise StreamError("policy-violation", "TLS is already in place")
        if not transport.can_starttls:
            # RFC 6120 §5.4.2.2; TLS on WebSocket and BOSH is the HTTP layer's (RFC 7395 §3.9).
            self.write(f"<failure xmlns='{ns.TLS}'/>")
            await self.close()
            return
        self.write(f"<proceed xmlns='{ns.TLS}'/>")
        # Whatever the client sent after <starttls/> was sent in plaintext: dropped.
        self.stream.restart()
        # The certificate of the domain the header named, unless the client's SNI
        # names another (net/certs.py).
        ctx = self.server.certs.context("c2s", self.host.domain)
        try:
            await transport.start_tls(ctx)
        except (OSError, ConnectionError, TimeoutError) as exc:
            log.info("%s: TLS handshake failed: %s", self.ip, exc)
            self.closing = True
            await self._teardown()

    async def _sasl(self, el: ET.Element) -> None:
        local = el.tag.rpartition("}")[2]
        if local == "abort":
            self.sasl = None
            self._sasl_failure(Failure("aborted"))
            return
        if local == "auth":
            mech = el.get("mechanism", "")
            if self.server.auth_throttled(self.ip):
                failure = Failure("temporary-auth-failure", "too many failed attempts")
                self._sasl_failure(failure, mech)
                return
            if mech not in self.mechanisms():
                # PLAIN and the -PLUS variants exist here but are offered only over
                # TLS: asking for them on a plain stream is §6.5.6, not §6.5.5.
                known = mech == "PLAIN" or mech in SCRAM_MECHANISMS
                need_tls = known and not self.transport.secure
                self._sasl_failure(
                    Failure("encryption-required" if need_tls else "invalid-mechanism"), mech
                )
                return
            accounts = self.server.storage.accounts
            if mech == "PLAIN":
                self.sasl = PlainAuth(self.host.domain, accounts)
            else:
                tls_here = self.transport.tls_here
                cb = ("tls-server-end-point", self._end_point()) if tls_here else None
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

    def _end_point(self) -> bytes:
        """tls-server-end-point data of the certificate this transport's TLS uses
        (the one chosen for this connection by SNI or the header's 'to')."""
        ssl_object = self.transport.get_extra_info("ssl_object")
        kind = "https" if self.stream.framed else "c2s"
        return self.server.certs.end_point(ssl_object, kind, self.host.domain)

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
        sasl, self.sasl = self.sasl, None
        if isinstance(step, Failure):
            if step.condition == "not-authorized":
                self.server.auth_failed(self.ip)
                self.auth_failures += 1
            self._sasl_failure(step, sasl.mechanism if sasl else "")
            if self.auth_failures >= self.server.config.limits.max_auth_failures:
                await self.close("policy-violation", "too many failed authentication attempts")
            return
        data = base64.b64encode(step.data).decode() if step.data else ""
        self.write(f"<success xmlns='{ns.SASL}'>{data}</success>")
        self.username = step.username
        self.state = State.AUTHENTICATED
        # Anything sent during the exchange belongs to the old stream: dropped.
        self.stream.restart()
        log.info("%s@%s authenticated from %s", step.username, self.host.domain, self.ip)

    def _sasl_failure(self, f: Failure, mechanism: str = "") -> None:
        # Counted by condition (descant_auth_failures_total), which says why.
        self.server.metrics.auth_failed(mechanism, f.condition)
        el = ET.Element("{%s}failure" % ns.SASL)
        ET.SubElement(el, "{%s}%s" % (ns.SASL, f.condition))
        if f.text:
            ET.SubElement(el, "{%s}text" % ns.SASL).text = f.text
        self.write(self.stream.element(el))

    # -- after authentication: resource binding (RFC 6120 §7) --------------------------------

    async def _pre_bind(self, el: ET.Element) -> None:
        if el.tag != "iq":
            if el.tag in STANZA_KINDS:
                raise StreamError("not-authorized", "bind a resource first")
            try:
                await self._nonza(el)
            except StreamError as exc:
                if exc.condition != "unsupported-stanza-type":
                    raise
                raise StreamError("not-authorized", "bind a resource first") from None
            return
        if not el.get("id"):
            raise StreamError("not-authorized", "bind a resource first")
        payload = el[0] if len(el) else None
        if el.get("type") == "set" and payload is not None and payload.tag == "{%s}bind" % ns.BIND:
            await self._bind(el, payload)
        elif payload is not None and payload.tag == "{%s}session" % ns.SESSION:
            self.write(self.stream.element(iq_result(el)))
        else:
            err = StanzaError("not-authorized", "bind a resource first")
            self.write(self.stream.element(error_reply(el, err)))

    async def _bind(self, iq: ET.Element, bind: ET.Element) -> None:
        assert self.username is not None
        # Only XML whitespace is trimmed: str.strip() would also eat U+2028 and
        # friends, turning a resource Resourceprep must refuse into "none requested".
        requested = (bind.findtext("{%s}resource" % ns.BIND) or "").strip(" \t\r\n")
        try:
            resource = prep_resource(requested) if requested else secrets.token_hex(6)
        except InvalidJID as exc:
            self.write(self.stream.element(error_reply(iq, StanzaError("bad-request", str(exc)))))
            return
        host = self.host
        jid = JID(self.username, host.domain, resource)
        old = host.sessions.get(self.username, resource)
        limit = self.server.config.limits.max_sessions_per_account
        if old is None and len(host.sessions.of_user(self.username)) >= limit:
            # RFC 6120 §7.6.2.1: the account has as many resources as it may.
            log.info("%s: bind refused, %d sessions already", jid.bare, limit)
            err = StanzaError("resource-constraint", f"at most {limit} sessions per account")
            self.write(self.stream.element(error_reply(iq, err)))
            return
        if old is not None:
            # RFC 6120 §7.7.2.2: the newer session wins; the older one (live or
            # hibernated) is told why and leaves as on logout.
            await old.close("conflict", "replaced by a new session")
        if self.closing:
            return
        session = ClientSession(self.server.c2s, host, jid, self)
        self.session = session
        host.sessions.add(session)
        self.state = State.BOUND
        result = ET.Element("{%s}bind" % ns.BIND)
        ET.SubElement(result, "{%s}jid" % ns.BIND).text = session.jid_str
        session.send(iq_result(iq, result))
        await host.events.fire("resource-bound", session)

    def resumed(self) -> None:
        """Stream resumption (XEP-0198 §5) attached a session to this stream."""
        self.state = State.BOUND

    # -- bound: stanzas and nonzas -----------------------------------------------------------

    async def _stanza(self, el: ET.Element) -> None:
        session = self.session
        assert session is not None
        sent = self._sent + 1
        if sent >= self._rate:
            now = self._loop.time()
            wait = self._window + 1.0 - now
            if wait > 0:
                # Past the rate, this stream waits (and so, once its buffer is full,
                # stops being read: backpressure); nothing is dropped, nobody else waits.
                if not self._throttled:
                    self._throttled = True
                    log.info("%s: over %d stanzas/s, slowed down", session.jid_str, self._rate)
                await asyncio.sleep(wait)
                now = self._loop.time()
            self._window, sent = now, 0
        self._sent = sent
        jid_str = session.jid_str
        err: StanzaError | None = None
        to = el.get("to")
        if to is not None:
            try:
                parse(to)
            except InvalidJID as exc:
                err = StanzaError("jid-malformed", str(exc))
        if err is None and el.tag == "iq" and not valid_iq(el):
            err = StanzaError("bad-request", "an iq needs an id, a type, and get/set one child")
        el.set("from", jid_str)
        counts = self.server.metrics.received_c2s
        if counts is not None:  # a plain int: a prometheus Counter costs ~1 µs (metrics.py)
            counts[el.tag] += 1
        if err is None:
            await self.server.router.process(el, session)
        elif not _never_answered(el):
            session.send(_local_error(el, jid_str, err))
        sm = session.sm
        if sm is not None:  # XEP-0198 §4: handled, whatever the outcome
            sm.count_handled()

    async def _nonza(self, el: ET.Element) -> None:
        """Hand a nonza to the module that takes it (``nonza/<ns>:<tag>``); nobody
        taking it ends the stream. Stream management acks come every few stanzas:
        this path is kept short."""
        name = nonza_key(el)
        host = self.host
        sync = host.sync_nonzas.get(name)
        if sync is not None and sync(NonzaEvent(el, self, self.session)):
            return
        events = host.events
        if events.has(name):
            try:
                if await events.fire(name, NonzaEvent(el, self, self.session)) is not None:
                    return
            except StreamError:
                raise
            except Exception:
                log.exception("%s: error handling %s", self._label(), name)
                return
        raise StreamError("unsupported-stanza-type", f"{el.tag} is not understood here")


def _never_answered(el: ET.Element) -> bool:
    """Errors, and iq results, are never answered (RFC 6120 §8.3.1, §8.2.3): a
    malformed one is dropped."""
    type_ = el.get("type")
    return type_ == "error" or (el.tag == "iq" and type_ == "result")


def _local_error(el: ET.Element, jid_str: str, err: StanzaError) -> ET.Element:
    reply = error_reply(el, err)
    reply.attrib.pop("from", None)
    reply.set("to", jid_str)
    return reply


__all__ = ["ClientStream", "NonzaEvent", "State"]
