"""Nothing read before a layer switch is processed after it (RFC 6120 §5.4.3.3, §6.4.6).

The STARTTLS command-injection class (CVE-2011-0411, CVE-2021-33515): a client
(or a man in the middle) pipelines commands after ``<starttls/>`` in the same
plaintext packet; a server that keeps the bytes it already read would process
them as if they had arrived over TLS. The same holds for what arrives during a
SASL exchange: after ``<success/>`` the stream restarts and only a new header
is accepted. Each test puts the switch and the injected command in one write.
"""

from __future__ import annotations

import asyncio
import re

from tests.badinput.raw import (
    BIND,
    SASL,
    TLS,
    authenticate,
    close_quietly,
    elements,
    header,
    next_stanza,
    ping,
    plain,
)
from tests.live import LiveServer, RawClient, client_tls_context


async def _no_more_output(c: RawClient, seconds: float = 0.5) -> str:
    """What the server writes within ``seconds`` (it should write nothing)."""
    try:
        chunk = await asyncio.wait_for(c.reader.read(65536), seconds)
    except TimeoutError:
        return ""
    return chunk.decode("utf-8", "replace")


async def test_auth_pipelined_after_starttls_is_not_processed_over_tls(
    server: LiveServer, witness: RawClient
) -> None:
    """<starttls/> and <auth/> in one plaintext packet: the <auth/> is dropped with
    the plaintext; over TLS the client is still unauthenticated."""
    jid, password = await server.make_user("inject")
    c = await RawClient.open(server.port)
    await c.open_stream()
    await c.send(f"<starttls xmlns='{TLS}'/>" + plain(jid, password))
    await c.read_until("<proceed")
    await c.writer.start_tls(client_tls_context())
    c.buffer = ""
    # Over TLS: the new stream offers SASL; the injected <auth/> left no <success/>.
    (feats,) = elements(await c.open_stream())
    assert feats.find("{%s}mechanisms" % SASL) is not None
    assert "<success" not in c.buffer + await _no_more_output(c)
    # Authenticating over TLS still works on the same stream.
    await c.send(plain(jid, password))
    await c.read_until("<success")
    await close_quietly(c)


async def test_stanza_pipelined_after_starttls_is_not_processed(
    server: LiveServer, witness: RawClient
) -> None:
    """Whatever followed <starttls/> — even a would-be stream header — is gone: the
    TLS layer starts with no stream, so a stanza there is answered by nothing."""
    c = await RawClient.open(server.port)
    await c.open_stream()
    await c.send(f"<starttls xmlns='{TLS}'/>" + header() + "<presence/>")
    await c.read_until("<proceed")
    await c.writer.start_tls(client_tls_context())
    c.buffer = ""
    assert await _no_more_output(c) == ""
    (feats,) = elements(await c.open_stream())
    assert feats.find("{%s}mechanisms" % SASL) is not None
    await close_quietly(c)


async def test_bind_pipelined_with_auth_is_not_processed_after_success(
    server: LiveServer, witness: RawClient
) -> None:
    """<auth/> (PLAIN, one step) and a bind in one packet: the bind belongs to the
    stream SASL ended, so it is dropped; the restarted stream binds normally."""
    jid, password = await server.make_user("pipe")
    c = await RawClient.open(server.port)
    await c.open_stream()
    await c.starttls()
    await c.open_stream()
    bind = "<iq type='set' id='{id}'><bind xmlns='%s'><resource>{res}</resource></bind></iq>" % BIND
    await c.send(plain(jid, password) + bind.format(id="piped", res="injected"))
    await c.read_until("<success")
    c.buffer = ""
    assert await _no_more_output(c) == ""
    await c.open_stream()
    await c.send(bind.format(id="real", res="proper"))
    answer = await next_stanza(c)
    assert answer.get("id") == "real" and answer.get("type") == "result"
    assert answer.findtext(".//{%s}jid" % BIND, "").endswith("/proper")
    await ping(c)
    await close_quietly(c)


async def test_header_pipelined_with_auth_is_discarded(
    server: LiveServer, witness: RawClient
) -> None:
    """A restart header sent before <success/> arrived is not the new stream's header:
    the client must send one after the switch (RFC 6120 §6.4.6)."""
    jid, password = await server.make_user("early")
    c = await RawClient.open(server.port)
    await c.open_stream()
    await c.starttls()
    await c.open_stream()
    await c.send(plain(jid, password) + header())
    await c.read_until("<success")
    c.buffer = ""
    assert "<stream:stream" not in await _no_more_output(c)
    out = await c.open_stream()
    assert re.search(r"<bind xmlns='%s'" % re.escape(BIND), out), out
    await close_quietly(c)


async def test_s2s_stanza_pipelined_after_starttls_is_not_processed(server: LiveServer) -> None:
    """The same on server-to-server streams: what rides with <starttls/> (here a stanza
    from an unauthenticated domain, which would end the stream with <invalid-from/>)
    is dropped, and the peer opens its stream over TLS as if nothing had been sent."""
    c = await RawClient.open(server.s2s_port)
    s2s_header = (
        "<stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
        "xmlns:stream='http://etherx.jabber.org/streams' from='evil.test' to='localhost' "
        "version='1.0'>"
    )
    await c.send(s2s_header)
    await c.read_until("</stream:features>")
    await c.send(f"<starttls xmlns='{TLS}'/><message from='x@evil.test' to='y@localhost'/>")
    await c.read_until("<proceed")
    await c.writer.start_tls(client_tls_context())
    c.buffer = ""
    assert await _no_more_output(c) == ""
    await c.send(s2s_header)
    out = await c.read_until("</stream:features>")
    assert "<stream:error" not in out, out
    await close_quietly(c)


async def test_authenticate_helper_still_works(server: LiveServer) -> None:
    """The normal, unpipelined order keeps working (a control for the tests above)."""
    jid, password = await server.make_user("control")
    c = await authenticate(server, jid, password)
    await c.send("<iq type='set' id='b'><bind xmlns='%s'/></iq>" % BIND)
    answer = await next_stanza(c)
    assert answer.get("type") == "result"
    await close_quietly(c)
