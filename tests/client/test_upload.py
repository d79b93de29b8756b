"""XEP-0363 HTTP file upload end to end: slixmpp's ``xep_0363`` plugin discovers the
service, requests a slot and PUTs; the file is fetched back byte for byte with the
headers docs/upload.md promises."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.live import Client, LiveServer, connect_slixmpp, disconnect


def upload_server(root: Path, **upload: Any) -> LiveServer:
    """A server whose upload URLs point at its plain HTTP listener (the default would
    be its HTTPS one, whose self-signed certificate slixmpp's upload would refuse)."""
    srv = LiveServer(root, upload={"max_file_size": 1 << 20, **upload})
    text = srv.config.read_text().replace(
        "[upload]\n", f'[upload]\nurl_base = "http://127.0.0.1:{srv.http_port}/upload"\n'
    )
    srv.config.write_text(text)
    return srv


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    s = upload_server(tmp_path_factory.mktemp("upload"))
    s.start()
    yield s
    assert s.stop() == 0, s.log()[-3000:]
    assert " ERROR descant" not in s.log(), s.log()[-3000:]


async def uploader(srv: LiveServer) -> Client:
    jid, pw = await srv.make_user("up")
    return await connect_slixmpp(srv, jid, pw, setup=lambda c: c.register_plugin("xep_0363"))


async def test_upload_a_picture_and_download_it_byte_for_byte(srv: LiveServer) -> None:
    picture = b"\x89PNG\r\n\x1a\n" + os.urandom(300_000)  # several write chunks
    alice = await uploader(srv)
    try:
        plugin: Any = alice.plugin["xep_0363"]
        url = await plugin.upload_file(
            "holiday photo.png", input_file=io.BytesIO(picture), timeout=15
        )
        assert plugin.max_file_size == 1 << 20  # read from the service's disco#info form
        assert str(plugin.upload_service) == "upload.localhost"
    finally:
        await disconnect(alice)
    assert url.startswith(f"http://127.0.0.1:{srv.http_port}/upload/")
    assert url.endswith("/holiday%20photo.png")
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 200
            assert await resp.read() == picture
            h = resp.headers
            assert h["Content-Type"] == "image/png"
            assert h["Content-Length"] == str(len(picture))
            assert h["X-Content-Type-Options"] == "nosniff"
            assert h["Content-Security-Policy"] == (
                "default-src 'none'; frame-ancestors 'none'; sandbox"
            )
            assert h["Access-Control-Allow-Origin"] == "*"
            assert h["Content-Disposition"].startswith("inline;")
        async with http.head(url) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Length"] == str(len(picture))
            assert await resp.read() == b""
        async with http.get(f"http://127.0.0.1:{srv.http_port}/metrics") as resp:
            metrics = await resp.text()
    assert re.search(r"^descant_uploads_total [1-9]", metrics, re.M), metrics[-2000:]
    assert re.search(r"^descant_upload_bytes_total (\d+)", metrics, re.M)
    files = list((srv.data_dir / "uploads").iterdir())
    assert sum(f.is_file() and f.read_bytes() == picture for f in files) == 1


@pytest.mark.parametrize(
    ("name", "ctype"),
    [
        ("page.html", "text/html"),
        ("drawing.svg", "image/svg+xml"),
        ("script.js", "text/javascript"),
        ("data.xml", "application/xml"),
        ("doc.pdf", "application/pdf"),
    ],
)
async def test_what_a_browser_could_run_is_an_attachment(
    srv: LiveServer, name: str, ctype: str
) -> None:
    alice = await uploader(srv)
    try:
        body = b"<script>alert(document.domain)</script>"
        url = await alice.plugin["xep_0363"].upload_file(
            name, content_type=ctype, input_file=io.BytesIO(body), timeout=15
        )
    finally:
        await disconnect(alice)
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200 and await resp.read() == body
        assert resp.headers["Content-Type"] == ctype
        assert resp.headers["Content-Disposition"].startswith("attachment;")
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_an_upload_is_never_loaded_as_a_script_or_style_sheet(srv: LiveServer) -> None:
    # Uploads share the web client's origin, whose CSP allows scripts from it: a page
    # there must not be able to run an uploaded .js (browsers say why they fetch).
    alice = await uploader(srv)
    try:
        body = b"alert(document.domain)"
        url = await alice.plugin["xep_0363"].upload_file(
            "evil.js", content_type="text/javascript", input_file=io.BytesIO(body), timeout=15
        )
    finally:
        await disconnect(alice)
    async with aiohttp.ClientSession() as http:
        for dest in ("script", "worker", "serviceworker", "style"):
            async with http.get(url, headers={"Sec-Fetch-Dest": dest}) as resp:
                assert resp.status == 403, dest
                assert await resp.read() != body
        for dest in ("document", "empty"):  # opened in a tab (a download), fetch()
            async with http.get(url, headers={"Sec-Fetch-Dest": dest}) as resp:
                assert resp.status == 200, dest
                assert await resp.read() == body


async def test_cors_preflight_allows_a_web_client_to_put(srv: LiveServer) -> None:
    url = f"http://127.0.0.1:{srv.http_port}/upload/{'a' * 24}/{'t' * 32}/x.png"
    headers = {
        "Origin": "https://webchat.example",
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type",
    }
    async with aiohttp.ClientSession() as http, http.options(url, headers=headers) as resp:
        assert resp.status in (200, 204)
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "PUT" in resp.headers["Access-Control-Allow-Methods"]
        assert "Content-Type" in resp.headers["Access-Control-Allow-Headers"]
