"""Message Archive Management for accounts (XEP-0313, XEP-0359, XEP-0424) on the
in-process harness; tests/client/test_mam.py drives the same through slixmpp."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from descant.stamps import format_stamp
from descant.storage.api import mam_stamp
from tests.harness import FakeSession, Harness, error_condition, find, one

MAM = "urn:xmpp:mam:2"
SID = "urn:xmpp:sid:0"
RSM = "http://jabber.org/protocol/rsm"
FWD = "urn:xmpp:forward:0"
DATA = "jabber:x:data"
RETRACT = "urn:xmpp:message-retract:1"


def form(**fields: str | list[str]) -> str:
    out = [f"<x xmlns='{DATA}' type='submit'>"]
    out.append(f"<field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>")
    for var, value in fields.items():
        var = {
            "before_id": "before-id",
            "after_id": "after-id",
            "fulltext": "{urn:xmpp:fulltext:0}fulltext",
        }.get(var, var)
        values = value if isinstance(value, list) else [value]
        out.append(
            f"<field var='{var}'>" + "".join(f"<value>{v}</value>" for v in values) + "</field>"
        )
    out.append("</x>")
    return "".join(out)


async def query(
    h: Harness, s: FakeSession, inner: str = "", rsm: str = "", qid: str = "q1", to: str = ""
) -> tuple[list[ET.Element], ET.Element]:
    """Run a MAM query; the forwarded messages (in order) and the iq answer."""
    to_attr = f" to='{to}'" if to else ""
    s.take()
    reply = await h.iq(
        s,
        f"<iq type='set'{to_attr}><query xmlns='{MAM}' queryid='{qid}'>{inner}"
        f"{f'<set xmlns={chr(39)}{RSM}{chr(39)}>{rsm}</set>' if rsm else ''}</query></iq>",
    )
    results = [m for m in s.take() if m.find(f"{{{MAM}}}result") is not None]
    for m in results:
        assert m.find(f"{{{MAM}}}result").get("queryid") == qid  # type: ignore[union-attr]
    return results, reply


def inner(result: ET.Element) -> ET.Element:
    msg = result.find(f"{{{MAM}}}result/{{{FWD}}}forwarded/message")
    assert msg is not None
    return msg


def bodies(results: list[ET.Element]) -> list[str]:
    return [inner(r).findtext("body") or "" for r in results]


def ids(results: list[ET.Element]) -> list[str]:
    return [r.find(f"{{{MAM}}}result").get("id", "") for r in results]  # type: ignore[union-attr]


def fin(reply: ET.Element) -> ET.Element:
    assert reply.get("type") == "result", ET.tostring(reply)
    f = reply.find(f"{{{MAM}}}fin")
    assert f is not None
    return f


async def chat(h: Harness, frm: FakeSession, to: str, body: str, **extra: str) -> None:
    attrs = "".join(f" {k}='{v}'" for k, v in extra.items())
    await h.send(frm, f"<message type='chat' to='{to}'{attrs}><body>{body}</body></message>")


async def test_both_directions_archived_once_per_account(h: Harness) -> None:
    alice = await h.online("alice@localhost/phone")
    bob = await h.online("bob@localhost/pc")
    await chat(h, alice, "bob@localhost", "hello bob")
    await chat(h, bob, "alice@localhost/phone", "hello alice")
    res, reply = await query(h, alice)
    assert bodies(res) == ["hello bob", "hello alice"]
    assert fin(reply).get("complete") == "true"
    first = inner(res[0])
    assert first.get("from") == "alice@localhost/phone" and first.get("to") == "bob@localhost"
    stamp = res[0].find(f"{{{MAM}}}result/{{{FWD}}}forwarded/{{urn:xmpp:delay}}delay")
    assert stamp is not None and stamp.get("stamp", "").endswith("Z")
    res_b, _ = await query(h, bob)
    assert bodies(res_b) == ["hello bob", "hello alice"]


async def test_archive_ids_are_time_ordered_keys_and_give_the_stamp(h: Harness) -> None:
    # Each account's copy of a message gets an id of its own; ids increase in archive
    # order, and a result's delay stamp is its id's time.
    alice = await h.online("alice@localhost/phone")
    bob = await h.online("bob@localhost/pc")
    for i in range(5):
        await chat(
            h, alice if i % 2 else bob, "bob@localhost" if i % 2 else "alice@localhost", f"n{i}"
        )
    res, _ = await query(h, alice)
    res_b, _ = await query(h, bob)
    got = ids(res)
    assert len(got) == 5 and all(re.fullmatch(r"[0-9a-f]{16}", i) for i in got)
    assert got == sorted(got) and not set(got) & set(ids(res_b))
    for r, id_ in zip(res, got, strict=True):
        delay = r.find(f"{{{MAM}}}result/{{{FWD}}}forwarded/{{urn:xmpp:delay}}delay")
        assert delay is not None
        assert delay.get("stamp") == format_stamp(mam_stamp(int(id_, 16)))
    # Bob's ids name nothing in Alice's archive.
    _, reply = await query(h, alice, rsm=f"<after>{ids(res_b)[0]}</after>")
    assert error_condition(reply) == "item-not-found"


async def test_delivered_message_carries_the_archive_stanza_id_xep0359(h: Harness) -> None:
    alice = await h.online("alice@localhost/phone")
    bob = await h.online("bob@localhost/pc")
    await h.send(
        alice,
        "<message type='chat' to='bob@localhost' id='m1'><body>x</body>"
        f"<stanza-id xmlns='{SID}' id='forged' by='bob@localhost'/>"
        f"<stanza-id xmlns='{SID}' id='theirs' by='other@example.org'/>"
        f"<origin-id xmlns='{SID}' id='o-1'/></message>",
    )
    got = one(bob.take(), "message", id="m1")
    sids = {s.get("by"): s.get("id") for s in got.findall(f"{{{SID}}}stanza-id")}
    assert sids["bob@localhost"] != "forged"
    assert sids["other@example.org"] == "theirs"  # not ours to judge
    assert got.find(f"{{{SID}}}origin-id").get("id") == "o-1"  # type: ignore[union-attr]
    res, _ = await query(h, bob)
    assert ids(res) == [sids["bob@localhost"]]


async def test_offline_delivery_has_the_same_stanza_id(h: Harness) -> None:
    alice = await h.online("alice@localhost/phone")
    await h.account("bob")
    await chat(h, alice, "bob@localhost", "while you were out", id="m9")
    bob = await h.bind("bob@localhost/pc")
    await h.send(bob, "<presence/>")
    got = one(bob.take(), "message", id="m9")
    sid = got.find(f"{{{SID}}}stanza-id")
    assert sid is not None and sid.get("by") == "bob@localhost"
    res, _ = await query(h, bob)
    assert ids(res) == [sid.get("id")]


async def test_what_is_not_archived(h: Harness) -> None:
    alice = await h.online("alice@localhost/phone")
    await h.online("bob@localhost/pc")
    hints = "urn:xmpp:hints"
    for kind, payload in [
        ("headline", "<body>news</body>"),
        ("error", "<body>err</body>"),
        ("chat", "<active xmlns='http://jabber.org/protocol/chatstates'/>"),
        ("chat", f"<body>x</body><no-store xmlns='{hints}'/>"),
        ("chat", f"<body>x</body><no-permanent-store xmlns='{hints}'/>"),
    ]:
        await h.send(alice, f"<message type='{kind}' to='bob@localhost'>{payload}</message>")
    await h.send(
        alice,
        "<message type='chat' to='bob@localhost'><encrypted xmlns='eu.siacs.conversations.axolotl'>"
        "<header sid='1'/></encrypted></message>",
    )
    await h.send(
        alice, f"<message type='chat' to='bob@localhost'><store xmlns='{hints}'/><x/></message>"
    )
    res, _ = await query(h, alice)
    kinds = [next(iter(inner(r))).tag for r in res]
    assert kinds == ["{eu.siacs.conversations.axolotl}encrypted", f"{{{hints}}}store"]


async def test_filters_with_start_end_ids_and_fulltext(h: Harness) -> None:
    alice = await h.online("alice@localhost/phone")
    bob = await h.online("bob@localhost/pc")
    carol = await h.online("carol@localhost/tab")
    await chat(h, alice, "bob@localhost", "Pizza tonight?")
    await chat(h, bob, "alice@localhost", "yes, pizza and salad")
    await chat(h, carol, "alice@localhost", "no pizza for me")
    await chat(h, alice, "carol@localhost/tab", "fine")
    every, _ = await query(h, alice)
    assert len(every) == 4
    res, _ = await query(h, alice, form(**{"with": "bob@localhost"}))
    assert bodies(res) == ["Pizza tonight?", "yes, pizza and salad"]
    res, _ = await query(h, alice, form(**{"with": "carol@localhost/tab"}))
    assert bodies(res) == ["no pizza for me", "fine"]
    res, _ = await query(h, alice, form(fulltext="PIZZA salad"))
    assert bodies(res) == ["yes, pizza and salad"]
    res, _ = await query(h, alice, form(ids=[ids(every)[3], ids(every)[1]]))
    assert bodies(res) == ["yes, pizza and salad", "fine"]
    stamp = every[2].find(f"{{{MAM}}}result/{{{FWD}}}forwarded/{{urn:xmpp:delay}}delay")
    when = stamp.get("stamp")  # type: ignore[union-attr]
    res, _ = await query(h, alice, form(start=when))  # inclusive
    assert bodies(res)[0] == "no pizza for me"
    res, _ = await query(h, alice, form(end=when))
    assert bodies(res)[-1] == "no pizza for me"
    res, _ = await query(h, alice, form(after_id=ids(every)[1], before_id=ids(every)[3]))
    assert bodies(res) == ["no pizza for me"]


async def test_paging_both_ways_rsm(h: Harness) -> None:
    alice = await h.online("alice@localhost/phone")
    await h.online("bob@localhost/pc")
    for i in range(23):
        await chat(h, alice, "bob@localhost", f"m{i}")
    seen: list[str] = []
    after = None
    for _ in range(10):
        rsm = "<max>5</max>" + (f"<after>{after}</after>" if after else "")
        res, reply = await query(h, alice, rsm=rsm)
        seen += bodies(res)
        f = fin(reply)
        after = f.findtext(f"{{{RSM}}}set/{{{RSM}}}last")
        if f.get("complete") == "true":
            break
    assert seen == [f"m{i}" for i in range(23)]
    # Backwards from the end: <before/> empty is the last page.
    seen = []
    before = ""
    for _ in range(10):
        res, reply = await query(h, alice, rsm=f"<max>5</max><before>{before}</before>")
        seen = bodies(res) + seen
        f = fin(reply)
        before = f.findtext(f"{{{RSM}}}set/{{{RSM}}}first") or ""
        if f.get("complete") == "true":
            break
    assert seen == [f"m{i}" for i in range(23)]
    res, reply = await query(h, alice, rsm="<max>0</max>")
    assert res == [] and fin(reply).get("complete") is None
    res, _ = await query(h, alice, rsm="<max>1000000</max>")
    assert len(res) == 23  # capped by mam.max_page (250), all of them here
    res, _ = await query(h, alice, rsm="<max>3</max>", inner=f"<flip-page xmlns='{MAM}'/>")
    assert bodies(res) == ["m2", "m1", "m0"]


@pytest.mark.parametrize(
    "inner, rsm, condition",
    [
        (form(start="yesterday"), "", "bad-request"),
        (form(**{"with": "a@b@c"}), "", "jid-malformed"),
        (form(nonsense="1"), "", "bad-request"),
        ("", "<max>lots</max>", "bad-request"),
        ("", "<max>-1</max>", "bad-request"),
        ("", "<index>3</index>", "feature-not-implemented"),
        ("", "<after>no-such-id</after>", "item-not-found"),
        (form(before_id="no-such-id"), "", "item-not-found"),
    ],
)
async def test_bad_queries(h: Harness, inner: str, rsm: str, condition: str) -> None:
    alice = await h.online("alice@localhost/phone")
    await h.online("bob@localhost/pc")
    await chat(h, alice, "bob@localhost", "x")
    res, reply = await query(h, alice, inner, rsm)
    assert res == []
    assert error_condition(reply) == condition


async def test_another_accounts_archive_is_forbidden(h: Harness) -> None:
    alice = await h.online("alice@localhost/phone")
    await h.online("bob@localhost/pc")
    await chat(h, alice, "bob@localhost", "secret")
    eve = await h.online("eve@localhost/x")
    res, reply = await query(h, eve, to="bob@localhost")
    assert res == [] and error_condition(reply) == "forbidden"
    reply = await h.iq(eve, f"<iq type='get' to='bob@localhost'><prefs xmlns='{MAM}'/></iq>")
    assert error_condition(reply) == "forbidden"


async def test_preferences(h: Harness) -> None:
    alice = await h.online("alice@localhost/phone")
    await h.online("bob@localhost/pc")
    await h.online("carol@localhost/tab")
    reply = await h.iq(alice, f"<iq type='get'><prefs xmlns='{MAM}'/></iq>")
    assert reply.find(f"{{{MAM}}}prefs").get("default") == "always"  # type: ignore[union-attr]
    reply = await h.iq(
        alice,
        f"<iq type='set'><prefs xmlns='{MAM}' default='never'><always><jid>bob@localhost</jid>"
        "</always><never/></prefs></iq>",
    )
    got = reply.find(f"{{{MAM}}}prefs")
    assert got is not None and got.get("default") == "never"
    assert got.findtext(f"{{{MAM}}}always/{{{MAM}}}jid") == "bob@localhost"
    await chat(h, alice, "bob@localhost", "kept")
    await chat(h, alice, "carol@localhost", "not kept")
    res, _ = await query(h, alice)
    assert bodies(res) == ["kept"]
    reply = await h.iq(alice, f"<iq type='set'><prefs xmlns='{MAM}' default='sometimes'/></iq>")
    assert error_condition(reply) == "bad-request"
    reply = await h.iq(
        alice,
        f"<iq type='set'><prefs xmlns='{MAM}' default='roster'><never><jid>@@</jid></never>"
        "</prefs></iq>",
    )
    assert error_condition(reply) == "jid-malformed"


async def test_roster_default_archives_only_contacts(h: Harness) -> None:
    from tests.features.conftest import set_roster

    await set_roster(h, "alice", "bob@localhost", "both")
    alice = await h.online("alice@localhost/phone")
    await h.online("bob@localhost/pc")
    await h.online("carol@localhost/tab")
    await h.iq(alice, f"<iq type='set'><prefs xmlns='{MAM}' default='roster'/></iq>")
    await chat(h, alice, "bob@localhost", "contact")
    await chat(h, alice, "carol@localhost", "stranger")
    res, _ = await query(h, alice)
    assert bodies(res) == ["contact"]


async def test_query_form_and_metadata(h: Harness) -> None:
    alice = await h.online("alice@localhost/phone")
    await h.online("bob@localhost/pc")
    reply = await h.iq(alice, f"<iq type='get'><metadata xmlns='{MAM}'/></iq>")
    meta = reply.find(f"{{{MAM}}}metadata")
    assert meta is not None and len(meta) == 0
    reply = await h.iq(alice, f"<iq type='get'><query xmlns='{MAM}'/></iq>")
    fields = {f.get("var") for f in reply.iter(f"{{{DATA}}}field")}
    assert {"with", "start", "end", "before-id", "after-id", "ids"} <= fields
    assert "{urn:xmpp:fulltext:0}fulltext" in fields
    await chat(h, alice, "bob@localhost", "one")
    await chat(h, alice, "bob@localhost", "two")
    every, _ = await query(h, alice)
    reply = await h.iq(alice, f"<iq type='get'><metadata xmlns='{MAM}'/></iq>")
    start = reply.find(f"{{{MAM}}}metadata/{{{MAM}}}start")
    end = reply.find(f"{{{MAM}}}metadata/{{{MAM}}}end")
    assert start is not None and end is not None
    assert [start.get("id"), end.get("id")] == ids(every)
    disco = "http://jabber.org/protocol/disco#info"
    reply = await h.iq(alice, f"<iq type='get' to='alice@localhost'><query xmlns='{disco}'/></iq>")
    features = {f.get("var") for f in reply.iter(f"{{{disco}}}feature")}
    assert {MAM, f"{MAM}#extended", SID} <= features
    reply = await h.iq(alice, f"<iq type='get' to='localhost'><query xmlns='{disco}'/></iq>")
    features = {f.get("var") for f in reply.iter(f"{{{disco}}}feature")}
    assert {MAM, f"{MAM}#extended"} <= features  # where some clients look for it


async def test_retraction_tombstones_both_archives_xep0424(h: Harness) -> None:
    alice = await h.online("alice@localhost/phone")
    bob = await h.online("bob@localhost/pc")
    await h.send(
        alice,
        "<message type='chat' to='bob@localhost' id='m1'><body>oops</body>"
        f"<origin-id xmlns='{SID}' id='o-1'/></message>",
    )
    await h.send(
        alice,
        f"<message type='chat' to='bob@localhost'><retract xmlns='{RETRACT}' id='o-1'/>"
        "<body>retracted</body><store xmlns='urn:xmpp:hints'/></message>",
    )
    assert find(bob.take(), "message", child=f"{{{RETRACT}}}retract")
    for who in (alice, bob):
        res, _ = await query(h, who)
        assert len(res) == 2
        first = inner(res[0])
        assert first.find("body") is None
        assert first.find(f"{{{RETRACT}}}retracted") is not None
        assert first.find(f"{{{SID}}}origin-id") is not None
        assert inner(res[1]).find(f"{{{RETRACT}}}retract") is not None
    res, _ = await query(h, alice, form(fulltext="oops"))
    assert res == []


async def test_retracting_someone_elses_message_is_forbidden(h: Harness) -> None:
    alice = await h.online("alice@localhost/phone")
    bob = await h.online("bob@localhost/pc")
    await h.send(
        bob,
        "<message type='chat' to='alice@localhost' id='b1'><body>mine</body>"
        f"<origin-id xmlns='{SID}' id='ob-1'/></message>",
    )
    bob.take()
    await h.send(
        alice,
        f"<message type='chat' to='bob@localhost' id='r1'><retract xmlns='{RETRACT}' id='ob-1'/>"
        "<body>x</body></message>",
    )
    err = one(alice.take(), "message", id="r1")
    assert error_condition(err) == "forbidden"
    assert not find(bob.take(), "message")
    res, _ = await query(h, bob)
    assert bodies(res) == ["mine"]


async def test_expiry_removes_old_messages(h: Harness) -> None:
    alice = await h.online("alice@localhost/phone")
    await h.online("bob@localhost/pc")
    await chat(h, alice, "bob@localhost", "old")
    mod = h.module("mam")
    await mod.writer.flush()  # type: ignore[attr-defined]
    assert await mod.expire_now(3600) == 0  # type: ignore[attr-defined]
    assert await mod.expire_now(-1) == 2  # type: ignore[attr-defined]
    res, _ = await query(h, alice)
    assert res == []


async def test_account_deletion_removes_the_archive(h: Harness) -> None:
    alice = await h.online("alice@localhost/phone")
    await h.online("bob@localhost/pc")
    await chat(h, alice, "bob@localhost", "bye")
    await h.module("mam").writer.flush()  # type: ignore[attr-defined]
    storage = h.server.storage
    assert (await storage.mam.bounds("localhost", "alice")) is not None
    await storage.accounts.delete("localhost", "alice")
    assert (await storage.mam.bounds("localhost", "alice")) is None
    assert (await storage.mam.bounds("localhost", "bob")) is not None


async def test_recipient_copy_is_the_senders_text_plus_its_id(h: Harness) -> None:
    """A local recipient's archive copy is built from the sender's (no second
    serialization): it must be exactly what serializing the delivered message gives."""
    from descant.storage.api import MamQuery
    from descant.xml.parser import parse_element
    from descant.xml.serialize import serialize

    alice = await h.online("alice@localhost/phone")
    bob = await h.online("bob@localhost/pc")
    await h.send(
        alice,
        "<message type='chat' to='bob@localhost' id='q&amp;1'><body>a &lt;b&gt; &amp; 'c'</body>"
        f"<origin-id xmlns='{SID}' id='o1'/><x xmlns='urn:x' a='&quot;'/></message>",
    )
    delivered = one(bob.take(), "message", id="q&1")
    await h.module("mam").writer.flush()  # type: ignore[attr-defined]
    storage = h.server.storage
    (mine,), _ = await storage.mam.query("localhost", "alice", MamQuery())
    (theirs,), _ = await storage.mam.query("localhost", "bob", MamQuery())
    assert theirs.stanza == serialize(delivered)
    assert theirs.stanza == serialize(parse_element(theirs.stanza))
    assert mine.stanza == serialize(parse_element(mine.stanza))
    assert "stanza-id" not in mine.stanza
