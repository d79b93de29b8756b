"""The ``descant`` command: serve, user, invite, room, cert, check.

Every command takes ``--config PATH`` (fallback: the DESCANT_CONFIG
environment variable; without either, the embedded defaults). Problems are
reported in one line on stderr with exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from descant import __version__
from descant.accounts import make_account
from descant.config import Config, ConfigError, data_path, load
from descant.jid import InvalidJID, parse
from descant.storage import open_storage
from descant.storage.api import AccountExists, Storage


class CLIError(Exception):
    pass


def _storage(cfg: Config) -> Storage:
    return open_storage(cfg.storage.url, cfg.server.data_dir)


def _account_jid(cfg: Config, s: str) -> tuple[str, str]:
    try:
        jid = parse(s)
    except InvalidJID as exc:
        raise CLIError(f"{s!r} is not a valid JID: {exc}") from None
    if not jid.local or jid.resource:
        raise CLIError(f"{s!r} is not an account JID (user@domain)")
    if jid.domain not in cfg.server.domains:
        raise CLIError(f"domain {jid.domain!r} is not served (server.domains)")
    return jid.domain, jid.local


def _password(args: argparse.Namespace) -> str:
    if args.password is not None:
        pw: str = args.password
    elif not sys.stdin.isatty():
        pw = sys.stdin.readline().rstrip("\n")
    else:
        pw = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != pw:
            raise CLIError("the passwords do not match")
    if not pw:
        raise CLIError("the password is empty")
    return pw


async def _with_storage(cfg: Config, fn: Callable[[Storage], Awaitable[int]]) -> int:
    storage = _storage(cfg)
    await storage.open()
    try:
        return await fn(storage)
    finally:
        await storage.close()


def cmd_user(cfg: Config, args: argparse.Namespace) -> int:
    if args.action == "list":
        domain = args.domain

        async def run_list(st: Storage) -> int:
            for host, user in await st.accounts.list(domain):
                print(f"{user}@{host}")
            return 0

        return asyncio.run(_with_storage(cfg, run_list))
    host, user = _account_jid(cfg, args.jid)
    if args.action == "add":
        pw = _password(args)

        async def run_add(st: Storage) -> int:
            try:
                await st.accounts.create(make_account(host, user, pw))
            except AccountExists:
                raise CLIError(f"{user}@{host} already exists") from None
            print(f"created {user}@{host}")
            return 0

        return asyncio.run(_with_storage(cfg, run_add))
    if args.action == "passwd":

        async def run_passwd(st: Storage) -> int:
            if await st.accounts.get(host, user) is None:
                raise CLIError(f"{user}@{host} does not exist")
            await st.accounts.set_credentials(make_account(host, user, _password(args)))
            print(f"password changed for {user}@{host}")
            return 0

        return asyncio.run(_with_storage(cfg, run_passwd))

    async def run_del(st: Storage) -> int:
        if not await st.accounts.delete(host, user):
            raise CLIError(f"{user}@{host} does not exist")
        print(f"deleted {user}@{host}")
        return 0

    return asyncio.run(_with_storage(cfg, run_del))


def cmd_invite(cfg: Config, args: argparse.Namespace) -> int:
    """Account invitations (docs/accounts.md): made here, redeemed on a running server."""
    from datetime import UTC, datetime

    from descant.features.invites import links

    now = datetime.now(UTC)
    if args.action == "create":
        creator = ""
        if args.inviter:
            domain, creator = _account_jid(cfg, args.inviter)
            if args.domain and args.domain != domain:
                raise CLIError(f"the inviter {args.inviter} is not an account of {args.domain}")
        else:
            domain = args.domain or cfg.server.domains[0]
        if domain not in cfg.server.domains:
            raise CLIError(f"domain {domain!r} is not served (server.domains)")
        try:
            expires = links.expiry(cfg, now, args.expires)
        except ValueError as exc:
            raise CLIError(f"--expires: {exc}") from None

        async def run_create(st: Storage) -> int:
            if creator and await st.accounts.get(domain, creator) is None:
                raise CLIError(f"{creator}@{domain} does not exist")
            invite = await links.create(st, domain, creator, now, expires)
            print(links.xmpp_uri(invite))
            url = links.landing_url(cfg, invite)
            if url:
                print(url)
            print("expires " + (f"{expires:%Y-%m-%d %H:%M} UTC" if expires else "never"))
            return 0

        return asyncio.run(_with_storage(cfg, run_create))
    if args.action == "list":

        async def run_list(st: Storage) -> int:
            for inv in await st.invites.list(args.domain):
                inviter = f"{inv.creator}@{inv.host}" if inv.creator else "-"
                expires = f"{inv.expires:%Y-%m-%dT%H:%M}Z" if inv.expires else "never"
                state = links.state(inv, now)
                if inv.used_by:
                    state += f" by {inv.used_by}@{inv.host}"
                print(f"{inv.token} {inv.host} inviter={inviter} expires={expires} {state}")
            return 0

        return asyncio.run(_with_storage(cfg, run_list))

    async def run_revoke(st: Storage) -> int:
        if not await st.invites.delete(args.token):
            raise CLIError(f"no invitation {args.token}")
        print(f"revoked {args.token}")
        return 0

    return asyncio.run(_with_storage(cfg, run_revoke))


def cmd_room(cfg: Config, args: argparse.Namespace) -> int:
    """Persistent MUC rooms in storage (docs/muc.md). A running server keeps its own
    copy of the rooms it loaded: destroy rooms while it is stopped, or restart it."""
    if args.action == "list":
        service = args.service

        async def run_list(st: Storage) -> int:
            for svc, room in await st.rooms.list_rooms(service):
                print(f"{room}@{svc}")
            return 0

        return asyncio.run(_with_storage(cfg, run_list))
    try:
        jid = parse(args.jid)
    except InvalidJID as exc:
        raise CLIError(f"{args.jid!r} is not a valid JID: {exc}") from None
    if not jid.local or jid.resource:
        raise CLIError(f"{args.jid!r} is not a room JID (room@service)")

    async def run_destroy(st: Storage) -> int:
        if not await st.rooms.delete_room(jid.domain, jid.local):
            raise CLIError(f"no stored room {jid}")
        print(f"destroyed {jid}")
        return 0

    return asyncio.run(_with_storage(cfg, run_destroy))


def cmd_cert(cfg: Config, args: argparse.Namespace) -> int:
    from descant.net.tls import make_self_signed

    domains = args.domains or cfg.server.domains
    out = data_path(cfg, "certs")
    cert, key = os.path.join(out, f"{domains[0]}.crt"), os.path.join(out, f"{domains[0]}.key")
    make_self_signed(domains, cert, key)
    print(f"certificate: {cert}\nkey:         {key}")
    return 0


def cmd_check(cfg: Config, args: argparse.Namespace) -> int:
    from descant.net.tls import covers, describe

    problems: list[str] = []
    print(f"config: {cfg.path or 'embedded defaults'}")
    print(f"domains: {', '.join(cfg.server.domains)}")
    own = set(cfg.tls.domains)
    pairs = [(f'tls.domains."{d}"', p.cert, p.key, [d]) for d, p in cfg.tls.domains.items()]
    if cfg.tls.cert:
        others = [d for d in cfg.server.domains if d not in own]
        pairs.insert(0, ("tls", cfg.tls.cert, cfg.tls.key, others))
    else:
        print("tls: self-signed certificate in data_dir (made on first start)")
    for key, cert, tls_key, domains in pairs:
        missing = [path for path in (cert, tls_key) if not os.path.isfile(path)]
        problems += [f"{key}: {path} does not exist" for path in missing]
        if missing:
            continue
        try:
            names, expiry = describe(cert)
        except (ValueError, OSError) as exc:
            problems.append(f"{key}.cert: cannot read certificate: {exc}")
            continue
        for d in domains:
            if not covers(names, d):
                problems.append(f"{key}.cert: does not cover {d} (names: {names})")
        print(f"certificate {cert} expires {expiry:%Y-%m-%d}")
    for note in _http_notes(cfg):
        print(f"note: {note}")
    try:
        asyncio.run(_with_storage(cfg, lambda st: _zero()))
        print(f"storage: {cfg.storage.url.split('@')[-1]} ok")
    except Exception as exc:
        problems.append(f"storage.url: cannot open: {exc}")
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


async def _zero() -> int:
    return 0


def _http_notes(cfg: Config) -> list[str]:
    """What an operator may not expect of the web listeners (docs/web.md)."""
    import ipaddress

    from descant.config import parse_listen

    notes = []
    for addr in cfg.http.listen:
        host, _ = parse_listen(addr)
        try:
            local = ipaddress.ip_address(host).is_loopback
        except ValueError:
            local = host == "localhost"
        if not local and cfg.c2s.require_tls:
            notes.append(
                f"http.listen {addr}: web clients connecting there directly over plain HTTP "
                "cannot log in (c2s.require_tls); serve http.tls_listen or put a reverse "
                "proxy in front (docs/web.md)"
            )
    return notes


def cmd_serve(cfg: Config, args: argparse.Namespace) -> int:
    from descant.server import Server

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    server = Server(cfg)
    try:
        asyncio.run(server.serve_forever())
    except OSError as exc:
        # Typically a listener address in use or not permitted.
        raise CLIError(f"cannot start: {exc}") from None
    if server.restart_requested:
        # The XEP-0133 restart command, after a clean stop (listeners closed, storage
        # flushed): the same command line again, in the same process (so the same pid
        # for a supervisor). Descriptors Python opened are not inherited (PEP 446).
        logging.getLogger("descant").info("restarting: %s", " ".join(sys.orig_argv))
        logging.shutdown()
        os.execv(sys.executable, sys.orig_argv)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="descant", description="Descant XMPP server")
    config_help = "TOML config file (default: $DESCANT_CONFIG or built-in)"
    p.add_argument("--config", help=config_help)
    p.add_argument("--version", action="version", version=f"descant {__version__}")
    # --config also after any command ("descant serve --config FILE"); SUPPRESS keeps a
    # command that does not repeat it from resetting the one given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help=config_help)

    def command(parent: Any, name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = parent.add_parser(name, help=help, parents=[common])
        return parser

    sub = p.add_subparsers(dest="command", required=True)
    command(sub, "serve", "run the server in the foreground")
    u = command(sub, "user", "manage accounts").add_subparsers(dest="action", required=True)
    for name, helptext in (("add", "create an account"), ("passwd", "change a password")):
        a = command(u, name, helptext)
        a.add_argument("jid")
        a.add_argument("--password", help="the password (prompted, or read from stdin, if absent)")
    command(u, "del", "delete an account and its data").add_argument("jid")
    command(u, "list", "list accounts").add_argument("domain", nargs="?")
    i = command(sub, "invite", "manage account invitations")
    isub = i.add_subparsers(dest="action", required=True)
    ic = command(isub, "create", "create an invitation and print its links")
    ic.add_argument("domain", nargs="?", help="the domain to register on (default: the first)")
    ic.add_argument("--inviter", help="an account the invitee becomes a contact of")
    ic.add_argument("--expires", help="valid for, e.g. 7d, 12h (default: invites.expire_after)")
    command(isub, "list", "list invitations").add_argument("domain", nargs="?")
    command(isub, "revoke", "delete an invitation").add_argument("token")
    r = command(sub, "room", "manage persistent chat rooms")
    rs = r.add_subparsers(dest="action", required=True)
    command(rs, "list", "list persistent rooms").add_argument("service", nargs="?")
    command(rs, "destroy", "delete a persistent room").add_argument("jid")
    c = command(sub, "cert", "make a self-signed certificate")
    c.add_argument("domains", nargs="*")
    command(sub, "check", "validate the configuration and certificates")
    return p


COMMANDS = {
    "serve": cmd_serve,
    "user": cmd_user,
    "invite": cmd_invite,
    "cert": cmd_cert,
    "check": cmd_check,
    "room": cmd_room,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load(args.config)
        logging.basicConfig(
            level=cfg.log.level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        return COMMANDS[args.command](cfg, args)
    except (ConfigError, CLIError) as exc:
        print(f"descant: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
