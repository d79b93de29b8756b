"""Stream and stanza errors (RFC 6120 §4.9 and §8.3)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from descant.xml import ns

STREAM_CONDITIONS = frozenset(
    [
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
    ]
)

# RFC 6120 §8.3.3: the error type each condition usually carries.
STANZA_CONDITIONS: dict[str, str] = {
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

ERROR_TYPES = frozenset({"auth", "cancel", "continue", "modify", "wait"})


def condition_of(error: ET.Element, namespace: str) -> str | None:
    """The defined condition of an error someone sent: the child of a stanza's
    ``<error/>`` (``namespace`` ns.STANZAS_ERR) or of a ``<stream:error/>``
    (ns.STREAMS_ERR) that is not ``<text/>``; None when it has none."""
    prefix = "{%s}" % namespace
    for child in error:
        tag = child.tag
        if tag.startswith(prefix) and tag != prefix + "text":
            return tag[len(prefix) :]
    return None


class StreamError(Exception):
    """A stream-level error: the stream is closed after sending it (RFC 6120 §4.9)."""

    def __init__(
        self, condition: str, text: str | None = None, app: ET.Element | None = None
    ) -> None:
        assert condition in STREAM_CONDITIONS, condition
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text
        # An application-specific condition (RFC 6120 §4.9.4), e.g. XEP-0198's
        # <handled-count-too-high/>.
        self.app = app
        # Elements the parser completed in the same chunk before the fault: they
        # are handled before the stream closes, so the outcome does not depend on
        # how the bytes happened to be split in transit.
        self.completed: list[object] = []

    def to_element(self) -> ET.Element:
        el = ET.Element("{%s}error" % ns.STREAM)
        ET.SubElement(el, "{%s}%s" % (ns.STREAMS_ERR, self.condition))
        if self.app is not None:
            el.append(self.app)
        if self.text:
            t = ET.SubElement(el, "{%s}text" % ns.STREAMS_ERR)
            t.text = self.text
        return el


class StanzaError(Exception):
    """A stanza-level error, answered to the sender (RFC 6120 §8.3)."""

    def __init__(
        self,
        condition: str,
        text: str | None = None,
        type: str | None = None,
        app: ET.Element | None = None,
    ) -> None:
        assert condition in STANZA_CONDITIONS, condition
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text
        self.type = type or STANZA_CONDITIONS[condition]
        self.app = app

    def to_element(self, by: str | None = None) -> ET.Element:
        el = ET.Element("error", {"type": self.type})
        if by:
            el.set("by", by)
        ET.SubElement(el, "{%s}%s" % (ns.STANZAS_ERR, self.condition))
        if self.text:
            t = ET.SubElement(el, "{%s}text" % ns.STANZAS_ERR)
            t.text = self.text
        if self.app is not None:
            el.append(self.app)
        return el
