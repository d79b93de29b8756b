"""Reading a MAM query (XEP-0313 §4 with ``urn:xmpp:mam:2#extended``, XEP-0059
paging) into a storage query, and writing its results.

Form fields: ``with`` (bare or full JID), ``start`` and ``end`` (XEP-0082,
inclusive), ``before-id``/``after-id`` and ``ids`` (extended), and
``{urn:xmpp:fulltext:0}fulltext`` (words that must all occur in the body).
Paging: ``<max/>`` (capped by ``mam.max_page``, 50 when absent), ``<after/>``,
``<before/>`` (empty: the last page); ``<index/>`` is not supported
(<feature-not-implemented/>); ``<flip-page/>`` reverses the page. A field we do
not know, a malformed date or JID, or a ``max`` that is not a number is
<bad-request/> (<jid-malformed/> for the JID).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime

from descant import forms
from descant.errors import StanzaError
from descant.jid import InvalidJID, parse
from descant.stamps import format_stamp, parse_stamp
from descant.storage.api import MamQuery

MAM = "urn:xmpp:mam:2"
EXTENDED = "urn:xmpp:mam:2#extended"
RSM = "http://jabber.org/protocol/rsm"
FORWARD = "urn:xmpp:forward:0"
DELAY = "urn:xmpp:delay"
FULLTEXT = "{urn:xmpp:fulltext:0}fulltext"
DATA = forms.DATA
DEFAULT_PAGE = 50

_FIELDS = frozenset({"FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids", FULLTEXT})


@dataclass(frozen=True, slots=True)
class Request:
    query: MamQuery
    queryid: str | None
    flip: bool


def query_form() -> ET.Element:
    """The fields a client may fill (§6.1), in a ``<query/>``."""
    query = ET.Element(f"{{{MAM}}}query")
    query.append(
        forms.build(
            "form",
            MAM,
            [
                ("with", "jid-single", "", []),
                ("start", "text-single", "", []),
                ("end", "text-single", "", []),
                ("before-id", "text-single", "", []),
                ("after-id", "text-single", "", []),
                ("ids", "list-multi", "", []),
                (FULLTEXT, "text-single", "Words in the message", []),
            ],
        )
    )
    return query


def form_time(values: dict[str, list[str]], var: str) -> datetime | None:
    """A XEP-0082 time from a submitted form field; None when empty."""
    raw = forms.single(values.get(var, [])).strip()
    if not raw:
        return None
    try:
        return parse_stamp(raw)
    except ValueError:
        raise StanzaError("bad-request", f"{var}: not a date and time") from None


def parse_request(query: ET.Element, max_page: int) -> Request:
    """The storage query a ``<query xmlns='urn:xmpp:mam:2'/>`` asks for."""
    form = query.find(f"{{{DATA}}}x")
    values = forms.values(form) if form is not None else {}
    unknown = sorted(set(values) - _FIELDS)
    if unknown:
        raise StanzaError("bad-request", f"unsupported field {unknown[0]!r}")
    with_jid = with_resource = None
    with_ = forms.single(values.get("with", [])).strip()
    if with_:
        try:
            jid = parse(with_)
        except InvalidJID:
            raise StanzaError("jid-malformed", "with: not a JID") from None
        with_jid, with_resource = str(jid.bare), (jid.resource or None)
    start, end = form_time(values, "start"), form_time(values, "end")
    after = forms.single(values.get("after-id", [])) or None
    before = forms.single(values.get("before-id", [])) or None
    limit = DEFAULT_PAGE
    rsm = query.find(f"{{{RSM}}}set")
    if rsm is not None:
        if rsm.find(f"{{{RSM}}}index") is not None:
            raise StanzaError("feature-not-implemented", "paging by index is not supported")
        max_text = rsm.findtext(f"{{{RSM}}}max")
        if max_text is not None:
            max_text = max_text.strip()
            if not max_text.isascii() or not max_text.isdigit():
                raise StanzaError("bad-request", "max: not a number")
            limit = int(max_text)
        rsm_after = rsm.findtext(f"{{{RSM}}}after")
        rsm_before = rsm.findtext(f"{{{RSM}}}before")
        # RSM's after/before page within what after-id/before-id select; storage
        # takes one bound per side, and the RSM one is the tighter (a client takes it
        # from a page inside those bounds). An empty <before/> asks for the last page:
        # the last before before-id when one is given.
        if rsm_after:
            after = rsm_after
        if rsm_before is not None:
            before = rsm_before or before or ""
    ids = tuple(v.strip() for v in values.get("ids", []) if v.strip())
    if len(ids) > max_page:
        raise StanzaError("bad-request", f"ids: at most {max_page} at once")
    text = forms.single(values.get(FULLTEXT, [])).strip()
    return Request(
        MamQuery(
            with_jid=with_jid,
            with_resource=with_resource,
            start=start,
            end=end,
            after=after,
            before=before,
            ids=ids,
            text=text,
            limit=min(limit, max_page),
        ),
        query.get("queryid"),
        query.find(f"{{{MAM}}}flip-page") is not None,
    )


def result_message(
    to: str, frm: str, queryid: str | None, id_: str, stamp: datetime, stanza: ET.Element
) -> ET.Element:
    """One result (§4.2): the archived message forwarded with its time."""
    msg = ET.Element("message", {"to": to, "from": frm})
    attrs = {"id": id_}
    if queryid:
        attrs["queryid"] = queryid
    result = ET.SubElement(msg, f"{{{MAM}}}result", attrs)
    fwd = ET.SubElement(result, f"{{{FORWARD}}}forwarded")
    ET.SubElement(fwd, f"{{{DELAY}}}delay", {"stamp": format_stamp(stamp)})
    fwd.append(stanza)
    return msg


def fin(first: str | None, last: str | None, complete: bool) -> ET.Element:
    """The iq result's ``<fin/>`` (§4.3) with the page's RSM ``<set/>``."""
    out = ET.Element(f"{{{MAM}}}fin", {"complete": "true"} if complete else {})
    s = ET.SubElement(out, f"{{{RSM}}}set")
    if first is not None and last is not None:
        ET.SubElement(s, f"{{{RSM}}}first").text = first
        ET.SubElement(s, f"{{{RSM}}}last").text = last
    return out
