"""Resource binding with bad input (RFC 6120 §7)."""

from __future__ import annotations

from tests.badinput.raw import (
    BIND,
    authenticate,
    close_quietly,
    expect_stream_error,
    next_stanza,
    ping,
    stanza_error,
)
from tests.live import LiveServer, RawClient


def bind_iq(ident: str, resource: str | None) -> str:
    inner = f"<resource>{resource}</resource>" if resource is not None else ""
    return f"<iq type='set' id='{ident}'><bind xmlns='{BIND}'>{inner}</bind></iq>"


async def test_stanza_before_bind(server: LiveServer, witness: RawClient) -> None:
    """§7.1: no stanzas to others before a resource is bound → <not-authorized/>."""
    jid, password = await server.make_user("prebind")
    c = await authenticate(server, jid, password)
    await c.send(f"<message to='{jid}'><body>too early</body></message>")
    await expect_stream_error(c, "not-authorized")
    await close_quietly(c)


async def test_other_iq_before_bind_is_refused(server: LiveServer) -> None:
    jid, password = await server.make_user("prebindiq")
    c = await authenticate(server, jid, password)
    await c.send("<iq type='get' id='v'><query xmlns='jabber:iq:version'/></iq>")
    el = await next_stanza(c)
    assert el.get("id") == "v" and stanza_error(el) == "not-authorized"
    await c.send(bind_iq("b", "ok"))
    el = await next_stanza(c)
    assert el.get("type") == "result"
    await close_quietly(c)


async def test_invalid_resourcepart(server: LiveServer) -> None:
    """§7.7.2.1: a resourcepart Resourceprep refuses → <bad-request/>; the stream stays
    open and a valid bind then succeeds."""
    jid, password = await server.make_user("badres")
    c = await authenticate(server, jid, password)
    for i, bad in enumerate(["\u200b", "\u0378", "&#x2028;", "x" * 1024]):
        await c.send(bind_iq(f"bad{i}", bad))
        el = await next_stanza(c)
        assert el.get("id") == f"bad{i}"
        assert stanza_error(el) == "bad-request"
        assert el.find(".//{jabber:client}error").get("type") == "modify"  # type: ignore[union-attr]
    await c.send(bind_iq("good", "fine"))
    el = await next_stanza(c)
    assert el.get("type") == "result"
    assert el.findtext(".//{%s}jid" % BIND) == f"{jid}/fine"
    await ping(c)
    await close_quietly(c)


async def test_server_generated_resource(server: LiveServer) -> None:
    """§7.6: no resource requested (or an empty one) → the server makes one up."""
    jid, password = await server.make_user("genres")
    seen = set()
    for request in (None, ""):
        c = await authenticate(server, jid, password)
        await c.send(bind_iq("b", request))
        el = await next_stanza(c)
        assert el.get("type") == "result"
        full = el.findtext(".//{%s}jid" % BIND) or ""
        bare, _, resource = full.partition("/")
        assert bare == jid and resource
        seen.add(resource)
        await ping(c)
        await close_quietly(c)
    assert len(seen) == 2


async def test_resource_conflict_newest_wins(server: LiveServer, witness: RawClient) -> None:
    """§7.7.2.2: a second bind of the same resource → the first stream gets <conflict/>
    and is closed; the second is bound and works."""
    jid, password = await server.make_user("conflict")
    first = await RawClient.open(server.port)
    full = await first.login(jid, password, "same")
    second = await RawClient.open(server.port)
    assert await second.login(jid, password, "same") == full
    await expect_stream_error(first, "conflict")
    await ping(second)
    # Messages to the full JID reach the new session.
    await witness.send(f"<message to='{full}' id='m'><body>to the new one</body></message>")
    el = await next_stanza(second)
    assert el.get("id") == "m" and el.findtext("{jabber:client}body") == "to the new one"
    await close_quietly(first, second)


async def test_legacy_session_iq_after_bind_is_a_result(server: LiveServer) -> None:
    """RFC 3921 §3: session establishment follows binding; the features offer it as
    <optional/>, and a client that still sends it gets a result, not an error."""
    jid, password = await server.make_user("legacysess")
    c = await authenticate(server, jid, password)
    await c.send(bind_iq("b", "old"))
    assert (await next_stanza(c)).get("type") == "result"
    session = "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>"
    await c.send(f"<iq type='set' id='s1'>{session}</iq>")
    await c.send(f"<iq type='set' id='s2' to='localhost'>{session}</iq>")
    for ident in ("s1", "s2"):
        el = await next_stanza(c)
        assert el.get("id") == ident and el.get("type") == "result", el.attrib
    await ping(c)
    await close_quietly(c)
