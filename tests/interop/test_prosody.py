"""Federation with a real Prosody 0.12 (RFC 6120 s2s, XEP-0220 dialback, PKIX policy).

Descant serves an IP-literal loopback domain such as ``127.0.0.2`` (s2s on port 5269
of that address, where Prosody's resolver goes for an IP literal); Prosody serves ``prosody.test``
(certificate from a test CA, Descant's policy "verify") and ``wrong.test``
(self-signed: refused under "verify"), reached through ``[s2s.routes]``.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

from tests.interop.both_ways import chat_both_ways, pep_both_ways, subscribe_both_ways
from tests.interop.prosody import Prosody, ScratchCA, available
from tests.live import Client, LiveServer, connect_slixmpp, disconnect, free_port

pytestmark = pytest.mark.skipif(
    not available(), reason="prosody is not installed (make peers installs it)"
)


def _loopback_domain() -> str:
    """A loopback address with port 5269 free, used as Descant's domain (and listen
    address): concurrent test runs each get their own."""
    for _ in range(50):
        addr = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
        with socket.socket() as s:
            try:
                s.bind((addr, 5269))
            except OSError:
                continue
            return addr
    return "127.0.0.2"


DESCANT = _loopback_domain()
PROSODY = "prosody.test"
PROSODY_MUC = "conference.prosody.test"


class Peers:
    def __init__(self, descant: LiveServer, prosody: Prosody) -> None:
        self.descant = descant
        self.prosody = prosody
        self.n = 0

    async def descant_user(self) -> Client:
        jid, pw = await self.descant.make_user("alice", DESCANT)
        return await connect_slixmpp(self.descant, jid, pw)

    async def prosody_user(self) -> Client:
        self.n += 1
        user = f"carol{self.n}"
        await asyncio.to_thread(self.prosody.register, user, PROSODY, "pw-carol")
        client = Client(f"{user}@{PROSODY}", "pw-carol")
        client.connect("127.0.0.1", self.prosody.c2s_port)
        await asyncio.wait_for(client.started.wait(), 15)
        await client.get_roster()
        client.send_presence()
        return client


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    root = Path(tmp_path_factory.mktemp("prosody"))
    ca = ScratchCA(root)
    ca.issue(PROSODY, root / "prosody.crt", root / "prosody.key")
    ca.issue("wrong.test", root / "wrong.crt", root / "wrong.key", self_signed=True)
    prosody = Prosody(
        root / "prosody",
        {
            PROSODY: (root / "prosody.crt", root / "prosody.key"),
            "wrong.test": (root / "wrong.crt", root / "wrong.key"),
        },
        extra=f'Component "{PROSODY_MUC}" "muc"\n',
    )
    prosody.start()
    route = f"127.0.0.1:{prosody.s2s_port}"
    down = f"127.0.0.1:{free_port()}"
    descant = LiveServer(
        root / "descant",
        server={"domains": [DESCANT]},
        s2s={
            "listen": [f"{DESCANT}:5269"],
            "routes": {
                PROSODY: route,
                "wrong.test": route,
                PROSODY_MUC: route,
                "down.test": down,
            },
            "policies": {PROSODY: "verify", "wrong.test": "verify"},
            "ca_file": str(ca.path),
            "connect_timeout": 3,
        },
    )
    try:
        descant.start()
        yield Peers(descant, prosody)
    finally:
        code = descant.stop()
        prosody.stop()
    assert code == 0, descant.log()[-3000:]


async def test_messages_both_ways(peers: Peers) -> None:
    """RFC 6121 §5: chat messages Descant → Prosody and back, full and bare JIDs."""
    alice = await peers.descant_user()
    carol = await peers.prosody_user()
    try:
        await chat_both_ways(alice, carol, "prosody")
        # Prosody's certificate verifies for prosody.test (test CA), so it used SASL
        # EXTERNAL (XEP-0178) on its stream to us rather than dialback.
        assert "prosody.test authenticated by certificate (EXTERNAL)" in peers.descant.log()
    finally:
        await disconnect(alice, carol)


async def test_presence_subscription_both_ways(peers: Peers) -> None:
    """RFC 6121 §3.1: a subscription handshake started on each side reaches "both"."""
    await subscribe_both_ways(peers.descant_user, peers.prosody_user, "prosody")


async def test_iq_both_ways(peers: Peers) -> None:
    """XEP-0199 ping and XEP-0030 disco#info, each server asked by the other's user."""
    alice = await peers.descant_user()
    carol = await peers.prosody_user()
    try:
        await alice.plugin["xep_0199"].send_ping(PROSODY, timeout=15)
        info = await alice.plugin["xep_0030"].get_info(jid=PROSODY, timeout=15)
        assert "urn:xmpp:ping" in info["disco_info"]["features"]
        await carol.plugin["xep_0199"].send_ping(DESCANT, timeout=15)
        info = await carol.plugin["xep_0030"].get_info(jid=DESCANT, timeout=15)
        assert "urn:xmpp:ping" in info["disco_info"]["features"]
        # An iq to a remote user's full JID, answered by the client itself.
        version = await carol.plugin["xep_0092"].get_version(alice.boundjid.full, timeout=15)
        assert version["type"] == "result"
    finally:
        await disconnect(alice, carol)


async def test_wrong_certificate_refused_under_verify(peers: Peers) -> None:
    """RFC 6125 / policy "verify": wrong.test's self-signed certificate is refused and the
    queued stanzas bounce with remote-server-not-found."""
    alice = await peers.descant_user()
    try:
        alice.send_message(mto="dave@wrong.test", mbody="secret", mtype="chat")
        msg = await alice.next_message(timeout=15)
        assert msg["type"] == "error"
        assert msg["error"]["condition"] == "remote-server-not-found"
        with pytest.raises(IqError):
            await alice.plugin["xep_0199"].send_ping("wrong.test", timeout=15)
    finally:
        await disconnect(alice)
    assert "certificate refused" in peers.descant.log()


async def test_peer_down_bounces(peers: Peers) -> None:
    """Nothing listening: the stanza comes back as an error within the connect timeout."""
    alice = await peers.descant_user()
    try:
        started = time.monotonic()
        alice.send_message(mto="nobody@down.test", mbody="hello?", mtype="chat")
        msg = await alice.next_message(timeout=15)
        assert msg["type"] == "error"
        assert msg["error"]["condition"] in ("remote-server-not-found", "remote-server-timeout")
        assert time.monotonic() - started < 10
    finally:
        await disconnect(alice)


async def test_descant_user_in_a_prosody_room(peers: Peers) -> None:
    """XEP-0045 across servers: a Descant user enters a room on Prosody's MUC service,
    sees the Prosody occupant, and messages flow both ways through the room."""
    carol = await peers.prosody_user()
    alice = await peers.descant_user()
    room = f"interop{peers.n}@{PROSODY_MUC}"
    try:
        for c in (alice, carol):
            c.register_plugin("xep_0045")
        muc_c, muc_a = carol.plugin["xep_0045"], alice.plugin["xep_0045"]
        await muc_c.join_muc_wait(room, "carol", timeout=15)
        await muc_c.set_room_config(room, await muc_c.get_room_config(room))
        pres, _, occupants, _ = await muc_a.join_muc_wait(room, "alice", timeout=20)
        assert pres["from"].full == f"{room}/alice"
        assert "carol" in [p["from"].resource for p in occupants]
        carol.send_message(mto=room, mbody="welcome descant", mtype="groupchat")
        while (msg := await alice.next_message(timeout=15))["body"] != "welcome descant":
            pass
        assert msg["from"].full == f"{room}/carol"
        alice.send_message(mto=room, mbody="thanks prosody", mtype="groupchat")
        while (msg := await carol.next_message(timeout=15))["body"] != "thanks prosody":
            pass
        assert msg["from"].full == f"{room}/alice"
    finally:
        await disconnect(alice, carol)


async def test_pep_notifications_both_ways(peers: Peers) -> None:
    """XEP-0163 with Prosody's mod_pep: each server learns the other side's client caps
    through a disco#info query over s2s and notifies it of its user's publications."""
    a_jid, a_pw = await peers.descant.make_user("alice", DESCANT)
    user = f"pepcarol{os.getpid()}"
    await asyncio.to_thread(peers.prosody.register, user, PROSODY, "pw-carol")
    await pep_both_ways(
        peers.descant, a_jid, a_pw, peers.prosody.c2s_port, f"{user}@{PROSODY}", "pw-carol"
    )
