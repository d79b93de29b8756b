"""Small helpers over stanza elements (``xml.etree.ElementTree.Element``).

Stanzas are never mutated after the session stamps them on entry; fan-out and
rewrites use :func:`retarget`, a shallow copy sharing the (read-only) children.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from descant.errors import StanzaError
from descant.xml.serialize import SharedCopy

STANZA_KINDS = frozenset({"message", "presence", "iq"})
IQ_TYPES = frozenset({"get", "set", "result", "error"})


def new_id(prefix: str = "d") -> str:
    """An id for a stanza the server originates: unguessable, so that no one can
    answer or correlate in place of the entity it went to."""
    return prefix + secrets.token_urlsafe(9)


def retarget(stanza: ET.Element, **attrs: str | None) -> ET.Element:
    """A shallow copy with some top-level attributes replaced (None removes)."""
    attrib = dict(stanza.attrib)
    for k, v in attrs.items():
        k = k.rstrip("_")
        if v is None:
            attrib.pop(k, None)
        else:
            attrib[k] = v
    out = ET.Element(stanza.tag, attrib)
    out.text = stanza.text
    out.extend(stanza)
    return out


def retarget_all(stanza: ET.Element, targets: Iterable[str]) -> list[ET.Element]:
    """One copy of ``stanza`` per ``to``, for fan-out: the copies share children and
    their serialized text (``SharedCopy``), so the payload is serialized once."""
    cache: dict[str, str] = {}
    out: list[ET.Element] = []
    for to in targets:
        attrib = dict(stanza.attrib)
        attrib["to"] = to
        copy = SharedCopy(stanza.tag, attrib)
        copy.text = stanza.text
        copy.extend(stanza)
        copy.cache = cache
        out.append(copy)
    return out


def error_reply(stanza: ET.Element, err: StanzaError, by: str | None = None) -> ET.Element:
    """The error answer to a stanza: addresses swapped, original payload kept
    for message/presence (RFC 6120 §8.3.1 allows it; clients correlate by it)."""
    attrib = {"type": "error"}
    for src, dst in (("from", "to"), ("to", "from"), ("id", "id")):
        v = stanza.get(src)
        if v is not None:
            attrib[dst] = v
    out = ET.Element(stanza.tag, attrib)
    if stanza.tag != "iq":
        out.extend(stanza)
    elif len(stanza):
        out.append(stanza[0])
    out.append(err.to_element(by))
    return out


def iq_result(stanza: ET.Element, payload: ET.Element | None = None) -> ET.Element:
    attrib = {"type": "result", "id": stanza.get("id", "")}
    frm, to = stanza.get("from"), stanza.get("to")
    if frm:
        attrib["to"] = frm
    if to:
        attrib["from"] = to
    out = ET.Element("iq", attrib)
    if payload is not None:
        out.append(payload)
    return out


def payload_key(stanza: ET.Element) -> str | None:
    """'ns:tag' of an iq's first child, the key iq handlers are hooked on."""
    if not len(stanza):
        return None
    tag = stanza[0].tag
    if tag[0] == "{":
        uri, _, local = tag[1:].partition("}")
        return f"{uri}:{local}"
    return f"jabber:client:{tag}"


def valid_iq(iq: ET.Element) -> bool:
    """RFC 6120 §8.2.3: an id, a known type, exactly one child in a get or set."""
    type_ = iq.get("type")
    if not iq.get("id") or type_ not in IQ_TYPES:
        return False
    return len(iq) == 1 if type_ in ("get", "set") else True


_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def drop_qualified_attributes(stanza: ET.Element) -> None:
    """Remove attributes in a namespace (``x:from``, …) from a stanza entering the
    server: none is defined on stanzas but xml:lang, and a client reading attributes
    by local name could take ``x:from`` for the sender (RFC 6120 §8.1.2.1)."""
    attrib = stanza.attrib
    for key in attrib:
        if key[0] == "{" and key != _XML_LANG:
            break
    else:
        return  # the usual case: nothing qualified, nothing copied
    for key in [k for k in attrib if k[0] == "{" and k != _XML_LANG]:
        del attrib[key]
