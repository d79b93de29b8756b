"""Helpers for the bad-input suite: read what the server wrote and name its errors.

The server's output is parsed with the standard library, independently of
Descant's own parser: a piece of a stream (header, stanzas, error, close) is
wrapped in a root element and read with ElementTree.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable

from tests.live import LiveServer, RawClient

STREAM = "http://etherx.jabber.org/streams"
CLIENT = "jabber:client"
STREAMS_ERR = "urn:ietf:params:xml:ns:xmpp-streams"
STANZAS_ERR = "urn:ietf:params:xml:ns:xmpp-stanzas"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
TLS = "urn:ietf:params:xml:ns:xmpp-tls"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
PING = "urn:xmpp:ping"

# The type of the make_server fixture (tests/conftest.py).
MakeServer = Callable[..., LiveServer]


def header(
    to: str = "localhost",
    version: str = "1.0",
    xmlns: str = CLIENT,
    stream_ns: str = STREAM,
) -> str:
    return (
        f"<?xml version='1.0'?><stream:stream xmlns='{xmlns}' "
        f"xmlns:stream='{stream_ns}' to='{to}' version='{version}'>"
    )


def elements(text: str) -> list[ET.Element]:
    """The top-level elements in a piece of server output (headers and close dropped)."""
    body = re.sub(r"<\?xml[^>]*\?>", "", text)
    body = re.sub(r"<stream:stream\b[^>]*>", "", body)
    body = body.replace("</stream:stream>", "")
    root = ET.fromstring(f"<r xmlns='{CLIENT}' xmlns:stream='{STREAM}'>{body}</r>")
    return list(root)


def condition(el: ET.Element, error_ns: str) -> str:
    """The local name of the single defined condition child in error_ns."""
    found = [c.tag.partition("}")[2] for c in el if c.tag.startswith("{%s}" % error_ns)]
    found = [c for c in found if c != "text"]
    assert len(found) == 1, f"expected one condition in {ET.tostring(el)!r}"
    return found[0]


def stream_errors(text: str) -> list[str]:
    return [condition(e, STREAMS_ERR) for e in elements(text) if e.tag == "{%s}error" % STREAM]


def stanza_error(el: ET.Element) -> str:
    """The condition of an error stanza (RFC 6120 §8.3.2)."""
    assert el.get("type") == "error", ET.tostring(el)
    err = el.find("{%s}error" % CLIENT)
    assert err is not None, ET.tostring(el)
    return condition(err, STANZAS_ERR)


def sasl_failure(text: str) -> str:
    """The condition of the one SASL <failure/> in text (RFC 6120 §6.5)."""
    fails = [e for e in elements(text) if e.tag == "{%s}failure" % SASL]
    assert len(fails) == 1, text
    return condition(fails[0], SASL)


async def expect_stream_error(
    c: RawClient, cond: str, *, header: bool = False, timeout: float = 5
) -> str:
    """Read to EOF; assert exactly one stream error, `cond`, then the closing tag.

    With header=True also assert that a stream header came before the error: the
    server sends its own first when none was sent yet (RFC 6120 §4.9.1.1).
    """
    out = await c.read_to_eof(timeout)
    assert stream_errors(out) == [cond], out
    assert out.rstrip().endswith("</stream:stream>"), out
    if header:
        assert "<stream:stream" in out, out
        assert out.index("<stream:stream") < out.index("<stream:error"), out
    return out


def _complete(text: str) -> tuple[ET.Element, str] | None:
    """Split off the first complete top-level element of text, if there is one.

    Candidate ends are the ends of tags that close an element; the shortest
    prefix that parses holds exactly the first element.
    """
    for m in re.finditer(r"/>|</[^>]+>", text):
        try:
            els = elements(text[: m.end()])
        except ET.ParseError:
            continue
        if els:
            return els[0], text[m.end() :]
    return None


async def next_stanza(c: RawClient, timeout: float = 5) -> ET.Element:
    """The next complete top-level element the server sends."""
    deadline = time.monotonic() + timeout
    while True:
        found = _complete(c.buffer)
        if found is not None:
            el, c.buffer = found
            return el
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no stanza within {timeout} s; got {c.buffer!r}")
        chunk = await asyncio.wait_for(c.reader.read(65536), left)
        if not chunk:
            raise AssertionError(f"closed while waiting for a stanza; got {c.buffer!r}")
        c.buffer += chunk.decode("utf-8", "replace")


async def quiet(c: RawClient, seconds: float = 0.5) -> list[ET.Element]:
    """Every complete element the server sends within ``seconds``."""
    out: list[ET.Element] = []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out
        try:
            out.append(await next_stanza(c, left))
        except (AssertionError, TimeoutError):
            return out


async def messages(c: RawClient, n: int, timeout: float = 5) -> list[ET.Element]:
    """The next ``n`` messages, skipping every other element."""
    out: list[ET.Element] = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        el = await next_stanza(c, max(0.1, deadline - time.monotonic()))
        if el.tag == "{%s}message" % CLIENT:
            out.append(el)
    return out


async def ping(c: RawClient, ident: str = "alive", timeout: float = 5) -> None:
    """XEP-0199 ping to the server; assert the result comes back (the stream is alive)."""
    await c.send(f"<iq type='get' id='{ident}' to='localhost'><ping xmlns='{PING}'/></iq>")
    while True:
        el = await next_stanza(c, timeout)
        if el.tag == "{%s}iq" % CLIENT and el.get("id") == ident:
            assert el.get("type") == "result", ET.tostring(el)
            return


async def login(
    server: LiveServer, prefix: str = "u", resource: str = "raw"
) -> tuple[RawClient, str]:
    """A fresh account, logged in and bound over STARTTLS; returns the client and full JID."""
    jid, password = await server.make_user(prefix)
    c = await RawClient.open(server.port)
    return c, await c.login(jid, password, resource)


async def open_direct_tls(server: LiveServer) -> tuple[RawClient, str]:
    c = await RawClient.open(server.tls_port, tls=True)
    return c, await c.open_stream()


def plain(user: str, password: str) -> str:
    local = user.partition("@")[0]
    token = base64.b64encode(f"\0{local}\0{password}".encode()).decode()
    return f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>"


async def secure_stream(server: LiveServer) -> RawClient:
    """Connected, STARTTLS done, second stream open: ready for SASL."""
    c = await RawClient.open(server.port)
    await c.open_stream()
    await c.starttls()
    await c.open_stream()
    return c


async def authenticate(server: LiveServer, jid: str, password: str) -> RawClient:
    """STARTTLS and SASL PLAIN done, restarted stream open: ready to bind."""
    c = await secure_stream(server)
    await c.send(plain(jid, password))
    await c.read_until("<success")
    c.buffer = ""
    await c.open_stream()
    return c


async def close_quietly(*clients: RawClient) -> None:
    for c in clients:
        c.close()
        try:
            await asyncio.wait_for(c.writer.wait_closed(), 2)
        except (OSError, TimeoutError):
            pass
