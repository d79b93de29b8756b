"""SessionRegistry (descant.routing.sessions): bound resources and RFC 6121 §8.5.2 delivery."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import pytest

from descant.jid import JID
from descant.routing.sessions import SessionRegistry


@dataclass(eq=False)
class FakeSession:
    jid: JID
    priority: int = 0
    presence: ET.Element | None = None
    interested: bool = False
    directed: set[JID] = field(default_factory=set)
    host: Any = None
    sent: list[ET.Element] = field(default_factory=list)

    def send(self, stanza: ET.Element) -> None:
        self.sent.append(stanza)

    async def close(self, condition: str | None = None, text: str | None = None) -> None:
        pass


def session(user: str, resource: str, priority: int = 0, available: bool = True) -> FakeSession:
    presence = ET.Element("presence") if available else None
    return FakeSession(JID(user, "example.com", resource), priority, presence)


def registry(*sessions: FakeSession) -> SessionRegistry:
    reg = SessionRegistry()
    for s in sessions:
        assert reg.add(s) is None
    return reg


# -- add / replace / remove (RFC 6120 §7.7.2.2 resource conflicts) ---------------------------------


def test_add_and_get() -> None:
    a = session("juliet", "balcony")
    reg = registry(a)
    assert reg.get("juliet", "balcony") is a
    assert reg.get("juliet", "garden") is None
    assert reg.get("romeo", "balcony") is None
    assert len(reg) == 1
    assert reg.users() == ["juliet"]
    assert reg.all() == [a]


def test_same_resource_replaces_and_returns_old_rfc6120_7_7_2_2() -> None:
    old, new = session("juliet", "balcony"), session("juliet", "balcony")
    reg = registry(old)
    assert reg.add(new) is old
    assert reg.get("juliet", "balcony") is new
    assert len(reg) == 1


def test_adding_the_same_session_twice_replaces_nothing() -> None:
    a = session("juliet", "balcony")
    reg = registry(a)
    assert reg.add(a) is None
    assert len(reg) == 1


def test_remove_current_holder() -> None:
    a, b = session("juliet", "balcony"), session("juliet", "garden")
    reg = registry(a, b)
    assert reg.remove(a)
    assert reg.get("juliet", "balcony") is None
    assert reg.of_user("juliet") == [b]
    assert reg.remove(b)
    assert reg.users() == []
    assert len(reg) == 0
    assert reg.of_user("juliet") == []


def test_removing_a_replaced_session_keeps_its_successor_rfc6120_7_7_2_2() -> None:
    old, new = session("juliet", "balcony"), session("juliet", "balcony")
    reg = registry(old)
    reg.add(new)
    assert not reg.remove(old)
    assert reg.get("juliet", "balcony") is new


def test_remove_unknown_session() -> None:
    assert not SessionRegistry().remove(session("juliet", "balcony"))


def test_users_are_separate() -> None:
    a, b = session("juliet", "r"), session("romeo", "r")
    reg = registry(a, b)
    assert reg.of_user("juliet") == [a]
    assert reg.of_user("romeo") == [b]
    assert sorted(reg.users()) == ["juliet", "romeo"]
    assert len(reg) == 2


def test_available_excludes_sessions_without_presence_rfc6121_4_2() -> None:
    on, off = session("juliet", "on"), session("juliet", "off", available=False)
    reg = registry(on, off)
    assert reg.available("juliet") == [on]
    assert reg.available("romeo") == []


# -- message_targets (RFC 6121 §8.5.2.1.1, §8.5.2.2.1) -------------------------------------------


def targets(reg: SessionRegistry, type_: str) -> set[str]:
    return {s.jid.resource for s in reg.message_targets("juliet", type_)}


@pytest.mark.parametrize("type_", ["normal", "chat"])
def test_highest_priority_gets_the_message_rfc6121_8_5_2_1_1(type_: str) -> None:
    reg = registry(session("juliet", "a", 1), session("juliet", "b", 5), session("juliet", "c", 0))
    assert targets(reg, type_) == {"b"}


@pytest.mark.parametrize("type_", ["normal", "chat"])
def test_ties_at_highest_priority_all_get_it_rfc6121_8_5_2_1_1(type_: str) -> None:
    reg = registry(session("juliet", "a", 5), session("juliet", "b", 5), session("juliet", "c", 1))
    assert targets(reg, type_) == {"a", "b"}


@pytest.mark.parametrize("type_", ["normal", "chat", "headline"])
def test_negative_priority_never_gets_bare_jid_messages_rfc6121_8_5_2_1_1(type_: str) -> None:
    reg = registry(session("juliet", "a", -1), session("juliet", "b", -128))
    assert targets(reg, type_) == set()
    reg.add(session("juliet", "c", 0))
    assert targets(reg, type_) == {"c"}


def test_headline_goes_to_all_non_negative_rfc6121_8_5_2_1_1() -> None:
    reg = registry(
        session("juliet", "a", 0),
        session("juliet", "b", 10),
        session("juliet", "c", -1),
        session("juliet", "d", 3, available=False),
    )
    assert targets(reg, "headline") == {"a", "b"}


@pytest.mark.parametrize("type_", ["normal", "chat", "headline"])
def test_unavailable_sessions_are_excluded_rfc6121_8_5_2_1_1(type_: str) -> None:
    reg = registry(session("juliet", "bound-only", 10, available=False), session("juliet", "a", 0))
    assert targets(reg, type_) == {"a"}


@pytest.mark.parametrize("type_", ["error", "groupchat"])
def test_error_and_groupchat_reach_no_resource_rfc6121_8_5_2_1_1(type_: str) -> None:
    """error: "MUST silently ignore"; groupchat: "MUST NOT deliver" (it is bounced)."""
    reg = registry(session("juliet", "a", 5), session("juliet", "b", 0))
    assert targets(reg, type_) == set()


def test_unknown_type_is_treated_as_normal_rfc6121_5_2_2() -> None:
    reg = registry(session("juliet", "a", 5), session("juliet", "b", 0))
    assert targets(reg, "bogus") == {"a"}


def test_no_sessions_no_targets_rfc6121_8_5_2_2_1() -> None:
    reg = registry(session("juliet", "x", 5, available=False))
    assert targets(reg, "chat") == set()
    assert SessionRegistry().message_targets("juliet", "chat") == []
