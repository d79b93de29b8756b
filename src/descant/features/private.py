"""Private XML Storage (XEP-0049): each account keeps XML documents only it can
read, one per namespace (the child element's qualified name is the key).

A module may own a namespace's storage (bookmarks.py keeps ``storage:bookmarks``
in PEP, XEP-0411): ``private-get/<ns>:<tag>`` returns the element, and
``private-set/<ns>:<tag>`` takes it (non-None: stored there). Documents are kept
in the key-value store otherwise.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from descant.errors import StanzaError
from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.stanza import error_reply, iq_result
from descant.xml.parser import parse_element
from descant.xml.serialize import serialize

NS = "jabber:iq:private"
_STORE = "private"
# Namespaces XEP-0049 §3 reserves: storing under them is refused.
_RESERVED = frozenset({"jabber:client", "jabber:server", "jabber:iq:private", ""})


class PrivateModule(Module):
    name = "private"
    max_size = 65536  # bytes of XML one document may take

    def load(self) -> None:
        self.host.add_account_feature(NS)
        for type_ in ("get", "set"):
            self.hook_iq(type_, "self", f"{NS}:query", self.on_private)
            self.hook_iq(type_, "bare", f"{NS}:query", self.on_other)

    async def on_other(self, ev: StanzaEvent) -> bool:
        """Nobody reads or writes another account's private data (XEP-0049 §3)."""
        return await self.answer(ev, error_reply(ev.stanza, StanzaError("forbidden")))

    async def on_private(self, ev: StanzaEvent) -> bool:
        """A get names one document; a set stores each child (one per namespace)."""
        query = ev.stanza[0]
        get = ev.stanza.get("type") == "get"
        try:
            if not len(query) or (get and len(query) != 1):
                raise StanzaError("not-acceptable", "a get names one element, a set at least one")
            keys = [_key(doc) for doc in query]
            if get:
                out = ET.Element(f"{{{NS}}}query")
                out.append(await self.get(ev.to.local, keys[0], query[0]))
                return await self.answer(ev, iq_result(ev.stanza, out))
            if any(len(serialize(doc)) > self.max_size for doc in query):
                raise StanzaError("not-acceptable", "the document is too large")
            await self._room_for(ev.to.local, keys)
            for key, doc in zip(keys, query, strict=True):
                await self.set(ev.to.local, key, doc)
        except StanzaError as exc:
            return await self.answer(ev, error_reply(ev.stanza, exc))
        return await self.answer(ev, iq_result(ev.stanza))

    async def _room_for(self, user: str, keys: list[str]) -> None:
        """``limits.max_private_documents`` per account: new namespaces beyond it are
        <resource-constraint/>; replacing a stored one always works."""
        limit = self.server.config.limits.max_private_documents
        kv = self.host.storage.keyval
        new = [
            k
            for k in set(keys)
            if not self.host.events.has(f"private-set/{k}")  # kept elsewhere (bookmarks)
            and await kv.get(self.host.domain, user, _STORE, k) is None
        ]
        if new and await kv.count(self.host.domain, user, _STORE) + len(new) > limit:
            self.log.info("%s: private storage full (%d documents)", user, limit)
            raise StanzaError("resource-constraint", f"at most {limit} private documents")

    async def get(self, user: str, key: str, empty: ET.Element) -> ET.Element:
        owned = await self.host.events.fire(f"private-get/{key}", user)
        if owned is not None:
            return owned  # type: ignore[no-any-return]
        stored = await self.host.storage.keyval.get(self.host.domain, user, _STORE, key)
        return parse_element(stored) if stored is not None else ET.Element(empty.tag)

    async def set(self, user: str, key: str, doc: ET.Element) -> None:
        if await self.host.events.fire(f"private-set/{key}", (user, doc)) is not None:
            return
        await self.host.storage.keyval.set(self.host.domain, user, _STORE, key, serialize(doc))


def _key(doc: ET.Element) -> str:
    """``<ns>:<tag>``, the document's key; reserved namespaces refused (XEP-0049 §3)."""
    ns, _, tag = doc.tag[1:].partition("}") if doc.tag.startswith("{") else ("", "", doc.tag)
    if ns in _RESERVED:
        raise StanzaError("not-acceptable", f"namespace {ns!r} cannot be stored")
    return f"{ns}:{tag}"
