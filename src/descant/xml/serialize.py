"""Serialization of elements for one stream.

Elements without a namespace belong to the stream's content namespace
(see parser.py); they are written without ``xmlns`` when their parent is in
the same namespace, and re-qualified where they are nested under a foreign one
(e.g. a forwarded ``<message/>``). Output is text; the connection encodes it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from descant.xml import ns

_XML_NS_PREFIX = "{%s}" % ns.XML


def escape_text(s: str) -> str:
    if "&" in s:
        s = s.replace("&", "&amp;")
    if "<" in s:
        s = s.replace("<", "&lt;")
    if ">" in s:
        s = s.replace(">", "&gt;")
    if "\r" in s:
        # A literal CR would come back as LF (XML 1.0 §2.11 end-of-line handling).
        s = s.replace("\r", "&#13;")
    return s


def escape_attr(s: str) -> str:
    s = escape_text(s)
    if "'" in s:
        s = s.replace("'", "&apos;")
    if '"' in s:
        s = s.replace('"', "&quot;")
    if "\n" in s or "\r" in s or "\t" in s:
        s = s.replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    return s


class SharedCopy(ET.Element):
    """One of several copies of a stanza made for fan-out (``stanza.retarget_all``):
    top-level attributes of its own, children shared with the other copies, and so
    ``cache``, where :func:`serialize` keeps the children's text per content
    namespace. N recipients cost one serialization of the payload, not N."""

    cache: dict[str, str]


def _write(el: ET.Element, parent_ns: str, content_ns: str, out: list[str]) -> None:
    local, uri = _start_tag(el, parent_ns, content_ns, out)
    text = el.text
    if not len(el) and not text:
        out.append("/>")
    else:
        out.append(">")
        _content(el, uri, content_ns, out)
        out.append("</" + local + ">")


def _content(el: ET.Element, uri: str, content_ns: str, out: list[str]) -> None:
    if el.text:
        out.append(escape_text(el.text))
    for child in el:
        _write(child, uri, content_ns, out)
        if child.tail:
            out.append(escape_text(child.tail))


def _start_tag(el: ET.Element, parent_ns: str, content_ns: str, out: list[str]) -> tuple[str, str]:
    """Write ``<name attrs`` (unclosed); return the written name and the namespace."""
    tag = el.tag
    if tag[0] == "{":
        # The last brace: a namespace name may hold "}" (it is any string), a local
        # name never does. Split at the first, the rest of the namespace became
        # markup written raw into another user's stream.
        uri, _, local = tag[1:].rpartition("}")
    else:
        uri, local = content_ns, tag
    if uri == ns.STREAM:
        # The stream header declares this prefix; clients expect it used. A framed
        # element (parent_ns "") stands alone and declares it itself (RFC 7395 §3.3.3).
        out.append("<stream:" + local)
        if not parent_ns:
            out.append(" xmlns:stream='" + ns.STREAM + "'")
        local = "stream:" + local
    elif uri != parent_ns:
        out.append("<" + local + " xmlns='" + escape_attr(uri) + "'")
    else:
        out.append("<" + local)
    extra = 0
    for k, v in el.attrib.items():
        if k[0] == "{":
            if k.startswith(_XML_NS_PREFIX):
                # The xml prefix is predeclared, and no other may be bound to its
                # namespace (Namespaces in XML §3): a peer would reject a0:space.
                name = "xml:" + k[len(_XML_NS_PREFIX) :]
            else:
                a_uri, _, a_local = k[1:].rpartition("}")
                name = f"a{extra}:{a_local}"
                out.append(f" xmlns:a{extra}='{escape_attr(a_uri)}'")
                extra += 1
            k = name
        out.append(" " + k + "='" + escape_attr(v) + "'")
    return local, uri


def serialize(el: ET.Element, content_ns: str = ns.CLIENT, framed: bool = False) -> str:
    """Serialize a top-level element for a stream whose default namespace is content_ns.

    ``framed``: the element travels alone (a WebSocket message, RFC 7395 §3.3.3, or
    a BOSH body child, XEP-0206 §5), so it declares its own namespace.
    """
    out: list[str] = []
    parent_ns = "" if framed else content_ns
    if type(el) is SharedCopy and (len(el) or el.text):
        local, uri = _start_tag(el, parent_ns, content_ns, out)
        inner = el.cache.get(content_ns)
        if inner is None:
            parts: list[str] = []
            _content(el, uri, content_ns, parts)
            inner = el.cache[content_ns] = "".join(parts)
        out.append(">")
        out.append(inner)
        out.append("</" + local + ">")
        return "".join(out)
    _write(el, parent_ns, content_ns, out)
    return "".join(out)
