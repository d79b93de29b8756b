"""Configuration: one TOML file → frozen dataclasses, validated key by key.

Every key has a default (the embedded configuration ``descant serve`` runs
with when given no file). Unknown keys and values of the wrong type or range
raise :class:`ConfigError` naming the key, which the CLI prints without a
traceback.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin, get_type_hints


class ConfigError(Exception):
    """A configuration problem; the message names the key."""


@dataclass(frozen=True)
class ServerConfig:
    domains: list[str] = field(default_factory=lambda: ["localhost"])
    data_dir: str = "data"
    # Bare JIDs (accounts of served domains) allowed to run the XEP-0133 admin commands.
    admins: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class C2SConfig:
    listen: list[str] = field(default_factory=lambda: ["127.0.0.1:5222"])
    tls_listen: list[str] = field(default_factory=list)
    require_tls: bool = True
    # Benchmarks and test rigs only: SASL PLAIN on an unencrypted stream.
    allow_plain_without_tls: bool = False
    auth_timeout: float = 60.0
    # Seconds of silence before TCP keepalive probes look for a vanished client; 0: off.
    tcp_keepalive: int = 300
    # XEP-0198: seconds a session whose connection was lost waits to be resumed
    # (a client may ask for less with 'max'); 0 turns resumption off.
    resume_timeout: float = 300.0
    # XEP-0198: stanzas sent and not yet acknowledged a session may hold; past
    # that the session ends (what is unacknowledged goes to offline storage).
    max_unacked: int = 500


@dataclass(frozen=True)
class S2SConfig:
    listen: list[str] = field(default_factory=lambda: ["0.0.0.0:5269"])
    # "verify": the peer's certificate must verify for its domain (RFC 6125);
    # "dialback": TLS, then XEP-0220 dialback (the default); "insecure": tests only.
    policy: str = "dialback"
    policies: dict[str, str] = field(default_factory=dict)
    # Static routes ("domain" = "host:port") consulted before DNS SRV.
    routes: dict[str, str] = field(default_factory=dict)
    ca_file: str = ""
    # XEP-0185 dialback secret; random per process when empty (set it in a cluster).
    dialback_secret: str = ""
    connect_timeout: float = 10.0
    idle_timeout: float = 600.0
    keepalive: float = 60.0


@dataclass(frozen=True)
class ComponentsConfig:
    listen: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModulesConfig:
    # Extra modules every host loads, as "package.module:ClassName".
    extra: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HTTPConfig:
    # WebSocket (RFC 7395), BOSH (XEP-0206) and host-meta (XEP-0156); docs/web.md.
    listen: list[str] = field(default_factory=lambda: ["127.0.0.1:5280"])
    # HTTPS on the listener itself, with the server's certificate.
    tls_listen: list[str] = field(default_factory=list)
    # Reverse proxies (addresses or networks) whose X-Forwarded-For and
    # X-Forwarded-Proto headers are believed.
    trusted_proxies: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1"])
    # Origins whose web pages may use the WebSocket and BOSH endpoints
    # ("https://chat.example.org"); empty: only pages from the endpoint's own
    # host; "*": any.
    allowed_origins: list[str] = field(default_factory=list)
    # A WebSocket silent this many seconds gets a ping; silent as long again, it is
    # dropped; 0: no pings.
    websocket_ping: float = 60.0
    # The public base URL host-meta advertises ("https://xmpp.example.org");
    # empty: taken from each request.
    external_url: str = ""
    # BOSH (XEP-0124): the longest a request is held, and how long a session may
    # go without one before it ends.
    bosh_max_wait: float = 60.0
    bosh_inactivity: float = 60.0
    # Converse.js, the bundled browser client, at / (docs/web.md).
    web_client: bool = True
    # Prometheus metrics at /metrics (docs/metrics.md), readable from the addresses or
    # networks in metrics_allow; empty: loopback and the trusted proxies' own requests.
    metrics: bool = True
    metrics_allow: list[str] = field(default_factory=list)
    # The administration pages at /admin for server.admins (docs/admin.md), and how
    # long a login there lasts unused, in seconds.
    admin_page: bool = True
    admin_session_timeout: float = 1800.0


@dataclass(frozen=True)
class MUCConfig:
    domain_prefix: str = "conference"
    # Serve <domain_prefix>.<domain> for every served domain (docs/muc.md).
    enabled: bool = True
    # Who may create rooms: "local" (accounts of served domains) or "anyone".
    room_creation: str = "local"
    # Groupchat messages kept per room for discussion history on join.
    history_length: int = 50
    # The default and the upper bound of a room's muc#roomconfig_maxusers.
    max_occupants: int = 500


@dataclass(frozen=True)
class MAMConfig:
    # Message Archive Management for every account (XEP-0313; docs/mam.md).
    enabled: bool = True
    # What is archived for an account that set no preferences: "always", "roster"
    # (only conversations with roster contacts) or "never".
    default: str = "always"
    # The most messages one query returns (a client's <max/> is capped to it).
    max_page: int = 250
    # Messages older than this are removed ("30d", "1y", "12w"; "" keeps them forever).
    expire_after: str = "1y"


@dataclass(frozen=True)
class PubSubConfig:
    # Serve <domain_prefix>.<domain> for every served domain (XEP-0060).
    enabled: bool = True
    domain_prefix: str = "pubsub"
    # Who may create nodes on the pubsub service: "local" accounts or "anyone".
    node_creation: str = "local"
    # The most items a node keeps (what "max" means in pubsub#max_items), on the
    # pubsub service and in PEP.
    max_items: int = 1000
    # The largest item payload accepted, in bytes of XML.
    max_payload: int = 65536
    # The most PEP nodes one account may have, and nodes one owner may create on the
    # pubsub service.
    max_nodes: int = 256


@dataclass(frozen=True)
class PushConfig:
    # XEP-0357: what a notification tells the app server (and so the platform's
    # push service): the sender's JID, and the message body only when asked.
    include_body: bool = False
    include_sender: bool = True
    # Consecutive failed publishes (an error answer or a timeout) after which a
    # registration is removed; a successful one resets the count.
    max_errors: int = 3
    # Seconds to wait for the app server's answer to one publish.
    timeout: float = 30.0


@dataclass(frozen=True)
class RegistrationConfig:
    # XEP-0077 in-band registration of new accounts by anyone who connects (password
    # changes and account removal by logged-in users work either way).
    open: bool = False
    # Accounts one address may register per hour; more are <resource-constraint/>.
    per_ip_per_hour: int = 5


@dataclass(frozen=True)
class InvitesConfig:
    # Account invitations (XEP-0401, XEP-0445, XEP-0379; docs/accounts.md): links that
    # let one person register even while registration.open is false.
    enabled: bool = True
    # Who may create invitations over XMPP: "admins" (server.admins) or "users" (any
    # account of the domain). The command line always may.
    who: str = "admins"
    # How long an invitation stays valid ("7d", "12h"; "" never expires).
    expire_after: str = "7d"
    # Unused, unexpired invitations one account may hold at once.
    max_per_user: int = 10


@dataclass(frozen=True)
class UploadConfig:
    # XEP-0363 HTTP file upload at <domain_prefix>.<domain> (docs/upload.md).
    enabled: bool = True
    domain_prefix: str = "upload"
    # The largest file one slot may be for, in bytes.
    max_file_size: int = 100 * 1024 * 1024
    # Bytes one account's files (and pending slots) may take together.
    quota_per_account: int = 1024 * 1024 * 1024
    # Files older than this are removed ("30d", "12w"; "" keeps them forever).
    expire_after: str = "30d"
    # Seconds a slot stays valid for its PUT.
    slot_timeout: float = 300.0
    # Slots one account may hold unused at once.
    max_pending_slots: int = 10
    # The public URL of the /upload path of the HTTP listener; empty: from
    # http.external_url, else the first HTTP listener (https first).
    url_base: str = ""


@dataclass(frozen=True)
class StorageConfig:
    url: str = "sqlite:///data/descant.db"


@dataclass(frozen=True)
class TLSDomainConfig:
    cert: str = ""
    key: str = ""


@dataclass(frozen=True)
class TLSConfig:
    # The default certificate chain and key (PEM); empty: self-signed in data_dir/certs.
    cert: str = ""
    key: str = ""
    # A certificate per domain ([tls.domains."example.org"] cert, key), chosen by SNI
    # or the stream's 'to'; it also serves subdomains its names cover.
    domains: dict[str, TLSDomainConfig] = field(default_factory=dict)
    # Seconds between checks of the certificate and key files; a change is reloaded
    # (as on SIGHUP). 0: only on SIGHUP.
    watch_interval: float = 5.0


@dataclass(frozen=True)
class LimitsConfig:
    max_stanza_size: int = 262144
    max_connections_per_ip: int = 100
    max_auth_failures: int = 5
    auth_failure_window: float = 60.0
    # Bytes a c2s connection may send per second before reading is paused.
    c2s_rate: int = 1048576
    # Stanzas per second one client connection may send (bursts of a second's worth);
    # beyond it the connection is slowed down, nothing is dropped.
    c2s_stanza_rate: int = 500
    offline_max_messages: int = 1000
    # Sessions (bound resources) one account may have at once; binding another is
    # <resource-constraint/> (RFC 6120 §7.6.2.1). A resource rebound replaces its holder.
    max_sessions_per_account: int = 10
    # Targets of directed presence one session may have (rooms joined, presence sent
    # to non-subscribers); one more is <resource-constraint/>.
    max_directed_presences: int = 1000
    # Contacts one roster may hold, and subscription requests waiting for an answer;
    # a new contact beyond it is <policy-violation/>, further requests are dropped.
    max_roster_items: int = 2000
    # Rooms one account may own on a MUC service; creating one more is <not-allowed/>.
    max_rooms_per_account: int = 100
    # Private XML documents (one per namespace, XEP-0049) one account may store.
    max_private_documents: int = 100
    # Remote domains an account's stanzas may make the server connect to, per hour,
    # besides its contacts' (each costs a DNS lookup and connection attempts); beyond
    # it, <policy-violation/>.
    max_remote_domains_per_hour: int = 100


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    c2s: C2SConfig = field(default_factory=C2SConfig)
    s2s: S2SConfig = field(default_factory=S2SConfig)
    components: ComponentsConfig = field(default_factory=ComponentsConfig)
    modules: ModulesConfig = field(default_factory=ModulesConfig)
    http: HTTPConfig = field(default_factory=HTTPConfig)
    muc: MUCConfig = field(default_factory=MUCConfig)
    pubsub: PubSubConfig = field(default_factory=PubSubConfig)
    mam: MAMConfig = field(default_factory=MAMConfig)
    push: PushConfig = field(default_factory=PushConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    upload: UploadConfig = field(default_factory=UploadConfig)
    invites: InvitesConfig = field(default_factory=InvitesConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    path: str | None = None


_RANGES: dict[str, tuple[float, float]] = {
    "limits.max_stanza_size": (1024, 64 * 1024 * 1024),
    "limits.max_connections_per_ip": (1, 1_000_000),
    "limits.max_auth_failures": (1, 1000),
    "limits.auth_failure_window": (1, 86400),
    "limits.c2s_rate": (1024, 1 << 40),
    "limits.c2s_stanza_rate": (1, 1_000_000),
    "limits.offline_max_messages": (0, 1_000_000),
    "limits.max_sessions_per_account": (1, 10_000),
    "limits.max_directed_presences": (1, 1_000_000),
    "limits.max_roster_items": (1, 1_000_000),
    "limits.max_rooms_per_account": (1, 1_000_000),
    "limits.max_private_documents": (1, 100_000),
    "limits.max_remote_domains_per_hour": (1, 1_000_000),
    "c2s.auth_timeout": (1, 3600),
    "c2s.tcp_keepalive": (0, 86400),
    "c2s.resume_timeout": (0, 86400),
    "c2s.max_unacked": (10, 1_000_000),
    "muc.history_length": (0, 10000),
    "muc.max_occupants": (1, 1_000_000),
    "pubsub.max_items": (1, 100_000),
    "pubsub.max_payload": (1024, 16 * 1024 * 1024),
    "pubsub.max_nodes": (1, 100_000),
    "mam.max_page": (1, 10_000),
    "push.max_errors": (1, 1000),
    "registration.per_ip_per_hour": (1, 1_000_000),
    "push.timeout": (0.1, 3600),
    "s2s.connect_timeout": (0.1, 600),
    "s2s.idle_timeout": (1, 86400),
    "s2s.keepalive": (1, 86400),
    "http.websocket_ping": (0, 3600),
    "http.bosh_max_wait": (1, 3600),
    "http.bosh_inactivity": (5, 3600),
    "http.admin_session_timeout": (1, 86400),
    "tls.watch_interval": (0, 86400),
    "upload.max_file_size": (1, 1 << 40),
    "upload.quota_per_account": (1, 1 << 50),
    "upload.slot_timeout": (1, 86400),
    "upload.max_pending_slots": (1, 10_000),
    "invites.max_per_user": (1, 10_000),
}
_S2S_POLICIES = ("verify", "dialback", "insecure")
_CHOICES = {"log.level": ("debug", "info", "warning", "error"), "s2s.policy": _S2S_POLICIES}
_CHOICES["muc.room_creation"] = ("local", "anyone")
_CHOICES["pubsub.node_creation"] = ("local", "anyone")
_CHOICES["mam.default"] = ("always", "roster", "never")
_CHOICES["invites.who"] = ("admins", "users")


def _check_value(key: str, hint: Any, value: Any) -> Any:
    if dataclasses.is_dataclass(hint):  # a table inside a table ([tls.domains."x"])
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table")
        return _build(hint, value, f"{key}.")  # type: ignore[arg-type]
    origin = get_origin(hint)
    if origin is dict:
        _, item = get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {type(value).__name__}")
        return {k: _check_value(f'{key}."{k}"', item, v) for k, v in value.items()}
    if origin is list:
        (item,) = get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        return [_check_value(f"{key}[{i}]", item, v) for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        value = float(value)
    elif hint is str and not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if key in _RANGES:
        lo, hi = _RANGES[key]
        if not lo <= value <= hi:
            raise ConfigError(f"{key}: {value} is outside {lo:g}..{hi:g}")
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(_CHOICES[key])}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names or key == "path":
            raise ConfigError(f"{full}: unknown key")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{full}: expected a table [{full}]")
            kwargs[key] = _build(hint, value, f"{full}.")  # type: ignore[arg-type]
        else:
            kwargs[key] = _check_value(full, hint, value)
    return cls(**kwargs)


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_duration(text: str) -> float | None:
    """Seconds in a duration such as "90s", "12h", "30d", "1y"; None for "" (never)."""
    text = text.strip()
    if not text:
        return None
    number, unit = text[:-1], text[-1:]
    if unit not in _DURATION_UNITS or not number.isdigit() or int(number) == 0:
        raise ValueError(f"{text!r} is not a duration like 30d, 12w or 1y")
    return int(number) * _DURATION_UNITS[unit]


def _validate(cfg: Config) -> None:
    from descant.jid import InvalidJID, parse, prep_domain

    if not cfg.server.domains:
        raise ConfigError("server.domains: at least one domain is required")
    for i, d in enumerate(cfg.server.domains):
        try:
            if prep_domain(d) != d:
                raise ConfigError(f"server.domains[{i}]: {d!r} is not in canonical form")
        except InvalidJID as exc:
            raise ConfigError(f"server.domains[{i}]: {exc}") from None
        for key, prefix in (
            ("muc.domain_prefix", cfg.muc.domain_prefix),
            ("pubsub.domain_prefix", cfg.pubsub.domain_prefix),
            ("upload.domain_prefix", cfg.upload.domain_prefix),
        ):
            try:
                prep_domain(f"{prefix}.{d}")
            except InvalidJID as exc:
                raise ConfigError(f"{key}: {exc}") from None
    for i, admin in enumerate(cfg.server.admins):
        try:
            jid = parse(admin)
        except InvalidJID as exc:
            raise ConfigError(f"server.admins[{i}]: {exc}") from None
        if not jid.local or jid.resource or jid.domain not in cfg.server.domains:
            raise ConfigError(
                f"server.admins[{i}]: {admin!r} is not an account (user@domain) of a served domain"
            )
    for section in ("c2s", "s2s", "http", "components"):
        sect = getattr(cfg, section)
        for key in ("listen", "tls_listen"):
            for i, addr in enumerate(getattr(sect, key, [])):
                try:
                    parse_listen(addr)
                except ValueError as exc:
                    raise ConfigError(f"{section}.{key}[{i}]: {exc}") from None
    for key in ("trusted_proxies", "metrics_allow"):
        for i, proxy in enumerate(getattr(cfg.http, key)):
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ConfigError(f"http.{key}[{i}]: {proxy!r} is not an address") from None
    url = cfg.http.external_url
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(f"http.external_url: {url!r} must start with http:// or https://")
    url = cfg.upload.url_base
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(f"upload.url_base: {url!r} must start with http:// or https://")
    for dom, addr in cfg.s2s.routes.items():
        try:
            parse_listen(addr)
        except ValueError as exc:
            raise ConfigError(f's2s.routes."{dom}": {exc}') from None
    for dom, pol in cfg.s2s.policies.items():
        if pol not in _S2S_POLICIES:
            raise ConfigError(
                f's2s.policies."{dom}": {pol!r} is not one of {", ".join(_S2S_POLICIES)}'
            )
    for i, spec in enumerate(cfg.modules.extra):
        if spec.count(":") != 1 or not all(spec.split(":")):
            raise ConfigError(f"modules.extra[{i}]: {spec!r} is not 'package.module:Class'")
    if bool(cfg.tls.cert) != bool(cfg.tls.key):
        raise ConfigError("tls.cert and tls.key must be given together")
    try:
        parse_duration(cfg.mam.expire_after)
    except ValueError as exc:
        raise ConfigError(f"mam.expire_after: {exc}") from None
    try:
        parse_duration(cfg.upload.expire_after)
    except ValueError as exc:
        raise ConfigError(f"upload.expire_after: {exc}") from None
    try:
        parse_duration(cfg.invites.expire_after)
    except ValueError as exc:
        raise ConfigError(f"invites.expire_after: {exc}") from None
    for dom, pair in cfg.tls.domains.items():
        key = f'tls.domains."{dom}"'
        try:
            canonical = prep_domain(dom) == dom
        except InvalidJID:
            canonical = False
        if not canonical:
            raise ConfigError(f"{key}: {dom!r} is not a domain in canonical form")
        served = cfg.server.domains + list(cfg.components.secrets)
        if not any(dom == d or dom.endswith(f".{d}") for d in served):
            raise ConfigError(f"{key}: {dom!r} is not served here (nor a subdomain of one)")
        if not (pair.cert and pair.key):
            raise ConfigError(f"{key}: cert and key must both be given")
    url = cfg.storage.url
    if not url.startswith(("sqlite://", "postgresql://", "postgres://", "memory://")):
        raise ConfigError(f"storage.url: unsupported scheme in {url!r}")


def parse_listen(addr: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' → (host, port)."""
    host, sep, port_s = addr.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{addr!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host or "[" in host or "]" in host:
        raise ValueError(f"{addr!r}: write an IPv6 address in brackets, [::1]:5222")
    if not (port_s.isascii() and port_s.isdigit()) or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"{addr!r} has an invalid port")
    return host, int(port_s)


def load(path: str | None = None) -> Config:
    """Load a config file (or the embedded defaults when path is None)."""
    if path is None:
        path = os.environ.get("DESCANT_CONFIG") or None
    if path is None:
        cfg = Config()
    else:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except OSError as exc:  # a directory, no permission, …
            raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        cfg = _build(Config, data, "")
        cfg = dataclasses.replace(cfg, path=os.path.abspath(path))
    _validate(cfg)
    return cfg


def data_path(cfg: Config, *parts: str) -> str:
    return os.path.join(cfg.server.data_dir, *parts)


__all__ = ["Config", "ConfigError", "TLSConfig", "data_path", "load", "parse_listen"]
