"""The public base URL of the HTTP listener, for links the server hands out (upload
slots, invitation pages) when no request tells which host the client used."""

from __future__ import annotations

from typing import TYPE_CHECKING

from descant.config import parse_listen

if TYPE_CHECKING:
    from descant.config import Config


def public_base(cfg: Config, domain: str) -> str:
    """``http.external_url``, else the first HTTPS listener, else the first HTTP one (a
    wildcard address replaced by ``domain``); "" with no listener."""
    if cfg.http.external_url:
        return cfg.http.external_url.rstrip("/")
    listeners = [("https", a) for a in cfg.http.tls_listen] + [("http", a) for a in cfg.http.listen]
    if not listeners:
        return ""
    scheme, addr = listeners[0]
    host, port = parse_listen(addr)
    if host in ("", "0.0.0.0", "::"):
        host = domain
    elif ":" in host:
        host = f"[{host}]"
    netloc = host if port == {"http": 80, "https": 443}[scheme] else f"{host}:{port}"
    return f"{scheme}://{netloc}"
