"""Accounts end to end through slixmpp: in-band registration (XEP-0077 §3.1), password
change (§3.3) and removal (§3.2), and the admin commands (XEP-0050, XEP-0133)."""

from __future__ import annotations

import asyncio
from typing import Any

import slixmpp
from slixmpp.exceptions import IqError

from descant.accounts import make_account
from descant.storage import open_storage
from tests.live import Client, LiveServer, connect_slixmpp, disconnect

ADMIN_JID = "boss@localhost"


async def create(server: LiveServer, jid: str, password: str) -> None:
    user, _, domain = jid.partition("@")
    storage = open_storage(server.storage_url, str(server.data_dir))
    await storage.open()
    try:
        await storage.accounts.create(make_account(domain, user, password))
    finally:
        await storage.close()


async def register(server: LiveServer, jid: str, password: str) -> tuple[Client, Any]:
    """Connect with slixmpp's XEP-0077 plugin, register on the <register/> feature
    before authenticating, then log in with the new account. Returns the client (or
    the error that refused the registration) ."""
    outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def setup(c: Client) -> None:
        c.register_plugin("xep_0077")

        async def on_register(_: object) -> None:
            iq = c.Iq()
            iq["type"] = "set"
            iq["register"]["username"] = c.boundjid.user
            iq["register"]["password"] = password
            try:
                await iq.send()
                outcome.set_result(None)
            except IqError as exc:
                outcome.set_result(exc.iq["error"]["condition"])
                c.disconnect()

        c.add_event_handler("register", on_register)

    task = asyncio.ensure_future(connect_slixmpp(server, jid, password, setup=setup, timeout=10))
    result = await asyncio.wait_for(outcome, 10)
    if result is not None:
        task.cancel()
        return None, result  # type: ignore[return-value]
    return await task, None


async def test_register_then_log_in(make_server: Any) -> None:
    srv: LiveServer = make_server(registration={"open": True})
    client, error = await register(srv, "newbie@localhost", "fresh-pw")
    assert error is None and client.started.is_set()
    await disconnect(client)
    again = await connect_slixmpp(srv, "newbie@localhost", "fresh-pw")
    await disconnect(again)
    # The same name again: <conflict/>.
    _, error = await register(srv, "newbie@localhost", "other")
    assert error == "conflict"


async def test_registration_rate_limited(make_server: Any) -> None:
    srv: LiveServer = make_server(registration={"open": True, "per_ip_per_hour": 2})
    for i in range(2):
        client, error = await register(srv, f"r{i}@localhost", "pw")
        assert error is None
        await disconnect(client)
    _, error = await register(srv, "r9@localhost", "pw")
    assert error == "resource-constraint"


async def test_registration_closed_by_default(server: LiveServer) -> None:
    """No <register/> feature: slixmpp never gets to register, and its login fails
    (the raw iq is <service-unavailable/>: tests/badinput/test_register.py)."""
    asked = []
    c = Client("nobody@localhost", "x")
    c.register_plugin("xep_0077")
    c.add_event_handler("register", asked.append)
    c.connect("127.0.0.1", server.port)
    await asyncio.wait_for(c.failed.wait(), 10)
    c.disconnect()
    assert not asked


async def test_password_change_and_removal(server: LiveServer) -> None:
    jid, password = await server.make_user("self")
    c = await connect_slixmpp(server, jid, password, setup=lambda c: c.register_plugin("xep_0077"))
    await c.plugin["xep_0077"].change_password("changed-pw")
    await disconnect(c)
    c = await connect_slixmpp(
        server, jid, "changed-pw", setup=lambda c: c.register_plugin("xep_0077")
    )
    other = await connect_slixmpp(server, jid, "changed-pw")
    ended = asyncio.ensure_future(other.disconnected)
    result = await c.plugin["xep_0077"].cancel_registration()
    assert result["type"] == "result"
    await asyncio.wait_for(ended, 5)  # every session of the account ends
    assert any("not-authorized" in str(e) for e in other.stream_errors), other.stream_errors
    await disconnect(c)
    refused = Client(jid, "changed-pw")
    refused.connect("127.0.0.1", server.port)
    await asyncio.wait_for(refused.failed.wait(), 10)
    refused.disconnect()


# -- admin commands -------------------------------------------------------------------


async def admin_command(c: Client, name: str, values: dict[str, Any] | None) -> slixmpp.Iq:
    """Run a XEP-0133 command with slixmpp's plugins: execute, fill the form the server
    sent with ``values`` and complete; the final answer (result or error)."""
    done: asyncio.Future[slixmpp.Iq] = asyncio.get_running_loop().create_future()

    def finish(iq: slixmpp.Iq, session: dict[str, Any]) -> None:
        if not done.done():
            done.set_result(iq)

    def first(iq: slixmpp.Iq, session: dict[str, Any]) -> None:
        if iq["command"]["status"] == "completed" or values is None:
            finish(iq, session)
            return
        form = iq["command"]["form"]
        answer = c.plugin["xep_0004"].make_form(ftype="submit")
        for var in form.get_fields():
            if var in values or var == "FORM_TYPE":
                answer.add_field(var=var, value=values.get(var, form.get_values()[var]))
        session["payload"] = answer
        session["next"] = finish
        c.plugin["xep_0050"].complete_command(session)

    getattr(c.plugin["xep_0133"], name.replace("-", "_"))(
        session={"next": first, "error": finish}, jid="localhost"
    )
    return await asyncio.wait_for(done, 10)


def admin_plugins(c: Client) -> None:
    for plugin in ("xep_0004", "xep_0050", "xep_0133"):
        c.register_plugin(plugin)


async def test_admin_commands(make_server: Any) -> None:
    srv: LiveServer = make_server(server={"admins": [ADMIN_JID]})
    await create(srv, ADMIN_JID, "boss-pw")
    admin = await connect_slixmpp(srv, ADMIN_JID, "boss-pw", setup=admin_plugins)
    items = await admin.plugin["xep_0133"].get_commands()
    nodes = {i[1] for i in items["disco_items"]["items"]}
    assert "http://jabber.org/protocol/admin#add-user" in nodes

    iq = await admin_command(
        admin,
        "add-user",
        {"accountjid": "hire@localhost", "password": "p1", "password-verify": "p1"},
    )
    assert iq["command"]["status"] == "completed", iq
    hire = await connect_slixmpp(srv, "hire@localhost", "p1")

    iq = await admin_command(admin, "get-online-users-list", {"max_items": "all"})
    online = iq["command"]["form"].get_values()["onlineuserjids"]
    assert {str(j) for j in online} >= {"hire@localhost", ADMIN_JID}

    iq = await admin_command(admin, "announce", {"announcement": "Tea in five minutes"})
    assert iq["command"]["status"] == "completed"
    msg = await hire.next_message()
    assert msg["type"] == "headline" and msg["body"] == "Tea in five minutes"
    assert str(msg["from"]) == "localhost"

    iq = await admin_command(
        admin, "change-user-password", {"accountjid": "hire@localhost", "password": "p2"}
    )
    assert iq["command"]["status"] == "completed"
    await disconnect(hire)
    hire = await connect_slixmpp(srv, "hire@localhost", "p2")
    ended = asyncio.ensure_future(hire.disconnected)

    iq = await admin_command(admin, "delete-user", {"accountjids": ["hire@localhost"]})
    assert iq["command"]["status"] == "completed"
    await asyncio.wait_for(ended, 5)
    assert "hire@localhost" not in srv.cli("user", "list").stdout.split()

    # Someone else sees no commands and may not run them.
    jid, pw = await srv.make_user("plain")
    user = await connect_slixmpp(srv, jid, pw, setup=admin_plugins)
    items = await user.plugin["xep_0133"].get_commands()
    assert not items["disco_items"]["items"]
    iq = await admin_command(user, "add-user", None)
    assert iq["type"] == "error" and iq["error"]["condition"] == "forbidden"
    await disconnect(admin, user)


async def test_admin_restart(make_server: Any) -> None:
    """XEP-0133 §4.29: the server stops cleanly and comes back as the same process."""
    srv: LiveServer = make_server(server={"admins": [ADMIN_JID]})
    await create(srv, ADMIN_JID, "boss-pw")
    admin = await connect_slixmpp(srv, ADMIN_JID, "boss-pw", setup=admin_plugins)
    assert srv.proc is not None
    pid = srv.proc.pid
    ended = asyncio.ensure_future(admin.disconnected)
    iq = await admin_command(admin, "restart", {"delay": "0", "announcement": "brb"})
    assert iq["command"]["status"] == "completed"
    msg = await admin.next_message()
    assert msg["body"] == "brb"
    await asyncio.wait_for(ended, 10)
    assert any("system-shutdown" in str(e) for e in admin.stream_errors)
    for _ in range(100):
        await asyncio.sleep(0.1)
        try:
            again = await connect_slixmpp(srv, ADMIN_JID, "boss-pw", timeout=3)
            break
        except (AssertionError, OSError):
            continue
    else:
        raise AssertionError(f"not back after a restart:\n{srv.log()[-3000:]}")
    assert srv.proc.poll() is None and srv.proc.pid == pid
    await disconnect(again)
