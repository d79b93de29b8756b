"""The server on PostgreSQL: accounts, rosters and offline messages end to end.

Skipped, with the reason shown, when no PostgreSQL answers (DESCANT_TEST_POSTGRES_URL,
default postgresql://postgres@127.0.0.1:5432/test). The server gets a schema of its own.
"""

from __future__ import annotations

from tests.live import POSTGRES_URL, LiveServer, connect_slixmpp, disconnect


async def test_server_on_postgresql(make_server: object, pg_schema: str) -> None:
    url = f"{POSTGRES_URL}?schema={pg_schema}"
    server: LiveServer = make_server(storage={"url": url})  # type: ignore[operator]
    r = server.cli("user", "add", "pgalice@localhost", "--password", "pw-a")
    assert r.returncode == 0, r.stderr
    b_jid, b_pw = await server.make_user("pgbob")
    alice = await connect_slixmpp(server, "pgalice@localhost", "pw-a")
    try:
        await alice.update_roster(b_jid, name="Bob")
        alice.send_message(mto=b_jid, mbody="stored in postgres", mtype="chat")
        await alice.get_roster()
    finally:
        await disconnect(alice)
    bob = await connect_slixmpp(server, b_jid, b_pw)
    try:
        msg = await bob.next_message()
        assert msg["body"] == "stored in postgres"
        assert msg["delay"]["stamp"] is not None
    finally:
        await disconnect(bob)
    assert "pgalice@localhost" in server.cli("user", "list").stdout.split()
