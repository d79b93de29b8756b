"""Limits one account cannot get around (limits.*): each refused with the RFC's
condition once reached, the account's other sessions unaffected."""

from __future__ import annotations

from typing import Any

from tests.badinput.raw import close_quietly, ping
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
