"""In-band registration (XEP-0077) and ad-hoc commands (XEP-0050) with bad input on raw
sockets: each is answered with its exact error, and the stream goes on."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.badinput.raw import (
    CLIENT,
    MakeServer,
    close_quietly,
    expect_stream_error,
    header,
    login,
    next_stanza,
    plain,
    secure_stream,
    stanza_error,
)
from tests.live import LiveServer, RawClient

REG = "jabber:iq:register"
CMD = "http://jabber.org/protocol/commands"
ADMIN = "http://jabber.org/protocol/admin"


def reg_set(ident: str, body: str) -> str:
    return f"<iq type='set' id='{ident}'><query xmlns='{REG}'>{body}</query></iq>"


async def answer(c: RawClient, ident: str) -> ET.Element:
    while True:
        el = await next_stanza(c)
        if el.tag == "{%s}iq" % CLIENT and el.get("id") == ident:
            return el


def command_condition(el: ET.Element) -> str:
    err = el.find("{%s}error" % CLIENT)
    assert err is not None, ET.tostring(el)
    found = [c.tag.partition("}")[2] for c in err if c.tag.startswith("{%s}" % CMD)]
    assert len(found) == 1, ET.tostring(el)
    return found[0]


async def test_register_when_closed(server: LiveServer) -> None:
    """§3.1: <service-unavailable/>; no <register/> feature; SASL still works after."""
    c = await RawClient.open(server.port)
    await c.open_stream()
    await c.starttls()
    features = await c.open_stream()
    assert "iq-register" not in features
    await c.send(f"<iq type='get' id='g'><query xmlns='{REG}'/></iq>")
    assert stanza_error(await answer(c, "g")) == "service-unavailable"
    jid, password = await server.make_user("closed")
    await c.send(plain(jid, password))
    await c.read_until("<success")
    await close_quietly(c)


async def test_other_iq_before_auth_still_ends_the_stream(server: LiveServer) -> None:
    c = await secure_stream(server)
    await c.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
    await expect_stream_error(c, "not-authorized")


async def test_register_needs_tls(make_server: MakeServer) -> None:
    srv = make_server(registration={"open": True})
    c = await RawClient.open(srv.port)
    await c.send(header())
    await c.read_until("</stream:features>")
    await c.send(reg_set("r", "<username>x</username><password>y</password>"))
    await expect_stream_error(c, "policy-violation")


async def test_register_edge_cases_and_rate_limit(make_server: MakeServer) -> None:
    """Invalid names and empty passwords are <not-acceptable/>; the name taken is
    <conflict/>; past registration.per_ip_per_hour, <resource-constraint/>."""
    srv = make_server(registration={"open": True, "per_ip_per_hour": 2})
    c = await secure_stream(srv)
    await c.send(f"<iq type='get' id='g'><query xmlns='{REG}'/></iq>")
    got = await answer(c, "g")
    assert got.get("type") == "result"
    assert got.find("{%s}query/{%s}username" % (REG, REG)) is not None
    cases = {
        "bad-name": "<username>bad user</username><password>pw</password>",
        "at-name": "<username>a@b</username><password>pw</password>",
        "no-pw": "<username>okname</username><password/>",
        "no-user": "<password>pw</password>",
        "remove": "<remove/>",
    }
    for ident, body in cases.items():
        await c.send(reg_set(ident, body))
        got = await answer(c, ident)
        expected = "registration-required" if ident == "remove" else "not-acceptable"
        assert stanza_error(got) == expected, (ident, ET.tostring(got))
        assert b"<password" not in ET.tostring(got)  # never echoed
    await c.send(reg_set("ok", "<username>Fresh</username><password>pw</password>"))
    assert (await answer(c, "ok")).get("type") == "result"
    await c.send(reg_set("dup", "<username>fresh</username><password>pw</password>"))
    assert stanza_error(await answer(c, "dup")) == "conflict"
    await c.send(reg_set("over", "<username>third</username><password>pw</password>"))
    assert stanza_error(await answer(c, "over")) == "resource-constraint"
    # The account registered (its name prepared to lower case) logs in on this stream.
    await c.send(plain("fresh@localhost", "pw"))
    await c.read_until("<success")
    await close_quietly(c)


async def test_register_advertised_when_open(make_server: MakeServer) -> None:
    srv = make_server(registration={"open": True})
    c = await RawClient.open(srv.port)
    await c.open_stream()
    await c.starttls()
    features = await c.open_stream()
    assert "http://jabber.org/features/iq-register" in features
    await close_quietly(c)


async def test_password_change_malformed(server: LiveServer, witness: RawClient) -> None:
    c, _ = await login(server, "pwchange")
    await c.send(reg_set("a", "<username>someoneelse</username><password>x</password>"))
    assert stanza_error(await answer(c, "a")) == "bad-request"
    await c.send(reg_set("b", "<remove/><password>x</password>"))
    assert stanza_error(await answer(c, "b")) == "bad-request"
    await c.send(reg_set("c", ""))
    assert stanza_error(await answer(c, "c")) == "bad-request"
    await close_quietly(c)


def command(ident: str, node: str, extra: str = "", body: str = "") -> str:
    return (
        f"<iq type='set' id='{ident}' to='localhost'>"
        f"<command xmlns='{CMD}' node='{node}' {extra}>{body}</command></iq>"
    )


async def test_commands_by_non_admin_and_unknown(server: LiveServer, witness: RawClient) -> None:
    c, _ = await login(server, "nonadmin")
    await c.send(command("f", f"{ADMIN}#add-user"))
    assert stanza_error(await answer(c, "f")) == "forbidden"
    await c.send(command("u", "urn:example:nothing"))
    assert stanza_error(await answer(c, "u")) == "item-not-found"
    await c.send(command("m", f"{ADMIN}#add-user", "action='jump'"))
    got = await answer(c, "m")
    assert stanza_error(got) == "bad-request" and command_condition(got) == "malformed-action"
    await close_quietly(c)


async def test_command_sessions(make_server: MakeServer) -> None:
    srv = make_server(server={"admins": ["chief@localhost"]})
    from tests.client.test_accounts import create

    await create(srv, "chief@localhost", "pw")
    c = await RawClient.open(srv.port)
    await c.login("chief@localhost", "pw")
    node = f"{ADMIN}#announce"
    await c.send(command("s", node, "action='next' sessionid='made-up'"))
    got = await answer(c, "s")
    assert stanza_error(got) == "bad-request" and command_condition(got) == "bad-sessionid"
    await c.send(command("e", node))
    got = await answer(c, "e")
    cmd = got.find("{%s}command" % CMD)
    assert cmd is not None and cmd.get("status") == "executing"
    sid = cmd.get("sessionid")
    # A form that is not submitted, or not a form at all.
    await c.send(command("p", node, f"action='complete' sessionid='{sid}'"))
    got = await answer(c, "p")
    assert stanza_error(got) == "bad-request" and command_condition(got) == "bad-payload"
    # The error ended that session.
    await c.send(command("q", node, f"action='complete' sessionid='{sid}'"))
    assert command_condition(await answer(c, "q")) == "bad-sessionid"
    form = "<x xmlns='jabber:x:data' type='submit'><field var='announcement'><value/></field></x>"
    await c.send(command("e2", node))
    sid = (await answer(c, "e2")).find("{%s}command" % CMD).get("sessionid")  # type: ignore[union-attr]
    await c.send(command("empty", node, f"action='complete' sessionid='{sid}'", form))
    assert command_condition(await answer(c, "empty")) == "bad-payload"
    await close_quietly(c)
    assert "Traceback" not in srv.log()
