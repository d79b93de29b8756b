"""XEP-0185 dialback keys and XEP-0220 elements."""

from __future__ import annotations

from descant.s2s import dialback
from descant.xml.serialize import serialize

SECRET = b"s3cr3tf0rd14lb4ck"


def test_xep0185_published_vector() -> None:
    """XEP-0185 §3: receiving xmpp.example.com, originating example.org, id D60000229F."""
    key = dialback.make_key(SECRET, "xmpp.example.com", "example.org", "D60000229F")
    assert key == "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"


def test_key_binds_both_domains_and_the_stream() -> None:
    base = dialback.make_key(SECRET, "r.example", "o.example", "id1")
    assert dialback.make_key(SECRET, "o.example", "r.example", "id1") != base
    assert dialback.make_key(SECRET, "r.example", "o.example", "id2") != base
    assert dialback.make_key(b"other", "r.example", "o.example", "id1") != base


def test_check_key() -> None:
    key = dialback.make_key(SECRET, "r.example", "o.example", "id1")
    assert dialback.check_key(SECRET, "r.example", "o.example", "id1", key)
    assert dialback.check_key(SECRET, "r.example", "o.example", "id1", f" {key}\n")
    assert not dialback.check_key(SECRET, "r.example", "o.example", "id1", key[:-1] + "0")
    assert not dialback.check_key(SECRET, "r.example", "o.example", "id1", "")


def test_elements_serialize_in_the_dialback_namespace() -> None:
    req = serialize(dialback.result("o.example", "r.example", key="abc"), "jabber:server")
    assert req == (
        "<result xmlns='jabber:server:dialback' from='o.example' to='r.example'>abc</result>"
    )
    ans = serialize(dialback.verify("a", "b", "s1", type_="valid"), "jabber:server")
    assert ans == "<verify xmlns='jabber:server:dialback' from='a' to='b' id='s1' type='valid'/>"


def test_wire_form_uses_the_declared_prefix_xep0220_2() -> None:
    el = dialback.result("o.example", "r.example", key="a<b")
    assert dialback.text(el) == "<db:result from='o.example' to='r.example'>a&lt;b</db:result>"
    answer = dialback.verify("a", "b", "s'1", type_="valid")
    assert dialback.text(answer) == "<db:verify from='a' to='b' id='s&apos;1' type='valid'/>"
