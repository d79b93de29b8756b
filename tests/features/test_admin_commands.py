"""Ad-hoc commands (XEP-0050) and the admin commands (XEP-0133), and the account
changes of XEP-0077 once logged in, on the in-process harness."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from descant.accounts import check_password
from descant.features import adhoc
from descant.jid import parse
from tests.harness import FakeSession, Harness, error_condition

CMD = "http://jabber.org/protocol/commands"
ADMIN = "http://jabber.org/protocol/admin"
DATA = "jabber:x:data"
REG = "jabber:iq:register"


async def admin_session(h: Harness, who: str = "root@localhost/console") -> FakeSession:
    h.module("admin").admins = frozenset({parse(who).bare})  # type: ignore[attr-defined]
    return await h.online(who)


def command(node: str, action: str | None = None, sid: str | None = None, form: str = "") -> str:
    attrs = f"node='{ADMIN}#{node}'"
    if action:
        attrs += f" action='{action}'"
    if sid:
        attrs += f" sessionid='{sid}'"
    return f"<iq type='set' to='localhost'><command xmlns='{CMD}' {attrs}>{form}</command></iq>"


def submit(**fields: str | list[str]) -> str:
    out = f"<x xmlns='{DATA}' type='submit'>"
    out += f"<field var='FORM_TYPE'><value>{ADMIN}</value></field>"
    for var, value in fields.items():
        values = value if isinstance(value, list) else [value]
        out += f"<field var='{var.replace('_', '-')}'>"
        out += "".join(f"<value>{v}</value>" for v in values) + "</field>"
    return out + "</x>"


def cmd_el(iq: ET.Element) -> ET.Element:
    assert iq.get("type") == "result", ET.tostring(iq)
    el = iq.find(f"{{{CMD}}}command")
    assert el is not None
    return el


def app_condition(iq: ET.Element) -> str:
    err = iq.find("error")
    assert err is not None, ET.tostring(iq)
    found = [c.tag.rpartition("}")[2] for c in err if c.tag.startswith(f"{{{CMD}}}")]
    assert len(found) == 1, ET.tostring(iq)
    return found[0]


async def run(h: Harness, s: FakeSession, node: str, **fields: str | list[str]) -> ET.Element:
    """Execute a one-form command and complete it with ``fields``."""
    first = cmd_el(await h.iq(s, command(node)))
    assert first.get("status") == "executing"
    return await h.iq(s, command(node, "complete", first.get("sessionid"), submit(**fields)))


async def test_commands_listed_for_admins_only(h: Harness) -> None:
    """XEP-0050 §2.2: the command list holds what the requester may run."""
    root = await admin_session(h)
    user = await h.online("user@localhost/r")
    items = "http://jabber.org/protocol/disco#items"
    q = f"<iq type='get' to='localhost'><query xmlns='{items}' node='{CMD}'/></iq>"
    got = await h.iq(root, q)
    nodes = {i.get("node") for i in got.iter("{http://jabber.org/protocol/disco#items}item")}
    assert f"{ADMIN}#add-user" in nodes and f"{ADMIN}#shutdown" in nodes
    got = await h.iq(user, q)
    assert got.get("type") == "result"
    assert not list(got.iter("{http://jabber.org/protocol/disco#items}item"))
    info = (
        "<iq type='get' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' "
        f"node='{ADMIN}#add-user'/></iq>"
    )
    assert (await h.iq(root, info)).get("type") == "result"
    assert error_condition(await h.iq(user, info)) == "item-not-found"


async def test_non_admin_forbidden(h: Harness) -> None:
    await admin_session(h)
    user = await h.online("user@localhost/r")
    assert error_condition(await h.iq(user, command("add-user"))) == "forbidden"


async def test_add_user_then_login_keys(h: Harness) -> None:
    """XEP-0133 §4.1: the account exists with the password; an existing one is a conflict."""
    root = await admin_session(h)
    got = await run(
        h, root, "add-user", accountjid="new@localhost", password="pw1", password_verify="pw1"
    )
    assert cmd_el(got).get("status") == "completed"
    account = await h.server.storage.accounts.get("localhost", "new")
    assert account is not None and check_password(account, "pw1")
    got = await run(
        h, root, "add-user", accountjid="new@localhost", password="x", password_verify="x"
    )
    assert error_condition(got) == "conflict"


async def test_add_user_bad_payloads(h: Harness) -> None:
    root = await admin_session(h)
    for fields in (
        {"accountjid": "a@localhost", "password": "1", "password_verify": "2"},
        {"accountjid": "not a jid@", "password": "1", "password_verify": "1"},
        {"accountjid": "a@example.org", "password": "1", "password_verify": "1"},
    ):
        got = await run(h, root, "add-user", **fields)
        assert error_condition(got) == "bad-request" and app_condition(got) == "bad-payload"
    got = await run(h, root, "add-user", accountjid="a@localhost", password="", password_verify="")
    assert error_condition(got) == "not-acceptable"


async def test_change_password_and_delete(h: Harness) -> None:
    root = await admin_session(h)
    await h.account("carol", "old")
    carol = await h.online("carol@localhost/r")
    got = await run(h, root, "change-user-password", accountjid="carol@localhost", password="new")
    assert cmd_el(got).get("status") == "completed"
    account = await h.server.storage.accounts.get("localhost", "carol")
    assert account is not None and check_password(account, "new")
    got = await run(h, root, "delete-user", accountjids=["carol@localhost", "ghost@localhost"])
    notes = [n.text or "" for n in cmd_el(got).findall(f"{{{CMD}}}note")]
    assert any("carol@localhost" in n for n in notes) and any("ghost" in n for n in notes)
    assert await h.server.storage.accounts.get("localhost", "carol") is None
    assert carol.closed == "not-authorized"


async def test_online_users_and_announce(h: Harness) -> None:
    root = await admin_session(h)
    a = await h.online("a@localhost/1")
    await h.bind("b@localhost/1")  # bound, not available: no announcement
    got = cmd_el(await h.iq(root, command("get-online-users-num")))
    assert got.get("status") == "completed"
    values = [v.text for v in got.iter(f"{{{DATA}}}value")]
    assert "3" in values  # root, a, b
    (num,) = [f for f in got.iter(f"{{{DATA}}}field") if f.get("var") == "onlineusersnum"]
    assert num.get("type") == "text-single"  # Profanity shows no value for an untyped field
    got = await run(h, root, "get-online-users-list", max_items="all")
    jids = {v.text for v in cmd_el(got).iter(f"{{{DATA}}}value")}
    assert {"a@localhost", "b@localhost", "root@localhost"} <= jids
    got = await run(h, root, "announce", announcement="maintenance at noon")
    assert cmd_el(got).get("status") == "completed"
    msgs = [m for m in a.take() if m.tag == "message"]
    assert len(msgs) == 1 and msgs[0].get("type") == "headline"
    assert msgs[0].get("from") == "localhost" and msgs[0].findtext("body") == "maintenance at noon"


async def test_shutdown_requests_stop(h: Harness) -> None:
    root = await admin_session(h)
    got = await run(h, root, "shutdown", delay="0")
    assert cmd_el(got).get("status") == "completed"
    import asyncio

    await asyncio.sleep(0.01)
    assert h.server._stop_requested.is_set() and not h.server.restart_requested


async def test_session_errors(h: Harness) -> None:
    """XEP-0050 §4.6: malformed-action, bad-action, bad-sessionid, session-expired, cancel."""
    root = await admin_session(h)
    got = await h.iq(root, command("announce", "dance"))
    assert error_condition(got) == "bad-request" and app_condition(got) == "malformed-action"
    got = await h.iq(root, command("announce", "complete", "nope", submit(announcement="x")))
    assert app_condition(got) == "bad-sessionid"
    sid = cmd_el(await h.iq(root, command("announce"))).get("sessionid")
    got = await h.iq(root, command("announce", "prev", sid))
    assert app_condition(got) == "bad-action"
    # Another requester (even the same account's other resource) cannot use it.
    other = await h.online("root@localhost/other")
    got = await h.iq(other, command("announce", "complete", sid, submit(announcement="x")))
    assert app_condition(got) == "bad-sessionid"
    got = cmd_el(await h.iq(root, command("announce", "cancel", sid)))
    assert got.get("status") == "canceled"
    got = await h.iq(root, command("announce", "complete", sid, submit(announcement="x")))
    assert app_condition(got) == "bad-sessionid"
    # Expiry.
    sid = cmd_el(await h.iq(root, command("announce"))).get("sessionid")
    mod = h.module("adhoc")
    mod.sessions[sid].used -= adhoc.SESSION_TIMEOUT + 1  # type: ignore[attr-defined]
    got = await h.iq(root, command("announce", "complete", sid, submit(announcement="x")))
    assert error_condition(got) == "not-allowed" and app_condition(got) == "session-expired"


async def test_sessions_bounded(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adhoc, "MAX_SESSIONS_PER_REQUESTER", 2)
    root = await admin_session(h)
    for _ in range(2):
        assert cmd_el(await h.iq(root, command("announce"))).get("status") == "executing"
    assert error_condition(await h.iq(root, command("announce"))) == "resource-constraint"


# -- XEP-0077 once logged in ----------------------------------------------------------------


async def test_password_change(h: Harness) -> None:
    """XEP-0077 §3.3: own username and a password; an empty one keeps the old."""
    await h.account("dave", "old")
    dave = await h.online("dave@localhost/r")

    async def change(body: str) -> ET.Element:
        return await h.iq(
            dave, f"<iq type='set' to='localhost'><query xmlns='{REG}'>{body}</query></iq>"
        )

    assert error_condition(await change("<username>dave</username><password/>")) == "bad-request"
    assert (
        error_condition(await change("<username>eve</username><password>x</password>"))
        == "bad-request"
    )
    got = await change("<username>dave</username><password>s3cret</password>")
    assert got.get("type") == "result"
    # The error never echoes the request (it holds a password).
    bad = await change("<username>eve</username><password>hidden</password>")
    assert b"hidden" not in ET.tostring(bad)
    account = await h.server.storage.accounts.get("localhost", "dave")
    assert account is not None and check_password(account, "s3cret")


async def test_remove_account(h: Harness) -> None:
    """XEP-0077 §3.2: the result, then every session ends with <not-authorized/>."""
    await h.account("erin")
    one = await h.online("erin@localhost/a")
    two = await h.online("erin@localhost/b")
    await h.send(one, "<iq type='set' id='v'><vCard xmlns='vcard-temp'><FN>E</FN></vCard></iq>")
    one.take()
    assert await h.server.storage.keyval.get("localhost", "erin", "vcard", "current")
    bad = f"<iq type='set'><query xmlns='{REG}'><remove/><username>x</username></query></iq>"
    assert error_condition(await h.iq(one, bad)) == "bad-request"
    got = await h.iq(one, f"<iq type='set'><query xmlns='{REG}'><remove/></query></iq>")
    assert got.get("type") == "result"
    assert one.closed == "not-authorized" and two.closed == "not-authorized"
    assert await h.server.storage.accounts.get("localhost", "erin") is None
    assert await h.server.storage.keyval.get("localhost", "erin", "vcard", "current") is None
