"""End-to-end: slixmpp logs in over STARTTLS and direct TLS and chats (RFC 6120, RFC 6121 §5)."""

from __future__ import annotations

from tests.live import LiveServer, connect_slixmpp, disconnect


async def test_two_users_chat(server: LiveServer) -> None:
    alice_jid, alice_pw = await server.make_user("alice")
    bob_jid, bob_pw = await server.make_user("bob")
    alice = await connect_slixmpp(server, alice_jid, alice_pw)
    bob = await connect_slixmpp(server, bob_jid, bob_pw, direct_tls=True)
    try:
        alice.send_message(mto=bob_jid, mbody="hello bob", mtype="chat")
        msg = await bob.next_message()
        assert msg["body"] == "hello bob"
        assert msg["from"].bare == alice_jid
        assert msg["from"].resource == alice.boundjid.resource
    finally:
        await disconnect(alice, bob)
