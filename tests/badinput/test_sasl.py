"""SASL negotiation with bad input (RFC 6120 §6.4, §6.5): each failure names its exact
condition, retries are bounded per connection and per address, and the account
still works afterwards."""

from __future__ import annotations

import base64

import scramp

from tests.badinput.raw import (
    BIND,
    SASL,
    TLS,
    MakeServer,
    authenticate,
    close_quietly,
    elements,
    expect_stream_error,
    next_stanza,
    ping,
    plain,
    sasl_failure,
    secure_stream,
)
from tests.live import LiveServer, RawClient


def b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


async def failure(c: RawClient) -> str:
    return sasl_failure(await c.read_until("</failure>"))


async def bind_and_ping(c: RawClient) -> None:
    await c.send(f"<iq type='set' id='b'><bind xmlns='{BIND}'/></iq>")
    el = await next_stanza(c)
    assert el.get("type") == "result" and el.get("id") == "b"
    await ping(c)


async def still_logs_in(server: LiveServer, jid: str, password: str) -> None:
    c = await authenticate(server, jid, password)
    await bind_and_ping(c)
    await close_quietly(c)


async def test_invalid_mechanism(server: LiveServer) -> None:
    """§6.5.5; the stream stays open and a valid mechanism then works."""
    jid, password = await server.make_user("mech")
    c = await secure_stream(server)
    await c.send(f"<auth xmlns='{SASL}' mechanism='X-UNKNOWN'>{b64('x')}</auth>")
    assert await failure(c) == "invalid-mechanism"
    await c.send(f"<auth xmlns='{SASL}'>{b64('x')}</auth>")
    assert await failure(c) == "invalid-mechanism"
    await c.send(plain(jid, password))
    await c.read_until("<success")
    await close_quietly(c)


async def test_incorrect_encoding(server: LiveServer) -> None:
    """§6.5.2: the payload is not valid base64."""
    c = await secure_stream(server)
    await c.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>!!not*base64!!</auth>")
    assert await failure(c) == "incorrect-encoding"
    await c.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>AAA</auth>")
    assert await failure(c) == "incorrect-encoding"
    await close_quietly(c)


async def test_wrong_password_then_right_one(server: LiveServer, witness: RawClient) -> None:
    """§6.5.10 not-authorized; a retry on the same stream is allowed (§6.4.5)."""
    jid, password = await server.make_user("wrongpw")
    c = await secure_stream(server)
    await c.send(plain(jid, "not-the-password"))
    assert await failure(c) == "not-authorized"
    await c.send(plain(jid, password))
    await c.read_until("<success")
    c.buffer = ""
    await c.open_stream()
    await bind_and_ping(c)
    await close_quietly(c)


async def test_unknown_user_is_not_authorized(server: LiveServer) -> None:
    c = await secure_stream(server)
    await c.send(plain("nobody-at-all@localhost", "x"))
    assert await failure(c) == "not-authorized"
    await close_quietly(c)


async def test_malformed_plain_and_foreign_authzid(server: LiveServer) -> None:
    jid, password = await server.make_user("authz")
    c = await secure_stream(server)
    await c.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{b64('no-nul-bytes')}</auth>")
    assert await failure(c) == "malformed-request"
    local = jid.partition("@")[0]
    token = b64(f"admin@localhost\0{local}\0{password}")
    await c.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
    assert await failure(c) == "invalid-authzid"
    await close_quietly(c)


async def scram_first(c: RawClient, client: scramp.ScramClient, mech: str) -> str:
    await c.send(f"<auth xmlns='{SASL}' mechanism='{mech}'>{b64(client.get_client_first())}</auth>")
    text = await c.read_until("</challenge>")
    (challenge,) = elements(text)
    return base64.b64decode(challenge.text or "").decode()


async def test_scram_wrong_password_and_unknown_user(server: LiveServer) -> None:
    """SCRAM proofs that do not verify → not-authorized, for unknown users too (no probing)."""
    jid, _ = await server.make_user("scram")
    c = await secure_stream(server)
    for user in (jid.partition("@")[0], "nobody-here"):
        client = scramp.ScramClient(["SCRAM-SHA-256"], user, "wrong")
        client.set_server_first(await scram_first(c, client, "SCRAM-SHA-256"))
        await c.send(f"<response xmlns='{SASL}'>{b64(client.get_client_final())}</response>")
        assert await failure(c) == "not-authorized"
    await close_quietly(c)


async def test_abort(server: LiveServer) -> None:
    """§6.4.4: <abort/> mid-exchange → <aborted/>; a new exchange then succeeds."""
    jid, password = await server.make_user("abort")
    c = await secure_stream(server)
    client = scramp.ScramClient(["SCRAM-SHA-256"], jid.partition("@")[0], password)
    await scram_first(c, client, "SCRAM-SHA-256")
    await c.send(f"<abort xmlns='{SASL}'/>")
    assert await failure(c) == "aborted"
    # A response after the abort belongs to no exchange.
    await c.send(f"<response xmlns='{SASL}'>{b64('c=biws,r=x,p=x')}</response>")
    assert await failure(c) == "malformed-request"
    await c.send(plain(jid, password))
    await c.read_until("<success")
    await close_quietly(c)


async def test_stanza_before_auth(server: LiveServer, witness: RawClient) -> None:
    """§6.4.1/§4.9.3.12: stanzas before authentication → <not-authorized/> stream error."""
    c = await secure_stream(server)
    await c.send("<message to='someone@localhost'><body>hi</body></message>")
    await expect_stream_error(c, "not-authorized")
    await close_quietly(c)


async def test_unknown_sasl_element(server: LiveServer) -> None:
    """§4.9.3.24: a first-level element the server does not understand."""
    c = await secure_stream(server)
    await c.send(f"<frobnicate xmlns='{SASL}'/>")
    await expect_stream_error(c, "unsupported-stanza-type")
    await close_quietly(c)


async def test_account_still_works_after_failures(server: LiveServer) -> None:
    jid, password = await server.make_user("resilient")
    for _ in range(2):
        c = await secure_stream(server)
        await c.send(plain(jid, "bad"))
        assert await failure(c) == "not-authorized"
        await close_quietly(c)
    await still_logs_in(server, jid, password)


# -- without TLS (c2s.require_tls = false) ---------------------------------------------------


async def test_no_plain_without_tls_but_scram(make_server: MakeServer) -> None:
    """PLAIN is not offered on a plain stream (it would expose the password), SCRAM is;
    a PLAIN attempt there is <encryption-required/> (§6.5.6); SCRAM logs in."""
    srv = make_server(c2s={"require_tls": False})
    jid, password = await srv.make_user("noplain")
    c = await RawClient.open(srv.port)
    (feats,) = elements(await c.open_stream())
    starttls = feats.find("{%s}starttls" % TLS)
    assert starttls is not None and starttls.find("{%s}required" % TLS) is None
    mechs = [m.text for m in feats.iter("{%s}mechanism" % SASL)]
    assert mechs == ["SCRAM-SHA-256", "SCRAM-SHA-1"]
    await c.send(plain(jid, password))
    assert await failure(c) == "encryption-required"
    await c.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256-PLUS'>{b64('p=x')}</auth>")
    assert await failure(c) == "encryption-required"
    client = scramp.ScramClient(["SCRAM-SHA-256"], jid.partition("@")[0], password)
    client.set_server_first(await scram_first(c, client, "SCRAM-SHA-256"))
    await c.send(f"<response xmlns='{SASL}'>{b64(client.get_client_final())}</response>")
    (success,) = elements(await c.read_until("</success>"))
    client.set_server_final(base64.b64decode(success.text or "").decode())
    c.buffer = ""
    await c.open_stream()
    await bind_and_ping(c)
    await close_quietly(c)


# -- retry limits (§6.4.5) and per-address throttling --------------------------------------------


async def test_per_connection_retry_limit_closes_the_stream(make_server: MakeServer) -> None:
    srv = make_server(limits={"max_auth_failures": 3})
    jid, _ = await srv.make_user("retry")
    c = await secure_stream(srv)
    for _ in range(2):
        await c.send(plain(jid, "bad"))
        assert await failure(c) == "not-authorized"
    await c.send(plain(jid, "bad"))
    out = await expect_stream_error(c, "policy-violation")
    assert sasl_failure(out) == "not-authorized"
    await close_quietly(c)


async def test_per_ip_throttling(make_server: MakeServer) -> None:
    """After max_auth_failures failures from one address (over several connections),
    even the right password gets <temporary-auth-failure/> (§6.5.12)."""
    srv = make_server(limits={"max_auth_failures": 3})
    jid, password = await srv.make_user("throttle")
    for _ in range(3):
        c = await secure_stream(srv)
        await c.send(plain(jid, "bad"))
        assert await failure(c) == "not-authorized"
        await close_quietly(c)
    c = await secure_stream(srv)
    await c.send(plain(jid, password))
    assert await failure(c) == "temporary-auth-failure"
    # Not a failure of its own: the stream is still open.
    await c.send(plain(jid, password))
    assert await failure(c) == "temporary-auth-failure"
    await close_quietly(c)
