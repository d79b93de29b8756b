"""HTTP file upload (XEP-0363 1.1): discovery and slot requests, in process.

The HTTP side (PUT, GET, headers) is covered against a real server in
tests/client/test_upload.py and tests/badinput/test_upload.py.
"""

from __future__ import annotations

import os
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from descant.config import UploadConfig
from descant.features.upload.service import UploadModule, safe_filename
from descant.storage.api import Upload
from tests.harness import Harness, error_condition

UP = "urn:xmpp:http:upload:0"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
DATA = "jabber:x:data"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    cfg = UploadConfig(max_file_size=1000, quota_per_account=2500, max_pending_slots=3)
    harness = await Harness.create(tmp_path, upload=cfg)
    yield harness
    await harness.stop()


def request(size: int | str = 10, filename: str = "cat.png", ctype: str = "image/png") -> str:
    attrs = f"filename='{filename}' size='{size}'"
    if ctype:
        attrs += f" content-type='{ctype}'"
    return f"<iq type='get' to='upload.localhost'><request xmlns='{UP}' {attrs}/></iq>"


async def slot(h: Harness, who: str = "alice@localhost/a", **kw: object) -> ET.Element:
    session = await h.bind(who)
    return await h.iq(session, request(**kw))  # type: ignore[arg-type]


def urls(answer: ET.Element) -> tuple[str, str]:
    s = answer.find(f"{{{UP}}}slot")
    assert s is not None, ET.tostring(answer)
    put, get = s.find(f"{{{UP}}}put"), s.find(f"{{{UP}}}get")
    assert put is not None and get is not None
    return put.get("url", ""), get.get("url", "")


async def test_service_is_listed_in_the_domain_disco_items(h: Harness) -> None:
    alice = await h.bind("alice@localhost/a")
    got = await h.iq(alice, f"<iq type='get' to='localhost'><query xmlns='{DISCO_ITEMS}'/></iq>")
    jids = [i.get("jid") for i in got.iter(f"{{{DISCO_ITEMS}}}item")]
    assert "upload.localhost" in jids


async def test_disco_info_has_identity_feature_and_max_size_form(h: Harness) -> None:
    """XEP-0363 §2: store/file, the namespace, and max-file-size in a result form."""
    alice = await h.bind("alice@localhost/a")
    got = await h.iq(
        alice, f"<iq type='get' to='upload.localhost'><query xmlns='{DISCO_INFO}'/></iq>"
    )
    q = got.find(f"{{{DISCO_INFO}}}query")
    assert q is not None
    ident = q.find(f"{{{DISCO_INFO}}}identity")
    assert ident is not None and (ident.get("category"), ident.get("type")) == ("store", "file")
    assert UP in [f.get("var") for f in q.iter(f"{{{DISCO_INFO}}}feature")]
    fields = {f.get("var"): f.findtext(f"{{{DATA}}}value") for f in q.iter(f"{{{DATA}}}field")}
    assert fields == {"FORM_TYPE": UP, "max-file-size": "1000"}


async def test_slot_gives_put_and_get_urls_on_the_http_listener(h: Harness) -> None:
    """§4: a slot; the GET URL ends in the file name, the PUT URL carries a secret."""
    got = await slot(h, filename="my cat.png")
    assert got.get("type") == "result"
    put, get = urls(got)
    assert get.startswith("http://127.0.0.1:5280/upload/")
    assert get.endswith("/my%20cat.png")
    slot_id = urlsplit(get).path.split("/")[2]
    stored = await h.server.storage.uploads.get(slot_id)
    assert stored is not None and not stored.stored
    assert (stored.username, stored.size, stored.content_type) == ("alice", 10, "image/png")
    assert put == f"http://127.0.0.1:5280/upload/{slot_id}/{stored.token}/my%20cat.png"
    assert len(stored.token) >= 32


async def test_slot_ids_are_random_and_distinct(h: Harness) -> None:
    ids = {urlsplit(urls(await slot(h))[1]).path.split("/")[2] for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("a\u0000b\nc\u202e.png", "abc.png"),
        ("..", "file"),
        ("/", "file"),
        ("x" * 300 + ".png", "x" * 128),
        ("résumé 1.pdf", "résumé 1.pdf"),
    ],
)
def test_filename_keeps_only_a_safe_last_segment(given: str, kept: str) -> None:
    assert safe_filename(given) == kept


async def test_traversal_in_filename_stays_in_the_url_segment(h: Harness) -> None:
    got = await slot(h, filename="../../x/%2e%2e.png")
    _, get = urls(got)
    name = urlsplit(get).path.split("/")[-1]
    assert unquote(name) == "%2e%2e.png" and "/" not in unquote(name)


async def test_too_large_is_not_acceptable_with_the_limit(h: Harness) -> None:
    """§4 Example 6: <not-acceptable/> and <file-too-large/> with <max-file-size/>."""
    got = await slot(h, size=1001)
    assert error_condition(got) == "not-acceptable"
    assert got.findtext(f"error/{{{UP}}}file-too-large/{{{UP}}}max-file-size") == "1000"
    err = got.find("error")
    assert err is not None and err.get("type") == "modify"


async def test_over_quota_is_resource_constraint(h: Harness) -> None:
    """§4 Example 7: pending slots reserve their size until used or expired."""
    assert (await slot(h, size=1000)).get("type") == "result"
    assert (await slot(h, size=1000)).get("type") == "result"
    got = await slot(h, size=600)
    assert error_condition(got) == "resource-constraint"
    err = got.find("error")
    assert err is not None and err.get("type") == "wait"
    assert "500 bytes left" in (got.findtext("error/{*}text") or "")
    # Another account has its own quota.
    assert (await slot(h, "bob@localhost/b", size=600)).get("type") == "result"


async def test_pending_slots_are_bounded(h: Harness) -> None:
    for _ in range(3):
        assert (await slot(h, size=1)).get("type") == "result"
    got = await slot(h, size=1)
    assert error_condition(got) == "resource-constraint"


async def test_used_and_expired_slots_no_longer_count_as_pending(h: Harness) -> None:
    uploads = h.server.storage.uploads
    old = datetime.now(UTC) - timedelta(hours=1)
    for i in range(3):
        await uploads.add(Upload(f"old{i}" + "x" * 20, "t", "localhost", "alice", "f", 1, "", old))
    assert (await slot(h, size=1)).get("type") == "result"


@pytest.mark.parametrize(
    ("kw", "condition"),
    [
        ({"size": "-1"}, "bad-request"),
        ({"size": "1e3"}, "bad-request"),
        ({"size": ""}, "bad-request"),
        ({"filename": ""}, "bad-request"),
        ({"ctype": "text/html\r\nX-Evil: 1"}, "bad-request"),
        ({"ctype": "no-slash"}, "bad-request"),
    ],
)
async def test_malformed_requests_are_bad_request(
    h: Harness, kw: dict[str, str], condition: str
) -> None:
    got = await slot(h, **kw)
    assert error_condition(got) == condition
    assert await h.server.storage.uploads.usage(
        "localhost", "alice", datetime(2000, 1, 1, tzinfo=UTC)
    ) == (0, 0)


async def test_accounts_of_other_domains_are_not_allowed(h: Harness) -> None:
    """§4 Example 8: <not-allowed/> for whoever may not upload here."""
    got = await slot(h, "bob@example.org/b")
    assert error_condition(got) == "not-allowed"


async def test_remote_requester_is_not_allowed(h: Harness) -> None:
    await h.inject(
        f"<iq type='get' id='r1' from='eve@remote.example/x' to='upload.localhost'>"
        f"<request xmlns='{UP}' filename='a' size='1'/></iq>"
    )
    (answer,) = h.take_remote()
    assert answer.get("type") == "error" and error_condition(answer) == "not-allowed"


async def test_expiry_removes_old_files_dead_slots_and_orphans(h: Harness, tmp_path: Path) -> None:
    mod = h.module("upload", "upload.localhost")
    assert isinstance(mod, UploadModule) and mod.sweeper
    await mod.tasks.close()  # the background pass, which would race this one
    uploads, root = h.server.storage.uploads, tmp_path / "uploads"
    now = datetime.now(UTC)
    old, fresh, dead = "o" * 24, "f" * 24, "d" * 24
    await uploads.add(Upload(old, "t", "localhost", "alice", "a", 1, "", now - timedelta(days=31)))
    await uploads.mark_stored(old, "text/plain")
    await uploads.add(Upload(fresh, "t", "localhost", "alice", "a", 1, "", now - timedelta(days=1)))
    await uploads.mark_stored(fresh, "text/plain")
    await uploads.add(Upload(dead, "t", "localhost", "alice", "a", 1, "", now - timedelta(hours=2)))
    orphan, young_orphan = "r" * 24, "y" * 24
    for name in (old, fresh, orphan, young_orphan):
        (root / name).write_bytes(b"x")
    (root / "tmp" / f"{dead}.part").write_bytes(b"x")
    stale = time.time() - 7200
    os.utime(root / orphan, (stale, stale))
    os.utime(root / "tmp" / f"{dead}.part", (stale, stale))
    assert await mod.expire_now() == 3
    assert await uploads.get(old) is None and await uploads.get(dead) is None
    assert await uploads.get(fresh) is not None
    assert sorted(p.name for p in root.iterdir()) == sorted([fresh, young_orphan, "tmp"])
    assert list((root / "tmp").iterdir()) == []
