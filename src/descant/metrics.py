"""``server.metrics``: what ``/metrics`` exports, in the Prometheus text format.

Every metric lives in a registry the server owns (never prometheus_client's global
default), so two servers in one process — tests do that — keep their figures apart.

Cost on the stanza path is what decides how each figure is kept (docs/metrics.md):

- Live figures (sessions by transport, s2s links, components, hibernated sessions)
  are counted at scrape time by :class:`_LiveCollector` from the sets the managers
  keep anyway: nothing per event.
- Stanzas received and sent are plain integers in a dict per path (``received_c2s``,
  ``sent_c2s``, …) incremented inline where a stanza enters or leaves, and exported
  by the collector. prometheus_client's ``Counter.labels(...).inc()`` costs about a
  microsecond (a lock and a label lookup), 5% of a chat message's whole cost; a dict
  increment costs tens of nanoseconds. The dicts are None when metrics are off,
  and the sites skip counting.
- Routing latency is timed for one stanza in :data:`SAMPLE_EVERY` (the router's
  countdown), so its ``_count`` is the sampled stanzas, not all of them; the
  distribution is what matters.
- Storage calls take 100 µs and more, so every one is timed (storage/timed.py).
- Both histograms are this module's :class:`Histogram` (plain numbers; the event
  loop is their only writer): prometheus_client's takes a lock per observation and
  was slow to collect (2.5 ms a scrape for the storage series).
- Rare events (failed logins, uploads) use ordinary prometheus_client counters.

Modules add their own figures through :meth:`Metrics.counter` (registered once,
named ``descant_<name>_total``) and count with :meth:`Metrics.count`; the upload
service counts ``uploads`` and ``upload_bytes``, declared here.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from descant.server import Server

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Routing latency: one stanza in this many is timed.
SAMPLE_EVERY = 16

KINDS = ("message", "presence", "iq")
VIAS = ("c2s", "s2s", "component")

# Routing takes microseconds for a delivery, milliseconds when a handler reads
# storage; the buckets cover both and a stall of seconds.
ROUTING_BUCKETS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
# A SQLite hand-off costs ~100 µs; archive batches and searches take milliseconds.
STORAGE_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
STORAGE_OPERATIONS = ("execute", "fetchone", "fetchall", "script", "transaction")
STORAGE_DATABASES = ("main", "archive")

# SASL mechanisms and failure conditions are label values: anything else a client
# names is "other", so clients cannot grow the label set.
AUTH_MECHANISMS = frozenset(
    {"PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"}
)
AUTH_REASONS = frozenset(
    {
        "aborted",
        "encryption-required",
        "incorrect-encoding",
        "invalid-authzid",
        "invalid-mechanism",
        "malformed-request",
        "mechanism-too-weak",
        "not-authorized",
        "temporary-auth-failure",
        "account-disabled",
        "credentials-expired",
    }
)


class Histogram:
    """One histogram series kept in plain numbers, for the event loop's thread only.

    prometheus_client's ``Histogram`` takes a lock per observation (0.8 µs) and
    collecting ten labelled series of 17 buckets took 2.5 ms a scrape; this one is
    a bisect and two additions, and is exported by :class:`HistogramFamily`."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds


class HistogramFamily(Collector):
    """Histograms of one name, one per label values, collected as a family."""

    def __init__(self, name: str, documentation: str, labels: list[str]) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self.series: dict[tuple[str, ...], Histogram] = {}

    def add(self, values: tuple[str, ...], bounds: tuple[float, ...]) -> Histogram:
        series = self.series[values] = Histogram(bounds)
        return series

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labels)]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, h in self.series.items():
            buckets, total = [], 0
            for bound, n in zip((*h.bounds, math.inf), h.counts, strict=True):
                total += n
                buckets.append((_bound(bound), total))
            family.add_metric(list(values), buckets, h.sum)
        yield family


def _bound(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(bound)


class Metrics:
    """The server's metrics; see the module docstring for what each costs."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.enabled = server.config.http.metrics
        self.started = time.time()
        self.registry = CollectorRegistry(auto_describe=True)
        on = self.enabled
        # Hot-path counters by kind (None when off: the sites skip counting).
        self.received_c2s: dict[str, int] | None = dict.fromkeys(KINDS, 0) if on else None
        self.sent_c2s: dict[str, int] | None = dict.fromkeys(KINDS, 0) if on else None
        self._other: dict[str, dict[str, int]] = {
            f"{d}_{via}": dict.fromkeys(KINDS, 0) for d in ("in", "out") for via in VIAS[1:]
        }
        reg = self.registry
        routing = HistogramFamily(
            "descant_routing_seconds",
            f"Time from a stanza's entry to the end of its routing (1 in {SAMPLE_EVERY} "
            "stanzas timed)",
            [],
        )
        self.routing = routing.add((), ROUTING_BUCKETS)
        reg.register(routing)
        storage = HistogramFamily(
            "descant_storage_seconds",
            "Time of one storage call as its caller waits for it, queueing included",
            ["database", "operation"],
        )
        self._storage = {
            (db, op): storage.add((db, op), STORAGE_BUCKETS)
            for db in STORAGE_DATABASES
            for op in STORAGE_OPERATIONS
        }
        reg.register(storage)
        self.auth_failures = Counter(
            "descant_auth_failures",
            "Failed SASL authentications, by mechanism and failure condition",
            ["mechanism", "reason"],
            registry=reg,
        )
        self._counters: dict[str, Counter] = {}
        self.counter("uploads", "Files uploaded (XEP-0363)")
        self.counter("upload_bytes", "Bytes of files uploaded (XEP-0363)")
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        reg.register(_LiveCollector(self))

    # -- for the stanza paths that are not hot ------------------------------------------------

    def received(self, via: str, kind: str) -> None:
        """A stanza entered from a server or component (``via`` "s2s", "component")."""
        if self.enabled and kind in KINDS:
            self._other[f"in_{via}"][kind] += 1

    def sent(self, via: str, kind: str) -> None:
        """A stanza was handed to a server or component stream."""
        if self.enabled and kind in KINDS:
            self._other[f"out_{via}"][kind] += 1

    # -- storage ------------------------------------------------------------------------------

    def storage_observer(self, database: str) -> Callable[[str, float], None] | None:
        """What storage/timed.py calls with (operation, seconds) for ``database``
        ("main" or "archive"); None when metrics are off."""
        if not self.enabled:
            return None
        children = {op: self._storage[(database, op)] for op in STORAGE_OPERATIONS}

        def observe(operation: str, seconds: float) -> None:
            children[operation].observe(seconds)

        return observe

    # -- events modules count -----------------------------------------------------------------

    def auth_failed(self, mechanism: str, reason: str) -> None:
        if not self.enabled:
            return
        mech = mechanism if mechanism in AUTH_MECHANISMS else "other"
        self.auth_failures.labels(mech, reason if reason in AUTH_REASONS else "other").inc()

    def stanza_totals(self) -> dict[str, int] | None:
        """Stanzas received and sent since start, over every path (None when off):
        ``{"received": n, "sent": n}`` for the admin page's overview."""
        if self.received_c2s is None or self.sent_c2s is None:
            return None
        received = sum(self.received_c2s.values())
        sent = sum(self.sent_c2s.values())
        for key, counts in self._other.items():
            if key.startswith("in_"):
                received += sum(counts.values())
            else:
                sent += sum(counts.values())
        return {"received": received, "sent": sent}

    def counter(self, name: str, documentation: str) -> Counter:
        """Declare ``descant_<name>_total`` (once; declaring it again returns the same)."""
        existing = self._counters.get(name)
        if existing is None:
            existing = Counter(f"descant_{name}", documentation, registry=self.registry)
            self._counters[name] = existing
        return existing

    def count(self, name: str, amount: float = 1) -> None:
        """Add to a declared counter, e.g. ``server.metrics.count("uploads")``.
        A name never declared is a programming error (KeyError)."""
        counter = self._counters[name]
        if self.enabled:
            counter.inc(amount)

    # -- exposition ---------------------------------------------------------------------------

    def render(self) -> bytes:
        """Every metric in the Prometheus text format (version 0.0.4)."""
        return generate_latest(self.registry)


def transport_name(transport: object) -> str:
    """tcp, websocket or bosh: how a client stream's transport is labelled."""
    return _TRANSPORTS.get(type(transport).__name__, "other")


_TRANSPORTS = {"TCPTransport": "tcp", "WebSocketTransport": "websocket", "BoshSession": "bosh"}


class _LiveCollector(Collector):
    """Figures read at scrape time from what the server keeps anyway."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []  # collected fresh at every scrape; nothing to check ahead

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        server = m.server
        yield GaugeMetricFamily(
            "descant_start_time_seconds",
            "When the server started, in seconds since the Unix epoch",
            value=m.started,
        )
        yield GaugeMetricFamily(
            "descant_uptime_seconds", "Seconds since the server started", time.time() - m.started
        )
        connections = dict.fromkeys(("tcp", "websocket", "bosh"), 0)
        sessions = dict(connections)
        for stream in list(server.c2s.streams):
            kind = transport_name(stream.transport)
            connections[kind] = connections.get(kind, 0) + 1
            if stream.session is not None:
                sessions[kind] = sessions.get(kind, 0) + 1
        family = GaugeMetricFamily(
            "descant_c2s_connections",
            "Client connections, authenticated or not, by transport",
            labels=["transport"],
        )
        for kind, n in connections.items():
            family.add_metric([kind], n)
        yield family
        family = GaugeMetricFamily(
            "descant_c2s_sessions",
            "Client sessions (bound resources) with a live connection, by transport",
            labels=["transport"],
        )
        for kind, n in sessions.items():
            family.add_metric([kind], n)
        yield family
        yield GaugeMetricFamily(
            "descant_c2s_sessions_hibernated",
            "Client sessions waiting to be resumed (XEP-0198), without a connection",
            value=len(server.c2s.hibernated),
        )
        s2s = GaugeMetricFamily(
            "descant_s2s_connections",
            "Server-to-server streams (outgoing: one per local/remote domain pair)",
            labels=["direction"],
        )
        s2s.add_metric(["incoming"], len(server.s2s.incoming))
        s2s.add_metric(["outgoing"], len(server.s2s.outgoing))
        yield s2s
        yield GaugeMetricFamily(
            "descant_components_connected",
            "External components (XEP-0114) connected",
            value=len(server.components.sessions),
        )
        if not m.enabled:
            return
        for direction, name, doc in (
            ("in", "descant_stanzas_received", "Stanzas received from streams, by kind"),
            ("out", "descant_stanzas_sent", "Stanzas handed to streams and sessions, by kind"),
        ):
            stanzas = CounterMetricFamily(name, doc, labels=["via", "kind"])
            c2s = m.received_c2s if direction == "in" else m.sent_c2s
            assert c2s is not None
            for kind, n in c2s.items():
                stanzas.add_metric(["c2s", kind], n)
            for via in VIAS[1:]:
                for kind, n in m._other[f"{direction}_{via}"].items():
                    stanzas.add_metric([via, kind], n)
            yield stanzas


__all__ = ["CONTENT_TYPE", "SAMPLE_EVERY", "Metrics", "transport_name"]
