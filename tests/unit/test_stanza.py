"""Stanza helpers (descant.stanza): error replies, iq results, copies (RFC 6120 §8)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from descant.errors import StanzaError
from descant.stanza import (
    STANZA_KINDS,
    error_reply,
    iq_result,
    new_id,
    payload_key,
    retarget,
)
from descant.xml import ns


def message() -> ET.Element:
    el = ET.Element(
        "message",
        {
            "from": "juliet@example.com/balcony",
            "to": "romeo@example.net",
            "id": "m1",
            "type": "chat",
        },
    )
    ET.SubElement(el, "body").text = "wherefore"
    ET.SubElement(el, "{urn:xmpp:receipts}request")
    return el


def iq() -> ET.Element:
    el = ET.Element("iq", {"from": "juliet@example.com/b", "to": "example.com", "id": "q1"})
    el.set("type", "get")
    ET.SubElement(el, "{%s}query" % ns.DISCO_INFO, {"node": "n"})
    ET.SubElement(el, "{urn:extra}extra")
    return el


def test_stanza_kinds_rfc6120_8() -> None:
    assert {"message", "presence", "iq"} == STANZA_KINDS


def test_new_ids_are_unique() -> None:
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert new_id("x").startswith("x")


# -- error_reply (RFC 6120 §8.3.1) -----------------------------------------------------------------


def test_error_reply_swaps_addresses_and_keeps_id_rfc6120_8_3_1() -> None:
    reply = error_reply(message(), StanzaError("service-unavailable"))
    assert reply.tag == "message"
    assert reply.attrib == {
        "type": "error",
        "to": "juliet@example.com/balcony",
        "from": "romeo@example.net",
        "id": "m1",
    }


def test_error_reply_keeps_message_payload_rfc6120_8_3_1() -> None:
    original = message()
    reply = error_reply(original, StanzaError("recipient-unavailable"))
    assert [c.tag for c in reply] == ["body", "{urn:xmpp:receipts}request", "error"]
    assert reply.findtext("body") == "wherefore"
    err = reply[-1]
    assert err.get("type") == "wait"
    assert err[0].tag == "{%s}recipient-unavailable" % ns.STANZAS_ERR


def test_error_reply_to_iq_keeps_only_the_query_rfc6120_8_3_1() -> None:
    reply = error_reply(iq(), StanzaError("item-not-found"))
    assert reply.attrib == {
        "type": "error",
        "to": "juliet@example.com/b",
        "from": "example.com",
        "id": "q1",
    }
    assert [c.tag for c in reply] == ["{%s}query" % ns.DISCO_INFO, "error"]
    assert reply[0].get("node") == "n"


def test_error_reply_to_empty_iq_rfc6120_8_3_1() -> None:
    el = ET.Element("iq", {"type": "set", "id": "x"})
    reply = error_reply(el, StanzaError("bad-request"))
    assert reply.attrib == {"type": "error", "id": "x"}
    assert [c.tag for c in reply] == ["error"]


def test_error_reply_without_addresses_rfc6120_8_3_1() -> None:
    el = ET.Element("presence", {"type": "subscribe"})
    reply = error_reply(el, StanzaError("forbidden"))
    assert reply.attrib == {"type": "error"}


def test_error_reply_by_attribute_rfc6120_8_3_2() -> None:
    reply = error_reply(message(), StanzaError("forbidden"), by="example.net")
    assert reply.find("error") is not None
    assert reply.find("error").get("by") == "example.net"  # type: ignore[union-attr]


def test_error_reply_does_not_mutate_the_original_rfc6120_8_3_1() -> None:
    original = message()
    before = ET.tostring(original)
    error_reply(original, StanzaError("service-unavailable"))
    assert ET.tostring(original) == before


# -- iq_result (RFC 6120 §8.2.3) -------------------------------------------------------------------


def test_iq_result_swaps_addresses_rfc6120_8_2_3() -> None:
    result = iq_result(iq())
    assert result.tag == "iq"
    assert result.attrib == {
        "type": "result",
        "id": "q1",
        "to": "juliet@example.com/b",
        "from": "example.com",
    }
    assert len(result) == 0


def test_iq_result_with_payload_rfc6120_8_2_3() -> None:
    payload = ET.Element("{%s}query" % ns.DISCO_INFO)
    result = iq_result(iq(), payload)
    assert list(result) == [payload]


def test_iq_result_without_addresses_rfc6120_8_2_3() -> None:
    result = iq_result(ET.Element("iq", {"type": "get", "id": "7"}))
    assert result.attrib == {"type": "result", "id": "7"}


# -- retarget (copy on fan-out) --------------------------------------------------------------------


def test_retarget_replaces_attributes_without_mutating_original() -> None:
    original = message()
    before = ET.tostring(original)
    copy = retarget(original, to="romeo@example.net/orchard", from_="x@y", id=None)
    assert copy is not original
    assert copy.attrib == {"from": "x@y", "to": "romeo@example.net/orchard", "type": "chat"}
    assert ET.tostring(original) == before


def test_retarget_keeps_tag_text_and_children() -> None:
    original = message()
    original.text = "t"
    copy = retarget(original, to="a@b")
    assert copy.tag == "message"
    assert copy.text == "t"
    assert [c.tag for c in copy] == [c.tag for c in original]
    assert copy.findtext("body") == "wherefore"


def test_retarget_copy_can_gain_children_without_touching_original() -> None:
    original = message()
    copy = retarget(original)
    copy.append(ET.Element("{urn:xmpp:delay}delay"))
    assert len(original) == 2
    assert len(copy) == 3


def test_retarget_removing_a_missing_attribute_is_harmless() -> None:
    assert "id" not in retarget(ET.Element("message"), id=None).attrib


# -- small accessors ------------------------------------------------------------------------------


def test_payload_key_names_first_child_namespace_and_tag() -> None:
    assert payload_key(iq()) == "%s:query" % ns.DISCO_INFO
    el = ET.Element("iq")
    assert payload_key(el) is None
    ET.SubElement(el, "session")
    assert payload_key(el) == "jabber:client:session"


def test_qualified_attributes_are_dropped_at_entry_rfc6120_8_1_2_1() -> None:
    import xml.etree.ElementTree as ET

    from descant.stanza import drop_qualified_attributes

    el = ET.Element(
        "message",
        {
            "to": "b@x",
            "{jabber:client}from": "boss@x",
            "{urn:evil}to": "c@x",
            "{http://www.w3.org/XML/1998/namespace}lang": "en",
        },
    )
    drop_qualified_attributes(el)
    assert el.attrib == {"to": "b@x", "{http://www.w3.org/XML/1998/namespace}lang": "en"}
