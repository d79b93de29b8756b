"""Stream-level bad input (RFC 6120 §4.9.3, §11): each case gets its exact stream
error after a stream header, the connection is closed, and other sessions live on."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.badinput.raw import (
    PING,
    close_quietly,
    elements,
    expect_stream_error,
    header,
    login,
    next_stanza,
    ping,
    secure_stream,
)
from tests.live import LiveServer, RawClient

XMLDECL = "<?xml version='1.0'?>"
BARE = header()[len(XMLDECL) :]  # our test header without the XML declaration
H = header().encode()
BILLION_LAUGHS = (
    XMLDECL + "<!DOCTYPE lolz ["
    "<!ENTITY lol 'lol'>"
    + "".join(
        f"<!ENTITY lol{i} '{('&lol' + (str(i - 1) if i > 1 else '') + ';') * 10}'>"
        for i in range(1, 10)
    )
    + "]>"
    + BARE
    + "<message><body>&lol9;</body></message>"
)


async def send_bad(server: LiveServer, data: str | bytes, cond: str) -> str:
    """A fresh connection sends data; the server answers header + error and closes."""
    c = await RawClient.open(server.port)
    try:
        await c.send(data)
        return await expect_stream_error(c, cond, header=True)
    finally:
        await close_quietly(c)


# -- restricted XML (RFC 6120 §11.1, §4.9.3.18) ------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(XMLDECL + "<!DOCTYPE stream:stream>" + BARE, id="doctype"),
        pytest.param(
            XMLDECL + "<!DOCTYPE s SYSTEM 'file:///etc/passwd'>" + BARE,
            id="external-dtd",
        ),
        pytest.param(BILLION_LAUGHS, id="billion-laughs"),
        pytest.param(XMLDECL + "<!-- hi -->" + BARE, id="comment-prolog"),
        pytest.param(header() + "<!-- hi -->", id="comment-in-stream"),
        pytest.param(XMLDECL + "<?foo bar?>" + BARE, id="pi-prolog"),
        pytest.param(header() + "<?foo bar?>", id="pi-in-stream"),
    ],
)
async def test_restricted_xml(server: LiveServer, witness: RawClient, data: str) -> None:
    """DTDs, entity declarations, comments and PIs → <restricted-xml/> (§11.1)."""
    await send_bad(server, data, "restricted-xml")


async def test_restricted_xml_inside_stanza_after_bind(
    server: LiveServer, witness: RawClient
) -> None:
    c, jid = await login(server, "comment")
    await c.send(f"<message to='{jid}'><body>a<!-- b --></body></message>")
    await expect_stream_error(c, "restricted-xml")
    await close_quietly(c)


# -- not well-formed (§4.9.3.13) -------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", id="http-request"),
        pytest.param(b"\x00\x01\x02\x03garbage", id="garbage-bytes"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", id="tls-hello-on-plain"),
        pytest.param(b"<?xml version='1.0'?><stream:stream \xc3\x28='x'>", id="bad-utf8-header"),
        pytest.param(H + b"<message><body></message>", id="mismatched-tags"),
        pytest.param(H + b"<message><body>\xff\xfe</body></message>", id="bad-utf8"),
        pytest.param(H + b"<message><body>\xed\xa0\x80</body></message>", id="utf8-surrogate"),
        pytest.param(H + b"<message a='1' a='2'/>", id="duplicate-attribute"),
        pytest.param(H + b"<message><body>&foo;</body></message>", id="undefined-entity"),
        pytest.param(H + b"<message><body>&#0;</body></message>", id="nul-charref"),
        pytest.param(H + b"<x:message/>", id="unbound-prefix"),
        pytest.param(H + b"<message><<</message>", id="bad-token"),
    ],
)
async def test_not_well_formed(server: LiveServer, witness: RawClient, data: bytes) -> None:
    await send_bad(server, data, "not-well-formed")


async def test_not_well_formed_after_bind(server: LiveServer, witness: RawClient) -> None:
    c, _ = await login(server, "nwf")
    await c.send(b"<message><body>\xff</body></message>")
    await expect_stream_error(c, "not-well-formed")
    await close_quietly(c)


async def test_stanza_before_a_fault_in_the_same_packet_is_handled(
    server: LiveServer, witness: RawClient
) -> None:
    """A complete stanza is handled even when a fault follows it in one read."""
    c, full = await login(server, "split")
    await c.send(f"<message to='{full}' id='m1'><body>kept</body></message><!-- no -->".encode())
    out = await expect_stream_error(c, "restricted-xml")
    assert out.index("kept") < out.index("<stream:error"), out
    await close_quietly(c)


async def test_error_after_starttls_restart_comes_after_a_new_header(
    server: LiveServer, witness: RawClient
) -> None:
    """After STARTTLS the stream restarts; an error before the client's new header is
    still preceded by a (new) header of ours (§4.3.3, §4.9.1.1)."""
    c = await RawClient.open(server.port)
    await c.open_stream()
    await c.starttls()
    await c.send(b"\x00\x01\x02\x03garbage")
    await expect_stream_error(c, "not-well-formed", header=True)
    await close_quietly(c)


async def test_text_between_stanzas_is_bad_format(server: LiveServer, witness: RawClient) -> None:
    await send_bad(server, header() + "hello", "bad-format")


# -- headers (§4.7, §4.9.3) ----------------------------------------------------------------


async def test_wrong_stream_namespace(server: LiveServer, witness: RawClient) -> None:
    await send_bad(server, header(stream_ns="http://example.com/streams"), "invalid-namespace")


async def test_server_content_namespace_on_c2s(server: LiveServer, witness: RawClient) -> None:
    """jabber:server is not the content namespace of a client stream (§4.8.2)."""
    await send_bad(server, header(xmlns="jabber:server"), "invalid-namespace")


async def test_unknown_domain(server: LiveServer, witness: RawClient) -> None:
    out = await send_bad(server, header(to="nowhere.example"), "host-unknown")
    assert "from='localhost'" in out


async def test_service_domain_is_not_a_client_domain(
    server: LiveServer, witness: RawClient
) -> None:
    """The MUC service is served here but has no accounts: clients get host-unknown."""
    await send_bad(server, header(to="conference.localhost"), "host-unknown")


@pytest.mark.parametrize("version", ["2.0", "0.9", "x"])
async def test_unsupported_version(server: LiveServer, witness: RawClient, version: str) -> None:
    await send_bad(server, header(version=version), "unsupported-version")


async def test_minor_version_above_ours_is_accepted(server: LiveServer) -> None:
    """A higher minor version is treated as ours (§4.7.5)."""
    c = await RawClient.open(server.port)
    await c.send(header(version="1.5"))
    feats = elements(await c.read_until("</stream:features>"))
    assert feats and feats[0].tag.endswith("}features")
    await close_quietly(c)


# -- after binding: what is a stanza (§8, §4.9.3.23) ------------------------------------------


@pytest.mark.parametrize(
    "el",
    ["<foo/>", "<foo xmlns='urn:example:x'/>", "<iq xmlns='jabber:server' type='get' id='1'/>"],
)
async def test_non_stanza_after_bind(server: LiveServer, witness: RawClient, el: str) -> None:
    c, _ = await login(server, "nonstanza")
    await c.send(el)
    await expect_stream_error(c, "unsupported-stanza-type")
    await close_quietly(c)


async def test_deep_nesting(server: LiveServer, witness: RawClient) -> None:
    c, jid = await login(server, "deep")
    await c.send(f"<message to='{jid}'>" + "<a>" * 500 + "</a>" * 500 + "</message>")
    await expect_stream_error(c, "policy-violation")
    await close_quietly(c)


async def test_moderate_nesting_is_fine(server: LiveServer) -> None:
    c, jid = await login(server, "nest")
    x = "<x xmlns='urn:example:nest'>" + "<a>" * 20 + "</a>" * 20 + "</x>"
    await c.send(f"<message to='{jid}' id='n1'>{x}</message>")
    el = await next_stanza(c)
    assert el.get("id") == "n1" and el.get("type") != "error"
    await ping(c)
    await close_quietly(c)


async def test_whitespace_keepalives(server: LiveServer) -> None:
    """Whitespace between stanzas is a keepalive, not an error (§4.6.1)."""
    c, _ = await login(server, "ws")
    await c.send(" \n\t ")
    await ping(c, "k1")
    await c.send(f"\n  <iq type='get' id='k2' to='localhost'><ping xmlns='{PING}'/></iq>  \n ")
    el = await next_stanza(c)
    assert el.get("id") == "k2" and el.get("type") == "result"
    for _ in range(3):
        await c.send(" ")
    await ping(c, "k3")
    await close_quietly(c)


# -- closing (§4.4) -------------------------------------------------------------------------


async def test_clean_close_after_bind(server: LiveServer, witness: RawClient) -> None:
    jid, password = await server.make_user("closer")
    c = await RawClient.open(server.port)
    full = await c.login(jid, password, "mine")
    await c.send("</stream:stream>")
    out = await c.read_to_eof()
    assert "<stream:error" not in out, out
    assert out.rstrip().endswith("</stream:stream>"), out
    await close_quietly(c)
    # The account and its resource are free again: the same resource binds without conflict.
    c2 = await RawClient.open(server.port)
    assert await c2.login(jid, password, "mine") == full
    await ping(c2)
    await close_quietly(c2)


async def test_clean_close_before_auth(server: LiveServer) -> None:
    c = await RawClient.open(server.port)
    await c.open_stream()
    await c.send("</stream:stream>")
    out = await c.read_to_eof()
    assert "<stream:error" not in out and out.rstrip().endswith("</stream:stream>"), out
    await close_quietly(c)


# -- size limits (§13.12, policy-violation) ------------------------------------------------------

SMALL = 4096


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(Path(tmp_path_factory.mktemp("small")), limits={"max_stanza_size": SMALL})
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log()[-3000:]


async def test_large_stanza_before_auth(small: LiveServer) -> None:
    witness, _ = await login(small, "w")
    c = await secure_stream(small)
    await c.send(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
        + "A" * (SMALL + 100)
        + "</auth>"
    )
    await expect_stream_error(c, "policy-violation")
    await ping(witness)
    await close_quietly(c, witness)


async def test_large_stanza_before_tls(small: LiveServer) -> None:
    c = await RawClient.open(small.port)
    await c.open_stream()
    await c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>" + "A" * SMALL * 2)
    await expect_stream_error(c, "policy-violation")
    await close_quietly(c)


@pytest.mark.parametrize("chunks", [1, 10])
async def test_large_stanza_after_bind(small: LiveServer, chunks: int) -> None:
    """Whether the stanza arrives whole or in pieces, past the limit it is refused."""
    witness, wjid = await login(small, "w")
    jid, password = await small.make_user("big")
    c = await RawClient.open(small.port)
    await c.login(jid, password)
    data = f"<message to='{wjid}'><body>" + "B" * (SMALL + 100) + "</body></message>"
    step = len(data) // chunks + 1
    for i in range(0, len(data), step):
        await c.send(data[i : i + step])
    await expect_stream_error(c, "policy-violation")
    await close_quietly(c)
    # The witness did not get the oversized message, and is alive.
    await ping(witness)
    assert "BBBB" not in witness.buffer
    # The account still logs in.
    c2 = await RawClient.open(small.port)
    await c2.login(jid, password, "again")
    await ping(c2)
    await close_quietly(c2, witness)


async def test_stanza_under_the_limit_is_delivered(small: LiveServer) -> None:
    c, jid = await login(small, "fits")
    await c.send(f"<message to='{jid}' id='fit'><body>" + "C" * (SMALL - 200) + "</body></message>")
    el = await next_stanza(c)
    assert el.get("id") == "fit" and el.get("type") != "error"
    await close_quietly(c)


@pytest.mark.parametrize("where", ["header", "start-tag"])
async def test_endless_start_tag(small: LiveServer, where: str) -> None:
    """A start tag (or header) that never ends counts against the stanza size limit."""
    c = await RawClient.open(small.port)
    if where == "header":
        await c.send("<stream:stream xmlns='jabber:client' a='")
    else:
        await c.open_stream()
        await c.send("<message a='")
    # One write the server reads whole: more and it might close with our bytes
    # unread, and the kernel's reset could swallow the stream error.
    await c.send("A" * (SMALL + 100))
    await expect_stream_error(c, "policy-violation")
    await close_quietly(c)


async def test_domain_change_on_restart(server: LiveServer, witness: RawClient) -> None:
    """The stream after STARTTLS must be to the same domain (§4.3.3, §4.9.3.6)."""
    c = await RawClient.open(server.port)
    await c.open_stream("localhost")
    await c.starttls()
    await c.send(header(to="example.org"))
    await expect_stream_error(c, "host-unknown", header=True)
    await close_quietly(c)


async def test_header_attributes_are_escaped_when_echoed(server: LiveServer) -> None:
    """The client's `from` and xml:lang come back in our header, escaped (§4.7.2)."""
    c = await RawClient.open(server.port)
    await c.send(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' "
        'from="a@localhost\' evil=\'1" xml:lang="en\'&gt;&lt;x">'
    )
    text = await c.read_until("</stream:features>")
    start = text.index("<stream:stream")
    ours = text[start : text.index(">", start) + 1]
    root = ET.fromstring(ours[:-1] + "/>")  # our header, as an empty element
    assert root.get("to") == "a@localhost' evil='1"
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "en'><x"
    assert root.get("evil") is None
    await close_quietly(c)


async def test_multibyte_characters_split_across_reads(server: LiveServer) -> None:
    """UTF-8 sequences cut between TCP segments are reassembled, not refused."""
    c, jid = await login(server, "utf8")
    data = f"<message to='{jid}' id='u'><body>héllo → ✓ 𝄞</body></message>".encode()
    cut = data.index("𝄞".encode()) + 2  # inside the four-byte sequence
    for part in (data[: data.index(b"\xc3") + 1], data[data.index(b"\xc3") + 1 : cut], data[cut:]):
        await c.send(part)
        await asyncio.sleep(0.05)
    el = await next_stanza(c)
    assert el.get("id") == "u" and el.findtext("{jabber:client}body") == "héllo → ✓ 𝄞"
    await close_quietly(c)
