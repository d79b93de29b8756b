"""Account invitations end to end: ``descant invite``, the landing page (XEP-0401 §5.2)
over HTTP, the XEP-0445 preauth before in-band registration on a raw stream, the
XEP-0401 ad-hoc command through slixmpp, and the mutual subscription (XEP-0379)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
import slixmpp

from tests.client.test_accounts import ADMIN_JID, create
from tests.live import Client, LiveServer, RawClient, connect_slixmpp, disconnect, wait_for_http

CSRF = re.compile(r"name='csrf' value='([^']+)'")


def invite(srv: LiveServer, *args: str) -> tuple[str, str, str]:
    """``descant invite create``: (token, xmpp URI, landing URL)."""
    r = srv.cli("invite", "create", *args)
    assert r.returncode == 0, r.stderr
    uri, url = r.stdout.splitlines()[:2]
    return url.rsplit("/", 1)[1], uri, url


async def page(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as resp:
        return resp.status, await resp.text()


async def sign_up(
    http: aiohttp.ClientSession,
    url: str,
    username: str,
    password: str = "s3cret-pw",
    csrf: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Fill in the landing page's form as a browser would (its Origin and csrf)."""
    if csrf is None:
        status, text = await page(http, url)
        assert status == 200, text
        match = CSRF.search(text)
        assert match
        csrf = match.group(1)
    origin = url.split("/invite/")[0]
    data = {"username": username, "password": password, "password2": password, "csrf": csrf}
    async with http.post(url, data=data, headers=headers or {"Origin": origin}) as resp:
        return resp.status, await resp.text()


async def roster_of(c: Client) -> dict[str, str]:
    """Contact → subscription, as the client knows its roster (fetched at session
    start, then kept by pushes)."""
    await c.get_roster()
    return {j: c.client_roster[j]["subscription"] for j in c.client_roster}


def test_invite_create_list_revoke(server: LiveServer) -> None:
    token, uri, url = invite(server)
    assert uri == f"xmpp:localhost?register;preauth={token}"
    assert url == f"https://127.0.0.1:{server.https_port}/invite/{token}"  # HTTPS first
    assert len(token) == 32
    listed = server.cli("invite", "list").stdout
    assert f"{token} localhost inviter=- " in listed and "valid" in listed

    jid, _ = asyncio.run(server.make_user("inviter"))
    token2, uri2, _ = invite(server, "--inviter", jid, "--expires", "2h")
    assert uri2 == f"xmpp:{jid}?roster;preauth={token2};ibr=y"
    assert f"inviter={jid}" in server.cli("invite", "list", "localhost").stdout

    r = server.cli("invite", "revoke", token)
    assert r.returncode == 0 and token not in server.cli("invite", "list").stdout
    again = server.cli("invite", "revoke", token)
    assert again.returncode == 1 and "no invitation" in again.stderr

    bad = server.cli("invite", "create", "--inviter", "nobody@localhost")
    assert bad.returncode == 1 and "does not exist" in bad.stderr
    bad = server.cli("invite", "create", "--expires", "soon")
    assert bad.returncode == 1 and "--expires" in bad.stderr
    bad = server.cli("invite", "create", "elsewhere.test")
    assert bad.returncode == 1 and "not served" in bad.stderr


async def test_landing_page_makes_contacts(server: LiveServer) -> None:
    """XEP-0401 §5.5: after registering, inviter and invitee are subscribed both ways,
    and the inviter's online client gets the roster push."""
    await wait_for_http(server)
    jid, pw = await server.make_user("romeo")
    romeo = await connect_slixmpp(server, jid, pw)
    await roster_of(romeo)  # interested in pushes from now on
    token, _, _ = invite(server, "--inviter", jid)
    url = f"http://127.0.0.1:{server.http_port}/invite/{token}"
    name = f"juliet{int(time.time() * 1000) % 100000}"
    async with aiohttp.ClientSession() as http:
        status, text = await page(http, url)
        assert status == 200
        assert f"<strong>{jid}</strong> invited you" in text
        assert f"href='xmpp:{jid}?roster;preauth={token};ibr=y'" in text
        async with http.get(url) as resp:
            csp = resp.headers["Content-Security-Policy"]
            assert "default-src 'none'" in csp and "form-action 'self'" in csp
            assert resp.headers["Referrer-Policy"] == "same-origin"
        status, text = await sign_up(http, url, name.capitalize())
        assert status == 200, text
        assert f"<strong>{name}@localhost</strong>" in text
        # Used: the page and the form are gone.
        assert (await page(http, url))[0] == 410
        assert (await sign_up(http, url, "other", csrf="0.x"))[0] in (403, 410)

    juliet = await connect_slixmpp(server, f"{name}@localhost", "s3cret-pw")
    assert (await roster_of(juliet)).get(jid) == "both"
    for _ in range(50):  # the push may still be on its way
        if (await roster_of(romeo)).get(f"{name}@localhost") == "both":
            break
        await asyncio.sleep(0.1)
    assert (await roster_of(romeo)).get(f"{name}@localhost") == "both"
    # Presence flows both ways at once.
    juliet.send_presence()
    got = await romeo.next_presence(lambda p: str(p["from"].bare) == f"{name}@localhost")
    assert got["type"] == "available"
    await disconnect(romeo, juliet)
    listed = server.cli("invite", "list").stdout
    assert f"{token} localhost inviter={jid}" in listed and f"used by {name}@localhost" in listed


async def test_landing_page_refusals(server: LiveServer) -> None:
    await wait_for_http(server)
    taken, _ = await server.make_user("taken")
    token, _, _ = invite(server)
    url = f"http://127.0.0.1:{server.http_port}/invite/{token}"
    async with aiohttp.ClientSession() as http:
        assert (await page(http, url.replace(token, "x" * 32)))[0] == 404
        text = (await page(http, url))[1]
        csrf = CSRF.search(text).group(1)  # type: ignore[union-attr]
        # CSRF: no value, a forged one, another invitation's, another origin.
        assert (await sign_up(http, url, "a1", csrf=""))[0] == 403
        assert (await sign_up(http, url, "a1", csrf=csrf[:-1] + "0"))[0] == 403
        other, _, _ = invite(server)
        assert (await sign_up(http, url.replace(token, other), "a1", csrf=csrf))[0] == 403
        cross = {"Origin": "http://evil.example"}
        assert (await sign_up(http, url, "a1", csrf=csrf, headers=cross))[0] == 403
        cross = {"Referer": "http://evil.example/x"}
        assert (await sign_up(http, url, "a1", csrf=csrf, headers=cross))[0] == 403
        # Names: taken, refused by PRECIS; the invitation stays usable.
        status, text = await sign_up(http, url, taken.split("@")[0], csrf=csrf)
        assert status == 409 and "is taken" in text and "name='csrf'" in text
        status, text = await sign_up(http, url, "bad name@x", csrf=csrf)
        assert status == 400 and "cannot be used" in text
        status, text = await sign_up(http, url, "<b>x</b>@", csrf=csrf)
        assert status == 400 and "<b>x</b>" not in text and "&lt;b&gt;x&lt;/b&gt;" in text
        assert (await page(http, url))[0] == 200
        # Revoked: unknown.
        server.cli("invite", "revoke", token)
        assert (await page(http, url))[0] == 404


async def test_expired_invitation(server: LiveServer) -> None:
    await wait_for_http(server)
    token, _, _ = invite(server, "--expires", "1s")
    url = f"http://127.0.0.1:{server.http_port}/invite/{token}"
    await asyncio.sleep(1.2)
    async with aiohttp.ClientSession() as http:
        status, text = await page(http, url)
        assert status == 410 and "no longer valid" in text
    assert "expired" in server.cli("invite", "list").stdout.split(token)[1].splitlines()[0]


async def test_landing_page_rate_limited(make_server: Any) -> None:
    srv: LiveServer = make_server(registration={"per_ip_per_hour": 1})
    await wait_for_http(srv)
    async with aiohttp.ClientSession() as http:
        first, _, _ = invite(srv)
        url = f"http://127.0.0.1:{srv.http_port}/invite/{first}"
        assert (await sign_up(http, url, "first"))[0] == 200
        second, _, _ = invite(srv)
        url = f"http://127.0.0.1:{srv.http_port}/invite/{second}"
        status, text = await sign_up(http, url, "second")
        assert status == 429 and "Too many" in text


# -- XEP-0445 in band ----------------------------------------------------------------------


async def read_iq(c: RawClient, id_: str) -> str:
    """The answer to iq ``id_``, whether self-closing or not."""
    out = await c.read_until(id_)
    out += await c.read_until(">")
    if not out.endswith("/>"):
        out += await c.read_until("</iq>")
    return out


async def preauth_register(srv: LiveServer, token: str, username: str) -> tuple[str, str]:
    """A raw client: STARTTLS, the features, preauth, then XEP-0077 registration; the
    answers to the preauth and the register iqs."""
    c = await RawClient.open(srv.port)
    try:
        await c.open_stream()
        await c.starttls()
        features = await c.open_stream()
        assert '<register xmlns="urn:xmpp:invite"' in features.replace("'", '"'), features
        await c.send(
            f"<iq type='set' id='pa1'><preauth xmlns='urn:xmpp:pars:0' token='{token}'/></iq>"
        )
        preauth = await read_iq(c, "pa1")
        await c.send(
            "<iq type='set' id='reg1'><query xmlns='jabber:iq:register'>"
            f"<username>{username}</username><password>pw-{username}</password></query></iq>"
        )
        reg = await read_iq(c, "reg1")
        return preauth, reg
    finally:
        c.close()


async def test_preauth_registration_once(server: LiveServer) -> None:
    """registration.open is false: a valid token lets one registration through."""
    inviter, _ = await server.make_user("pars")
    token, _, _ = invite(server, "--inviter", inviter)
    preauth, reg = await preauth_register(server, "x" * 32, "nobody1")
    assert "item-not-found" in preauth and "service-unavailable" in reg
    preauth, reg = await preauth_register(server, token, "invited1")
    assert "type='result'" in preauth.replace('"', "'"), preauth
    assert "type='result'" in reg.replace('"', "'"), reg
    # Used: a second preauth with it is refused, and so is registering.
    preauth, reg = await preauth_register(server, token, "invited2")
    assert "item-not-found" in preauth and "service-unavailable" in reg
    client = await connect_slixmpp(server, "invited1@localhost", "pw-invited1")
    assert (await roster_of(client)).get(inviter) == "both"
    await disconnect(client)


# -- XEP-0401 ad-hoc command --------------------------------------------------------------


def command_plugins(c: Client) -> None:
    for plugin in ("xep_0004", "xep_0050"):
        c.register_plugin(plugin)


async def run_invite_command(c: Client) -> slixmpp.Iq:
    iq = c.plugin["xep_0050"].send_command("localhost", "urn:xmpp:invite#invite")
    try:
        result: slixmpp.Iq = await iq
    except slixmpp.exceptions.IqError as exc:
        return exc.iq  # type: ignore[no-any-return]
    return result


async def test_invite_command(make_server: Any) -> None:
    srv: LiveServer = make_server(server={"admins": [ADMIN_JID]}, invites={"max_per_user": 2})
    await create(srv, ADMIN_JID, "boss-pw")
    admin = await connect_slixmpp(srv, ADMIN_JID, "boss-pw", setup=command_plugins)
    iq = await run_invite_command(admin)
    assert iq["type"] == "result" and iq["command"]["status"] == "completed", iq
    values = {
        k: v[0] if isinstance(v, list) else v for k, v in iq["command"]["form"].get_values().items()
    }
    assert values["FORM_TYPE"] == "urn:xmpp:invite#invitation"
    assert values["uri"].startswith(f"xmpp:{ADMIN_JID}?roster;preauth=")
    token = values["uri"].split("preauth=")[1].split(";")[0]
    assert values["landing-url"] == f"https://127.0.0.1:{srv.https_port}/invite/{token}"
    assert values["expire"].endswith("Z")
    await run_invite_command(admin)
    iq = await run_invite_command(admin)  # max_per_user = 2
    assert iq["type"] == "error" and iq["error"]["condition"] == "resource-constraint"

    jid, pw = await srv.make_user("plain")
    user = await connect_slixmpp(srv, jid, pw, setup=command_plugins)
    iq = await run_invite_command(user)  # invites.who = "admins"
    assert iq["type"] == "error" and iq["error"]["condition"] == "forbidden"
    await disconnect(admin, user)


async def test_invite_command_for_users(make_server: Any) -> None:
    srv: LiveServer = make_server(invites={"who": "users"})
    jid, pw = await srv.make_user("anyone")
    user = await connect_slixmpp(srv, jid, pw, setup=command_plugins)
    iq = await run_invite_command(user)
    assert iq["command"]["status"] == "completed", iq
    assert iq["command"]["form"].get_values()["uri"].startswith(f"xmpp:{jid}?roster;")
    await disconnect(user)
