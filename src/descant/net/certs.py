"""Which certificate each TLS connection gets, and reloading the certificates.

Sources: the default pair (``tls.cert``/``tls.key``, or the self-signed one in
``data_dir/certs``) and one pair per domain (``[tls.domains."<domain>"]``).

A *generation* is every pair loaded at once, each pair with one context per
*kind* of connection (c2s, HTTPS, incoming s2s with and without client
certificates, outgoing s2s): kinds differ in ALPN and peer verification, never
in the certificate. Selection happens in the SNI callback, which OpenSSL calls
at every handshake, with or without a server name:

    a server name --> the pair configured for that domain, else a pair whose
        names cover it (conference.<domain> under *.<domain>), else as below
    no name, or no pair for it --> the context the handshake began with if it is
        of the current generation (STARTTLS begins with the pair of the stream
        header's 'to'), else the current default (a listener's context, made at
        start, begins every direct-TLS handshake)

Reload (SIGHUP, or the files changing, see :meth:`CertStore.watch`) builds a
whole new generation and only then replaces the current one, so a bad file
(unreadable, unparsable, a key that does not match) leaves everything as it was
and is logged. New handshakes get the new generation; a connection already up
keeps the certificate it was handshaken with, and so keeps its session.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import ssl
from collections.abc import Callable
from typing import Any

from descant.config import TLSConfig
from descant.net import tls
from descant.tasks import TaskGroup

log = logging.getLogger(__name__)

# A kind of connection: makes its context from a certificate and key file.
Factory = Callable[[str, str], ssl.SSLContext]
# What identifies a file's content cheaply: device, inode, size, mtime (None: missing).
Signature = tuple[int, int, int, int] | None


class Pair:
    """One certificate and key as loaded in one generation."""

    __slots__ = ("cert", "contexts", "key", "names")

    def __init__(self, cert: str, key: str) -> None:
        self.cert = cert
        self.key = key
        self.names: tuple[str, ...] = ()
        self.contexts: dict[str, ssl.SSLContext] = {}


class Generation:
    """Every configured pair, loaded at one time."""

    def __init__(self, number: int, default: Pair, domains: dict[str, Pair]) -> None:
        self.number = number
        self.default = default
        self.domains = domains
        self._specific = list({id(p): p for p in domains.values()}.values())

    def lookup(self, name: str) -> Pair | None:
        """The pair configured for ``name``, or one that covers it; None: no such pair."""
        pair = self.domains.get(name)
        if pair is None:
            for p in self._specific:
                if tls.covers(p.names, name):
                    return p
        return pair

    def pick(self, name: str) -> Pair:
        return self.lookup(name) or self.default


class CertStore:
    """The server's certificates (``server.certs``): contexts by kind and domain,
    reloaded on demand (:meth:`reload`) and when their files change (:meth:`watch`)."""

    def __init__(self, config: TLSConfig) -> None:
        self.config = config
        self.default_files = ("", "")
        self.current: Generation | None = None
        self._kinds: dict[str, Factory] = {}
        self._numbers = itertools.count(1)
        self._seen: dict[str, Signature] = {}  # the files as they were at the last load
        self._watcher = TaskGroup("tls watch", limit=1)

    def add_kind(self, name: str, factory: Factory) -> None:
        """A kind of connection (before :meth:`load`): server-side factories return
        :class:`tls.CertContext`, whose handshakes then choose by SNI."""
        self._kinds[name] = factory

    # -- loading ----------------------------------------------------------------------

    def load(self, cert: str, key: str) -> None:
        """The first generation, with this default pair; raises what loading raises."""
        self.default_files = (cert, key)
        seen = self._signatures()
        self.current = self._build()
        self._seen = seen

    def reload(self, reason: str) -> bool:
        """Build a new generation from the files as they are now and put it in use;
        on any failure keep the current one (logged). True when it was replaced."""
        if self.current is None:
            return False
        # Taken first: a change during the build is seen at the next check.
        seen = self._signatures()
        try:
            gen = self._build()
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._seen = seen  # not retried until the files change again
            log.error("TLS: reload (%s) failed, the certificates in use stay: %s", reason, exc)
            return False
        self._seen = seen
        self.current = gen
        log.info(
            "TLS: certificates reloaded (%s): default %s%s",
            reason,
            gen.default.cert,
            "".join(f", {d}: {p.cert}" for d, p in sorted(gen.domains.items())),
        )
        return True

    def _files(self) -> list[str]:
        out = list(self.default_files)
        for d in self.config.domains.values():
            out += [d.cert, d.key]
        return out

    def _build(self) -> Generation:
        number = next(self._numbers)
        loaded: dict[tuple[str, str], Pair] = {}

        def load(cert: str, key: str) -> Pair:
            pair = loaded.get((cert, key))
            if pair is None:
                pair = loaded[(cert, key)] = self._load_pair(number, cert, key)
            return pair

        default = load(*self.default_files)
        domains = {d: load(c.cert, c.key) for d, c in self.config.domains.items()}
        return Generation(number, default, domains)

    def _load_pair(self, number: int, cert: str, key: str) -> Pair:
        pair = Pair(cert, key)
        for kind, factory in self._kinds.items():
            try:
                ctx = factory(cert, key)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise ValueError(f"{cert} / {key}: {exc}") from exc
            if isinstance(ctx, tls.CertContext):
                ctx.generation = number
                ctx.sni_callback = self._selector(kind)
                pair.names = ctx.names
            pair.contexts[kind] = ctx
        return pair

    # -- selection ------------------------------------------------------------------------

    def context(self, kind: str, domain: str) -> ssl.SSLContext:
        """The current context of ``kind`` for a local domain (its own pair, one that
        covers it, or the default)."""
        gen = self.current
        assert gen is not None, "certificates not loaded"
        return gen.pick(domain).contexts[kind]

    def listener_context(self, kind: str) -> ssl.SSLContext:
        """What a direct-TLS listener begins every handshake with: the default pair's
        context now; its SNI callback moves each handshake to the current choice."""
        gen = self.current
        assert gen is not None, "certificates not loaded"
        return gen.default.contexts[kind]

    def end_point(self, ssl_object: Any, kind: str, domain: str) -> bytes:
        """tls-server-end-point data (RFC 5929 §4.1) of the certificate a connection
        was handshaken with; without one (a BOSH session spans connections), of the
        certificate ``domain`` gets now."""
        ctx = getattr(ssl_object, "context", None)
        if not isinstance(ctx, tls.CertContext):
            ctx = self.context(kind, domain)
        return ctx.end_point if isinstance(ctx, tls.CertContext) else b""

    def _selector(self, kind: str) -> Callable[[Any, str | None, ssl.SSLContext], None]:
        def select(ssl_object: Any, name: str | None, ctx: ssl.SSLContext) -> None:
            # An exception here would fail the handshake: log it, keep the context.
            try:
                gen = self.current
                if gen is None:
                    return
                pair = gen.lookup(name.lower().rstrip(".")) if name else None
                if pair is None:
                    if getattr(ctx, "generation", None) == gen.number:
                        return
                    pair = gen.default
                target = pair.contexts[kind]
                if target is not ctx:
                    ssl_object.context = target
            except Exception:
                log.exception("TLS: choosing a certificate for %r failed", name)

        return select

    # -- watching the files -------------------------------------------------------------

    def watch(self, interval: float) -> None:
        """Check the files every ``interval`` seconds (0: never); a change that has
        settled (the same at two checks in a row: a certificate and its key are
        rarely replaced at the same instant) is reloaded."""
        if interval > 0:
            self._watcher.spawn(self._watch(interval))

    async def close(self) -> None:
        await self._watcher.close()

    async def _watch(self, interval: float) -> None:
        pending: dict[str, Signature] | None = None
        while True:
            await asyncio.sleep(interval)
            now = self._signatures()
            if now == self._seen:
                pending = None
            elif now != pending:
                pending = now
            else:
                pending = None
                self.reload("files changed")

    def _signatures(self) -> dict[str, Signature]:
        out: dict[str, Signature] = {}
        for path in self._files():
            try:
                st = os.stat(path)
            except OSError:
                out[path] = None
            else:
                out[path] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        return out
