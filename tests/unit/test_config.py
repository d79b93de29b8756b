"""Configuration (descant.config): TOML file → validated frozen dataclasses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from descant import config
from descant.config import Config, ConfigError, data_path, load, parse_listen


@pytest.fixture(autouse=True)
def _no_env_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DESCANT_CONFIG", raising=False)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "descant.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def load_text(tmp_path: Path, text: str) -> Config:
    return load(write(tmp_path, text))


def error_for(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    return str(info.value)


# -- defaults ---------------------------------------------------------------------------------


def test_defaults_without_a_file() -> None:
    cfg = load()
    assert cfg == Config()
    assert cfg.path is None
    assert cfg.server.domains == ["localhost"]
    assert cfg.c2s.listen == ["127.0.0.1:5222"]
    assert cfg.c2s.require_tls is True
    assert cfg.c2s.allow_plain_without_tls is False
    assert cfg.limits.max_stanza_size == 262144
    assert cfg.log.level == "info"
    assert cfg.tls.cert == cfg.tls.key == ""


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    cfg = load(path)
    assert dataclasses.replace(cfg, path=None) == Config()
    assert cfg.path == str(Path(path).resolve())


def test_config_is_frozen() -> None:
    cfg = load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.server.data_dir = "x"  # type: ignore[misc]


# -- loading ----------------------------------------------------------------------------------


def test_loading_a_toml_file(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        """
        [server]
        domains = ["example.com", "example.net"]
        data_dir = "/var/lib/descant"

        [c2s]
        listen = ["0.0.0.0:5222", "[::]:5222"]
        tls_listen = ["0.0.0.0:5223"]
        require_tls = false
        auth_timeout = 30

        [storage]
        url = "memory://"

        [tls]
        cert = "/etc/descant/cert.pem"
        key = "/etc/descant/key.pem"

        [limits]
        max_stanza_size = 65536
        auth_failure_window = 2.5

        [log]
        level = "debug"
        """,
    )
    assert cfg.server.domains == ["example.com", "example.net"]
    assert cfg.c2s.listen == ["0.0.0.0:5222", "[::]:5222"]
    assert cfg.c2s.require_tls is False
    assert cfg.c2s.auth_timeout == 30.0
    assert isinstance(cfg.c2s.auth_timeout, float)
    assert cfg.storage.url == "memory://"
    assert cfg.tls.cert == "/etc/descant/cert.pem"
    assert cfg.limits.max_stanza_size == 65536
    assert cfg.limits.auth_failure_window == 2.5
    assert cfg.log.level == "debug"
    # Untouched sections and keys keep their defaults.
    assert cfg.s2s == Config().s2s
    assert cfg.limits.max_auth_failures == 5


def test_descant_config_env_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[server]\ndomains = ["example.org"]\n')
    monkeypatch.setenv("DESCANT_CONFIG", path)
    cfg = load()
    assert cfg.server.domains == ["example.org"]
    assert cfg.path == str(Path(path).resolve())


def test_empty_descant_config_env_means_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESCANT_CONFIG", "")
    assert load() == Config()


def test_explicit_path_wins_over_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESCANT_CONFIG", str(tmp_path / "missing.toml"))
    path = write(tmp_path, '[server]\ndomains = ["example.org"]\n')
    assert load(path).server.domains == ["example.org"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load(str(tmp_path / "nope.toml"))


def test_unreadable_path_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=str(tmp_path)):
        load(str(tmp_path))


def test_invalid_toml(tmp_path: Path) -> None:
    assert "invalid TOML" in error_for(tmp_path, "[server\n")


def test_non_utf8_file_is_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[server]\ndata_dir = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"latin1\.toml"):
        load(str(path))


# -- unknown keys ----------------------------------------------------------------------------


def test_unknown_key_names_the_key(tmp_path: Path) -> None:
    assert error_for(tmp_path, "[c2s]\nlisten_on = []\n") == "c2s.listen_on: unknown key"


def test_unknown_section_names_the_section(tmp_path: Path) -> None:
    assert error_for(tmp_path, "[databse]\nurl = 'x'\n") == "databse: unknown key"


def test_unknown_top_level_key(tmp_path: Path) -> None:
    assert error_for(tmp_path, "debug = true\n") == "debug: unknown key"


def test_path_is_not_a_config_key(tmp_path: Path) -> None:
    assert error_for(tmp_path, "path = '/etc'\n") == "path: unknown key"


def test_nested_unknown_table(tmp_path: Path) -> None:
    assert error_for(tmp_path, "[server.extra]\nx = 1\n") == "server.extra: unknown key"


def test_section_must_be_a_table(tmp_path: Path) -> None:
    assert "server: expected a table" in error_for(tmp_path, "server = 1\n")


# -- types --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[limits]\nmax_stanza_size = '65536'\n", "limits.max_stanza_size"),
        ("[limits]\nmax_stanza_size = 65536.0\n", "limits.max_stanza_size"),
        ("[limits]\nmax_stanza_size = true\n", "limits.max_stanza_size"),
        ("[c2s]\nrequire_tls = 1\n", "c2s.require_tls"),
        ("[c2s]\nrequire_tls = 'yes'\n", "c2s.require_tls"),
        ("[c2s]\nauth_timeout = '30'\n", "c2s.auth_timeout"),
        ("[c2s]\nauth_timeout = false\n", "c2s.auth_timeout"),
        ("[server]\ndata_dir = 5\n", "server.data_dir"),
        ("[server]\ndomains = 'example.com'\n", "server.domains"),
        ("[server]\ndomains = ['example.com', 5]\n", "server.domains[1]"),
        ("[storage]\nurl = ['memory://']\n", "storage.url"),
    ],
)
def test_wrong_types_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    assert error_for(tmp_path, text).startswith(key + ":")


# -- ranges and choices -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[limits]\nmax_stanza_size = 1023\n", "limits.max_stanza_size"),
        ("[limits]\nmax_stanza_size = 1_000_000_000\n", "limits.max_stanza_size"),
        ("[limits]\nmax_connections_per_ip = 0\n", "limits.max_connections_per_ip"),
        ("[limits]\nmax_auth_failures = 0\n", "limits.max_auth_failures"),
        ("[limits]\nauth_failure_window = 0.5\n", "limits.auth_failure_window"),
        ("[limits]\nc2s_rate = 10\n", "limits.c2s_rate"),
        ("[limits]\noffline_max_messages = -1\n", "limits.offline_max_messages"),
        ("[c2s]\nauth_timeout = 0\n", "c2s.auth_timeout"),
        ("[c2s]\nauth_timeout = inf\n", "c2s.auth_timeout"),
        ("[c2s]\nauth_timeout = nan\n", "c2s.auth_timeout"),
        ("[log]\nlevel = 'verbose'\n", "log.level"),
        ("[log]\nlevel = 'INFO'\n", "log.level"),
    ],
)
def test_out_of_range_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    assert error_for(tmp_path, text).startswith(key + ":")


def test_range_bounds_are_inclusive(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "[limits]\nmax_stanza_size = 1024\noffline_max_messages = 0\n")
    assert cfg.limits.max_stanza_size == 1024
    assert cfg.limits.offline_max_messages == 0


# -- listen addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("127.0.0.1:5222", ("127.0.0.1", 5222)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:5222", ("::1", 5222)),
        ("[::]:65535", ("::", 65535)),
        ("localhost:5280", ("localhost", 5280)),
    ],
)
def test_parse_listen(addr: str, expected: tuple[str, int]) -> None:
    assert parse_listen(addr) == expected


@pytest.mark.parametrize(
    "addr", ["localhost", "5222", ":5222", "localhost:", "localhost:65536", "localhost:-1", "h:x"]
)
def test_bad_listen_addresses(addr: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(addr)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[c2s]\nlisten = ['localhost']\n", "c2s.listen[0]"),
        ("[c2s]\ntls_listen = ['127.0.0.1:5223', 'x:99999']\n", "c2s.tls_listen[1]"),
        ("[s2s]\nlisten = [':5269']\n", "s2s.listen[0]"),
        ("[http]\nlisten = ['127.0.0.1:http']\n", "http.listen[0]"),
    ],
)
def test_bad_listen_address_in_file_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    assert error_for(tmp_path, text).startswith(key + ":")


# -- cross-key validation -----------------------------------------------------------------------


def test_non_canonical_domain_rfc7622_3_2(tmp_path: Path) -> None:
    msg = error_for(tmp_path, "[server]\ndomains = ['Example.COM']\n")
    assert msg.startswith("server.domains[0]:")
    assert "canonical" in msg
    msg = error_for(tmp_path, "[server]\ndomains = ['example.com', 'example.net.']\n")
    assert msg.startswith("server.domains[1]:")


def test_invalid_domain(tmp_path: Path) -> None:
    assert error_for(tmp_path, "[server]\ndomains = ['exa mple']\n").startswith(
        "server.domains[0]:"
    )


def test_at_least_one_domain(tmp_path: Path) -> None:
    assert error_for(tmp_path, "[server]\ndomains = []\n").startswith("server.domains:")


def test_tls_cert_without_key(tmp_path: Path) -> None:
    assert "tls.cert and tls.key" in error_for(tmp_path, "[tls]\ncert = '/etc/cert.pem'\n")
    assert "tls.cert and tls.key" in error_for(tmp_path, "[tls]\nkey = '/etc/key.pem'\n")


def test_tls_certificate_per_domain(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        "[server]\ndomains = ['example.org', 'example.net']\n"
        "[tls]\nwatch_interval = 1\n"
        "[tls.domains.'example.org']\ncert = '/etc/org.crt'\nkey = '/etc/org.key'\n"
        "[tls.domains.'upload.example.net']\ncert = '/etc/up.crt'\nkey = '/etc/up.key'\n",
    )
    assert cfg.tls.domains["example.org"] == config.TLSDomainConfig("/etc/org.crt", "/etc/org.key")
    assert cfg.tls.domains["upload.example.net"].cert == "/etc/up.crt"
    assert cfg.tls.watch_interval == 1.0


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[tls.domains.'example.com']\ncert = 'c'\nkey = 'k'\n", 'tls.domains."example.com"'),
        ("[tls.domains.'Localhost']\ncert = 'c'\nkey = 'k'\n", 'tls.domains."Localhost"'),
        ("[tls.domains.localhost]\ncert = 'c'\n", 'tls.domains."localhost"'),
        (
            "[tls.domains.localhost]\ncert = 'c'\nkey = 'k'\nca = 'x'\n",
            'tls.domains."localhost".ca',
        ),
        ("[tls]\ndomains = { localhost = 'c' }\n", 'tls.domains."localhost"'),
        ("[tls]\nwatch_interval = -1\n", "tls.watch_interval"),
    ],
)
def test_tls_domain_errors_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    assert error_for(tmp_path, text).startswith(f"{key}:")


@pytest.mark.parametrize("url", ["mysql://x", "sqlite", "file:///x.db", ""])
def test_unsupported_storage_url(tmp_path: Path, url: str) -> None:
    assert error_for(tmp_path, f"[storage]\nurl = '{url}'\n").startswith("storage.url:")


@pytest.mark.parametrize(
    "url", ["memory://", "sqlite://", "sqlite:///d.db", "postgresql://u@h/db", "postgres://h/db"]
)
def test_supported_storage_urls(tmp_path: Path, url: str) -> None:
    assert load_text(tmp_path, f"[storage]\nurl = '{url}'\n").storage.url == url


def test_data_path() -> None:
    cfg = dataclasses.replace(Config(), server=config.ServerConfig(data_dir="/srv"))
    assert data_path(cfg, "a", "b.db") == "/srv/a/b.db"


@pytest.mark.parametrize("prefix", ["bad prefix", "", "a/b"])
def test_invalid_muc_domain_prefix(tmp_path: Path, prefix: str) -> None:
    assert error_for(tmp_path, f"[muc]\ndomain_prefix = '{prefix}'\n").startswith(
        "muc.domain_prefix:"
    )


def test_muc_keys_are_checked(tmp_path: Path) -> None:
    assert error_for(tmp_path, "[muc]\nroom_creation = 'nobody'\n").startswith("muc.room_creation:")
    assert error_for(tmp_path, "[muc]\nmax_occupants = 0\n").startswith("muc.max_occupants:")
    cfg = load_text(tmp_path, "[muc]\nhistory_length = 5\nenabled = false\n")
    assert cfg.muc.history_length == 5 and not cfg.muc.enabled


def test_example_config_is_valid_and_shows_the_defaults() -> None:
    """descant.example.toml documents the defaults: loading it changes nothing."""
    import dataclasses
    from pathlib import Path

    from descant.config import Config, load

    example = Path(__file__).resolve().parents[2] / "descant.example.toml"
    loaded = load(str(example))
    assert dataclasses.replace(loaded, path=None) == Config()


@pytest.mark.parametrize("addr", ["::1:5222", "[::1:5222", "localhost:\u0665", "host:5222]"])
def test_listen_addresses_are_strict(addr: str) -> None:
    """Bare IPv6 (ambiguous with the port), unmatched brackets, non-ASCII digits."""
    from descant.config import parse_listen

    with pytest.raises(ValueError):
        parse_listen(addr)


def test_listen_address_forms() -> None:
    from descant.config import parse_listen

    assert parse_listen("[::1]:5222") == ("::1", 5222)
    assert parse_listen("0.0.0.0:5269") == ("0.0.0.0", 5269)
    assert parse_listen("localhost:5222") == ("localhost", 5222)


def test_admins_and_registration(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        '[server]\nadmins = ["root@localhost"]\n[registration]\nopen = true\nper_ip_per_hour = 3\n',
    )
    assert cfg.server.admins == ["root@localhost"]
    assert cfg.registration.open and cfg.registration.per_ip_per_hour == 3
    assert not Config().registration.open  # closed unless asked for
    for bad in ('"localhost"', '"root@elsewhere.test"', '"root@localhost/res"', '"a b@localhost"'):
        assert "server.admins[0]" in error_for(tmp_path, f"[server]\nadmins = [{bad}]\n")
    assert "registration.per_ip_per_hour" in error_for(
        tmp_path, "[registration]\nper_ip_per_hour = 0\n"
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[upload]\nurl_base = "ftp://x/upload"', "upload.url_base"),
        ('[upload]\nexpire_after = "soon"', "upload.expire_after"),
        ('[upload]\ndomain_prefix = "bad prefix"', "upload.domain_prefix"),
        ("[upload]\nmax_file_size = 0", "upload.max_file_size"),
        ("[upload]\nslot_timeout = 0", "upload.slot_timeout"),
        ("[upload]\nmax_pending_slots = 0", "upload.max_pending_slots"),
    ],
)
def test_upload_keys_are_checked(tmp_path: Path, text: str, key: str) -> None:
    assert key in error_for(tmp_path, text)


def test_upload_url_base_defaults_to_the_http_listener() -> None:
    """docs/upload.md: external_url, else the first HTTPS, else HTTP listener; a wildcard
    address becomes the domain's name."""
    import dataclasses

    from descant.config import Config, HTTPConfig, UploadConfig
    from descant.features.upload.service import default_url_base

    cfg = Config()
    assert default_url_base(cfg, "localhost") == "http://127.0.0.1:5280/upload"
    wild = dataclasses.replace(cfg, http=HTTPConfig(listen=["0.0.0.0:80"], tls_listen=["[::]:443"]))
    assert default_url_base(wild, "example.org") == "https://example.org/upload"
    v6 = dataclasses.replace(cfg, http=HTTPConfig(listen=["[::1]:5280"]))
    assert default_url_base(v6, "localhost") == "http://[::1]:5280/upload"
    ext = dataclasses.replace(cfg, http=HTTPConfig(external_url="https://chat.example.org/"))
    assert default_url_base(ext, "x") == "https://chat.example.org/upload"
    own = dataclasses.replace(cfg, upload=UploadConfig(url_base="https://files.example.org/u/"))
    assert default_url_base(own, "x") == "https://files.example.org/u"


def test_invites_section(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, '[invites]\nwho = "users"\nexpire_after = "12h"\nmax_per_user = 3\n')
    assert (cfg.invites.who, cfg.invites.expire_after, cfg.invites.max_per_user) == (
        "users",
        "12h",
        3,
    )
    assert Config().invites.enabled and Config().invites.who == "admins"
    assert "invites.who" in error_for(tmp_path, '[invites]\nwho = "everyone"\n')
    assert "invites.expire_after" in error_for(tmp_path, '[invites]\nexpire_after = "soon"\n')
    assert "invites.max_per_user" in error_for(tmp_path, "[invites]\nmax_per_user = 0\n")
