"""The web client's pieces without a server (src/descant/http/webclient): which files
are served, under which paths and types, and the page's CSP."""

from __future__ import annotations

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


def test_csp_names_the_endpoints_and_forbids_inline_scripts() -> None:
    policy = webclient.csp("wss://x.example/xmpp-websocket", "https://x.example/http-bind")
    directives = dict(d.partition(" ")[::2] for d in policy.split("; "))
    assert directives["connect-src"] == (
        "'self' wss://x.example/xmpp-websocket https://x.example/http-bind"
    )
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "'unsafe-eval'" not in directives["script-src"]
    assert directives["frame-ancestors"] == "'none'"
