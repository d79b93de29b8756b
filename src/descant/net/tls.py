"""TLS contexts and certificates.

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

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


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


def server_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_path, key_path)
    ctx.set_alpn_protocols(["xmpp-client"])
    return ctx


def end_point_binding(cert_path: str) -> bytes:
    """tls-server-end-point channel-binding data (RFC 5929 §4.1) of our certificate."""
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    algo = cert.signature_hash_algorithm
    name = algo.name if algo is not None else "sha256"
    if name in ("md5", "sha1"):
        name = "sha256"
    return hashlib.new(name, cert.public_bytes(serialization.Encoding.DER)).digest()


def describe(cert_path: str) -> tuple[list[str], datetime.datetime]:
    """DNS names and expiry of a certificate (for `descant check`)."""
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [str(n) for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = []
    return names, cert.not_valid_after_utc


def covers(names: list[str], domain: str) -> bool:
    for n in names:
        if n == domain or (n.startswith("*.") and domain.split(".", 1)[-1] == n[2:]):
            return True
    return False
