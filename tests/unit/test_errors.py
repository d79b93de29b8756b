"""Stream and stanza errors (descant.errors): RFC 6120 §4.9 and §8.3."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from descant.errors import (
    ERROR_TYPES,
    STANZA_CONDITIONS,
    STREAM_CONDITIONS,
    StanzaError,
    StreamError,
)
from descant.xml import ns

# RFC 6120 §4.9.3.1 to §4.9.3.25.
RFC6120_STREAM_CONDITIONS = {
    "bad-format",
    "bad-namespace-prefix",
    "conflict",
    "connection-timeout",
    "host-gone",
    "host-unknown",
    "improper-addressing",
    "internal-server-error",
    "invalid-from",
    "invalid-namespace",
    "invalid-xml",
    "not-authorized",
    "not-well-formed",
    "policy-violation",
    "remote-connection-failed",
    "reset",
    "resource-constraint",
    "restricted-xml",
    "see-other-host",
    "system-shutdown",
    "undefined-condition",
    "unsupported-encoding",
    "unsupported-feature",
    "unsupported-stanza-type",
    "unsupported-version",
}

# RFC 6120 §8.3.3.1 to §8.3.3.22, with the usual error type (undefined-condition has none
# of its own; Descant defaults it to cancel).
RFC6120_STANZA_CONDITIONS = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "gone": "cancel",
    "internal-server-error": "cancel",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "redirect": "modify",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "subscription-required": "auth",
    "undefined-condition": "cancel",
    "unexpected-request": "wait",
}


def test_stream_conditions_are_rfc6120_4_9_3() -> None:
    assert set(STREAM_CONDITIONS) == RFC6120_STREAM_CONDITIONS


def test_stanza_conditions_are_rfc6120_8_3_3() -> None:
    assert set(STANZA_CONDITIONS) == set(RFC6120_STANZA_CONDITIONS)
    assert set(STANZA_CONDITIONS.values()) <= ERROR_TYPES


def test_error_types_are_rfc6120_8_3_2() -> None:
    assert {"auth", "cancel", "continue", "modify", "wait"} == ERROR_TYPES


# -- stream errors (RFC 6120 §4.9.2) ---------------------------------------------------------------


def test_stream_error_element_rfc6120_4_9_2() -> None:
    el = StreamError("policy-violation").to_element()
    assert el.tag == "{%s}error" % ns.STREAM
    assert [c.tag for c in el] == ["{%s}policy-violation" % ns.STREAMS_ERR]


def test_stream_error_with_text_rfc6120_4_9_2() -> None:
    err = StreamError("host-unknown", "example.org is not served here")
    assert str(err) == "host-unknown: example.org is not served here"
    assert err.condition == "host-unknown"
    el = err.to_element()
    assert [c.tag for c in el] == [
        "{%s}host-unknown" % ns.STREAMS_ERR,
        "{%s}text" % ns.STREAMS_ERR,
    ]
    assert el[1].text == "example.org is not served here"


def test_stream_error_without_text_has_no_text_element_rfc6120_4_9_2() -> None:
    err = StreamError("reset")
    assert err.text is None
    assert str(err) == "reset"
    assert len(err.to_element()) == 1


@pytest.mark.parametrize("condition", sorted(RFC6120_STREAM_CONDITIONS))
def test_every_stream_condition_builds_rfc6120_4_9_3(condition: str) -> None:
    assert StreamError(condition).to_element()[0].tag == "{%s}%s" % (ns.STREAMS_ERR, condition)


def test_unknown_stream_condition_is_a_programming_error() -> None:
    with pytest.raises(AssertionError):
        StreamError("item-not-found")


# -- stanza errors (RFC 6120 §8.3.2) ---------------------------------------------------------------


@pytest.mark.parametrize(("condition", "type_"), sorted(RFC6120_STANZA_CONDITIONS.items()))
def test_default_error_type_per_condition_rfc6120_8_3_3(condition: str, type_: str) -> None:
    err = StanzaError(condition)
    assert err.type == type_
    el = err.to_element()
    assert el.tag == "error"
    assert el.attrib == {"type": type_}
    assert [c.tag for c in el] == ["{%s}%s" % (ns.STANZAS_ERR, condition)]


def test_stanza_error_type_can_be_overridden_rfc6120_8_3_2() -> None:
    assert StanzaError("policy-violation", type="wait").to_element().get("type") == "wait"


def test_stanza_error_by_text_and_application_condition_rfc6120_8_3_2() -> None:
    app = ET.Element("{urn:xmpp:example}too-many")
    err = StanzaError("not-acceptable", "slow down", app=app)
    assert str(err) == "not-acceptable: slow down"
    el = err.to_element(by="example.com")
    assert el.attrib == {"type": "modify", "by": "example.com"}
    assert [c.tag for c in el] == [
        "{%s}not-acceptable" % ns.STANZAS_ERR,
        "{%s}text" % ns.STANZAS_ERR,
        "{urn:xmpp:example}too-many",
    ]
    assert el[1].text == "slow down"
    assert el[2] is app


def test_unknown_stanza_condition_is_a_programming_error() -> None:
    with pytest.raises(AssertionError):
        StanzaError("not-well-formed")
