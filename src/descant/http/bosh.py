"""XMPP over BOSH (XEP-0124, XEP-0206) at ``/http-bind``.

A BOSH session is the transport of one client stream (net/transport.py): the
client stream (c2s/stream.py) runs exactly as on TCP, with the ``bosh`` framing
of the stream protocol, through ``server.c2s.serve`` and its limits. This module
only turns requests into stream input and stream output into responses.

Theory of operation
-------------------
A POSTed ``<body/>`` is read whole, refused beyond ``limits.max_stanza_size``
before parsing, and parsed by Descant's restricted parser (no DTD, entity,
comment or processing instruction) as the one child of a ``jabber:client``
root: its children are stanzas without a namespace, exactly as on TCP. The
creation request (no ``sid``) makes the session. Each request then goes,
always in ``rid`` order (§14.2):

    arrived --its rid is the next one--> queued
    arrived --ahead of a gap--> early --gap filled--> queued
            (after ``wait`` s still early: answered ``type='error'``, §17.3;
            the client sends the missing request and this one again)
    queued --the stream has handled all input before it--> handed over, held
    held --output written, a newer request beyond ``hold``, or ``wait`` s--> answered

A request is handed over only when the stream asks for input (``wait_input``),
so payloads are processed in order, a client cannot queue input faster than
its stream handles it, and nothing sent after ``<auth/>`` reaches the stream
before SASL is done (the stream drops it at the layer switch). The creation
request and each ``xmpp:restart='true'`` request become a stream header
(``StreamOpened``; a restart's payloads are ignored, XEP-0206 §5) and the
stream answers with its features; ``type='terminate'`` hands over its payloads,
then the end of the stream.

Output waits in the session (at most ``MAX_OUTPUT`` bytes: beyond that the
client is not fetching, and its stream closes with <policy-violation/>) and
leaves in the oldest held request at the end of the event-loop turn that wrote
it. ``hold`` is at most ``MAX_HOLD``, ``requests`` is hold + 1, ``wait`` at most
``http.bosh_max_wait``. The responses to the last ``requests`` requests are
kept: a rid sent again gets the same bytes (§14.3); a rid sent again while its
first copy is still open answers that copy ``type='error'`` and takes its place.

The session ends:

- when its stream closes: the oldest open request gets ``<body type='terminate'/>``
  with what was left to send (when none is open, the next request gets it), any
  other open request a bare terminate body. A stream error becomes
  ``condition='remote-stream-error'`` with the ``<stream:error/>`` inside (§17.2,
  XEP-0206 §6), except ``host-unknown`` (the ``to`` of a body is not served
  here) and ``system-shutdown``, which are binding conditions of their own;
- on a binding error (below): every open request gets the terminate body;
- after ``http.bosh_inactivity`` s without an open request (after a ``pause``,
  once, that many seconds up to ``MAX_PAUSE``), silently (§10): a later request
  finds no session.

Unless the stream closed, its input then ends: a session with stream management
resumption hibernates, as when TCP is cut, and can be resumed on any transport.

Error conditions (§17)
----------------------
- ``bad-request``: not one well-formed ``<body/>`` in the httpbind namespace,
  character data in it, a DTD, entity, comment or processing instruction, a
  missing or malformed ``rid``, ``wait``, ``hold`` or ``pause``;
- ``policy-violation``: a body over the size limit; in a polling session
  (hold 0) two empty requests less than ``POLLING`` s apart, the first answered
  without payloads (§12);
- ``item-not-found``: an unknown ``sid``; a ``rid`` beyond the window, or
  already answered and no longer kept (§14.2, §14.3).

They are terminal binding conditions in ``200 OK`` responses, as §17.1 asks of
a connection manager that sends ``ver``. A session whose creation request had
no ``ver`` (a legacy client) gets the deprecated HTTP 400, 403 and 404 for these
three instead; a request naming no session (unknown ``sid``, unreadable body)
gets 200, since whether its client is legacy cannot be known. A request of an
encrypted session arriving over a plain hop is refused with 403 and the session
is left alone (§19.1).

Browsers: ``OPTIONS`` preflights are answered and responses carry CORS headers
for the origins ``http.allowed_origins`` accepts; other origins get 403.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import re
import secrets
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from aiohttp import web

from descant.c2s.stream import ClientStream, State
from descant.http.bosh_body import (
    BODY,
    MAX_RID,
    NS,
    OLD,
    OUTSIDE,
    XBOSH,
    Body,
    BoshError,
    RidWindow,
    int_attr,
    parse_body,
    stream_condition,
    terminate_xml,
)
from descant.stream.protocol import BOSH, Event, StreamClosed, StreamOpened, XMLStream
from descant.tasks import TaskGroup
from descant.xml import ns
from descant.xml.serialize import escape_attr

if TYPE_CHECKING:
    from descant.http.server import Client, HTTPService

log = logging.getLogger(__name__)

PATH = "/http-bind"
VERSION = (1, 11)  # the XEP-0124 version implemented
MAX_HOLD = 1
POLLING = 2  # s: the shortest polling interval (§12)
MAX_PAUSE = 120  # s
MAX_OUTPUT = 4 * 1024 * 1024  # output waiting for a request (characters, ~bytes)
CONTENT_TYPE = "text/xml; charset=utf-8"
# Stream errors that are binding conditions in their own right (§17.2).
BINDING_CONDITIONS = frozenset({"host-unknown", "system-shutdown"})
# §17.1: what a legacy client (no 'ver') understands instead.
LEGACY_STATUS = {"bad-request": 400, "policy-violation": 403, "item-not-found": 404}

_RESTART = "{%s}restart" % XBOSH
_XMPP_VERSION = "{%s}version" % XBOSH
_CONTENT = re.compile(r"[\x20-\x7e]{1,200}")
_ERROR = "<body xmlns='%s' type='error'/>" % NS  # recoverable (§17.3)


# -- a session -----------------------------------------------------------------------------


class Reply(NamedTuple):
    status: int
    body: bytes


@dataclass(slots=True, eq=False)
class Request:
    rid: int
    body: Body
    future: asyncio.Future[Reply]
    first: bool = False  # the session creation request
    final: bool = False  # type='terminate'
    restart: bool = False  # xmpp:restart='true'
    pause: int | None = None
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    @classmethod
    def make(cls, body: Body, first: bool = False) -> Request:
        attrs = body.attrs
        rid = int_attr(attrs, "rid")
        if rid is None or not 0 < rid <= MAX_RID:
            raise BoshError("bad-request", "a rid is required")
        return cls(
            rid,
            body,
            asyncio.get_running_loop().create_future(),
            first=first,
            final=attrs.get("type") == "terminate",
            restart=attrs.get(_RESTART) in ("true", "1"),
            pause=int_attr(attrs, "pause"),
        )


class BoshSession:
    """One BOSH session as the transport of a client stream (net/transport.py)."""

    def __init__(
        self,
        registry: BoshService,
        sid: str,
        client: Client,
        first: Request,
        wait: int,
        hold: int,
    ) -> None:
        attrs = first.body.attrs
        cfg = registry.server.config.http
        self.registry = registry
        self.sid = sid
        self.ip = client.ip
        self.secure = client.secure
        self.tls_here = client.tls_here
        self.can_starttls = False  # TLS belongs to the HTTP layer (XEP-0206 §4)
        self.stream: XMLStream | None = None
        self.client: ClientStream | None = None  # the stream this session carries
        self.wait = wait
        self.hold = hold
        self.inactivity = int(cfg.bosh_inactivity)
        self.legacy = "ver" not in attrs
        self.ver = _version(attrs.get("ver"))
        content = attrs.get("content", "")
        self.content_type = content if _CONTENT.fullmatch(content) else CONTENT_TYPE
        self.to = attrs.get("to", "")
        self.lang = attrs.get(ns.XML_LANG, "")
        self.xmpp_version = attrs.get(_XMPP_VERSION, "")
        self.window: RidWindow[Request] = RidWindow(first.rid - 1, hold + 1)
        self.queue: collections.deque[Request] = collections.deque()
        self.held: collections.deque[Request] = collections.deque()
        self.out: list[str] = []
        self.out_size = 0
        self.error: str | None = None  # the <stream:error/> the stream wrote
        self.ended = False
        self.final: Reply | None = None  # the terminate body no request was open for
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._pump_handle: asyncio.Handle | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._forget: asyncio.TimerHandle | None = None
        self._pause: int | None = None
        self._last_poll: float | None = None
        self._last_payload = True
        self._overflowed = False

    # -- requests -----------------------------------------------------------------------

    def receive(self, req: Request) -> None:
        """A request of this session arrived; its future gets the reply."""
        if self.ended:
            # The stream closed while no request was open: this one gets the end.
            kept = self.window.answers.get(req.rid)
            if kept is not None:
                req.future.set_result(Reply(200, kept))
            elif self.final is not None:
                req.future.set_result(self.final)
                self.final = None
                self.registry.forget(self)
            else:
                req.future.set_result(self._terminate_reply("item-not-found"))
            return
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._pause = None
        extra = 1 if req.final or req.pause is not None else 0
        place = self.window.place(req.rid, extra)
        if place is OLD:
            kept = self.window.answers.get(req.rid)
            if kept is not None:
                req.future.set_result(Reply(200, kept))
                self._idle_check()
            elif not self._resent(req):
                self.fail("item-not-found", req)
            return
        if place is OUTSIDE:
            self.fail("item-not-found", req)
            return
        if req.rid in self.window.early:
            self._resent(req)
            return
        ready = self.window.take(req.rid, req)
        if not ready:  # ahead of a gap: waits for it, at most about ``wait``
            req.timer = self._loop.call_later(max(self.wait, POLLING), self._gap, req)
        for i, r in enumerate(ready):
            if r.timer is not None:
                r.timer.cancel()
                r.timer = None
            if self._polls_too_often(r):
                self.fail("policy-violation", *ready[i:])
                return
            self.queue.append(r)
        if ready:
            self._wake.set()

    def _resent(self, req: Request) -> bool:
        """A rid still open was sent again: the first copy is answered ``type='error'``
        (§14.3) and the reply goes to the new one."""
        for r in itertools.chain(self.held, self.queue, self.window.early.values()):
            if r.rid == req.rid:
                old, r.future = r.future, req.future
                if not old.done():
                    old.set_result(Reply(200, _ERROR.encode()))
                return True
        return False

    def _gap(self, req: Request) -> None:
        req.timer = None
        if self.window.early.get(req.rid) is req:
            del self.window.early[req.rid]
            self._send(req, _ERROR, remember=False)

    def _polls_too_often(self, req: Request) -> bool:
        """§12: two empty requests in a row within ``POLLING`` s, the first answered empty."""
        if self.hold or req.first or req.final or req.restart or req.pause is not None:
            self._last_poll = None
            return False
        if req.body.children:
            self._last_poll = None
            return False
        now = self._loop.time()
        last, self._last_poll = self._last_poll, now
        return last is not None and now - last < POLLING and not self._last_payload

    def fail(self, condition: str, *requests: Request) -> None:
        """A terminal binding error: every open request, and these, get it."""
        log.info("%s: BOSH session terminated: %s", self.ip, condition)
        self._finish(condition, "", requests)

    # -- input: the transport's side ---------------------------------------------------------

    async def wait_input(self) -> bool:
        while not self.ended:
            if self.queue:
                self._hand_over(self.queue.popleft())
                return True
            self._wake.clear()
            await self._wake.wait()
        return False

    def _hand_over(self, req: Request) -> None:
        stream = self.stream
        assert stream is not None
        events: list[Event]
        if req.first or req.restart:
            events = [self._opened(req.body.attrs)]
        elif req.final:
            events = [*req.body.children, StreamClosed()]
        else:
            events = list(req.body.children)
        stream.receive_events(events)
        self.held.append(req)
        if req.pause is not None:
            # §10: every held request is answered now, without payloads; the next
            # inactivity period is the pause.
            self._pause = min(req.pause, MAX_PAUSE)
            while self.held:
                r = self.held.popleft()
                self._send(r, f"<body xmlns='{NS}'/>", remember=r is not req)
            return
        req.timer = self._loop.call_later(self.wait, self._waited, req)
        self._schedule_pump()

    def _opened(self, attrs: dict[str, str]) -> StreamOpened:
        """A body that opens a stream, as the stream header it stands for."""
        header = {
            "to": attrs.get("to") or self.to,
            "version": attrs.get(_XMPP_VERSION) or self.xmpp_version,
            ns.XML_LANG: attrs.get(ns.XML_LANG) or self.lang,
            "from": attrs.get("from", ""),
        }
        return StreamOpened(BODY, {k: v for k, v in header.items() if v}, None, {})

    # -- output ------------------------------------------------------------------------------

    def write(self, parts: list[str]) -> None:
        if self.ended:
            return
        for part in parts:
            if not part:
                continue  # the framing's header and close
            if part.startswith("<stream:error"):
                self.error = part  # goes out in the terminate body (close)
                continue
            if self._overflowed:
                continue
            self.out.append(part)
            self.out_size += len(part)
        if self.out_size > MAX_OUTPUT and not self._overflowed:
            self._overflow()
        if self.out:
            self._schedule_pump()

    def _overflow(self) -> None:
        log.warning("%s: BOSH client does not fetch its output, closing", self.ip)
        self._overflowed = True
        self.out.clear()
        self.out_size = 0
        if self.client is not None:
            self.registry.tasks.spawn(
                self.client.close("policy-violation", "output was not fetched")
            )

    def write_buffer_size(self) -> int:
        return self.out_size

    def _schedule_pump(self) -> None:
        if self._pump_handle is None and not self.ended:
            self._pump_handle = self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        """Answer held requests: the oldest with the output, any beyond ``hold``."""
        self._pump_handle = None
        held = self.held
        while held and not self.ended:
            req = held[0]
            if req.final:
                break  # answered when the stream has closed
            if not self.out and (len(held) <= self.hold or (req.first and len(held) == 1)):
                break  # the creation request waits for the features even when polling
            held.popleft()
            self._answer(req)

    def _waited(self, req: Request) -> None:
        req.timer = None
        while self.held:
            r = self.held.popleft()
            self._answer(r)
            if r is req:
                break

    def _answer(self, req: Request) -> None:
        payload = "".join(self.out)
        self.out.clear()
        self.out_size = 0
        self._last_payload = bool(payload)
        tag = self._creation_tag() if req.first else f"<body xmlns='{NS}'"
        self._send(req, f"{tag}>{payload}</body>" if payload else tag + "/>")

    def _creation_tag(self) -> str:
        """The session creation response's attributes (§7.2, XEP-0206 §4)."""
        cfg = self.registry.server
        client = self.client
        if client is not None and client.state in (State.OPEN, State.AUTHENTICATED, State.BOUND):
            domain = client.host.domain
        else:
            domain = self.to or cfg.default_domain
        stream = self.stream
        authid = f" authid='{stream.id}'" if stream is not None and stream.id else ""
        return (
            f"<body xmlns='{NS}' xmlns:xmpp='{XBOSH}' xmlns:stream='{ns.STREAM}'"
            f" sid='{self.sid}' wait='{self.wait}' requests='{self.hold + 1}'"
            f" hold='{self.hold}' inactivity='{self.inactivity}' polling='{POLLING}'"
            f" maxpause='{MAX_PAUSE}' ver='{self.ver}' from='{escape_attr(domain)}'{authid}"
            " xmpp:version='1.0' xmpp:restartlogic='true'"
        )

    def _send(self, req: Request, body: str, remember: bool = True, status: int = 200) -> None:
        if req.timer is not None:
            req.timer.cancel()
            req.timer = None
        data = body.encode("utf-8")
        if remember:
            self.window.remember(req.rid, data)
        if not req.future.done():
            req.future.set_result(Reply(status, data))
        self._idle_check()

    # -- the end -----------------------------------------------------------------------------

    def _idle_check(self) -> None:
        """No request open: the inactivity period starts (§10)."""
        if self.ended or self._idle is not None:
            return
        if self.held or self.queue or self.window.early:
            return
        period = self._pause if self._pause is not None else self.inactivity
        self._idle = self._loop.call_later(period, self._expire)

    def _expire(self) -> None:
        self._idle = None
        log.info("%s: BOSH session inactive, ending", self.ip)
        self.ended = True
        self.out.clear()
        self._wake.set()
        self.registry.forget(self)

    def _terminate_reply(self, condition: str | None, inner: str = "") -> Reply:
        status = LEGACY_STATUS.get(condition or "", 200) if self.legacy else 200
        return Reply(status, terminate_xml(condition, inner).encode("utf-8"))

    def _finish(self, condition: str | None, inner: str, extra: tuple[Request, ...] = ()) -> None:
        """End the session: the oldest open request gets ``inner``, any other a bare
        terminate body; with none open, the next request gets it."""
        if self.ended:
            for r in extra:
                if not r.future.done():
                    r.future.set_result(self._terminate_reply(condition))
            return
        self.ended = True
        self._wake.set()
        for handle in (self._idle, self._pump_handle):
            if handle is not None:
                handle.cancel()
        self._idle = self._pump_handle = None
        early = [self.window.early[rid] for rid in sorted(self.window.early)]
        open_ = [*self.held, *self.queue, *early, *extra]
        self.held.clear()
        self.queue.clear()
        self.window.early.clear()
        self.out.clear()
        self.out_size = 0
        for r in open_:
            if r.timer is not None:
                r.timer.cancel()
                r.timer = None
        if not open_:
            self.final = self._terminate_reply(condition, inner)
            self._forget = self._loop.call_later(self.inactivity, self.registry.forget, self)
            return
        self.registry.forget(self)
        for i, r in enumerate(open_):
            if not r.future.done():
                r.future.set_result(self._terminate_reply(condition, "" if i else inner))

    def close(self) -> None:
        """The stream ended: what it wrote last, and its error, end the session."""
        if self.ended:
            return
        inner = "".join(self.out)
        condition = None
        if self.error is not None:
            condition = stream_condition(self.error)
            if condition not in BINDING_CONDITIONS:
                condition = "remote-stream-error"
                inner += self.error
        self._finish(condition, inner)

    def abort(self) -> None:
        self.out.clear()
        self.close()

    def shutdown(self) -> None:
        """The service stops: end the session now."""
        if self._forget is not None:
            self._forget.cancel()
        self._finish("system-shutdown", "")

    def is_closing(self) -> bool:
        return self.ended

    async def start_tls(
        self, ctx: ssl.SSLContext, server_side: bool = True, server_hostname: str | None = None
    ) -> None:
        raise OSError("STARTTLS is not available on BOSH")

    def get_extra_info(self, name: str) -> Any:
        return None  # no one connection: a session spans many


def _version(ver: str | None) -> str:
    """The lower of the client's BOSH version and ours (§7.2)."""
    ours = "%d.%d" % VERSION
    if ver is None:
        return ours
    major, _, minor = ver.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        return ours
    theirs = (int(major), int(minor))
    return f"{theirs[0]}.{theirs[1]}" if theirs < VERSION else ours


# -- the endpoint --------------------------------------------------------------------------


class BoshService:
    """The BOSH sessions of the HTTP service, and the tasks running their streams."""

    def __init__(self, service: HTTPService) -> None:
        self.http = service
        self.server = service.server
        self.sessions: dict[str, BoshSession] = {}
        self.tasks = TaskGroup("bosh")
        # One task per session, running its stream; bounded by the per-address limit.
        self._streams = TaskGroup("bosh streams", limit=1 << 30)
        self.stopping = False

    def forget(self, session: BoshSession) -> None:
        if self.sessions.get(session.sid) is session:
            del self.sessions[session.sid]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self.http.origin_allowed(request):
            return web.Response(status=403, text="this origin may not connect")
        headers = _cors(request)
        if request.method == "OPTIONS":
            headers["Access-Control-Max-Age"] = "86400"
            return web.Response(status=200, headers=headers)
        if request.method == "GET":
            return web.Response(
                text="XMPP over BOSH (XEP-0206): POST <body/> elements here.\n", headers=headers
            )
        reply, content_type = await self._reply(request)
        headers["Content-Type"] = content_type
        return web.Response(status=reply.status, body=reply.body, headers=headers)

    async def _reply(self, request: web.Request) -> tuple[Reply, str]:
        limit = self.server.config.limits.max_stanza_size
        if self.stopping:
            return _plain("system-shutdown")
        if (request.content_length or 0) > limit:
            return _plain("policy-violation")
        try:
            data = await request.read()
            body = parse_body(data, limit)
        except web.HTTPRequestEntityTooLarge:
            return _plain("policy-violation")
        except BoshError as err:
            return _plain(err.condition)
        sid = body.attrs.get("sid")
        if sid is None:
            return await self._create(request, body)
        session = self.sessions.get(sid)
        if session is None:
            return _plain("item-not-found")
        if session.secure and not self.http.client(request).secure:
            return Reply(403, b""), "text/plain"  # §19.1: the session is left alone
        try:
            req = Request.make(body)
        except BoshError as err:
            req = Request(0, body, asyncio.get_running_loop().create_future())
            session.fail(err.condition, req)
        else:
            session.receive(req)
        return await req.future, session.content_type

    async def _create(self, request: web.Request, body: Body) -> tuple[Reply, str]:
        """§7: a new session, and the client stream it carries."""
        attrs = body.attrs
        cfg = self.server.config.http
        try:
            req = Request.make(body, first=True)
            wait = int_attr(attrs, "wait", int(cfg.bosh_max_wait))
            hold = int_attr(attrs, "hold", MAX_HOLD)
        except BoshError as err:
            return _plain(err.condition, legacy="ver" not in attrs)
        assert wait is not None and hold is not None
        sid = secrets.token_urlsafe(24)
        while sid in self.sessions:
            sid = secrets.token_urlsafe(24)
        wait = max(0, min(wait, int(cfg.bosh_max_wait)))
        session = BoshSession(self, sid, self.http.client(request), req, wait, min(hold, MAX_HOLD))
        client = ClientStream(self.server, session, BOSH)
        session.client = client
        self.sessions[sid] = session
        session.receive(req)
        self._streams.spawn(self._run(session, client))
        return await req.future, session.content_type

    async def _run(self, session: BoshSession, client: ClientStream) -> None:
        try:
            await self.server.c2s.serve(client)
        except Exception:
            log.exception("%s: BOSH stream failed", session.ip)
        finally:
            session.close()

    async def stop(self, app: web.Application | None = None) -> None:
        """Terminate every session (system-shutdown) and end the streams' tasks."""
        self.stopping = True
        for session in list(self.sessions.values()):
            session.shutdown()
        self.sessions.clear()
        await self._streams.close(2.0)
        await self.tasks.close(1.0)


def _plain(condition: str, legacy: bool = False) -> tuple[Reply, str]:
    """A terminate body for a request no session answers."""
    status = LEGACY_STATUS.get(condition, 200) if legacy else 200
    return Reply(status, terminate_xml(condition).encode("utf-8")), CONTENT_TYPE


def _cors(request: web.Request) -> dict[str, str]:
    origin = request.headers.get("Origin")
    if not origin:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type",
        "Vary": "Origin",
    }


def install(service: HTTPService) -> BoshService:
    bosh = BoshService(service)
    for method in ("GET", "POST", "OPTIONS"):
        service.add_route(method, PATH, bosh.handle)
    service.app.on_shutdown.append(bosh.stop)
    return bosh
