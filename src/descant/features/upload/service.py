"""HTTP file upload (XEP-0363 1.1): the service at ``<upload.domain_prefix>.<domain>``.

It answers disco (identity ``store/file``, the feature, and the §2 form with
``max-file-size``) and slot requests (§4) from accounts of its domain:

- the name a client gives is kept only as the last segment of the URLs
  (:func:`safe_filename`); the file on disk is named by the random slot id;
- a size above ``upload.max_file_size`` is ``<not-acceptable/>`` with
  ``<file-too-large/>`` naming the limit; files and pending slots beyond
  ``upload.quota_per_account``, or more than ``upload.max_pending_slots``
  unused slots, are ``<resource-constraint/>``; anyone else is ``<not-allowed/>``.

Pending slots reserve their size in the quota until used or expired. The first
upload service's module also owns the background expiry (every
:data:`EXPIRE_EVERY` seconds): stored files older than ``upload.expire_after``,
slots unused :data:`PUT_GRACE` seconds after they stopped being valid, and files
left without a row (an account deleted, a crash between two steps).
"""

from __future__ import annotations

import asyncio
import secrets
import unicodedata
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

from descant import forms
from descant.config import parse_duration
from descant.errors import StanzaError
from descant.features.upload.files import FileStore, new_slot_id
from descant.features.upload.http import UploadHTTP, valid_content_type
from descant.http.urls import public_base
from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.stanza import error_reply, iq_result
from descant.storage.api import Upload
from descant.xml import ns

if TYPE_CHECKING:
    from descant.config import Config

UPLOAD = "urn:xmpp:http:upload:0"
EXPIRE_EVERY = 900.0
EXPIRE_BATCH = 500
# How long after its slot expired a PUT that began in time may still finish; after it
# the slot's row (and any partial file) is removed.
PUT_GRACE = 3600.0
MAX_FILENAME = 128
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def safe_filename(name: str) -> str:
    """The name shown in a slot's URLs: the last path segment of what the client gave,
    without control or format characters, at most MAX_FILENAME characters; "file" when
    nothing is left. It is percent-encoded into URLs and never used as a path."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] not in "CZ" or c == " ")
    name = name.strip(" .")[:MAX_FILENAME].strip(" ")
    return name or "file"


def default_url_base(cfg: Config, domain: str) -> str:
    """Where clients reach ``/upload`` when ``upload.url_base`` is empty: under the
    listener's public base URL (http/urls.py); "" with no listener."""
    if cfg.upload.url_base:
        return cfg.upload.url_base.rstrip("/")
    base = public_base(cfg, domain)
    return f"{base}/upload" if base else ""


class UploadModule(Module):
    name = "upload"

    files: FileStore
    http: UploadHTTP
    sweeper = False  # set on one service's module: it runs the expiry

    def load(self) -> None:
        cfg = self.server.config.upload
        self.cfg = cfg
        # The account domain this service serves: upload.example.org → example.org.
        self.parent = self.host.domain.removeprefix(cfg.domain_prefix + ".")
        self.url_base = default_url_base(self.server.config, self.parent)
        expire = parse_duration(cfg.expire_after)
        self.expire_after = None if expire is None else timedelta(seconds=expire)
        # Serializes quota checks with slot creation, so two requests at once cannot
        # both fit under the quota the one left.
        self._slot_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self.host.add_identity("store", "file", "HTTP File Upload")
        self.host.add_feature(ns.DISCO_INFO, ns.DISCO_ITEMS, UPLOAD)
        self.hook_iq("get", "host", f"{ns.DISCO_INFO}:query", self.disco_info)
        self.hook_iq("get", "host", f"{ns.DISCO_ITEMS}:query", self.disco_items)
        self.hook_iq("get", "host", f"{UPLOAD}:request", self.request)

    async def start(self) -> None:
        if self.sweeper:
            await self.files.start()
            self.tasks.spawn(self._expire_loop())

    async def stop(self) -> None:
        self._stopping.set()
        # The expiry task uses the file threads: it ends (or is cancelled) before they go.
        await self.tasks.close(1.0)
        self.files.close()

    # -- disco -------------------------------------------------------------------------

    async def disco_info(self, ev: StanzaEvent) -> bool:
        if ev.stanza[0].get("node"):
            return await self.answer(ev, error_reply(ev.stanza, StanzaError("item-not-found")))
        query = self.host.disco_info()
        fields: list[forms.Field] = [("max-file-size", "", "", [str(self.cfg.max_file_size)])]
        query.append(forms.build("result", UPLOAD, fields))
        return await self.answer(ev, iq_result(ev.stanza, query))

    async def disco_items(self, ev: StanzaEvent) -> bool:
        query = ET.Element("{%s}query" % ns.DISCO_ITEMS)
        if ev.stanza[0].get("node"):
            query.set("node", ev.stanza[0].get("node", ""))
        return await self.answer(ev, iq_result(ev.stanza, query))

    # -- slot requests (§4) ------------------------------------------------------------

    async def request(self, ev: StanzaEvent) -> bool:
        try:
            slot = await self._slot(ev)
        except StanzaError as err:
            return await self.answer(ev, error_reply(ev.stanza, err))
        return await self.answer(ev, iq_result(ev.stanza, slot))

    async def _slot(self, ev: StanzaEvent) -> ET.Element:
        who = ev.frm
        if not who.local or who.domain != self.parent:
            raise StanzaError("not-allowed", f"only accounts of {self.parent} may upload here")
        req = ev.stanza[0]
        filename, size_s = req.get("filename", ""), req.get("size", "")
        ctype = req.get("content-type", "").strip()
        if not filename:
            raise StanzaError("bad-request", "a filename is required")
        if not (size_s.isascii() and size_s.isdigit()) or len(size_s) > 18:
            raise StanzaError("bad-request", "size must be a number of bytes")
        if ctype and not valid_content_type(ctype):
            raise StanzaError("bad-request", "content-type is not a media type")
        size, limit = int(size_s), self.cfg.max_file_size
        if size > limit:
            too_large = ET.Element("{%s}file-too-large" % UPLOAD)
            ET.SubElement(too_large, "{%s}max-file-size" % UPLOAD).text = str(limit)
            raise StanzaError("not-acceptable", f"the largest file is {limit} bytes", app=too_large)
        now = datetime.now(UTC)
        up = Upload(
            id=new_slot_id(),
            token=secrets.token_urlsafe(24),
            host=who.domain,
            username=who.local,
            filename=safe_filename(filename),
            size=size,
            content_type=ctype,
            created=now,
        )
        pending_since = now - timedelta(seconds=self.cfg.slot_timeout)
        async with self._slot_lock:
            used, pending = await self.host.storage.uploads.usage(
                who.domain, who.local, pending_since
            )
            if pending >= self.cfg.max_pending_slots:
                raise StanzaError(
                    "resource-constraint", f"{pending} slots are waiting for their upload"
                )
            if used + size > self.cfg.quota_per_account:
                free = max(0, self.cfg.quota_per_account - used)
                raise StanzaError("resource-constraint", f"quota reached: {free} bytes left")
            await self.host.storage.uploads.add(up)
        name = quote(up.filename, safe="")
        slot = ET.Element("{%s}slot" % UPLOAD)
        ET.SubElement(
            slot, "{%s}put" % UPLOAD, {"url": f"{self.url_base}/{up.id}/{up.token}/{name}"}
        )
        ET.SubElement(slot, "{%s}get" % UPLOAD, {"url": f"{self.url_base}/{up.id}/{name}"})
        return slot

    # -- expiry ------------------------------------------------------------------------

    async def expire_now(self) -> int:
        """Remove expired files and dead slots, then files without a row; how many."""
        now = datetime.now(UTC)
        stored_before = EPOCH if self.expire_after is None else now - self.expire_after
        pending_before = now - timedelta(seconds=self.cfg.slot_timeout + PUT_GRACE)
        uploads, removed = self.host.storage.uploads, 0
        while True:
            ids = await uploads.expired(stored_before, pending_before, EXPIRE_BATCH)
            ids = [i for i in ids if i not in self.http.active]
            if not ids:
                break
            # Rows first: a file without a row is never served, and the sweep below
            # catches it if removing it fails now.
            await uploads.delete(ids)
            await self.files.remove(ids)
            removed += len(ids)
            await asyncio.sleep(0.01)  # between batches, room for everyone else
        async for batch in self.files.older_than(self.cfg.slot_timeout + PUT_GRACE, EXPIRE_BATCH):
            known = await uploads.existing(batch)
            orphans = [i for i in batch if i not in known and i not in self.http.active]
            await self.files.remove(orphans)
            removed += len(orphans)
        if removed:
            self.log.info("upload: %d expired or orphaned files and slots removed", removed)
        return removed

    async def _expire_loop(self) -> None:
        while True:
            try:
                await self.expire_now()
            except Exception:
                self.log.exception("upload expiry failed")
            try:
                await asyncio.wait_for(self._stopping.wait(), EXPIRE_EVERY)
                return
            except TimeoutError:
                pass
