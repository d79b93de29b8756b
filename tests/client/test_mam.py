"""Message Archive Management end to end: slixmpp's xep_0313, xep_0359, xep_0424 and
xep_0425 plugins against a real server process, and a raw socket for the edges
(forged ids, other accounts' archives, malformed queries, a 100,000-message archive
paged end to end)."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
import slixmpp
from slixmpp import JID
from slixmpp.exceptions import IqError

from descant.storage import open_storage
from descant.storage.api import MamEntry, MamIds
from tests.badinput.raw import elements, login, stanza_error
from tests.client.test_muc import _create, _message, _room
from tests.live import Client, LiveServer, RawClient, connect_slixmpp, disconnect

MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
PLUGINS = ("xep_0313", "xep_0359", "xep_0424", "xep_0425", "xep_0045", "xep_0280")


def _setup(c: Client) -> None:
    for p in PLUGINS:
        c.register_plugin(p)


async def _user(server: LiveServer, prefix: str, resource: str = "") -> tuple[Client, str, str]:
    jid, pw = await server.make_user(prefix)
    c = await connect_slixmpp(server, jid + (f"/{resource}" if resource else ""), pw, setup=_setup)
    return c, jid, pw


async def _archive(c: Client, **kwargs: object) -> list[slixmpp.Message]:
    """Every message of the account's archive (optionally filtered), through
    slixmpp's RSM iterator, oldest first."""
    out = []
    async for m in c.plugin["xep_0313"].iterate(jid=c.boundjid.bare, **kwargs):
        out.append(m)
    return out


def _fwd(m: slixmpp.Message) -> slixmpp.Message:
    return m["mam_result"]["forwarded"]["stanza"]


async def test_a_second_device_finds_the_conversation(server: LiveServer) -> None:
    alice, a_jid, a_pw = await _user(server, "alice", "phone")
    bob, b_jid, _ = await _user(server, "bob")
    laptop = None
    try:
        for i in range(12):
            alice.send_message(mto=b_jid, mbody=f"a{i}", mtype="chat")
            bob.send_message(mto=a_jid, mbody=f"b{i}", mtype="chat")
            await bob.next_message()
        laptop = await connect_slixmpp(server, a_jid + "/laptop", a_pw, setup=_setup)
        got = await _archive(laptop, with_jid=JID(b_jid), rsm={"max": 5})
        bodies = [_fwd(m)["body"] for m in got]
        assert sorted(bodies) == sorted([f"a{i}" for i in range(12)] + [f"b{i}" for i in range(12)])
        assert [b for b in bodies if b.startswith("a")] == [f"a{i}" for i in range(12)]
        assert all(m["mam_result"]["forwarded"]["delay"]["stamp"] for m in got)
        # Newest first, as a client filling its history backwards does.
        newest = await _archive(laptop, reverse=True, rsm={"max": 7})
        assert [_fwd(m)["body"] for m in newest] == list(reversed(bodies))
    finally:
        await disconnect(alice, bob, *([laptop] if laptop else []))


async def test_stanza_id_live_carbon_offline_and_archive_agree(server: LiveServer) -> None:
    """XEP-0359: the id on the delivered message, on its carbon copy and on the copy
    from offline storage is the archive's id for it."""
    alice, a_jid, a_pw = await _user(server, "alice", "phone")
    laptop = await connect_slixmpp(server, a_jid + "/laptop", a_pw, setup=_setup)
    bob, b_jid, b_pw = await _user(server, "bob")
    try:
        for c in (alice, laptop):
            await c.plugin["xep_0280"].enable()
        carbons: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
        laptop.add_event_handler("carbon_received", carbons.put_nowait)
        bob.send_message(mto=alice.boundjid.full, mbody="to the phone", mtype="chat")
        live = await alice.next_message()
        sid = live["stanza_id"]
        assert sid["by"] == a_jid and sid["id"]
        carbon = await asyncio.wait_for(carbons.get(), 5)
        assert carbon["carbon_received"]["stanza_id"]["id"] == sid["id"]
        archived = await _archive(laptop)
        assert [m["mam_result"]["id"] for m in archived] == [sid["id"]]

        await disconnect(bob)
        alice.send_message(mto=b_jid, mbody="while you were out", mtype="chat")
        await asyncio.sleep(0.3)
        bob = await connect_slixmpp(server, b_jid, b_pw, setup=_setup)
        stored = await bob.next_message()
        assert stored["body"] == "while you were out" and stored["delay"]["stamp"] is not None
        b_archive = await _archive(bob)
        assert [m["mam_result"]["id"] for m in b_archive][-1] == stored["stanza_id"]["id"]
    finally:
        await disconnect(alice, laptop, bob)


async def test_retraction_replaces_the_message_in_both_archives(server: LiveServer) -> None:
    alice, _, _ = await _user(server, "alice")
    bob, b_jid, _ = await _user(server, "bob")
    try:
        retracts: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
        bob.add_event_handler("message_retract", retracts.put_nowait)
        msg = alice.make_message(mto=b_jid, mbody="sent to the wrong person", mtype="chat")
        origin = "o-wrong-person"
        msg["origin_id"]["id"] = origin
        msg.send()
        await bob.next_message()
        alice.plugin["xep_0424"].send_retraction(JID(b_jid), origin)
        got = await asyncio.wait_for(retracts.get(), 5)
        assert got["retract"]["id"] == origin
        for c in (alice, bob):
            archived = [_fwd(m) for m in await _archive(c)]
            assert archived[0].xml.find(f"{{{'urn:xmpp:message-retract:1'}}}retracted") is not None
            assert archived[0]["body"] == ""
            assert archived[1]["retract"]["id"] == origin
    finally:
        await disconnect(alice, bob)


async def test_moderator_removes_a_room_message(server: LiveServer) -> None:
    alice, _, _ = await _user(server, "alice")
    bob, _, _ = await _user(server, "bob")
    room = _room("mod")
    try:
        await _create(alice, room, "al", enablelogging=True)
        await bob.plugin["xep_0045"].join_muc_wait(room, "bob", timeout=5)
        removed: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
        bob.add_event_handler("moderated_message", removed.put_nowait)
        bob.send_message(mto=room, mbody="buy cheap watches", mtype="groupchat")
        reflected = await _message(alice, lambda m: m["body"] == "buy cheap watches")
        target = reflected["stanza_id"]["id"]
        assert reflected["stanza_id"]["by"] == room
        await alice.plugin["xep_0425"].moderate(room, target, "spam")
        notice = await asyncio.wait_for(removed.get(), 5)
        assert notice["retract"]["id"] == target
        assert notice["retract"]["moderated"]["by"] == JID(f"{room}/al")
        with pytest.raises(IqError) as err:
            await bob.plugin["xep_0425"].moderate(room, target, "mine")
        assert err.value.condition == "forbidden"
        page = await bob.plugin["xep_0313"].retrieve(jid=room)
        first = page["mam"]["results"][0]["mam_result"]["forwarded"]["stanza"]
        assert first["body"] == ""
    finally:
        await disconnect(alice, bob)


async def test_another_accounts_archive_is_forbidden(server: LiveServer) -> None:
    alice, _, _ = await _user(server, "alice")
    bob, b_jid, _ = await _user(server, "bob")
    try:
        with pytest.raises(IqError) as err:
            await alice.plugin["xep_0313"].retrieve(jid=JID(b_jid))
        assert err.value.condition == "forbidden"
    finally:
        await disconnect(alice, bob)


async def _raw_query(c: RawClient, inner: str, qid: str = "q") -> tuple[list[str], str]:
    """A raw MAM query: the result ids in order and the iq answer's text."""
    await c.send(
        f"<iq type='set' id='{qid}'><query xmlns='{MAM}' queryid='{qid}'>{inner}</query></iq>"
    )
    answer = re.compile(rf"<iq\b[^>]*\bid='{qid}'[^>]*?(/>|>.*?</iq>)", re.S)
    deadline = time.monotonic() + 30
    while (m := answer.search(c.buffer)) is None:
        chunk = await asyncio.wait_for(
            c.reader.read(1 << 16), max(0.1, deadline - time.monotonic())
        )
        assert chunk, c.buffer[-500:]
        c.buffer += chunk.decode()
    text, c.buffer = c.buffer[: m.end()], c.buffer[m.end() :]
    ids = [
        re.search(r"\bid='([^']+)'", tag).group(1)  # type: ignore[union-attr]
        for tag in re.findall(r"<result xmlns='urn:xmpp:mam:2'[^>]*>", text)
    ]
    return ids, m.group(0)


@pytest.mark.parametrize(
    "inner, condition",
    [
        (
            "<x xmlns='jabber:x:data' type='submit'>"
            "<field var='start'><value>soon</value></field></x>",
            "bad-request",
        ),
        (
            "<x xmlns='jabber:x:data' type='submit'><field var='with'><value>@</value></field></x>",
            "jid-malformed",
        ),
        (f"<set xmlns='{RSM}'><max>many</max></set>", "bad-request"),
        (f"<set xmlns='{RSM}'><after>unknown</after></set>", "item-not-found"),
    ],
)
async def test_malformed_queries_raw(server: LiveServer, inner: str, condition: str) -> None:
    c, _ = await login(server, "raw")
    try:
        _, answer = await _raw_query(c, inner)
        (iq,) = [e for e in elements(answer) if e.tag == "{jabber:client}iq"]
        assert stanza_error(iq) == condition
    finally:
        c.close()


async def test_forged_stanza_id_is_replaced_raw(server: LiveServer) -> None:
    a, _ = await login(server, "forger")
    b, b_jid = await login(server, "target")
    bare_b = b_jid.split("/")[0]
    try:
        await b.send("<presence/>")
        await a.send(
            f"<message to='{bare_b}' type='chat' id='f1'><body>x</body>"
            f"<stanza-id xmlns='urn:xmpp:sid:0' by='{bare_b}' id='forged-1'/></message>"
        )
        text = await b.read_until("</message>", timeout=5)
        while "id='f1'" not in text:
            text = await b.read_until("</message>", timeout=5)
        assert "forged-1" not in text
        assert f"by='{bare_b}'" in text
    finally:
        a.close()
        b.close()


async def test_max_zero_and_huge_and_paging_past_the_ends_raw(server: LiveServer) -> None:
    c, jid = await login(server, "pager")
    try:
        for i in range(5):
            await c.send(f"<message to='{jid}' type='chat'><body>n{i}</body></message>")
        ids, answer = await _raw_query(c, f"<set xmlns='{RSM}'><max>0</max></set>", "z")
        assert ids == [] and "type='result'" in answer
        ids, answer = await _raw_query(c, f"<set xmlns='{RSM}'><max>1000000</max></set>", "h")
        assert len(ids) == 5 and "complete='true'" in answer
        ids2, answer = await _raw_query(
            c, f"<set xmlns='{RSM}'><after>{ids[-1]}</after></set>", "p"
        )
        assert ids2 == [] and "complete='true'" in answer
        ids3, answer = await _raw_query(
            c, f"<set xmlns='{RSM}'><before>{ids[0]}</before></set>", "b"
        )
        assert ids3 == [] and "complete='true'" in answer
    finally:
        c.close()


async def test_a_100000_message_archive_paged_end_to_end(make_server: object) -> None:
    """Nothing missing or repeated, forwards and backwards, with the raw client
    following <last/> and <first/> as any client does."""
    server: LiveServer = make_server()  # type: ignore[operator]
    jid, pw = await server.make_user("hoarder")
    user = jid.split("@")[0]
    storage = open_storage(server.storage_url, str(server.data_dir))
    await storage.open()
    t0 = datetime.now(UTC) - timedelta(days=30)
    total = 100_000
    archive_ids = MamIds()
    made: list[str] = []
    try:
        batch = []
        for i in range(total):
            stamp = t0 + timedelta(seconds=i)
            made.append(archive_ids.next(stamp))
            entry = MamEntry(
                made[-1],
                stamp,
                "friend@localhost",
                "",
                False,
                "",
                f"m{i}",
                f"<message xmlns='jabber:client' type='chat'><body>m{i}</body></message>",
            )
            batch.append(("localhost", user, entry))
            if len(batch) == 1000:
                await storage.mam.add(batch)
                batch = []
    finally:
        await storage.close()
    c = await RawClient.open(server.port)
    await c.login(jid, pw, "pager")
    started = time.monotonic()
    try:
        seen: list[str] = []
        after = ""
        for n in range(total // 250 + 2):
            page_after = f"<after>{after}</after>" if after else ""
            rsm = f"<set xmlns='{RSM}'><max>250</max>{page_after}</set>"
            ids, answer = await _raw_query(c, rsm, f"f{n}")
            seen += ids
            if "complete='true'" in answer:
                break
            after = ids[-1]
        assert seen == made
        seen = []
        before = ""
        for n in range(total // 250 + 2):
            rsm = f"<set xmlns='{RSM}'><max>250</max><before>{before}</before></set>"
            ids, answer = await _raw_query(c, rsm, f"b{n}")
            seen = ids + seen
            if "complete='true'" in answer:
                break
            before = ids[0]
        assert seen == made
    finally:
        c.close()
    assert time.monotonic() - started < 120


async def test_retracting_someone_elses_message_raw(server: LiveServer) -> None:
    """XEP-0424 over a socket: naming a message the contact sent is <forbidden/>, the
    retraction reaches nobody, and the message stays in both archives."""
    a, a_jid = await login(server, "retractor")
    b, b_jid = await login(server, "author")
    bare_a, bare_b = a_jid.split("/")[0], b_jid.split("/")[0]
    try:
        for c in (a, b):
            await c.send("<presence/>")
        await b.send(
            f"<message to='{bare_a}' type='chat' id='orig'><body>my words</body>"
            "<origin-id xmlns='urn:xmpp:sid:0' id='ob-1'/></message>"
        )
        await a.read_until("my words", timeout=5)
        await a.send(
            f"<message to='{bare_b}' type='chat' id='r1'>"
            "<retract xmlns='urn:xmpp:message-retract:1' id='ob-1'/><body>x</body></message>"
        )
        text = await a.read_until("</message>", timeout=5)
        while "id='r1'" not in text:
            text = await a.read_until("</message>", timeout=5)
        (err,) = [e for e in elements(text[text.rindex("<message") :]) if e.get("id") == "r1"]
        assert stanza_error(err) == "forbidden"
        ids, _ = await _raw_query(b, "", "qb")
        assert len(ids) == 1  # the author's archive still has the message, nothing else
    finally:
        a.close()
        b.close()
