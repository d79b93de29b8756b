"""Limits one account cannot get around (limits.*): each refused with the RFC's
condition once reached, the account's other sessions unaffected."""

from __future__ import annotations

from typing import Any

from tests.badinput.raw import close_quietly, login, next_stanza, ping, stanza_error
from tests.live import LiveServer, RawClient


async def bind_refused(c: RawClient, jid: str, password: str, resource: str) -> str:
    """Log in as RawClient.login does, and return the answer to the bind request."""
    try:
        await c.login(jid, password, resource)
    except ValueError:  # the answer has no <jid/>
        pass
    else:
        raise AssertionError("bind was accepted")
    return c.last_iq


async def test_sessions_per_account_rfc6120_7_6_2_1(make_server: Any) -> None:
    srv: LiveServer = make_server(limits={"max_sessions_per_account": 2})
    jid, password = await srv.make_user("many")
    first, second = await RawClient.open(srv.port), await RawClient.open(srv.port)
    third = await RawClient.open(srv.port)
    try:
        await first.login(jid, password, "one")
        await second.login(jid, password, "two")
        answer = await bind_refused(third, jid, password, "three")
        assert "type='error'" in answer or 'type="error"' in answer
        assert "<resource-constraint" in answer
        await ping(first)  # the account's other sessions go on
        # The refused stream stays open: binding a resource in use is not one more
        # session, it replaces the holder (RFC 6120 §7.7.2.2).
        await third.send(
            "<iq type='set' id='bind2'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            "<resource>two</resource></bind></iq>"
        )
        assert "/two</jid>" in await third.read_until("</iq>")
        await ping(third)
        assert "bind refused, 2 sessions already" in srv.log()
    finally:
        await close_quietly(first, second, third)


async def test_new_remote_domains_per_account_are_bounded(make_server: Any) -> None:
    """limits.max_remote_domains_per_hour: an account cannot make the server dial any
    number of domains (a DNS lookup and connection attempts each); its contacts'
    domains do not count."""
    from tests.live import free_port

    dead = f"127.0.0.1:{free_port()}"
    domains = ("d1.test", "d2.test", "d3.test", "friend.test")
    srv: LiveServer = make_server(
        limits={"max_remote_domains_per_hour": 2},
        s2s={"routes": {d: dead for d in domains}, "connect_timeout": 0.3},
    )
    c, _ = await login(srv, "dialer")
    try:
        await c.send(
            "<iq type='set' id='r1'><query xmlns='jabber:iq:roster'>"
            "<item jid='pal@friend.test'/></query></iq>"
        )
        for n, domain in enumerate(domains):
            await c.send(
                f"<message to='x@{domain}' id='m{n}' type='chat'><body>hi</body></message>"
            )
        errors = {}
        while len(errors) < 4:
            el = await next_stanza(c, timeout=10)
            if el.tag.endswith("message") and el.get("type") == "error":
                errors[el.get("id")] = stanza_error(el)
        assert errors["m2"] == "policy-violation"  # the third new domain
        assert {errors["m0"], errors["m1"], errors["m3"]} <= {
            "remote-server-not-found",
            "remote-server-timeout",
        }  # dialled (and unreachable): the two allowed, and the contact's domain
        assert "no new connection to d3.test" in srv.log()
    finally:
        await close_quietly(c)


async def test_stanza_rate_slows_a_flood_and_loses_nothing(make_server: Any) -> None:
    """limits.c2s_stanza_rate: past it the connection is slowed (backpressure), every
    stanza still answered in order, and another user is not slowed with it."""
    import time

    srv: LiveServer = make_server(limits={"c2s_stanza_rate": 10})
    flood, _ = await login(srv, "flood")
    other, _ = await login(srv, "calm")
    try:
        started = time.monotonic()
        await flood.send(
            "".join(
                f"<iq type='get' id='p{n}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
                for n in range(30)
            )
        )
        calm_started = time.monotonic()
        await ping(other)
        assert time.monotonic() - calm_started < 1.0  # the other user is not slowed
        answered = []
        while len(answered) < 30:
            el = await next_stanza(flood, timeout=10)
            if el.tag.endswith("iq"):
                assert el.get("type") == "result"
                answered.append(el.get("id"))
        assert answered == [f"p{n}" for n in range(30)]
        assert time.monotonic() - started > 1.5  # 20 past the burst at 10/s
        assert "over 10 stanzas/s, slowed down" in srv.log()
    finally:
        await close_quietly(flood, other)
