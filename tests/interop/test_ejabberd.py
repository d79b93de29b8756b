"""Federation with a real ejabberd 23.01 (RFC 6120 s2s, XEP-0178 SASL EXTERNAL, XEP-0220
dialback, XEP-0045 rooms on either side, XEP-0163 PEP).

Descant serves ``descant.test`` (certificate from a test CA) and its MUC service
``conference.descant.test``; ejabberd serves ``ejabberd.test`` (certificate from the
same CA: SASL EXTERNAL both ways, Descant's policy "verify"), ``other.test``
(self-signed: dialback both ways) and the mod_muc service ``conference.ejabberd.test``.
Descant reaches ejabberd through ``[s2s.routes]``; ejabberd reaches Descant through
its Erlang resolver's host table and ``outgoing_s2s_port`` (tests/interop/ejabberd.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.interop.both_ways import chat_both_ways, pep_both_ways, subscribe_both_ways
from tests.interop.ejabberd import Ejabberd, unavailable
from tests.interop.prosody import ScratchCA
from tests.live import Client, LiveServer, connect_slixmpp, disconnect, free_port

UNAVAILABLE = unavailable()
pytestmark = pytest.mark.skipif(bool(UNAVAILABLE), reason=UNAVAILABLE)

DESCANT = "descant.test"
DESCANT_MUC = "conference.descant.test"
EJABBERD = "ejabberd.test"
EJABBERD_MUC = "conference.ejabberd.test"
OTHER = "other.test"  # an ejabberd host with a self-signed certificate


class Peers:
    def __init__(self, descant: LiveServer, ejabberd: Ejabberd) -> None:
        self.descant = descant
        self.ejabberd = ejabberd
        self.n = 0

    async def descant_user(self) -> Client:
        jid, pw = await self.descant.make_user("alice", DESCANT)
        return await connect_slixmpp(self.descant, jid, pw)

    async def ejabberd_user(self, domain: str = EJABBERD) -> Client:
        self.n += 1
        user = f"carol{self.n}"
        await asyncio.to_thread(self.ejabberd.register, user, domain, "pw-carol")
        client = Client(f"{user}@{domain}", "pw-carol")
        client.connect("127.0.0.1", self.ejabberd.c2s_port)
        try:
            await asyncio.wait_for(client.started.wait(), 15)
            await asyncio.wait_for(client.get_roster(), 15)
        except TimeoutError:
            await disconnect(client)
            raise
        client.send_presence()
        return client


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    root = Path(tmp_path_factory.mktemp("ejabberd"))
    ca = ScratchCA(root)
    certs = []
    for domain in (DESCANT, EJABBERD, EJABBERD_MUC):
        cert, key = root / f"{domain}.crt", root / f"{domain}.key"
        ca.issue(domain, cert, key)
        certs.append((cert, key))
    ca.issue(OTHER, root / "other.crt", root / "other.key", self_signed=True)
    descant_s2s = free_port()
    ejabberd = Ejabberd(
        root / "ejabberd",
        hosts=[EJABBERD, OTHER],
        certs=[*certs[1:], (root / "other.crt", root / "other.key")],
        ca_file=ca.path,
        peers={DESCANT: "127.0.0.1", DESCANT_MUC: "127.0.0.1"},
        peer_port=descant_s2s,
    )
    route = f"127.0.0.1:{ejabberd.s2s_port}"
    descant = LiveServer(
        root / "descant",
        server={"domains": [DESCANT]},
        tls={"cert": str(certs[0][0]), "key": str(certs[0][1])},
        s2s={
            "listen": [f"127.0.0.1:{descant_s2s}"],
            "routes": {
                EJABBERD: route,
                EJABBERD_MUC: route,
                OTHER: route,
                "down.test": f"127.0.0.1:{free_port()}",
            },
            "policies": {EJABBERD: "verify"},
            "ca_file": str(ca.path),
            "connect_timeout": 3,
        },
    )
    code = 0
    try:
        ejabberd.start()
        descant.start()
        yield Peers(descant, ejabberd)
    finally:
        code = descant.stop()
        ejabberd.stop()
    assert code == 0, descant.log()[-3000:]


async def _logged(log: Callable[[], str], line: str, timeout: float = 10) -> None:
    """Wait until ``line`` is in a log (ejabberd writes its log with a delay)."""
    deadline = time.monotonic() + timeout
    while line not in log():
        assert time.monotonic() < deadline, f"not logged: {line!r}"
        await asyncio.sleep(0.1)


async def test_messages_both_ways(peers: Peers) -> None:
    """RFC 6121 §5: chat messages Descant → ejabberd and back, full and bare JIDs; both
    streams authenticated by certificate (XEP-0178 SASL EXTERNAL)."""
    alice = await peers.descant_user()
    carol = await peers.ejabberd_user()
    try:
        await chat_both_ways(alice, carol, "ejabberd")
    finally:
        await disconnect(alice, carol)
    # ejabberd → Descant: our EXTERNAL accepted its certificate for ejabberd.test.
    await _logged(peers.descant.log, f"{EJABBERD} authenticated by certificate (EXTERNAL)")
    await _logged(
        peers.ejabberd.log,
        f"Accepted outbound s2s EXTERNAL authentication {EJABBERD} -> {DESCANT}",
    )
    # Descant → ejabberd: ejabberd accepted our certificate for descant.test.
    await _logged(peers.descant.log, f"{DESCANT} → {EJABBERD}: authenticated by certificate")
    await _logged(
        peers.ejabberd.log, f"Accepted inbound s2s EXTERNAL authentication {DESCANT} -> {EJABBERD}"
    )


async def test_dialback_both_ways(peers: Peers) -> None:
    """XEP-0220: with other.test's self-signed certificate (policy "dialback"), each
    side proves its domain by dialback: the receiving server asks the other's
    authoritative server over a stream of its own (<db:verify/>)."""
    alice = await peers.descant_user()
    dave = await peers.ejabberd_user(OTHER)
    try:
        dave.send_message(mto=alice.boundjid.full, mbody="by dialback", mtype="chat")
        msg = await alice.next_message(timeout=20)
        assert msg["body"] == "by dialback"
        alice.send_message(mto=dave.boundjid.full, mbody="by dialback too", mtype="chat")
        msg = await dave.next_message(timeout=20)
        assert msg["body"] == "by dialback too"
    finally:
        await disconnect(alice, dave)
    # other.test → descant.test: Descant (receiving) checked ejabberd's key.
    await _logged(peers.descant.log, f"dialback for {OTHER} → {DESCANT} True")
    await _logged(
        peers.ejabberd.log, f"Accepted outbound s2s dialback authentication {OTHER} -> {DESCANT}"
    )
    # descant.test → other.test: ejabberd (receiving) checked ours with Descant.
    await _logged(
        peers.ejabberd.log, f"Accepted inbound s2s dialback authentication {DESCANT} -> {OTHER}"
    )


async def test_presence_subscription_both_ways(peers: Peers) -> None:
    """RFC 6121 §3.1: a subscription handshake started on each side reaches "both"."""
    await subscribe_both_ways(peers.descant_user, peers.ejabberd_user, "ejabberd")


async def test_iq_both_ways(peers: Peers) -> None:
    """XEP-0199 ping and XEP-0030 disco#info, each server asked by the other's user;
    XEP-0092 to a remote client's full JID, answered by the client."""
    alice = await peers.descant_user()
    carol = await peers.ejabberd_user()
    try:
        await alice.plugin["xep_0199"].send_ping(EJABBERD, timeout=15)
        info = await alice.plugin["xep_0030"].get_info(jid=EJABBERD, timeout=15)
        assert "urn:xmpp:ping" in info["disco_info"]["features"]
        await carol.plugin["xep_0199"].send_ping(DESCANT, timeout=15)
        info = await carol.plugin["xep_0030"].get_info(jid=DESCANT, timeout=15)
        assert "urn:xmpp:ping" in info["disco_info"]["features"]
        version = await carol.plugin["xep_0092"].get_version(alice.boundjid.full, timeout=15)
        assert version["type"] == "result"
        version = await alice.plugin["xep_0092"].get_version(carol.boundjid.full, timeout=15)
        assert version["type"] == "result"
    finally:
        await disconnect(alice, carol)


async def _room_round_trip(host: Client, guest: Client, room: str) -> None:
    """``host`` (of the room's server) creates ``room``, ``guest`` enters it from the
    other server; each sees the other's groupchat message from the right occupant."""
    for c in (host, guest):
        c.register_plugin("xep_0045")
    muc_h, muc_g = host.plugin["xep_0045"], guest.plugin["xep_0045"]
    await muc_h.join_muc_wait(room, "host", timeout=15)
    await muc_h.set_room_config(room, await muc_h.get_room_config(room, timeout=15), timeout=15)
    pres, _, occupants, _ = await muc_g.join_muc_wait(room, "guest", timeout=20)
    assert pres["from"].full == f"{room}/guest"
    assert "host" in [p["from"].resource for p in occupants]
    host.send_message(mto=room, mbody="welcome", mtype="groupchat")
    for _ in range(20):
        msg = await guest.next_message(timeout=15)
        if msg["body"] == "welcome":
            break
    assert msg["body"] == "welcome" and msg["from"].full == f"{room}/host"
    guest.send_message(mto=room, mbody="thanks", mtype="groupchat")
    for _ in range(20):
        msg = await host.next_message(timeout=15)
        if msg["body"] == "thanks":
            break
    assert msg["body"] == "thanks" and msg["from"].full == f"{room}/guest"


async def test_descant_user_in_an_ejabberd_room(peers: Peers) -> None:
    """XEP-0045 across servers: a Descant user in a room on ejabberd's mod_muc."""
    carol = await peers.ejabberd_user()
    alice = await peers.descant_user()
    try:
        await _room_round_trip(carol, alice, f"interop{peers.n}@{EJABBERD_MUC}")
    finally:
        await disconnect(alice, carol)


async def test_ejabberd_user_in_a_descant_room(peers: Peers) -> None:
    """XEP-0045 across servers: an ejabberd user in a room on Descant's MUC service.
    Descant's certificate does not name conference.descant.test: ejabberd refuses SASL
    EXTERNAL for it, and the room's stream authenticates by dialback instead."""
    alice = await peers.descant_user()
    carol = await peers.ejabberd_user()
    try:
        await _room_round_trip(alice, carol, f"interop{peers.n}@{DESCANT_MUC}")
    finally:
        await disconnect(alice, carol)
    await _logged(
        peers.descant.log, f"{DESCANT_MUC} → {EJABBERD}: EXTERNAL refused, trying dialback"
    )
    await _logged(
        peers.ejabberd.log,
        f"Accepted inbound s2s dialback authentication {DESCANT_MUC} -> {EJABBERD}",
    )


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


async def test_pep_notifications_both_ways(peers: Peers) -> None:
    """XEP-0163 with ejabberd's mod_pubsub (PEP): each server learns the other side's
    client caps through a disco#info query over s2s and notifies it of its user's
    publications."""
    a_jid, a_pw = await peers.descant.make_user("alice", DESCANT)
    peers.n += 1
    user = f"pepcarol{peers.n}"
    await asyncio.to_thread(peers.ejabberd.register, user, EJABBERD, "pw-carol")
    await pep_both_ways(
        peers.descant, a_jid, a_pw, peers.ejabberd.c2s_port, f"{user}@{EJABBERD}", "pw-carol"
    )
