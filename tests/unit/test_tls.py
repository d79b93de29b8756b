"""TLS contexts (net/tls.py) and certificate selection and reload (net/certs.py).

Handshakes run in memory (ssl.MemoryBIO) between our contexts and independent client
contexts; what is checked is what the peer sees: the protocol, the cipher, the
certificate's names.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import shutil
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from descant.config import TLSConfig, TLSDomainConfig
from descant.net import tls
from descant.net.certs import CertStore

# -- helpers ------------------------------------------------------------------------------


def handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, sni: str | None = None
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Run a handshake in memory; raises ssl.SSLError when either side refuses."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=sni)
    done = {"server": False, "client": False}
    for _ in range(20):
        for name, obj in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            # The pair stays usable: the buffers travel with the objects.
            server._bios = (s_in, s_out)  # type: ignore[attr-defined]
            client._bios = (c_in, c_out)  # type: ignore[attr-defined]
            return server, client
    raise AssertionError("handshake did not finish")


def exchange(server: ssl.SSLObject, client: ssl.SSLObject, data: bytes) -> bytes:
    """Send data from client to server over an established pair."""
    c_in, c_out = client._bios  # type: ignore[attr-defined]
    s_in, s_out = server._bios  # type: ignore[attr-defined]
    client.write(data)
    s_in.write(c_out.read())
    out = b""
    while len(out) < len(data):
        try:
            out += server.read(65536)
        except ssl.SSLWantReadError:
            c_in.write(s_out.read())  # post-handshake messages (TLS 1.3 tickets)
            s_in.write(c_out.read())
    return out


def client(
    *,
    version: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


def peer_names(obj: ssl.SSLObject) -> list[str]:
    der = obj.getpeercert(binary_form=True)
    assert der is not None
    return tls.names_of(x509.load_der_x509_certificate(der))


def make_pair(tmp: Path, name: str, domains: list[str]) -> tuple[str, str]:
    cert, key = str(tmp / f"{name}.crt"), str(tmp / f"{name}.key")
    tls.make_self_signed(domains, cert, key)
    return cert, key


def make_rsa_pair(tmp: Path, domain: str) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "rsa.crt", tmp / "rsa.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[str, str]:
    return make_pair(tmp_path, "default", ["localhost"])


# -- the Mozilla intermediate profile -------------------------------------------------------


def test_profile_ciphers_are_exactly_intermediate(pair: tuple[str, str]) -> None:
    """Mozilla Server Side TLS 5.7 intermediate: the TLS 1.3 suites and the nine TLS
    1.2 AEAD forward-secret suites, nothing else (no CBC, no RSA key exchange)."""
    for ctx in (tls.server_context(*pair), tls.client_context(False), tls.client_context(True)):
        names = {c["name"] for c in ctx.get_ciphers()}
        assert names == set(tls.TLS12_CIPHERS) | set(tls.TLS13_CIPHERS)
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2


def test_profile_options(pair: tuple[str, str]) -> None:
    ctx = tls.server_context(*pair)
    for opt in (ssl.OP_NO_COMPRESSION, ssl.OP_NO_RENEGOTIATION, ssl.OP_NO_TICKET):
        assert ctx.options & opt
    # Intermediate: the client's preference among the (all strong) suites wins.
    assert not ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE


def test_tls13_accepted(pair: tuple[str, str]) -> None:
    server, _ = handshake(tls.server_context(*pair), client(version=ssl.TLSVersion.TLSv1_3))
    assert server.version() == "TLSv1.3"


@pytest.mark.parametrize(
    "cipher", ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"]
)
def test_tls12_with_intermediate_cipher_accepted(pair: tuple[str, str], cipher: str) -> None:
    server, _ = handshake(
        tls.server_context(*pair), client(version=ssl.TLSVersion.TLSv1_2, ciphers=cipher)
    )
    assert server.version() == "TLSv1.2"
    assert server.cipher()[0] == cipher  # type: ignore[index]


def test_tls12_dhe_with_ffdhe2048(tmp_path: Path) -> None:
    """The profile's DHE-RSA suites work: the RFC 7919 group is loaded."""
    server, _ = handshake(
        tls.server_context(*make_rsa_pair(tmp_path, "localhost")),
        client(version=ssl.TLSVersion.TLSv1_2, ciphers="DHE-RSA-AES128-GCM-SHA256"),
    )
    assert server.cipher()[0] == "DHE-RSA-AES128-GCM-SHA256"  # type: ignore[index]


@pytest.mark.parametrize(
    "cipher", ["ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"]
)
def test_tls12_with_cbc_cipher_refused(pair: tuple[str, str], cipher: str) -> None:
    """CBC suites are outside the profile. Control: OpenSSL's defaults accept them here,
    so the refusal is the profile's doing."""
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    plain.load_cert_chain(*pair)
    plain.set_ciphers("ALL")
    legacy = client(version=ssl.TLSVersion.TLSv1_2, ciphers=cipher)
    handshake(plain, legacy)
    with pytest.raises(ssl.SSLError):
        handshake(tls.server_context(*pair), client(version=ssl.TLSVersion.TLSv1_2, ciphers=cipher))


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["TLSv1.0", "TLSv1.1"]
)
def test_tls_before_1_2_refused(pair: tuple[str, str], version: ssl.TLSVersion) -> None:
    old = client(version=version, ciphers="ALL:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        handshake(tls.server_context(*pair), old)
    # Control: the same client against a server that allows it, where this OpenSSL can.
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    plain.load_cert_chain(*pair)
    try:
        plain.minimum_version = ssl.TLSVersion.TLSv1
        plain.set_ciphers("ALL:@SECLEVEL=0")
        handshake(plain, client(version=version, ciphers="ALL:@SECLEVEL=0"))
    except (ssl.SSLError, ValueError):
        pytest.skip(f"this OpenSSL refuses {version.name} whatever the server asks")


def test_client_context_speaks_only_the_profile(pair: tuple[str, str]) -> None:
    """Outgoing s2s: a server offering only CBC suites is refused."""
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    plain.load_cert_chain(*pair)
    plain.set_ciphers("ECDHE-ECDSA-AES128-SHA256")
    plain.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        handshake(plain, tls.client_context(False))


def test_end_point_binding_is_of_the_loaded_certificate(pair: tuple[str, str]) -> None:
    """RFC 5929 §4.1: SHA-256 of the DER certificate (signed with SHA-256)."""
    server, c = handshake(tls.server_context(*pair), client())
    der = c.getpeercert(binary_form=True)
    assert der is not None
    ctx = server.context
    assert isinstance(ctx, tls.CertContext)
    assert ctx.end_point == hashlib.sha256(der).digest()


def test_covers() -> None:
    """RFC 6125 §6.4.3: a wildcard stands for exactly the left-most label."""
    assert tls.covers(["*.example.org"], "conference.example.org")
    assert not tls.covers(["*.example.org"], "example.org")
    assert not tls.covers(["*.example.org"], "a.b.example.org")
    assert not tls.covers(["*.localhost"], "localhost")
    assert tls.covers(["localhost"], "localhost")


# -- selection by SNI and the stream's 'to' ------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> CertStore:
    """Default for localhost; a.example (with *.a.example) and b.example have their own."""
    default = make_pair(tmp_path, "default", ["localhost"])
    a = make_pair(tmp_path, "a", ["a.example"])
    b_cert, b_key = make_pair(tmp_path, "b", ["b.example"])
    cfg = TLSConfig(
        domains={
            "a.example": TLSDomainConfig(*a),
            "b.example": TLSDomainConfig(b_cert, b_key),
        }
    )
    s = CertStore(cfg)
    s.add_kind("c2s", lambda c, k: tls.server_context(c, k, ["xmpp-client"]))
    s.add_kind("out", lambda c, k: _client_with(c, k))
    s.load(*default)
    return s


def _client_with(cert: str, key: str) -> ssl.SSLContext:
    ctx = tls.client_context(False)
    ctx.load_cert_chain(cert, key)
    return ctx


@pytest.mark.parametrize(
    ("sni", "names"),
    [
        ("a.example", ["a.example", "*.a.example"]),
        ("A.Example.", ["a.example", "*.a.example"]),
        ("conference.a.example", ["a.example", "*.a.example"]),  # covered by a's wildcard
        ("b.example", ["b.example", "*.b.example"]),
        ("localhost", ["localhost", "*.localhost"]),
        ("unknown.example", ["localhost", "*.localhost"]),
        (None, ["localhost", "*.localhost"]),
    ],
)
def test_sni_picks_the_domains_certificate(
    store: CertStore, sni: str | None, names: list[str]
) -> None:
    listener = store.listener_context("c2s")
    server, c = handshake(listener, client(), sni)
    assert peer_names(c) == names
    ctx = server.context
    assert isinstance(ctx, tls.CertContext)
    der = c.getpeercert(binary_form=True)
    assert der is not None
    assert ctx.end_point == hashlib.sha256(der).digest()


def test_direct_tls_without_sni_gets_the_default_pair(tmp_path: Path) -> None:
    """Even when the first served domain has a certificate of its own."""
    default = make_pair(tmp_path, "default", ["fallback.example"])
    own = make_pair(tmp_path, "own", ["localhost"])
    s = CertStore(TLSConfig(domains={"localhost": TLSDomainConfig(*own)}))
    s.add_kind("c2s", lambda c, k: tls.server_context(c, k))
    s.load(*default)
    _, c = handshake(s.listener_context("c2s"), client())
    assert peer_names(c)[0] == "fallback.example"
    _, c = handshake(s.listener_context("c2s"), client(), "localhost")
    assert peer_names(c)[0] == "localhost"


def test_starttls_without_sni_uses_the_stream_to(store: CertStore) -> None:
    """STARTTLS begins with the certificate of the header's 'to'; no SNI keeps it,
    SNI naming another served domain wins."""
    _, c = handshake(store.context("c2s", "b.example"), client())
    assert peer_names(c)[0] == "b.example"
    _, c = handshake(store.context("c2s", "b.example"), client(), "a.example")
    assert peer_names(c)[0] == "a.example"
    _, c = handshake(store.context("c2s", "b.example"), client(), "nobody.example")
    assert peer_names(c)[0] == "b.example"


def test_outgoing_presents_the_local_domains_certificate(store: CertStore, tmp_path: Path) -> None:
    peer = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    peer.load_cert_chain(*make_pair(tmp_path, "peer", ["peer.example"]))
    peer.verify_mode = ssl.CERT_OPTIONAL
    peer.load_verify_locations(store.config.domains["b.example"].cert)
    server, _ = handshake(peer, store.context("out", "b.example"))
    cert = server.getpeercert()
    assert cert and ("DNS", "b.example") in cert["subjectAltName"]


def test_end_point_without_a_connection_is_the_domains(store: CertStore) -> None:
    """A BOSH session spans connections: the binding is of the domain's certificate."""
    ctx = store.context("c2s", "b.example")
    assert isinstance(ctx, tls.CertContext)
    assert store.end_point(None, "c2s", "b.example") == ctx.end_point != b""


# -- reload -----------------------------------------------------------------------------------


def test_reload_serves_new_handshakes_and_keeps_established_ones(
    store: CertStore, tmp_path: Path
) -> None:
    listener = store.listener_context("c2s")
    old_server, old_client = handshake(listener, client(), "a.example")
    before = old_client.getpeercert(binary_form=True)
    make_pair(tmp_path, "a", ["a.example", "xmpp.a.example"])  # replaced in place
    assert store.reload("test")
    _, c = handshake(listener, client(), "a.example")
    assert "xmpp.a.example" in peer_names(c)
    assert c.getpeercert(binary_form=True) != before
    # The connection made before the reload goes on.
    assert exchange(old_server, old_client, b"<presence/>") == b"<presence/>"
    # No SNI on the old listener context: the new default, not the old one.
    _, c = handshake(listener, client())
    assert peer_names(c)[0] == "localhost"


@pytest.mark.parametrize("damage", ["garbage cert", "missing key", "mismatched key"])
def test_bad_replacement_keeps_the_old_certificate(
    store: CertStore, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    before = store.current
    _, c = handshake(store.listener_context("c2s"), client(), "b.example")
    old = c.getpeercert(binary_form=True)
    if damage == "garbage cert":
        (tmp_path / "b.crt").write_text("-----BEGIN CERTIFICATE-----\nnot one\n")
    elif damage == "missing key":
        (tmp_path / "b.key").unlink()
    else:
        make_pair(tmp_path, "other", ["b.example"])
        shutil.copy(tmp_path / "other.key", tmp_path / "b.key")
    with caplog.at_level(logging.ERROR, logger="descant.net.certs"):
        assert not store.reload("test")
    assert store.current is before
    assert any("b.crt" in r.getMessage() for r in caplog.records), caplog.text
    _, c = handshake(store.listener_context("c2s"), client(), "b.example")
    assert c.getpeercert(binary_form=True) == old


async def test_watch_reloads_changed_files(store: CertStore, tmp_path: Path) -> None:
    before = store.current
    assert before is not None
    store.watch(0.05)
    make_pair(tmp_path, "b", ["b.example", "new.b.example"])
    for _ in range(100):
        await asyncio.sleep(0.05)
        if store.current is not before:
            break
    assert store.current is not before
    _, c = handshake(store.context("c2s", "b.example"), client())
    assert "new.b.example" in peer_names(c)
    await store.close()
    assert len(store._watcher) == 0


async def test_watch_does_not_retry_a_bad_file_until_it_changes(
    store: CertStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a.key").write_text("not a key")
    with caplog.at_level(logging.ERROR, logger="descant.net.certs"):
        store.watch(0.02)
        await asyncio.sleep(0.5)
        await store.close()
    failures = [r for r in caplog.records if "reload" in r.getMessage()]
    assert len(failures) == 1, caplog.text
