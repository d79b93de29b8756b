"""Certificates on a real `descant serve` process: one per domain chosen by SNI or the
stream's 'to', SCRAM-PLUS bound to the certificate actually used, and reloading on
SIGHUP and on file changes without dropping sessions (docs/SECURITY.md, TLS).

The server serves localhost (default certificate: localhost only) and example.org
(its own certificate: example.org and *.example.org). What a client sees is read from
the peer certificate's subjectAltName.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from cryptography import x509

from descant.net import tls
from tests.badinput.raw import (
    BIND,
    CLIENT,
    MakeServer,
    close_quietly,
    messages,
    next_stanza,
    ping,
    plain,
)
from tests.client.test_scram_plus import _end_point, _scram_plus
from tests.live import LiveServer, RawClient, client_tls_context

ORG = ["example.org", "*.example.org"]
LOCAL = ["localhost", "*.localhost"]


def make_certs(root: Path) -> dict[str, tuple[Path, Path]]:
    out = {}
    for name, domains in (("localhost", ["localhost"]), ("example.org", ["example.org"])):
        cert, key = root / f"{name}.crt", root / f"{name}.key"
        tls.make_self_signed(domains, str(cert), str(key))
        out[name] = (cert, key)
    return out


def replace_certificate(cert: Path, key: Path, domains: list[str]) -> None:
    """Renew in place as a certificate manager does: new files renamed over the old."""
    tmp_cert, tmp_key = cert.with_suffix(".new.crt"), key.with_suffix(".new.key")
    tls.make_self_signed(domains, str(tmp_cert), str(tmp_key))
    os.replace(tmp_key, key)
    os.replace(tmp_cert, cert)


def start(
    make_server: MakeServer, tmp_path: Path, **tls_keys: object
) -> tuple[LiveServer, dict[str, tuple[Path, Path]]]:
    certs = make_certs(tmp_path)
    org_cert, org_key = certs["example.org"]
    srv = make_server(
        tls={
            "cert": str(certs["localhost"][0]),
            "key": str(certs["localhost"][1]),
            "domains": {"example.org": {"cert": str(org_cert), "key": str(org_key)}},
            **tls_keys,
        }
    )
    return srv, certs


def names(c: RawClient) -> list[str]:
    der = c.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return tls.names_of(x509.load_der_x509_certificate(der))


async def direct(port: int, sni: str | None) -> RawClient:
    """A direct-TLS connection, with SNI when given."""
    r, w = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_tls_context(), server_hostname=sni or ""
    )
    return RawClient(r, w)


async def names_seen(port: int, sni: str | None) -> list[str]:
    c = await direct(port, sni)
    try:
        return names(c)
    finally:
        await close_quietly(c)


async def login_direct(srv: LiveServer, jid: str, password: str, resource: str) -> RawClient:
    """Logged in and bound over direct TLS with SNI naming the account's domain."""
    domain = jid.partition("@")[2]
    c = await direct(srv.tls_port, domain)
    await c.open_stream(domain)
    await c.send(plain(jid, password))
    await c.read_until("<success")
    c.buffer = ""
    await c.open_stream(domain)
    await c.send(
        f"<iq type='set' id='b'><bind xmlns='{BIND}'><resource>{resource}</resource></bind></iq>"
    )
    el = await next_stanza(c)
    assert el.get("type") == "result"
    return c


async def still_talking(a: RawClient, b: RawClient, b_jid: str, text: str) -> None:
    """Established sessions still exchange messages (and answer pings)."""
    await a.send(f"<message to='{b_jid}' type='chat'><body>{text}</body></message>")
    (msg,) = await messages(b, 1)
    assert msg.findtext("{%s}body" % CLIENT) == text
    await ping(a, f"ping-{text}")


async def wait_for_log(text: str, srv: LiveServer, since: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in srv.log()[since:]:
        assert time.monotonic() < deadline, f"no {text!r} in the log"
        await asyncio.sleep(0.05)


# -- selection ---------------------------------------------------------------------------------


async def test_sni_picks_each_domains_certificate(make_server: MakeServer, tmp_path: Path) -> None:
    srv, _ = start(make_server, tmp_path)
    assert await names_seen(srv.tls_port, "example.org") == ORG
    assert await names_seen(srv.tls_port, "localhost") == LOCAL
    # A subdomain the domain's certificate covers (the MUC service) gets it.
    assert await names_seen(srv.tls_port, "conference.example.org") == ORG
    # No SNI, or a name not served: the default.
    assert await names_seen(srv.tls_port, None) == LOCAL
    assert await names_seen(srv.tls_port, "elsewhere.example") == LOCAL
    # HTTPS (WebSocket, BOSH) chooses the same way.
    assert await names_seen(srv.https_port, "example.org") == ORG
    assert await names_seen(srv.https_port, "localhost") == LOCAL


async def test_starttls_without_sni_uses_the_stream_to(
    make_server: MakeServer, tmp_path: Path
) -> None:
    """c2s and incoming s2s: the server knows the header's 'to' before STARTTLS."""
    srv, _ = start(make_server, tmp_path)
    for to, expected in (("example.org", ORG), ("localhost", LOCAL)):
        c = await RawClient.open(srv.port)
        await c.open_stream(to)
        await c.starttls()  # no SNI
        assert names(c) == expected
        await close_quietly(c)
    s = await RawClient.open(srv.s2s_port)
    await s.send(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
        "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
        "from='peer.example' to='example.org' version='1.0'>"
    )
    await s.read_until("</stream:features>")
    await s.starttls()
    assert names(s) == ORG
    await close_quietly(s)


@pytest.mark.parametrize("how", ["direct TLS with SNI", "STARTTLS to the domain"])
async def test_scram_plus_on_a_domains_own_certificate(
    make_server: MakeServer, tmp_path: Path, how: str
) -> None:
    """RFC 5929 tls-server-end-point: the binding is of the certificate this connection
    got (example.org's), not of the default one."""
    srv, _ = start(make_server, tmp_path)
    jid, password = await srv.make_user("plus", domain="example.org")
    if how.startswith("direct"):
        c = await direct(srv.tls_port, "example.org")
    else:
        c = await RawClient.open(srv.port)
        await c.open_stream("example.org")
        await c.starttls()
    try:
        features = await c.open_stream("example.org")
        assert "SCRAM-SHA-256-PLUS" in features
        assert names(c) == ORG
        user = jid.partition("@")[0]
        assert await _scram_plus(c, "SCRAM-SHA-256-PLUS", user, password, _end_point(c)) == (
            "success"
        )
    finally:
        await close_quietly(c)


# -- reload ------------------------------------------------------------------------------------


async def test_sighup_reloads_and_keeps_sessions(make_server: MakeServer, tmp_path: Path) -> None:
    """`kill -HUP`: new connections get the renewed certificate, sessions already
    established (over the old one) go on exchanging messages."""
    srv, certs = start(make_server, tmp_path, watch_interval=0)
    a_jid, a_pw = await srv.make_user("a", domain="example.org")
    b_jid, b_pw = await srv.make_user("b", domain="example.org")
    a = await login_direct(srv, a_jid, a_pw, "r")
    b = await login_direct(srv, b_jid, b_pw, "r")
    await still_talking(a, b, f"{b_jid}/r", "before")

    since = len(srv.log())
    replace_certificate(*certs["example.org"], ["example.org", "renewed.example.org"])
    assert await names_seen(srv.tls_port, "example.org") == ORG  # nothing watches the files
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGHUP)
    await wait_for_log("certificates reloaded (SIGHUP)", srv, since)

    assert "renewed.example.org" in await names_seen(srv.tls_port, "example.org")
    assert await names_seen(srv.tls_port, "localhost") == LOCAL
    assert names(a) == ORG  # the established connection keeps its certificate
    await still_talking(a, b, f"{b_jid}/r", "after")
    await still_talking(b, a, f"{a_jid}/r", "back")
    await close_quietly(a, b)
    assert srv.proc.poll() is None


async def test_changed_files_are_reloaded(make_server: MakeServer, tmp_path: Path) -> None:
    srv, certs = start(make_server, tmp_path, watch_interval=0.2)
    a_jid, a_pw = await srv.make_user("a", domain="example.org")
    b_jid, b_pw = await srv.make_user("b")
    a = await login_direct(srv, a_jid, a_pw, "r")
    b = await login_direct(srv, b_jid, b_pw, "r")

    since = len(srv.log())
    replace_certificate(*certs["localhost"], ["localhost", "renewed.localhost"])
    await wait_for_log("certificates reloaded (files changed)", srv, since)
    assert "renewed.localhost" in await names_seen(srv.tls_port, "localhost")
    assert "renewed.localhost" in await names_seen(srv.tls_port, None)
    assert await names_seen(srv.tls_port, "example.org") == ORG
    await still_talking(a, b, f"{b_jid}/r", "across-domains")
    await still_talking(b, a, f"{a_jid}/r", "and-back")
    await close_quietly(a, b)


async def test_broken_replacement_keeps_the_old_certificate(
    make_server: MakeServer, tmp_path: Path
) -> None:
    """An unparsable certificate or a key that does not match: logged, nothing changes,
    nothing is dropped; a good file later is taken."""
    srv, certs = start(make_server, tmp_path, watch_interval=0)
    jid, password = await srv.make_user("a", domain="example.org")
    a = await login_direct(srv, jid, password, "r")
    cert, key = certs["example.org"]
    good_cert = cert.read_bytes()
    assert srv.proc is not None

    for damage in ("garbage", "mismatched key"):
        since = len(srv.log())
        if damage == "garbage":
            cert.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n")
        else:
            cert.write_bytes(good_cert)
            other = tmp_path / "other"
            tls.make_self_signed(["example.org"], f"{other}.crt", f"{other}.key")
            key.write_bytes(Path(f"{other}.key").read_bytes())
        srv.proc.send_signal(signal.SIGHUP)
        await wait_for_log("reload (SIGHUP) failed", srv, since)
        assert str(cert) in srv.log()[since:]
        assert await names_seen(srv.tls_port, "example.org") == ORG
        await ping(a, f"alive-{damage.replace(' ', '-')}")

    since = len(srv.log())
    replace_certificate(cert, key, ["example.org", "fixed.example.org"])
    srv.proc.send_signal(signal.SIGHUP)
    await wait_for_log("certificates reloaded (SIGHUP)", srv, since)
    assert "fixed.example.org" in await names_seen(srv.tls_port, "example.org")
    await ping(a, "alive-at-last")
    await close_quietly(a)
    assert "Traceback" not in srv.log()
