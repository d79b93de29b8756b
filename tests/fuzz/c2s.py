"""A real client stream driven in-process, for the fuzz targets: bytes in, findings out.

:class:`FakeTransport` implements :class:`descant.net.transport.Transport` without a
socket: input is handed over in chunks, each only once the stream has handled
everything before it and waits for more (a client that waits for the server's
answers), and output is collected as text. STARTTLS is pretended: the transport
becomes "secure" without a handshake, so the negotiation after it (SASL, binding)
can be fuzzed too.

:func:`drive` runs one :class:`~descant.c2s.stream.ClientStream` on a fresh server
(tests/harness.py: memory storage, every module, MUC and pubsub services, with
``bob@localhost/pc`` online) to the end of its input, then ends it, and raises
:class:`Finding` for what must never happen whatever a client sends:

- an exception logged by the server (a handler's fault boundary, the stream's
  catch-all) or reaching the event loop's exception handler;
- an ``<internal-server-error/>``, as stanza or stream error;
- output that is not well-formed XML;
- an iq request answered twice, or (to the server, an account's bare JID or a
  service, while the stream is open) not answered at all (RFC 6120 §8.2.3);
- a stream that does not reach the end of its input in ``HANG_SECONDS``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import pyexpat
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from descant.accounts import make_account
from descant.c2s.stream import ClientStream
from descant.config import C2SConfig, LimitsConfig
from descant.jid import InvalidJID, parse
from descant.net import tls
from descant.net.certs import CertStore
from descant.server import Server
from descant.storage.api import Account
from descant.stream.protocol import XMLStream
from descant.xml.parser import StreamParser
from tests.harness import Harness

HANG_SECONDS = 20.0
PASSWORD = "secret"
USERS = ("alice", "bob", "carol")  # on localhost; alice is the fuzzed client
STREAM_NS = "http://etherx.jabber.org/streams"


class Finding(AssertionError):
    """Something the server must never do, whatever the input."""


class FakeTransport:
    """A Transport (net/transport.py) without a socket; see the module docstring."""

    def __init__(self, *, secure: bool = False, can_starttls: bool = True) -> None:
        self.ip = "192.0.2.7"
        self.secure = secure
        self.tls_here = secure
        self.can_starttls = can_starttls
        self.stream: XMLStream | None = None
        self.out: list[str] = []
        self.closed = False
        self.waiting = asyncio.Event()  # the stream handled all it was given
        self._ended = False
        self._waiter: asyncio.Future[bool] | None = None

    # -- the driver's side --------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        assert self.stream is not None
        self.waiting.clear()
        self.stream.receive_data(data)
        self._wake(True)

    def end(self) -> None:
        self._ended = True
        self._wake(False)

    def _wake(self, value: bool) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(value)

    # -- the stream's side (Transport) ----------------------------------------------------

    def write(self, parts: list[str]) -> None:
        if not self.closed:
            self.out.extend(parts)

    def write_buffer_size(self) -> int:
        return 0

    async def wait_input(self) -> bool:
        if self._ended:
            return False
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        self.waiting.set()
        try:
            return await waiter
        finally:
            self._waiter = None

    async def start_tls(
        self, ctx: Any, server_side: bool = True, server_hostname: Any = None
    ) -> None:
        self.secure = self.tls_here = True
        self.can_starttls = False

    def close(self) -> None:
        self.closed = True
        self.end()

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> Any:
        return None


@dataclasses.dataclass(slots=True)
class Request:
    """An iq request the stream handled, and whether it must be answered."""

    id: str
    must_answer: bool


class WatchedStream(ClientStream):
    """A ClientStream that records the iq requests it handled (for the reply check)."""

    requests: list[Request]

    async def _stanza(self, el: ET.Element) -> None:
        self._note(el, pre_bind=False)
        await super()._stanza(el)

    async def _pre_bind(self, el: ET.Element) -> None:
        self._note(el, pre_bind=True)
        await super()._pre_bind(el)

    def _note(self, el: ET.Element, pre_bind: bool) -> None:
        if el.tag != "iq" or el.get("type") not in ("get", "set") or not el.get("id"):
            return
        self.requests.append(Request(el.get("id", ""), _must_answer(el, self, pre_bind)))


def _must_answer(el: ET.Element, stream: ClientStream, pre_bind: bool) -> bool:
    """An iq the server itself answers: to no one (the account), a served domain or a
    bare JID there. A full JID's owner answers, or not; a remote domain is not ours."""
    if pre_bind:
        return True  # bind, legacy session, or <not-authorized/>
    to = el.get("to")
    if to is None:
        return True
    try:
        jid = parse(to)
    except InvalidJID:
        return True  # <jid-malformed/>
    return not jid.resource and jid.domain in stream.server.hosts


# -- collecting what must not happen ---------------------------------------------------------


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_collector = _Collector()
logging.getLogger("descant").addHandler(_collector)
logging.getLogger("descant").setLevel(logging.INFO)
logging.getLogger("descant").propagate = False  # findings are raised, not printed
_loop_errors: list[dict[str, Any]] = []


def _describe(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info:
        import traceback

        text += "\n" + "".join(traceback.format_exception(*record.exc_info))
    return text


_ACCOUNTS: list[Account] = []


def _accounts() -> list[Account]:
    """Accounts are made once per process: key derivation is the slow part."""
    if not _ACCOUNTS:
        _ACCOUNTS.extend(make_account("localhost", u, PASSWORD) for u in USERS)
    return _ACCOUNTS


_TMP = Path(tempfile.mkdtemp(prefix="descant-fuzz-"))
_STORE: list[CertStore] = []


def _load_certificates(server: Server) -> None:
    """What Server.start does for TLS (the STARTTLS path asks for a context and the
    SCRAM-PLUS path for binding data, though the fake transport never handshakes),
    with a self-signed certificate made, and its contexts loaded (half a second),
    once per process."""
    if not _STORE:
        domains = list(server.config.server.domains)
        server.certs.load(*tls.ensure_certificate(domains, str(_TMP), "", ""))
        _STORE.append(server.certs)
    server.certs = _STORE[0]


async def drive(
    chunks: Iterable[bytes], *, require_tls: bool, prelude: list[bytes] | None = None
) -> str:
    """Run one client stream over ``chunks``; return its output; raise Finding."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, ctx: _loop_errors.append(ctx))
    _collector.records.clear()
    _loop_errors.clear()
    h = await Harness.create(
        _TMP,
        c2s=C2SConfig(
            require_tls=require_tls, allow_plain_without_tls=not require_tls, auth_timeout=3600
        ),
        limits=LimitsConfig(c2s_stanza_rate=1_000_000, max_auth_failures=1000),
    )
    server = h.server
    _load_certificates(server)
    for account in _accounts():
        await server.storage.accounts.create(account)
    await h.online("bob@localhost/pc")
    transport = FakeTransport(secure=not require_tls, can_starttls=require_tls)
    stream = WatchedStream(server, transport)  # type: ignore[arg-type]
    stream.requests = []
    task = loop.create_task(server.c2s.serve(stream))
    prelude_out = 0
    try:
        for chunk in [*(prelude or []), None, *chunks]:
            if chunk is None:  # the prelude is done: check from here on
                await _settle(transport, task)
                prelude_out = len(transport.out)
                stream.requests.clear()
                continue
            if not await _settle(transport, task):
                break  # the stream ended: the rest is never read
            transport.feed(chunk)
        await _settle(transport, task)
        open_at_end = not stream.closing
        out = "".join(transport.out[prelude_out:])
        me = stream.session.jid_str if stream.session is not None else None
        _check_replies(stream.requests, out, open_at_end, me)
        transport.end()
        await asyncio.wait_for(task, HANG_SECONDS)
        await server.c2s.stop()
    finally:
        if not task.done():
            task.cancel()
        await h.stop()
        for other in asyncio.all_tasks():
            if other is not asyncio.current_task():
                other.cancel()
    _check_errors("".join(transport.out))
    return "".join(transport.out)


async def _settle(transport: FakeTransport, task: asyncio.Task[None]) -> bool:
    """Wait until the stream waits for input (True) or has ended (False), then let
    what it started run a few turns of the loop; a stream that does neither hangs."""
    waiting = asyncio.ensure_future(transport.waiting.wait())
    try:
        done, _ = await asyncio.wait(
            {waiting, task}, timeout=HANG_SECONDS, return_when="FIRST_COMPLETED"
        )
    finally:
        waiting.cancel()
    if not done:
        raise Finding(f"the stream did not get through its input in {HANG_SECONDS}s")
    for _ in range(20):
        await asyncio.sleep(0)
    return not task.done() and not transport.closed


def _check_errors(out: str) -> None:
    if _collector.records:
        raise Finding("the server logged an error:\n" + _describe(_collector.records[0]))
    if _loop_errors:
        ctx = _loop_errors[0]
        exc = ctx.get("exception")
        raise Finding(f"error in the event loop: {ctx.get('message')}: {exc!r}") from exc
    if "internal-server-error" in out:
        raise Finding("an <internal-server-error/> was sent:\n" + out[-2000:])
    elements(out)


_HEADER = re.compile(r"<\?xml[^>]*\?>|<stream:stream\b[^>]*>|</stream:stream>")


def elements(out: str) -> list[ET.Element]:
    """The top-level elements of the server's output (headers and closes dropped),
    in the parser's form (stanzas without the jabber:client namespace).

    Well-formedness is checked first by expat without namespace processing, apart
    from Descant's parser; ElementTree cannot be used, as it refuses namespace names
    with "}" in them, which are legal and which clients send.
    """
    body = _HEADER.sub("", out)
    document = f"<r xmlns='jabber:client' xmlns:stream='{STREAM_NS}'>{body}</r>".encode()
    try:
        pyexpat.ParserCreate().Parse(document, True)
    except pyexpat.ExpatError as exc:
        raise Finding(
            f"the server wrote XML that is not well-formed ({exc}):\n{out[-2000:]}"
        ) from None
    parser = StreamParser(max_stanza_size=len(document) + 1)
    return [ev for ev in parser.feed(document) if isinstance(ev, ET.Element)]


def _check_replies(requests: list[Request], out: str, open_at_end: bool, me: str | None) -> None:
    """RFC 6120 §8.2.3: every iq get/set gets exactly one result or error (answers
    the client sent to itself are not answers to it)."""
    replies = collections.Counter(
        el.get("id")
        for el in elements(out)
        if el.tag == "iq"
        and el.get("type") in ("result", "error")
        and (me is None or el.get("from") != me)
    )
    asked: collections.Counter[str] = collections.Counter(r.id for r in requests)
    due: collections.Counter[str] = collections.Counter(r.id for r in requests if r.must_answer)
    for id_, n in asked.items():
        got = replies.get(id_, 0)
        if got > n:
            raise Finding(f"iq {id_!r} asked {n} time(s), answered {got} times:\n{out[-3000:]}")
        if open_at_end and got < due[id_]:
            raise Finding(f"iq {id_!r} to the server was never answered:\n{out[-3000:]}")
