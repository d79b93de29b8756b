"""XEP-0313 (MAM) on the room JID and XEP-0359 stanza ids, for rooms that log."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from tests.features.muc_util import ROOM, admin_set, enter, new_room
from tests.harness import FakeSession, Harness, error_condition, find

MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
SID = "{urn:xmpp:sid:0}stanza-id"
FWD = "{urn:xmpp:forward:0}forwarded"


async def _logged_room(h: Harness, count: int = 5, **fields: str) -> FakeSession:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al", enablelogging="1", **fields)
    for i in range(1, count + 1):
        await h.send(
            alice, f"<message to='{ROOM}' type='groupchat' id='m{i}'><body>{i}</body></message>"
        )
    alice.take()
    return alice


async def _mam(
    h: Harness, s: FakeSession, inner: str = "", rsm: str = ""
) -> tuple[ET.Element, list[ET.Element]]:
    set_ = f"<set xmlns='{RSM}'>{rsm}</set>" if rsm else ""
    answer = await h.iq(
        s,
        f"<iq type='set' to='{ROOM}'><query xmlns='{MAM}' queryid='q1'>{inner}{set_}</query></iq>",
    )
    results = [m for m in s.take() if m.find(f"{{{MAM}}}result") is not None]
    return answer, results


def _ids(results: list[ET.Element]) -> list[str | None]:
    return [m.find(f"{{{MAM}}}result/{FWD}/message").get("id") for m in results]  # type: ignore[union-attr]


async def test_xep0359_logged_messages_carry_the_room_stanza_id(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al", enablelogging="1")
    await h.send(
        alice,
        f"<message to='{ROOM}' type='groupchat' id='g'><body>x</body>"
        f"<stanza-id xmlns='urn:xmpp:sid:0' by='{ROOM}' id='forged'/></message>",
    )
    (m,) = find(alice.take(), "message", id="g")
    ids = m.findall(SID)
    assert len(ids) == 1 and ids[0].get("by") == ROOM and ids[0].get("id") != "forged"


async def test_xep0313_query_returns_forwarded_messages_and_fin(h: Harness) -> None:
    alice = await _logged_room(h, 3)
    answer, results = await _mam(h, alice)
    assert answer.get("type") == "result"
    assert _ids(results) == ["m1", "m2", "m3"]
    r = results[0].find(f"{{{MAM}}}result")
    assert r is not None and r.get("queryid") == "q1"
    assert results[0].get("from") == ROOM
    fwd = r.find(FWD)
    assert fwd is not None and fwd.find("{urn:xmpp:delay}delay") is not None
    assert fwd.find("message").get("from") == f"{ROOM}/al"  # type: ignore[union-attr]
    fin = answer.find(f"{{{MAM}}}fin")
    assert fin is not None and fin.get("complete") == "true"
    assert fin.findtext(f"{{{RSM}}}set/{{{RSM}}}first") == r.get("id")
    last = results[-1].find(f"{{{MAM}}}result")
    assert last is not None and fin.findtext(f"{{{RSM}}}set/{{{RSM}}}last") == last.get("id")


async def test_xep0313_paging_and_filters(h: Harness) -> None:
    alice = await _logged_room(h, 5)
    answer, results = await _mam(h, alice, rsm="<max>2</max>")
    assert _ids(results) == ["m1", "m2"]
    fin = answer.find(f"{{{MAM}}}fin")
    assert fin is not None and fin.get("complete") is None
    last = fin.findtext(f"{{{RSM}}}set/{{{RSM}}}last")
    _, results = await _mam(h, alice, rsm=f"<max>2</max><after>{last}</after>")
    assert _ids(results) == ["m3", "m4"]
    _, results = await _mam(h, alice, rsm="<max>2</max><before/>")
    assert _ids(results) == ["m4", "m5"]
    form = (
        "<x xmlns='jabber:x:data' type='submit'>"
        f"<field var='FORM_TYPE'><value>{MAM}</value></field>"
        f"<field var='with'><value>{ROOM}/bob</value></field></x>"
    )
    _, results = await _mam(h, alice, inner=form)
    assert results == []
    form = form.replace("/bob", "/al")
    _, results = await _mam(h, alice, inner=form)
    assert len(results) == 5
    form = (
        "<x xmlns='jabber:x:data' type='submit'>"
        "<field var='start'><value>2999-01-01T00:00:00Z</value></field></x>"
    )
    _, results = await _mam(h, alice, inner=form)
    assert results == []
    answer, _ = await _mam(h, alice, rsm="<after>nope</after>")
    assert error_condition(answer) == "item-not-found"


async def test_xep0313_archive_access_follows_room_access(h: Harness) -> None:
    alice = await _logged_room(h, 1, membersonly="1")
    bob = await h.online("bob@localhost/b")
    answer, _ = await _mam(h, bob)
    assert error_condition(answer) == "forbidden"
    await admin_set(h, alice, "<item jid='bob@localhost' affiliation='member'/>")
    answer, results = await _mam(h, bob)
    assert answer.get("type") == "result" and len(results) == 1


async def test_xep0313_room_advertises_mam_when_logging(h: Harness) -> None:
    alice = await _logged_room(h, 0)
    info = await h.iq(
        alice,
        f"<iq type='get' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    )
    features = {f.get("var") for f in info.iter("{http://jabber.org/protocol/disco#info}feature")}
    assert {MAM, "urn:xmpp:sid:0"} <= features
    fields = await h.iq(alice, f"<iq type='get' to='{ROOM}'><query xmlns='{MAM}'/></iq>")
    assert fields.get("type") == "result"


async def test_logged_persistent_room_keeps_archive_and_history_across_restart(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/muc.db"
    h = await Harness.create(tmp_path, storage_url=url)
    try:
        await _logged_room(h, 3, persistentroom="1")
    finally:
        await h.stop()
    h = await Harness.create(tmp_path, storage_url=url)
    try:
        bob = await h.online("bob@localhost/b")
        got = await enter(h, bob, "bob")
        assert [m.get("id") for m in got if m.find("body") is not None] == ["m1", "m2", "m3"]
        _, results = await _mam(h, bob)
        assert _ids(results) == ["m1", "m2", "m3"]
    finally:
        await h.stop()
