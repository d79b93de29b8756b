"""TLS negotiation with bad or early input (RFC 6120 §5): with c2s.require_tls (the
default) nothing but STARTTLS is accepted on a plain stream."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from tests.badinput.raw import (
    BIND,
    SASL,
    TLS,
    close_quietly,
    elements,
    expect_stream_error,
    next_stanza,
    open_direct_tls,
    ping,
    plain,
    sasl_failure,
)
from tests.live import LiveServer, RawClient, client_tls_context


async def test_features_before_tls_offer_only_required_starttls(server: LiveServer) -> None:
    """§5.3.1: mandatory-to-negotiate STARTTLS is the only feature offered."""
    c = await RawClient.open(server.port)
    (feats,) = elements(await c.open_stream())
    assert [child.tag for child in feats] == ["{%s}starttls" % TLS]
    assert [child.tag for child in feats[0]] == ["{%s}required" % TLS]
    await close_quietly(c)


async def test_auth_before_starttls_is_encryption_required(server: LiveServer) -> None:
    """§6.4.2/§6.5.6: SASL on a stream that must be encrypted first; the stream stays
    open and STARTTLS then SASL still succeed on it."""
    jid, password = await server.make_user("early")
    c = await RawClient.open(server.port)
    await c.open_stream()
    await c.send(plain(jid, password))
    assert sasl_failure(await c.read_until("</failure>")) == "encryption-required"
    await c.starttls()
    await c.open_stream()
    await c.send(plain(jid, password))
    await c.read_until("<success")
    await close_quietly(c)


async def test_stanza_before_starttls(server: LiveServer, witness: RawClient) -> None:
    c = await RawClient.open(server.port)
    await c.open_stream()
    await c.send("<message to='someone@localhost'><body>plain</body></message>")
    await expect_stream_error(c, "policy-violation")
    await close_quietly(c)


async def test_starttls_twice(server: LiveServer) -> None:
    c = await RawClient.open(server.port)
    await c.open_stream()
    await c.starttls()
    await c.open_stream()
    await c.send(f"<starttls xmlns='{TLS}'/>")
    await expect_stream_error(c, "policy-violation")
    await close_quietly(c)


async def test_garbage_instead_of_tls_handshake(server: LiveServer, witness: RawClient) -> None:
    """After <proceed/> the client sends plaintext: the handshake fails, the connection
    is dropped, and nobody else notices."""
    c = await RawClient.open(server.port)
    await c.open_stream()
    await c.send(f"<starttls xmlns='{TLS}'/>")
    await c.read_until("<proceed")
    await c.send(b"this is not a TLS ClientHello\r\n" * 8)
    await c.read_to_eof()
    await close_quietly(c)


async def test_silent_after_proceed_does_not_block_others(
    server: LiveServer, witness: RawClient
) -> None:
    """A client that stops after <proceed/> holds only its own connection."""
    c = await RawClient.open(server.port)
    await c.open_stream()
    await c.send(f"<starttls xmlns='{TLS}'/>")
    await c.read_until("<proceed")
    await ping(witness, "during-handshake")
    await close_quietly(c)


async def test_direct_tls(server: LiveServer) -> None:
    """XEP-0368 direct TLS: no STARTTLS offered, PLAIN and SCRAM-PLUS are."""
    jid, password = await server.make_user("direct")
    c, text = await open_direct_tls(server)
    (feats,) = elements(text)
    assert feats.find("{%s}starttls" % TLS) is None
    mechs = [m.text for m in feats.iter("{%s}mechanism" % SASL)]
    assert "PLAIN" in mechs and "SCRAM-SHA-256-PLUS" in mechs
    await c.send(plain(jid, password))
    await c.read_until("<success")
    c.buffer = ""
    await c.open_stream()
    await c.send(f"<iq type='set' id='b'><bind xmlns='{BIND}'><resource>d</resource></bind></iq>")
    el = await next_stanza(c)
    assert el.get("type") == "result"
    assert el.findtext(".//{%s}jid" % BIND) == f"{jid}/d"
    await ping(c)
    await close_quietly(c)


async def test_garbage_on_direct_tls_port(server: LiveServer, witness: RawClient) -> None:
    """Plaintext XMPP on the TLS port: the handshake fails and the connection is closed."""
    r, w = await asyncio.open_connection("127.0.0.1", server.tls_port)
    w.write(b"<?xml version='1.0'?><stream:stream to='localhost'>" * 4)
    await w.drain()
    try:
        data = await asyncio.wait_for(r.read(), 5)  # a TLS alert at most, then EOF
    except ConnectionResetError:
        data = b""
    assert b"<stream" not in data
    w.close()


# -- the Mozilla intermediate profile (docs/SECURITY.md), on a live listener ----------------


async def _handshake(
    server: LiveServer, version: ssl.TLSVersion, ciphers: str | None = None, starttls: bool = False
) -> ssl.SSLObject:
    """A handshake with a client limited to one version (and cipher list); raises
    ssl.SSLError (or a connection error) when the server refuses."""
    ctx = client_tls_context()
    ctx.minimum_version = ctx.maximum_version = version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if starttls:
        c = await RawClient.open(server.port)
        await c.open_stream()
        await c.send(f"<starttls xmlns='{TLS}'/>")
        await c.read_until("<proceed")
        try:
            await c.writer.start_tls(ctx)
        finally:
            c.writer.close()
        obj: ssl.SSLObject = c.writer.get_extra_info("ssl_object")
        return obj
    _, w = await asyncio.open_connection("127.0.0.1", server.tls_port, ssl=ctx)
    obj = w.get_extra_info("ssl_object")
    w.close()
    return obj


@pytest.mark.parametrize("starttls", [False, True], ids=["direct", "starttls"])
async def test_tls13_and_intermediate_tls12_accepted(server: LiveServer, starttls: bool) -> None:
    obj = await _handshake(server, ssl.TLSVersion.TLSv1_3, starttls=starttls)
    assert obj.version() == "TLSv1.3"
    obj = await _handshake(
        server, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256", starttls=starttls
    )
    assert obj.version() == "TLSv1.2"
    assert obj.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"  # type: ignore[index]


@pytest.mark.parametrize("starttls", [False, True], ids=["direct", "starttls"])
@pytest.mark.parametrize("cipher", ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES128-SHA256"])
async def test_tls12_cbc_cipher_refused(
    server: LiveServer, witness: RawClient, cipher: str, starttls: bool
) -> None:
    """CBC suites are not in the profile (OpenSSL's defaults would accept the second)."""
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await _handshake(server, ssl.TLSVersion.TLSv1_2, cipher, starttls=starttls)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["TLSv1.0", "TLSv1.1"]
)
async def test_tls_before_1_2_refused(
    server: LiveServer, witness: RawClient, version: ssl.TLSVersion
) -> None:
    """The client would go as low as SECLEVEL 0 allows; the server does not (the unit
    tests show this OpenSSL could)."""
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await _handshake(server, version, "ALL:@SECLEVEL=0")
