"""TLS contexts and certificates.

Every context, server and client side, follows Mozilla's "intermediate" profile
(Server Side TLS 5.7, https://wiki.mozilla.org/Security/Server_Side_TLS): TLS 1.2
and 1.3 only; for TLS 1.2 only forward-secret AEAD suites (ECDHE with AES-GCM or
ChaCha20-Poly1305, and DHE-RSA with the RFC 7919 ffdhe2048 group); no
compression, no renegotiation, no session tickets; the client's cipher
preference wins. :func:`intermediate` applies it; which certificate a
connection gets is certs.py's business.

With no certificate configured, a self-signed one covering every served domain
(and its subdomains, e.g. the MUC service) is generated in the data directory
on first start and reused afterwards.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# Mozilla intermediate (5.7), TLS 1.2 suites in the profile's order. TLS 1.3 suites
# are OpenSSL's defaults, which are the profile's three (AES-128/256-GCM, ChaCha20).
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-CHACHA20-POLY1305",
)
TLS13_CIPHERS = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
# The RFC 7919 group the profile names for DHE (OpenSSL makes no DH parameters itself).
FFDHE2048 = os.path.join(os.path.dirname(__file__), "ffdhe2048.pem")

C = TypeVar("C", bound=ssl.SSLContext)


class CertContext(ssl.SSLContext):
    """A server-side context holding one certificate, with what is known about it:
    its tls-server-end-point binding data, its names, and the generation of
    certificates (certs.py) it was built in."""

    end_point: bytes = b""
    names: tuple[str, ...] = ()
    generation: int = 0


def intermediate(ctx: C) -> C:
    """Apply the Mozilla intermediate profile to a new context (server or client side)."""
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    ctx.set_ciphers(":".join(TLS12_CIPHERS))
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_TICKET
    # Intermediate lets the client choose: every suite offered is strong, and clients
    # without AES hardware prefer ChaCha20.
    ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if ctx.protocol == ssl.PROTOCOL_TLS_SERVER:
        ctx.load_dh_params(FFDHE2048)
    return ctx


def make_self_signed(domains: list[str], cert_path: str, key_path: str, days: int = 3650) -> None:
    """Write a self-signed certificate (P-256 key) for the given domains."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for d in domains:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(d)))
            continue
        except ValueError:
            pass
        names.append(x509.DNSName(d))
        names.append(x509.DNSName(f"*.{d}"))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domains[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    os.makedirs(os.path.dirname(os.path.abspath(cert_path)), exist_ok=True)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def ensure_certificate(domains: list[str], data_dir: str, cert: str, key: str) -> tuple[str, str]:
    """The configured pair, or the self-signed one in data_dir (made if missing)."""
    if cert:
        return cert, key
    cert_path = os.path.join(data_dir, "certs", "self-signed.crt")
    key_path = os.path.join(data_dir, "certs", "self-signed.key")
    if not (os.path.exists(cert_path) and os.path.exists(key_path)):
        make_self_signed(domains, cert_path, key_path)
    return cert_path, key_path


def server_context(cert_path: str, key_path: str, alpn: list[str] | None = None) -> CertContext:
    """A server context with the intermediate profile and this certificate chain and key.

    Raises OSError or ssl.SSLError (a missing or unparsable file, a key that does not
    match the certificate), or ValueError (the certificate changed while it was read).
    """
    ctx = intermediate(CertContext(ssl.PROTOCOL_TLS_SERVER))
    with open(cert_path, "rb") as f:
        pem = f.read()
    ctx.load_cert_chain(cert_path, key_path)
    # load_cert_chain reads the file again: the binding data must be of what it loaded.
    with open(cert_path, "rb") as f:
        if f.read() != pem:
            raise ValueError(f"{cert_path} changed while it was loaded")
    cert = x509.load_pem_x509_certificate(pem)
    ctx.end_point = end_point_binding(cert)
    ctx.names = tuple(names_of(cert))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def client_context(verify: bool, ca_file: str = "") -> ssl.SSLContext:
    """A client context with the intermediate profile: verifying the peer against the
    system store (and ``ca_file``), or encryption only."""
    if verify:
        ctx = ssl.create_default_context(cafile=ca_file or None)
        if ca_file:
            ctx.load_default_certs()
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return intermediate(ctx)


def end_point_binding(cert: x509.Certificate) -> bytes:
    """tls-server-end-point channel-binding data (RFC 5929 §4.1) of a certificate."""
    algo = cert.signature_hash_algorithm
    name = algo.name if algo is not None else "sha256"
    if name in ("md5", "sha1"):
        name = "sha256"
    return hashlib.new(name, cert.public_bytes(serialization.Encoding.DER)).digest()


def describe(cert_path: str) -> tuple[list[str], datetime.datetime]:
    """DNS names and expiry of a certificate (for `descant check`)."""
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return names_of(cert), cert.not_valid_after_utc


def names_of(cert: x509.Certificate) -> list[str]:
    """The DNS names a certificate's subjectAltName lists (lower case)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(n).lower() for n in san.value.get_values_for_type(x509.DNSName)]


def covers(names: list[str] | tuple[str, ...], domain: str) -> bool:
    """Whether a certificate with these DNS names is valid for ``domain`` (RFC 6125
    §6.4: exact, or a wildcard standing for the whole left-most label)."""
    for n in names:
        if n == domain or (n.startswith("*.") and domain.partition(".")[2] == n[2:]):
            return True
    return False
