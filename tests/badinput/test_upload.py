"""XEP-0363 upload endpoints against bad input over raw HTTP: each refusal has its
status, nothing lands outside data_dir/uploads, and a refused PUT leaves the slot
usable (nothing lost) unless the slot itself is spent or expired."""

from __future__ import annotations

import asyncio
import os
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.badinput.raw import close_quietly, login, next_stanza, stanza_error
from tests.client.test_upload import upload_server
from tests.live import LiveServer, RawClient

UP = "urn:xmpp:http:upload:0"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    s = upload_server(tmp_path_factory.mktemp("upload-bad"), quota_per_account=3000)
    s.start()
    yield s
    assert s.stop() == 0, s.log()[-3000:]
    # (aiohttp logs the requests it refuses with a traceback: not a failure here.)
    assert " ERROR descant" not in s.log(), s.log()[-3000:]


@pytest.fixture
async def alice(srv: LiveServer) -> AsyncIterator[RawClient]:
    c, _ = await login(srv, "alice")
    yield c
    await close_quietly(c)


async def ask(
    c: RawClient, size: int, name: str = "f.txt", ctype: str = "text/plain"
) -> ET.Element:
    ident = os.urandom(4).hex()
    await c.send(
        f"<iq type='get' id='{ident}' to='upload.localhost'><request xmlns='{UP}' "
        f"filename='{name}' size='{size}' content-type='{ctype}'/></iq>"
    )
    while True:
        el = await next_stanza(c)
        if el.get("id") == ident:
            return el


async def slot(c: RawClient, size: int, **kw: Any) -> tuple[str, str]:
    el = await ask(c, size, **kw)
    put, get = el.find(f".//{{{UP}}}put"), el.find(f".//{{{UP}}}get")
    assert put is not None and get is not None, ET.tostring(el)
    return put.get("url", ""), get.get("url", "")


async def put(url: str, body: bytes, ctype: str = "text/plain", **headers: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.put(url, data=body, headers={"Content-Type": ctype, **headers}) as resp,
    ):
        return resp.status


async def get(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.read()


async def raw_http(srv: LiveServer, request: bytes, timeout: float = 10) -> bytes:
    """Send bytes as they are (no client normalizing paths) and read to the end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.http_port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


async def test_put_shorter_or_longer_than_announced_is_refused_and_slot_kept(
    srv: LiveServer, alice: RawClient
) -> None:
    put_url, get_url = await slot(alice, 10)
    assert await put(put_url, b"123456789") == 400
    assert await put(put_url, b"123456789AB") == 413
    assert (await get(get_url))[0] == 404  # nothing stored
    assert await put(put_url, b"1234567890") == 201
    assert await get(get_url) == (200, b"1234567890")


async def test_body_cut_short_is_discarded_and_slot_kept(srv: LiveServer, alice: RawClient) -> None:
    put_url, get_url = await slot(alice, 1000)
    path = urlsplit(put_url).path
    _, writer = await asyncio.open_connection("127.0.0.1", srv.http_port)
    writer.write(
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        "Content-Length: 1000\r\n\r\n".encode()
        + b"x" * 400
    )
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()  # the client goes away mid-body
    await asyncio.sleep(0.5)
    assert (await get(get_url))[0] == 404
    assert not list((srv.data_dir / "uploads" / "tmp").iterdir())  # the partial file is gone
    assert await put(put_url, b"y" * 1000) == 201
    assert await get(get_url) == (200, b"y" * 1000)


async def test_bytes_past_content_length_never_reach_the_file(
    srv: LiveServer, alice: RawClient
) -> None:
    put_url, get_url = await slot(alice, 5)
    head = (
        f"PUT {urlsplit(put_url).path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        "Content-Length: 5\r\n\r\nhello"
    ).encode()
    # In one packet, the HTTP parser refuses the whole: nothing stored, slot kept.
    answer = await raw_http(srv, head + b"EXTRA-BYTES-THAT-ARE-NOT-HTTP\r\n\r\n")
    assert status_of(answer) == 400
    assert (await get(get_url))[0] == 404
    # After the body, they are the next request on the connection, refused on its own.
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.http_port)
    try:
        writer.write(head)
        await writer.drain()
        assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 201")
        writer.write(b"MORE-BYTES-THAT-ARE-NOT-HTTP\r\n\r\n")
        rest = await asyncio.wait_for(reader.read(), 10)
        assert b" 400 " in rest
    finally:
        writer.close()
    assert await get(get_url) == (200, b"hello")


async def test_wrong_content_type_is_400_and_slot_kept(srv: LiveServer, alice: RawClient) -> None:
    put_url, get_url = await slot(alice, 4, ctype="image/png")
    assert await put(put_url, b"\x89PNG", ctype="text/html") == 400
    assert await put(put_url, b"\x89PNG", ctype="image/PNG") == 201  # case does not count
    status, _ = await get(get_url)
    assert status == 200


async def test_chunked_put_needs_a_content_length(srv: LiveServer, alice: RawClient) -> None:
    put_url, _ = await slot(alice, 3)
    path = urlsplit(put_url).path
    answer = await raw_http(
        srv,
        f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n".encode(),
    )
    assert status_of(answer) == 411


async def test_reused_slot_is_409(srv: LiveServer, alice: RawClient) -> None:
    put_url, get_url = await slot(alice, 3)
    assert await put(put_url, b"one") == 201
    assert await put(put_url, b"two") == 409
    assert await get(get_url) == (200, b"one")


async def test_wrong_token_and_unknown_slot(srv: LiveServer, alice: RawClient) -> None:
    put_url, _ = await slot(alice, 3)
    base, slot_id, token, name = put_url.rsplit("/", 3)
    assert await put(f"{base}/{slot_id}/{'A' * len(token)}/{name}", b"abc") == 403
    assert await put(f"{base}/{'B' * 24}/{token}/{name}", b"abc") == 404
    assert await put(f"{base}/{slot_id}/{token}/other.txt", b"abc") == 404
    assert await put(put_url, b"abc") == 201


async def test_get_of_a_slot_not_yet_uploaded_is_404(srv: LiveServer, alice: RawClient) -> None:
    _, get_url = await slot(alice, 3)
    assert (await get(get_url))[0] == 404


@pytest.mark.parametrize(
    "path",
    [
        "/upload/../descant.toml",
        "/upload/../../descant.toml",
        "/upload/%2e%2e/%2e%2e/descant.toml",
        "/upload/%2e%2e%2f%2e%2e%2fdescant.toml/x",
        "/upload/..%2f..%2fdata%2fdescant.db/descant.db",
        "/upload/xxxxxxxxxxxxxxxxxxxxxxxx/..%2f..%2fdescant.toml",
        "/upload/..%5c..%5cdescant.toml/x",
        "/upload//etc/passwd",
    ],
)
async def test_dot_dot_in_paths_never_reaches_a_file(srv: LiveServer, path: str) -> None:
    answer = await raw_http(
        srv, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert status_of(answer) in (400, 404), answer[:200]
    assert b"[server]" not in answer and b"root:" not in answer and b"SQLite" not in answer


async def test_huge_headers_are_refused_and_the_server_goes_on(srv: LiveServer) -> None:
    big = "a" * 100_000
    answer = await raw_http(
        srv, f"GET /upload/x/y HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n".encode()
    )
    assert status_of(answer) in (400, 431)
    many = "".join(f"X-H{i}: {i}\r\n" for i in range(20_000))
    answer = await raw_http(srv, f"GET /upload/x/y HTTP/1.1\r\nHost: x\r\n{many}\r\n".encode())
    assert status_of(answer) in (400, 431)
    assert (await get(f"http://127.0.0.1:{srv.http_port}/upload/{'c' * 24}/f"))[0] == 404
    # A client's malformed request is no reason for a traceback in the operator's log.
    await raw_http(srv, b"GARBAGE\x00 / HTTP/9\r\n\r\n")
    assert "Traceback" not in srv.log() and "Error handling request" not in srv.log()


async def test_too_large_and_over_quota_are_refused_in_the_slot_request(
    srv: LiveServer, alice: RawClient
) -> None:
    el = await ask(alice, (1 << 20) + 1)
    assert stanza_error(el) == "not-acceptable"
    assert el.findtext(f".//{{{UP}}}file-too-large/{{{UP}}}max-file-size") == str(1 << 20)
    await slot(alice, 2000)
    el = await ask(alice, 1001)  # quota_per_account = 3000, 2000 reserved
    assert stanza_error(el) == "resource-constraint"
    await slot(alice, 1000)  # what fits still fits


async def test_account_of_another_domain_is_not_allowed(srv: LiveServer) -> None:
    jid, pw = await srv.make_user("eve", domain="example.org")
    c = await RawClient.open(srv.port)
    try:
        await c.login(jid, pw)
        el = await ask(c, 10)
        assert stanza_error(el) == "not-allowed"
    finally:
        await close_quietly(c)


async def test_expired_slot_is_410(tmp_path: Path) -> None:
    s = upload_server(tmp_path, slot_timeout=1)
    s.start()
    try:
        c, _ = await login(s, "late")
        try:
            put_url, get_url = await slot(c, 3)
            await asyncio.sleep(1.5)
            assert await put(put_url, b"abc") == 410
            assert (await get(get_url))[0] == 404
        finally:
            await close_quietly(c)
    finally:
        assert s.stop() == 0
