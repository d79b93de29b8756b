"""The web client's pieces without a server (src/descant/http/webclient): which files
are served, under which paths and types, and the page's CSP."""

from __future__ import annotations

from dataclasses import replace

from descant.config import Config
from descant.http import webclient


def test_every_vendored_runtime_file_is_served_and_nothing_else() -> None:
    table = webclient.assets()
    served = {path for path, _ in table.values()}
    for path in webclient.CONVERSE.rglob("*"):
        if not path.is_file():
            continue
        # Notes for people, and gzip copies FileResponse sends in place of their originals.
        skipped = path.name in ("README.md", "VERSION") or path.suffix == ".gz"
        assert (path in served) != skipped, path
    assert not any(".." in name or name.startswith("/") for name in table)


def test_paths_change_with_content() -> None:
    table = webclient.assets()
    version = webclient.converse_version()
    assert f"converse-{version}/converse.min.js" in table
    (init,) = [name for name in table if name.startswith("descant-")]
    assert table[init][0] == webclient.HERE / "descant.js"


def directives(policy: str) -> dict[str, str]:
    return dict(d.partition(" ")[::2] for d in policy.split("; "))


def test_csp_names_the_endpoints_and_forbids_inline_scripts() -> None:
    policy = directives(
        webclient.csp("wss://x.example/xmpp-websocket", "https://x.example/http-bind")
    )
    assert policy["connect-src"] == (
        "'self' wss://x.example/xmpp-websocket https://x.example/http-bind"
    )
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]
    assert policy["frame-ancestors"] == "'none'"


def test_csp_adds_the_upload_origins_for_the_put_and_the_pictures() -> None:
    policy = directives(
        webclient.csp(
            "ws://localhost:5280/xmpp-websocket",
            "http://localhost:5280/http-bind",
            ["http://127.0.0.1:5280"],
        )
    )
    assert policy["connect-src"] == (
        "'self' ws://localhost:5280/xmpp-websocket http://localhost:5280/http-bind"
        " http://127.0.0.1:5280"
    )
    assert policy["img-src"] == "'self' data: blob: https: http://127.0.0.1:5280"
    assert policy["media-src"] == "'self' data: blob: https: http://127.0.0.1:5280"
    assert "127.0.0.1" not in policy["script-src"] + policy["default-src"]


def upload_config(**sections: dict[str, object]) -> Config:
    cfg = Config()
    for name, values in sections.items():
        cfg = replace(cfg, **{name: replace(getattr(cfg, name), **values)})
    return cfg


def test_upload_origins_follow_the_upload_configuration() -> None:
    # `make run`: the first plain HTTP listener.
    assert webclient.upload_origins(Config()) == ["http://127.0.0.1:5280"]
    # HTTPS listener first, then http.external_url, then upload.url_base.
    cfg = upload_config(http={"tls_listen": ["127.0.0.1:5281"]})
    assert webclient.upload_origins(cfg) == ["https://127.0.0.1:5281"]
    cfg = upload_config(http={"external_url": "https://XMPP.example.org/"})
    assert webclient.upload_origins(cfg) == ["https://xmpp.example.org"]
    cfg = upload_config(upload={"url_base": "https://files.example.org:8443/up"})
    assert webclient.upload_origins(cfg) == ["https://files.example.org:8443"]
    # A wildcard listener: each domain's own name, once each.
    cfg = upload_config(
        server={"domains": ["a.example", "b.example"]}, http={"listen": ["0.0.0.0:5280"]}
    )
    assert webclient.upload_origins(cfg) == ["http://a.example:5280", "http://b.example:5280"]
    cfg = upload_config(http={"listen": ["[::1]:5280"]})
    assert webclient.upload_origins(cfg) == ["http://[::1]:5280"]
    # No upload service: nothing added.
    assert webclient.upload_origins(upload_config(upload={"enabled": False})) == []
    # Nothing that would change the policy itself goes in.
    for bad in (
        "https://x.example; script-src *",
        "https://x.example 'unsafe-inline'/up",
        "https://user@x.example/up",
    ):
        assert webclient.upload_origins(upload_config(upload={"url_base": bad})) == [], bad
