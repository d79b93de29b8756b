"""Server Dialback (XEP-0220) elements and keys (XEP-0185).

The key an Originating Server sends proves, when its Authoritative Server
confirms it, that the stream really comes from that domain:

    key = HMAC-SHA256(hex(SHA256(secret)), "<receiving> <originating> <stream id>")

in lower-case hex (XEP-0185 §3). The secret never leaves the server, so the
Authoritative Server recomputes the key to check a ``<db:verify/>``; no state
is kept per outgoing stream.
"""

from __future__ import annotations

import hashlib
import hmac
import xml.etree.ElementTree as ET

from descant.xml.serialize import escape_attr, escape_text

NS = "jabber:server:dialback"
FEATURE_NS = "urn:xmpp:features:dialback"
RESULT = "{%s}result" % NS
VERIFY = "{%s}verify" % NS


def make_key(secret: bytes, receiving: str, originating: str, stream_id: str) -> str:
    """The XEP-0185 dialback key for one stream."""
    hashed = hashlib.sha256(secret).hexdigest().encode()
    text = f"{receiving} {originating} {stream_id}".encode()
    return hmac.new(hashed, text, hashlib.sha256).hexdigest()


def check_key(secret: bytes, receiving: str, originating: str, stream_id: str, key: str) -> bool:
    expected = make_key(secret, receiving, originating, stream_id)
    return hmac.compare_digest(expected.encode(), key.strip().encode())


def result(frm: str, to: str, key: str | None = None, type_: str | None = None) -> ET.Element:
    """``<db:result/>``: a key (request) or a type (answer)."""
    el = ET.Element(RESULT, {"from": frm, "to": to})
    if type_:
        el.set("type", type_)
    if key:
        el.text = key
    return el


def verify(
    frm: str, to: str, stream_id: str, key: str | None = None, type_: str | None = None
) -> ET.Element:
    """``<db:verify/>``: a key to check (request) or the verdict (answer)."""
    el = ET.Element(VERIFY, {"from": frm, "to": to, "id": stream_id})
    if type_:
        el.set("type", type_)
    if key:
        el.text = key
    return el


def text(el: ET.Element) -> str:
    """A dialback element as written on the wire: with the ``db:`` prefix our stream
    header declares (XEP-0220 §2: MUST; some servers match on the prefix and
    silently drop ``<result xmlns='jabber:server:dialback'/>``)."""
    name = el.tag.rpartition("}")[2]
    attrs = "".join(f" {k}='{escape_attr(v)}'" for k, v in el.attrib.items())
    if not el.text:
        return f"<db:{name}{attrs}/>"
    return f"<db:{name}{attrs}>{escape_text(el.text)}</db:{name}>"
