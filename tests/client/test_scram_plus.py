"""SCRAM-*-PLUS over real TLS with tls-server-end-point binding (RFC 5802, RFC 5929, XEP-0440).

scramp (independent of the server code) is the client; the binding data is computed from
the certificate the server presented on this very connection.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest
import scramp

from tests.badinput.raw import SASL, close_quietly, elements, open_direct_tls, secure_stream
from tests.live import LiveServer, RawClient


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _end_point(c: RawClient) -> bytes:
    der = c.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    # The server's certificate is signed with SHA-256 (RFC 5929 §4.1: that hash).
    return hashlib.sha256(der).digest()


async def _scram_plus(c: RawClient, mech: str, user: str, password: str, cb: bytes) -> str:
    client = scramp.ScramClient(
        [mech], user, password, channel_binding=("tls-server-end-point", cb)
    )
    await c.send(
        f"<auth xmlns='{SASL}' mechanism='{mech}'>{_b64(client.get_client_first())}</auth>"
    )
    (challenge,) = elements(await c.read_until("</challenge>"))
    client.set_server_first(base64.b64decode(challenge.text or "").decode())
    await c.send(f"<response xmlns='{SASL}'>{_b64(client.get_client_final())}</response>")
    for _ in range(50):  # bounded: a few reads at most
        if "</success>" in c.buffer or "</failure>" in c.buffer:
            break
        chunk = await asyncio.wait_for(c.reader.read(65536), 5)
        assert chunk, "connection closed during SASL"
        c.buffer += chunk.decode()
    (outcome,) = elements(c.buffer)
    c.buffer = ""
    if outcome.tag == f"{{{SASL}}}success":
        # Mutual authentication: the server proves it knew the keys too.
        client.set_server_final(base64.b64decode(outcome.text or "").decode())
        return "success"
    return outcome[0].tag.rpartition("}")[2]


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"])
async def test_scram_plus_over_starttls(server: LiveServer, mech: str) -> None:
    jid, password = await server.make_user("plus")
    c = await secure_stream(server)
    try:
        assert await _scram_plus(c, mech, jid.partition("@")[0], password, _end_point(c)) == (
            "success"
        )
    finally:
        await close_quietly(c)


async def test_scram_plus_over_direct_tls(server: LiveServer) -> None:
    jid, password = await server.make_user("plus")
    c, _ = await open_direct_tls(server)
    try:
        result = await _scram_plus(
            c, "SCRAM-SHA-256-PLUS", jid.partition("@")[0], password, _end_point(c)
        )
        assert result == "success"
    finally:
        await close_quietly(c)


async def test_scram_plus_with_wrong_binding_fails(server: LiveServer) -> None:
    """A man in the middle would present other binding data: the proof must not verify."""
    jid, password = await server.make_user("plus")
    c = await secure_stream(server)
    try:
        wrong = hashlib.sha256(b"some other certificate").digest()
        result = await _scram_plus(c, "SCRAM-SHA-256-PLUS", jid.partition("@")[0], password, wrong)
        assert result == "not-authorized"
    finally:
        await close_quietly(c)


async def test_features_advertise_end_point_binding(server: LiveServer) -> None:
    """XEP-0440: the binding types are listed next to the mechanisms once TLS is up."""
    c = await RawClient.open(server.port)
    try:
        await c.open_stream()
        await c.starttls()
        features = await c.open_stream()
        assert "SCRAM-SHA-256-PLUS" in features
        assert "<channel-binding type='tls-server-end-point'/>" in features
    finally:
        await close_quietly(c)
