"""Entity capabilities (XEP-0115): what a contact's client supports, learned once per version.

A client's presence carries ``<c xmlns='http://jabber.org/protocol/caps' hash= node= ver=/>``,
where ``ver`` is a hash of its disco#info (§5.1). :meth:`CapsModule.features` asks the client
for that disco#info once (node ``<node>#<ver>``) and, when the answer hashes to ``ver``, keeps
its features for every entity advertising the same (hash, ver): the PEP service uses them to
know who wants ``<node>+notify`` notifications.

What is trusted (§5.4): only an answer that is well-formed and hashes to the ``ver`` it was
asked for is cached and shared. Anything else — legacy caps without ``hash``, an algorithm not
supported here, an answer that does not verify — is the answer of that one entity only: it is
returned to the call that asked it, never to a call about another entity, and never cached, so
one client cannot poison the features of every client of the same version.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

from descant.forms import DATA
from descant.jid import JID
from descant.modules import Module
from descant.routing.requests import TooManyRequests
from descant.xml import ns

CAPS = "http://jabber.org/protocol/caps"

# IANA "Hash Function Textual Names" the caps 'hash' attribute uses → hashlib names.
ALGORITHMS = {
    "sha-1": "sha1",
    "sha-224": "sha224",
    "sha-256": "sha256",
    "sha-384": "sha384",
    "sha-512": "sha512",
}

_IDENTITY = f"{{{ns.DISCO_INFO}}}identity"
_FEATURE = f"{{{ns.DISCO_INFO}}}feature"
_QUERY = f"{{{ns.DISCO_INFO}}}query"
_FORM = f"{{{DATA}}}x"
_FIELD = f"{{{DATA}}}field"
_VALUE = f"{{{DATA}}}value"


@dataclass(frozen=True, slots=True)
class Caps:
    node: str
    ver: str
    hash: str  # "sha-1", "sha-256", ... ("" for legacy caps without a hash attribute)


class IllFormed(ValueError):
    """A disco#info result that §5.4 says to consider ill-formed (never cached)."""


def caps_of(presence: ET.Element) -> Caps | None:
    """The <c xmlns=CAPS/> of a presence stanza, or None (also when node or ver is missing)."""
    c = presence.find(f"{{{CAPS}}}c")
    if c is None:
        return None
    node, ver = c.get("node", ""), c.get("ver", "")
    if not node or not ver:
        return None
    return Caps(node, ver, c.get("hash", ""))


def verification_string(query: ET.Element) -> str:
    """The verification string S of a disco#info ``<query/>`` (XEP-0115 §5.1).

    Raises :class:`IllFormed` for what §5.4 calls ill-formed: a duplicate identity,
    feature or FORM_TYPE, a FORM_TYPE with differing values. Forms without a hidden
    FORM_TYPE are left out, as §5.4 step 6 says. Beyond §5.4, it also refuses what
    would make S ambiguous — a '<' inside any part, a '/' inside an identity's
    category, type or lang, an identity without category or type (XEP-0030 requires
    them) — since such an answer could hash to another client's ``ver`` while its
    features differ (the 2009 preimage attack on caps).
    """
    identities: list[tuple[str, str, str, str]] = []
    for ident in query.findall(_IDENTITY):
        category, type_ = ident.get("category", ""), ident.get("type", "")
        lang, name = ident.get(ns.XML_LANG, ""), ident.get("name", "")
        if not category or not type_:
            raise IllFormed("identity without category or type")
        if any("/" in part for part in (category, type_, lang)):
            raise IllFormed("'/' in an identity's category, type or lang")
        identities.append((category, type_, lang, name))
    if len(set(identities)) != len(identities):
        raise IllFormed("duplicate identity")
    # Python orders str by code point, which is the UTF-8 octet order §5.1 asks for.
    parts = ["/".join(ident) for ident in sorted(identities)]

    features = [f.get("var", "") for f in query.findall(_FEATURE)]
    if len(set(features)) != len(features):
        raise IllFormed("duplicate feature")
    parts.extend(sorted(features))

    forms: dict[str, list[str]] = {}
    for form in query.findall(_FORM):
        typed = _form_type(form)
        if typed is None:
            continue
        if typed in forms:
            raise IllFormed(f"two forms of FORM_TYPE {typed!r}")
        forms[typed] = _form_parts(form)
    for form_type in sorted(forms):
        parts.append(form_type)
        parts.extend(forms[form_type])

    if any("<" in part for part in parts):
        raise IllFormed("'<' inside a part of the verification string")
    return "".join(part + "<" for part in parts)


def _form_type(form: ET.Element) -> str | None:
    """The FORM_TYPE of an extended-info form; None: the form is to be ignored (§5.4.6)."""
    fields = [f for f in form.findall(_FIELD) if f.get("var") == "FORM_TYPE"]
    if not fields or fields[0].get("type") != "hidden":
        return None
    if len(fields) > 1:
        raise IllFormed("a form with two FORM_TYPE fields")
    values = {v.text or "" for v in fields[0].findall(_VALUE)}
    if len(values) != 1:
        raise IllFormed("FORM_TYPE without exactly one value")
    return values.pop()


def _form_parts(form: ET.Element) -> list[str]:
    fields: list[tuple[str, list[str]]] = []
    for field in form.findall(_FIELD):
        var = field.get("var")
        if var is None:
            raise IllFormed("a form field without var")
        if var != "FORM_TYPE":
            fields.append((var, sorted(v.text or "" for v in field.findall(_VALUE))))
    out: list[str] = []
    for var, values in sorted(fields):
        out.append(var)
        out.extend(values)
    return out


def ver_hash(query: ET.Element, algo: str) -> str | None:
    """Base64 of the ``algo`` digest of the verification string (§5.1 steps 8-9).

    None for an algorithm name not in :data:`ALGORITHMS`, and for an ill-formed query
    (which no ``ver`` can verify).
    """
    name = ALGORITHMS.get(algo.lower())
    if name is None:
        return None
    try:
        s = verification_string(query)
    except IllFormed:
        return None
    return base64.b64encode(hashlib.new(name, s.encode("utf-8")).digest()).decode("ascii")


# (jid asked, its features or None, verified): what one disco#info query brought.
_Answer = tuple[JID, frozenset[str] | None, bool]


class CapsModule(Module):
    name = "caps"
    timeout: ClassVar[float] = 10.0  # seconds to wait for a disco#info answer
    max_pending: ClassVar[int] = 1000  # queries in flight at once
    max_entries: ClassVar[int] = 10_000  # verified (hash, ver) kept, least recently used out

    def load(self) -> None:
        # Nothing to hook and nothing to advertise: other modules call features().
        self._cache: OrderedDict[tuple[str, str], frozenset[str]] = OrderedDict()
        # Queries in flight: (hash, ver, None) shared by all, (hash, ver, jid) for one entity.
        self._pending: dict[tuple[str, str, JID | None], asyncio.Future[_Answer | None]] = {}

    def known(self, caps: Caps) -> frozenset[str] | None:
        """Features cached for a verified (hash, ver); no I/O."""
        key = (caps.hash, caps.ver)
        features = self._cache.get(key)
        if features is not None:
            self._cache.move_to_end(key)
        return features

    async def features(self, asker: JID, jid: JID, caps: Caps) -> frozenset[str] | None:
        """The disco#info features of entity ``jid`` whose presence carried ``caps``.

        Cached by (hash, ver) once verified; otherwise ``jid`` is asked (from ``asker``,
        an account's bare JID, to node ``<node>#<ver>``), one query shared by concurrent
        calls. An answer that does not verify is returned for ``jid`` alone and not
        cached (§5.4). None: an error answer, no answer in :attr:`timeout` seconds, or
        :attr:`max_pending` queries already in flight.
        """
        features = self.known(caps)
        if features is not None:
            return features
        if caps.hash.lower() in ALGORITHMS:
            got = await self._shared((caps.hash, caps.ver, None), asker, jid, caps)
            if got is None:
                return None
            asked, features, verified = got
            if verified or asked == jid:
                return features
            # Another entity's answer did not verify: it says nothing about this one.
        # Legacy or unknown hash (§5.4 step 2), or the above: this entity's own answer.
        got = await self._shared((caps.hash, caps.ver, jid), asker, jid, caps)
        return None if got is None else got[1]

    async def _shared(
        self, key: tuple[str, str, JID | None], asker: JID, jid: JID, caps: Caps
    ) -> _Answer | None:
        fut = self._pending.get(key)
        if fut is None:
            if len(self._pending) >= self.max_pending:
                self.log.warning("disco#info for caps not sent: %d queries wait", self.max_pending)
                return None
            fut = asyncio.get_running_loop().create_future()
            # A task of its own, so that a caller cancelled does not cancel the others' query.
            if not self.tasks.spawn(self._query(fut, key, asker, jid, caps)):
                return None
            self._pending[key] = fut
        return await asyncio.shield(fut)

    async def _query(
        self,
        fut: asyncio.Future[_Answer | None],
        key: tuple[str, str, JID | None],
        asker: JID,
        jid: JID,
        caps: Caps,
    ) -> None:
        answer: _Answer | None = None
        try:
            answer = await self._ask(asker, jid, caps)
        finally:
            self._pending.pop(key, None)
            if not fut.done():
                fut.set_result(answer)

    async def _ask(self, asker: JID, jid: JID, caps: Caps) -> _Answer | None:
        iq = ET.Element("iq", {"type": "get", "from": str(asker), "to": str(jid)})
        ET.SubElement(iq, _QUERY, {"node": f"{caps.node}#{caps.ver}"})
        try:
            answer = await self.send_iq(iq, self.timeout)
        except TimeoutError:
            self.log.debug("no disco#info answer from %s for caps %s", jid, caps.ver)
            return None
        except TooManyRequests:
            return None
        query = answer.find(_QUERY)
        if answer.get("type") != "result" or query is None:
            return None
        features = frozenset(f.get("var", "") for f in query.findall(_FEATURE)) - {""}
        verified = bool(caps.hash) and ver_hash(query, caps.hash) == caps.ver
        if verified:
            self._remember((caps.hash, caps.ver), features)
        else:
            self.log.debug("caps %s %s of %s not verified: not cached", caps.hash, caps.ver, jid)
        return jid, features, verified

    def _remember(self, key: tuple[str, str], features: frozenset[str]) -> None:
        self._cache[key] = features
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
