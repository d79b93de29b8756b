"""The HTTP side of file upload (XEP-0363 §5): PUT into a slot, GET what was put.

Routes on the HTTP listener (``server.http``), for every upload service at once
(slot ids are unique across them):

- ``PUT /upload/<id>/<token>/<name>``: the slot's PUT URL. ``<token>`` is a
  secret given only in the slot answer, so the GET URL, once shared, never lets
  anyone write. The body must have exactly the announced size (a
  ``Content-Length``; chunked bodies are 411) and the announced content type.
  It is streamed to a temporary file in chunks written on the file store's
  threads, never held whole in memory, and renamed into place when complete.
- ``GET``/``HEAD /upload/<id>/<name>``: the file, with its stored content type,
  ``X-Content-Type-Options: nosniff``, ``Content-Security-Policy: default-src
  'none'; sandbox`` and ``Content-Disposition: attachment`` for every type not
  on a short list of types browsers only display (:data:`INLINE_TYPES`). A
  browser's request for it as a script, worker or style sheet
  (``Sec-Fetch-Dest``) is refused: uploads may share the web client's origin,
  whose CSP allows scripts from that origin.
- ``OPTIONS`` on both: the CORS preflight of web clients.

Answers: 404 for an unknown slot or file (or a name that is not the slot's),
403 for a wrong token, 409 for a slot already used (or a PUT of it under way),
410 for an expired slot, 411 without ``Content-Length``, 413 for a body larger
than announced, 400 for a smaller one or another content type, 503 past
:data:`MAX_PUTS` uploads at once.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

from aiohttp import web

from descant.config import parse_duration
from descant.features.upload.files import SLOT_ID, FileStore

if TYPE_CHECKING:
    from descant.server import Server
    from descant.storage.api import Upload

log = logging.getLogger("descant.upload")

# Uploads being received at once, over all services; past it a PUT is 503 (each holds
# a file handle and up to WRITE_CHUNK bytes of buffer).
MAX_PUTS = 100
# Bytes gathered from the network before one write on a file store thread.
WRITE_CHUNK = 256 * 1024
# A PUT whose client sends nothing for this long is abandoned (and its file deleted).
READ_TIMEOUT = 60.0

# Media types (without parameters) served inline: ones a browser shows but never runs.
# Anything else — HTML, SVG, XML, scripts, PDF (viewers run scripts), unknown types —
# comes as an attachment, so a page uploaded here cannot run in this origin.
INLINE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "text/plain"}
)
INLINE_PREFIXES = ("audio/", "video/")

_TOKEN = r"[a-z0-9!#$&^_.+-]{1,64}"
# A media type with optional parameters (RFC 9110 §8.3.1), at most 255 characters.
CONTENT_TYPE = re.compile(
    rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|\"[^\"\\\x00-\x1f\x7f]*\"))*",
    re.IGNORECASE,
)
FALLBACK_TYPE = "application/octet-stream"
# What browsers fetch to run or apply (Sec-Fetch-Dest): never an uploaded file. The web
# client on this origin allows scripts and styles from it; an uploaded .js must not be one.
ACTIVE_DESTINATIONS = frozenset(
    {
        "script",
        "worker",
        "sharedworker",
        "serviceworker",
        "audioworklet",
        "paintworklet",
        "style",
        "xslt",
    }
)

CORS = {"Access-Control-Allow-Origin": "*"}
PREFLIGHT = {
    **CORS,
    "Access-Control-Allow-Methods": "GET, HEAD, PUT, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
}
SECURITY = {
    "X-Content-Type-Options": "nosniff",
    # sandbox: a file opened in a tab runs in an origin of its own, not this one.
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; sandbox",
    "Referrer-Policy": "no-referrer",
}


def valid_content_type(value: str) -> bool:
    return len(value) <= 255 and CONTENT_TYPE.fullmatch(value) is not None


def normalize_type(value: str) -> str:
    """For comparing a PUT's Content-Type with the announced one: case and spaces
    around parameters do not count."""
    return ";".join(part.strip() for part in value.lower().split(";"))


def inline(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in INLINE_TYPES or media.startswith(INLINE_PREFIXES)


def disposition(content_type: str, filename: str) -> str:
    kind = "inline" if inline(content_type) else "attachment"
    ascii_name = "".join(
        c if (c.isascii() and c.isalnum()) or c in "._-" else "_" for c in filename
    )
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _error(status: int, reason: str) -> web.Response:
    return web.Response(status=status, text=reason + "\n", headers=CORS)


class UploadHTTP:
    """The PUT/GET endpoints; owns the uploads under way (at most MAX_PUTS)."""

    def __init__(self, server: Server, files: FileStore) -> None:
        self.server = server
        self.files = files
        cfg = server.config.upload
        self.slot_timeout = cfg.slot_timeout
        expire = parse_duration(cfg.expire_after)
        self.expire_after = None if expire is None else timedelta(seconds=expire)
        self.active: set[str] = set()

    def install(self) -> None:
        http = self.server.http
        http.add_route("*", "/upload/{id}/{name}", self.file)
        http.add_route("*", "/upload/{id}/{token}/{name}", self.slot)

    # -- GET / HEAD ----------------------------------------------------------------------

    async def file(self, request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=PREFLIGHT)
        if request.method not in ("GET", "HEAD"):
            return _error(405, "method not allowed")
        if request.headers.get("Sec-Fetch-Dest", "").lower() in ACTIVE_DESTINATIONS:
            return _error(403, "uploaded files are not scripts or style sheets")
        up = await self._find(request)
        if up is None or not up.stored:
            return _error(404, "not found")
        if self.expire_after is not None and up.created < datetime.now(UTC) - self.expire_after:
            return _error(404, "not found")  # expired, not yet swept
        ctype = up.content_type if valid_content_type(up.content_type) else FALLBACK_TYPE
        headers = {
            **CORS,
            **SECURITY,
            "Content-Type": ctype,
            "Content-Disposition": disposition(ctype, up.filename),
            # Files never change under a URL; expiry removes them.
            "Cache-Control": "private, max-age=86400, immutable",
        }
        return web.FileResponse(self.files.path(up.id), chunk_size=WRITE_CHUNK, headers=headers)

    async def _find(self, request: web.Request) -> Upload | None:
        slot_id = request.match_info["id"]
        if not SLOT_ID.fullmatch(slot_id):
            return None
        up = await self.server.storage.uploads.get(slot_id)
        # The name must be the slot's too: a URL is the one the service gave out.
        if up is None or request.match_info["name"] != up.filename:
            return None
        return up

    # -- PUT -----------------------------------------------------------------------------

    async def slot(self, request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=PREFLIGHT)
        up = await self._find(request)
        if up is None:
            return _error(404, "no such slot")
        if request.method != "PUT":
            return _error(405, "method not allowed")
        if not hmac.compare_digest(request.match_info["token"], up.token):
            return _error(403, "wrong token")
        if up.stored or up.id in self.active:
            return _error(409, "slot already used")
        if up.created < datetime.now(UTC) - timedelta(seconds=self.slot_timeout):
            return _error(410, "slot expired")
        if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            return _error(411, "Content-Length required")
        length = request.content_length
        if length is None:
            return _error(411, "Content-Length required")
        if length > up.size:
            return _error(413, f"the slot is for {up.size} bytes")
        if length < up.size:
            return _error(400, f"the slot is for {up.size} bytes")
        given = request.headers.get("Content-Type", "")
        if up.content_type:
            if normalize_type(given) != normalize_type(up.content_type):
                return _error(400, f"the slot is for Content-Type {up.content_type}")
            ctype = up.content_type
        else:
            ctype = given if valid_content_type(given) else FALLBACK_TYPE
        if len(self.active) >= MAX_PUTS:
            return web.Response(status=503, text="busy\n", headers={**CORS, "Retry-After": "10"})
        self.active.add(up.id)
        try:
            return await self._receive(request, up, ctype)
        finally:
            self.active.discard(up.id)

    async def _receive(self, request: web.Request, up: Upload, ctype: str) -> web.Response:
        try:
            f = await self.files.create(up.id)
        except FileExistsError:  # a PUT of the slot in another process
            return _error(409, "slot already used")
        received = 0
        done = False
        buf = bytearray()
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(request.content.readany(), READ_TIMEOUT)
                except TimeoutError:
                    log.info("upload %s: no data for %g s, abandoned", up.id, READ_TIMEOUT)
                    return _error(408, "too slow")
                except Exception as exc:  # the client went away mid-body
                    log.info("upload %s: body cut short (%s)", up.id, exc)
                    return _error(400, "incomplete body")
                if not chunk:
                    break
                received += len(chunk)
                # The HTTP parser stops at Content-Length, so this is a second guard.
                if received > up.size:
                    return _error(413, f"the slot is for {up.size} bytes")
                buf += chunk
                if len(buf) >= WRITE_CHUNK:
                    await self.files.write(f, bytes(buf))
                    buf.clear()
            if received != up.size:
                return _error(400, f"got {received} of {up.size} bytes")
            if buf:
                await self.files.write(f, bytes(buf))
            await self.files.commit(f, up.id)
            done = True
        finally:
            if not done:
                await self.files.discard(f, up.id)
        if not await self.server.storage.uploads.mark_stored(up.id, ctype):
            # Expired (or its account deleted) while the body came in.
            await self.files.remove([up.id])
            return _error(410, "slot expired")
        log.info("upload %s: %d bytes stored for %s@%s", up.id, up.size, up.username, up.host)
        self.server.metrics.count("uploads")
        self.server.metrics.count("upload_bytes", up.size)
        return web.Response(status=201, headers=CORS)
