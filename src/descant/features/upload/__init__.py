"""HTTP file upload (XEP-0363): a service at ``<upload.domain_prefix>.<domain>`` per
served domain (service.py: disco, slot requests, expiry), the PUT and GET endpoints on
the HTTP listener (http.py) and the files under ``data_dir/uploads/`` (files.py).

:func:`add_services` adds them the way MUC and pubsub services are added: a Host of
their own each, listed in the domain's disco#items. The services share one file store
and one set of HTTP routes; the first one's module runs the expiry. See docs/upload.md.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from descant.config import data_path
from descant.features.upload.files import FileStore
from descant.features.upload.http import UploadHTTP
from descant.features.upload.service import UploadModule, default_url_base

if TYPE_CHECKING:
    from descant.host import Host
    from descant.server import Server

log = logging.getLogger("descant.upload")


def add_services(server: Server) -> list[Host]:
    """Create (not start) the upload host of every served domain and install the HTTP
    routes (before the HTTP listener starts); return the hosts."""
    from descant.features.disco import add_service_hosts

    cfg = server.config
    if not cfg.upload.enabled:
        return []
    if not (cfg.http.listen or cfg.http.tls_listen):
        log.warning("upload: no HTTP listener (http.listen), so no upload service")
        return []
    if not default_url_base(cfg, cfg.server.domains[0]):
        return []
    hosts = add_service_hosts(server, cfg.upload.domain_prefix, [UploadModule], "HTTP File Upload")
    if not hosts:
        return []
    files = FileStore(os.path.abspath(data_path(cfg, "uploads")))
    http = UploadHTTP(server, files)
    http.install()
    for i, host in enumerate(hosts):
        mod = host.modules[UploadModule.name]
        assert isinstance(mod, UploadModule)
        mod.files, mod.http = files, http
        mod.sweeper = i == 0
    return hosts


__all__ = ["UploadModule", "add_services"]
