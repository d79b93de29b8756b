"""A real Prosody process for federation tests, and certificates for both sides.

Prosody runs from its own config in a temp dir (pidfile, data, log, certs
there; foreground; c2s and s2s on loopback ports). Prosody 0.12 has no static
route table, so the Descant side uses an IP-literal domain (``127.0.0.2``):
Prosody's resolver connects to an IP literal directly, on port 5269, after an
SRV lookup that fails (NXDOMAIN). Descant reaches Prosody's domains through
``[s2s.routes]``.
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.live import free_port

PROSODY = shutil.which("prosody") or "/usr/bin/prosody"
PROSODYCTL = shutil.which("prosodyctl") or "/usr/bin/prosodyctl"


def available() -> bool:
    return os.path.exists(PROSODY) and os.path.exists(PROSODYCTL)


class ScratchCA:
    """A throwaway certificate authority for PKIX checks (policy "verify")."""

    def __init__(self, root: Path) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Descant test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.path = root / "ca.crt"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self, domain: str, cert_path: Path, key_path: Path, *, self_signed: bool = False
    ) -> None:
        """A leaf certificate for ``domain`` (signed by this CA, or by itself)."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject if self_signed else self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        cert = builder.sign(key if self_signed else self.key, hashes.SHA256())
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        os.chmod(key_path, 0o644)


class Prosody:
    """``hosts`` maps each VirtualHost to its (certificate, key) paths; ``extra`` is
    appended to the config (e.g. Component lines)."""

    def __init__(self, root: Path, hosts: dict[str, tuple[Path, Path]], extra: str = "") -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "data").mkdir(exist_ok=True)
        (root / "certs").mkdir(exist_ok=True)
        self.c2s_port = free_port()
        self.s2s_port = free_port()
        self.log_path = root / "prosody.log"
        self.config = root / "prosody.cfg.lua"
        vhosts = "".join(
            f'VirtualHost "{h}"\n    ssl = {{ certificate = "{c}"; key = "{k}"; }}\n'
            for h, (c, k) in hosts.items()
        )
        self.config.write_text(
            f"""
pidfile = "{root}/prosody.pid"
data_path = "{root}/data"
daemonize = false
run_as_root = true
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = "{self.log_path}" }} }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {self.c2s_port} }}
s2s_ports = {{ {self.s2s_port} }}
http_ports = {{ }}
https_ports = {{ }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ }}
modules_enabled = {{
    "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "version"; "posix"; "pep";
}}
modules_disabled = {{ "s2s_bidi"; "offline"; "c2s_direct_tls"; "s2s_direct_tls" }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = false
allow_registration = false
certificates = "{root}/certs"
{vhosts}{extra}"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def register(self, user: str, domain: str, password: str) -> None:
        out = subprocess.run(
            [PROSODYCTL, "--config", str(self.config), "register", user, domain, password],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stdout + out.stderr

    def start(self) -> None:
        with open(self.root / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen(
                [PROSODY, "--config", str(self.config), "-F"], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prosody exited: {self.log()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.s2s_port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"prosody did not start: {self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log(self) -> str:
        parts = []
        for name in ("stdout.log", "prosody.log"):
            p = self.root / name
            if p.exists():
                parts.append(p.read_text(errors="replace"))
        return "\n".join(parts)
