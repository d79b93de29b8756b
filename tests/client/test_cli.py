"""The descant command line against a running server (shared storage)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.live import LiveServer, connect_slixmpp, disconnect


def _descant(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "descant", *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=60,
    )


async def test_user_lifecycle_while_server_runs(server: LiveServer) -> None:
    r = server.cli("user", "add", "clitest@localhost", "--password", "first")
    assert r.returncode == 0, r.stderr
    again = server.cli("user", "add", "clitest@localhost", "--password", "x")
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert "Traceback" not in again.stderr

    listed = server.cli("user", "list", "localhost")
    assert "clitest@localhost" in listed.stdout.split()

    client = await connect_slixmpp(server, "clitest@localhost", "first")
    await disconnect(client)

    r = server.cli("user", "passwd", "clitest@localhost", input="second\n")
    assert r.returncode == 0, r.stderr
    client = await connect_slixmpp(server, "clitest@localhost", "second")
    await disconnect(client)

    r = server.cli("user", "del", "clitest@localhost")
    assert r.returncode == 0, r.stderr
    assert "clitest@localhost" not in server.cli("user", "list").stdout.split()
    gone = server.cli("user", "del", "clitest@localhost")
    assert gone.returncode == 1 and "does not exist" in gone.stderr


def test_user_add_refuses_unserved_domain_and_bad_jid(server: LiveServer) -> None:
    r = server.cli("user", "add", "eve@elsewhere.test", "--password", "x")
    assert r.returncode == 1
    assert "not served" in r.stderr
    r = server.cli("user", "add", "bad user@localhost", "--password", "x")
    assert r.returncode == 1
    assert "not a valid JID" in r.stderr


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[c2s]\nlisten = ["127.0.0.1:5222"]\nbogus = 1\n')
    r = _descant("--config", str(cfg), "check")
    assert r.returncode == 1
    assert "c2s.bogus" in r.stderr
    assert "Traceback" not in r.stderr

    cfg.write_text('[limits]\nmax_stanza_size = "big"\n')
    r = _descant("--config", str(cfg), "serve")
    assert r.returncode == 1
    assert "limits.max_stanza_size" in r.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ("--config", "{cfg}", "serve"),
        ("serve", "--config", "{cfg}"),
        ("check", "--config", "{cfg}"),
        ("user", "list", "--config", "{cfg}"),
    ],
)
def test_config_option_before_or_after_the_command(tmp_path: Path, argv: tuple[str, ...]) -> None:
    """Every command takes --config, before or after it: the file given is the one read
    (its error is reported, not "unrecognized arguments")."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[limits]\nmax_stanza_size = "big"\n')
    r = _descant(*(a.format(cfg=cfg) for a in argv))
    assert r.returncode == 1
    assert "limits.max_stanza_size" in r.stderr, r.stderr
    assert "unrecognized arguments" not in r.stderr


def test_check_and_cert(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = tmp_path / "ok.toml"
    cfg.write_text(
        f'[server]\ndomains = ["example.net"]\ndata_dir = "{data}"\n'
        f'[storage]\nurl = "sqlite:///{data}/d.db"\n'
    )
    r = _descant("--config", str(cfg), "cert")
    assert r.returncode == 0, r.stderr
    assert (data / "certs" / "example.net.crt").exists()
    r = _descant("--config", str(cfg), "check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("ok")

    wrong = tmp_path / "wrong.toml"
    wrong.write_text(
        f'[server]\ndomains = ["other.example"]\ndata_dir = "{data}"\n'
        f'[storage]\nurl = "sqlite:///{data}/d.db"\n'
        f'[tls]\ncert = "{data}/certs/example.net.crt"\nkey = "{data}/certs/example.net.key"\n'
    )
    r = _descant("--config", str(wrong), "check")
    assert r.returncode == 1
    assert "does not cover other.example" in r.stderr


def test_check_per_domain_certificates(tmp_path: Path) -> None:
    """Each [tls.domains] certificate must cover its domain; the default then need not."""
    from descant.net.tls import make_self_signed

    data = tmp_path / "data"
    make_self_signed(["example.net"], str(tmp_path / "net.crt"), str(tmp_path / "net.key"))
    make_self_signed(["example.com"], str(tmp_path / "com.crt"), str(tmp_path / "com.key"))
    base = (
        f'[server]\ndomains = ["example.net", "example.com"]\ndata_dir = "{data}"\n'
        f'[storage]\nurl = "sqlite:///{data}/d.db"\n'
        f'[tls]\ncert = "{tmp_path}/net.crt"\nkey = "{tmp_path}/net.key"\n'
    )
    cfg = tmp_path / "ok.toml"
    cfg.write_text(
        base + f'[tls.domains."example.com"]\ncert = "{tmp_path}/com.crt"\n'
        f'key = "{tmp_path}/com.key"\n'
    )
    r = _descant("--config", str(cfg), "check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"certificate {tmp_path}/com.crt expires" in r.stdout

    wrong = tmp_path / "wrong.toml"
    wrong.write_text(
        base + f'[tls.domains."example.com"]\ncert = "{tmp_path}/net.crt"\n'
        f'key = "{tmp_path}/missing.key"\n'
    )
    r = _descant("--config", str(wrong), "check")
    assert r.returncode == 1
    assert f'tls.domains."example.com": {tmp_path}/missing.key does not exist' in r.stderr
    wrong.write_text(
        base + f'[tls.domains."example.com"]\ncert = "{tmp_path}/net.crt"\n'
        f'key = "{tmp_path}/net.key"\n'
    )
    r = _descant("--config", str(wrong), "check")
    assert r.returncode == 1
    assert 'tls.domains."example.com".cert: does not cover example.com' in r.stderr


def test_check_notes_a_public_plain_http_listener(tmp_path: Path) -> None:
    """docs/web.md: web clients reaching a non-loopback plain-HTTP listener directly
    cannot log in while TLS is required; check says so (a note, not a problem)."""
    data = tmp_path / "data"
    cfg = tmp_path / "web.toml"
    cfg.write_text(
        f'[server]\ndata_dir = "{data}"\n[storage]\nurl = "sqlite:///{data}/d.db"\n'
        '[http]\nlisten = ["0.0.0.0:5280"]\n'
    )
    r = _descant("--config", str(cfg), "check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "note: http.listen 0.0.0.0:5280" in r.stdout
    cfg.write_text(f'[server]\ndata_dir = "{data}"\n[storage]\nurl = "sqlite:///{data}/d.db"\n')
    assert "note:" not in _descant("--config", str(cfg), "check").stdout  # loopback: fine


def test_serve_reports_a_port_in_use(server: LiveServer) -> None:
    """A second server on the same port fails with one clear line, not a traceback."""
    r = server.cli("serve")
    assert r.returncode == 1
    assert "cannot start" in r.stderr
    assert "Traceback" not in r.stderr
