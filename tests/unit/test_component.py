"""XEP-0114 handshake digest."""

from __future__ import annotations

import hashlib

from descant.component import handshake_digest


def test_digest_is_lowercase_hex_sha1_of_id_then_secret() -> None:
    """XEP-0114 §3: SHA1(concat(sid, password)), lower-case hex."""
    digest = handshake_digest("3BF96D32", "s3cret")
    assert digest == hashlib.sha1(b"3BF96D32s3cret").hexdigest()
    assert digest == digest.lower() and len(digest) == 40
    assert handshake_digest("3BF96D32", "other") != digest


def test_digest_encodes_utf8() -> None:
    assert handshake_digest("id", "pässword") == hashlib.sha1("idpässword".encode()).hexdigest()
