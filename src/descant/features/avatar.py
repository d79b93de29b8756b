"""Avatars: User Avatar in PEP (XEP-0084) and vCard avatars (XEP-0153) kept as one,
the conversion XEP-0398 describes, and the avatar's hash in presence.

- A client publishes ``urn:xmpp:avatar:metadata`` (after the data): the image goes
  into the account's vCard PHOTO, for clients that read vCards.
- A client stores a vCard with a PHOTO: the image is published to
  ``urn:xmpp:avatar:data`` and described in ``urn:xmpp:avatar:metadata``, for
  clients that follow PEP.
- The account's available presence carries ``<x xmlns='vcard-temp:x:update'>`` with
  the image's SHA-1 (XEP-0153 §4.1; XEP-0398 §5), unless the client put a
  ``<photo/>`` there itself. Hashes are cached while the account is online.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import xml.etree.ElementTree as ET

from descant.errors import StanzaError
from descant.features.pubsub.config import NodeConfig
from descant.features.pubsub.pep import PEPModule
from descant.features.pubsub.service import Published
from descant.features.vcard import NS as VCARD
from descant.features.vcard import TAG as VCARD_TAG
from descant.features.vcard import VCardModule
from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.routing.sessions import Session
from descant.xml.parser import parse_element

DATA = "urn:xmpp:avatar:data"
METADATA = "urn:xmpp:avatar:metadata"
UPDATE = "vcard-temp:x:update"
CONVERSION = "urn:xmpp:pep-vcard-conversion:0"


class AvatarModule(Module):
    name = "avatar"

    def load(self) -> None:
        self.host.add_account_feature(CONVERSION)
        self.hashes: dict[str, str] = {}  # localpart → SHA-1 hex, "" for none
        self.hook(f"pep-published/{METADATA}", self.on_metadata)
        self.hook("vcard-set", self.on_vcard)
        self.hook("pre-presence", self.on_presence, priority=20)
        self.hook("resource-unbound", self.on_unbound)

    @property
    def pep(self) -> PEPModule:
        return self.require(PEPModule)

    @property
    def vcard(self) -> VCardModule:
        return self.require(VCardModule)

    # -- PEP → vCard ------------------------------------------------------------------

    async def on_metadata(self, change: tuple[str, Published]) -> None:
        """The conversion never fails the client's publication, which has been stored
        and notified already: what cannot be converted is logged."""
        try:
            await self._to_vcard(*change)
        except StanzaError as exc:
            self.log.info("avatar of %s not put in the vCard: %s", change[0], exc)

    async def _to_vcard(self, user: str, published: Published) -> None:
        infos = published.element if published.element is not None else ET.Element("none")
        # XEP-0398 §3: the image stored here, not one at an external URL.
        info = next((i for i in infos.iter(f"{{{METADATA}}}info") if not i.get("url")), None)
        vcard = await self.vcard.stored(user) or ET.Element(VCARD_TAG)
        for photo in vcard.findall(f"{{{VCARD}}}PHOTO"):
            vcard.remove(photo)
        if info is None:
            self.hashes[user] = ""  # avatar switched off (XEP-0084 §4.5)
            await self.vcard.store(user, vcard)
            return
        image_id = info.get("id", "")
        node = await self.pep.service(user).node(DATA)
        if (
            node is None
            or node.config.access_model != "open"
            or published.node.config.access_model != "open"
        ):
            # A vCard is anyone's to read: only a public avatar goes there (XEP-0398 §6).
            self.hashes[user] = ""
            await self.vcard.store(user, vcard)
            return
        data = await self._data(user, image_id)
        if data is None or hashlib.sha1(data).hexdigest() != image_id:
            return  # an image never published, or not the one named: nothing to convert
        photo = ET.SubElement(vcard, f"{{{VCARD}}}PHOTO")
        ET.SubElement(photo, f"{{{VCARD}}}TYPE").text = info.get("type", "image/png")
        ET.SubElement(photo, f"{{{VCARD}}}BINVAL").text = base64.b64encode(data).decode()
        await self.vcard.store(user, vcard)
        self.hashes[user] = hashlib.sha1(data).hexdigest()

    async def _data(self, user: str, image_id: str) -> bytes | None:
        for item in await self.pep.own_items(user, DATA, [image_id]) or []:
            if item.payload:
                try:
                    return base64.b64decode(parse_element(item.payload).text or "", validate=False)
                except (binascii.Error, ValueError):
                    return None
        return None

    # -- vCard → PEP --------------------------------------------------------------------

    async def on_vcard(self, change: tuple[str, ET.Element, ET.Element | None]) -> None:
        """Likewise the vCard is stored whatever becomes of its conversion (a photo
        larger than ``pubsub.max_payload`` stays in the vCard only)."""
        try:
            await self._to_pep(*change)
        except StanzaError as exc:
            self.log.info("vCard photo of %s not published to PEP: %s", change[0], exc)

    async def _to_pep(self, user: str, vcard: ET.Element, before: ET.Element | None) -> None:
        photo = vcard.find(f"{{{VCARD}}}PHOTO")
        binval = photo.findtext(f"{{{VCARD}}}BINVAL") if photo is not None else None
        self.hashes[user] = _photo_hash(vcard)  # what vCard readers see, whatever follows
        config = NodeConfig(
            access_model="open",
            max_items=1,
            send_last_published_item="on_sub_and_presence",
        )
        if not binval:
            if before is not None and _photo_hash(before):
                # The client took the photo out of the vCard: the avatar goes (XEP-0084
                # §4.5). A vCard that never had one (the avatar may be in PEP only, not
                # public) changes nothing there.
                empty = ET.Element(f"{{{METADATA}}}metadata")
                await self.pep.publish_own(user, METADATA, "current", empty, config)
            return
        try:
            data = base64.b64decode("".join(binval.split()), validate=True)
        except (binascii.Error, ValueError):
            return  # not base64: the vCard keeps it, no PEP avatar is made
        sha1 = self.hashes[user]  # of these very bytes: they decoded strictly
        type_ = (photo.findtext(f"{{{VCARD}}}TYPE") if photo is not None else None) or "image/png"
        payload = ET.Element(f"{{{DATA}}}data")
        payload.text = base64.b64encode(data).decode()
        await self.pep.publish_own(user, DATA, sha1, payload, config)
        metadata = ET.Element(f"{{{METADATA}}}metadata")
        ET.SubElement(
            metadata, f"{{{METADATA}}}info", {"id": sha1, "bytes": str(len(data)), "type": type_}
        )
        await self.pep.publish_own(user, METADATA, sha1, metadata, config)

    # -- the hash in presence --------------------------------------------------------------

    async def on_presence(self, ev: StanzaEvent) -> None:
        stanza = ev.stanza
        if ev.origin is None or stanza.get("type") is not None:
            return
        update = stanza.find(f"{{{UPDATE}}}x")
        if update is not None and update.find(f"{{{UPDATE}}}photo") is not None:
            return  # the client says itself (XEP-0153 §4.1)
        user = ev.origin.jid.local
        sha1 = self.hashes.get(user)
        if sha1 is None:
            sha1 = await self.hash_of(user)
        if update is None:
            update = ET.SubElement(stanza, f"{{{UPDATE}}}x")
        ET.SubElement(update, f"{{{UPDATE}}}photo").text = sha1 or None

    async def hash_of(self, user: str) -> str:
        """The SHA-1 of the vCard's photo (XEP-0153 §4.1); "" for none. PEP avatars
        that are public are in the vCard too; others are not announced here."""
        known = self.hashes.get(user)
        if known is None:
            vcard = await self.vcard.stored(user)
            known = _photo_hash(vcard) if vcard is not None else ""
            # Kept only for a user still online after the wait: on_unbound, which forgets
            # it, may have run meanwhile (else the entry would stay until the next logout).
            if self.host.sessions.of_user(user):
                self.hashes[user] = known
        return known

    async def on_unbound(self, session: Session) -> None:
        if not self.host.sessions.of_user(session.jid.local):
            self.hashes.pop(session.jid.local, None)


def _photo_hash(vcard: ET.Element) -> str:
    binval = vcard.findtext(f"{{{VCARD}}}PHOTO/{{{VCARD}}}BINVAL")
    if not binval:
        return ""
    try:
        return hashlib.sha1(base64.b64decode("".join(binval.split()))).hexdigest()
    except (binascii.Error, ValueError):
        return ""
