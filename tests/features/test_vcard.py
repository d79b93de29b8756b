"""vCard-temp (XEP-0054) on the in-process harness."""

from __future__ import annotations

from tests.harness import Harness, error_condition

NS = "vcard-temp"
VCARD = f"<vCard xmlns='{NS}'><FN>Alice Liddell</FN><NICKNAME>alice</NICKNAME></vCard>"


async def test_set_then_get_own_and_by_others_xep0054_3(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    bob = await h.online("bob@localhost/b")
    empty = await h.iq(alice, f"<iq type='get'><vCard xmlns='{NS}'/></iq>")
    card = empty.find(f"{{{NS}}}vCard")
    assert card is not None and len(card) == 0  # none published yet: empty

    assert (await h.iq(alice, f"<iq type='set'>{VCARD}</iq>")).get("type") == "result"

    own = await h.iq(alice, f"<iq type='get'><vCard xmlns='{NS}'/></iq>")
    assert own.findtext(f"{{{NS}}}vCard/{{{NS}}}FN") == "Alice Liddell"
    other = await h.iq(bob, f"<iq type='get' to='alice@localhost'><vCard xmlns='{NS}'/></iq>")
    assert other.get("from") == "alice@localhost"
    assert other.findtext(f"{{{NS}}}vCard/{{{NS}}}NICKNAME") == "alice"


async def test_update_replaces_the_vcard_xep0054_3_2(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await h.iq(alice, f"<iq type='set'>{VCARD}</iq>")
    await h.iq(alice, f"<iq type='set'><vCard xmlns='{NS}'><FN>A. L.</FN></vCard></iq>")
    got = await h.iq(alice, f"<iq type='get'><vCard xmlns='{NS}'/></iq>")
    assert got.findtext(f"{{{NS}}}vCard/{{{NS}}}FN") == "A. L."
    assert got.find(f"{{{NS}}}vCard/{{{NS}}}NICKNAME") is None


async def test_setting_another_users_vcard_is_forbidden_xep0054_3_2(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await h.account("bob")
    reply = await h.iq(alice, f"<iq type='set' to='bob@localhost'>{VCARD}</iq>")
    assert error_condition(reply) == "forbidden"


async def test_unknown_account_is_service_unavailable_rfc6121_8_5_1(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    reply = await h.iq(alice, f"<iq type='get' to='nobody@localhost'><vCard xmlns='{NS}'/></iq>")
    assert error_condition(reply) == "service-unavailable"


async def test_vcard_feature_is_advertised(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    disco = "http://jabber.org/protocol/disco#info"
    reply = await h.iq(alice, f"<iq type='get' to='localhost'><query xmlns='{disco}'/></iq>")
    assert NS in {f.get("var") for f in reply.iter(f"{{{disco}}}feature")}
