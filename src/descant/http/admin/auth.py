"""Who is logged in to the admin pages: the session table, cookies and CSRF tokens.

A login makes an :class:`AdminSession` under a fresh random id (256 bits), which
is all the browser gets, in the ``descant_admin`` cookie (``HttpOnly;
SameSite=Strict; Path=/admin``, plus ``Secure`` when the browser reaches us over
HTTPS). The table lives in memory only, so a restart logs everyone out:

    (none) --login--> LIVE --request within ``timeout`` of the last--> LIVE
    LIVE --logout, ``timeout`` unused, ``MAX_AGE`` since login,
           evicted as the least recently used of ``MAX_SESSIONS``--> gone

Each session has its own CSRF token, which every form of its pages carries and
every POST must return (compared in constant time). The login form itself has
no session yet: its token is an HMAC, under a key made at start, of a random
nonce the login page sets in a second cookie (a signed double-submit), so that
nothing is stored for people who merely open the login page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from descant.jid import JID

COOKIE = "descant_admin"
LOGIN_COOKIE = "descant_admin_login"
PATH = "/admin"
MAX_SESSIONS = 100  # admins are few; past it, the least recently used goes
MAX_AGE = 12 * 3600.0  # a login lasts at most this long, however busy
MAX_FLASH = 5  # notes waiting to be shown on the next page


@dataclass(slots=True)
class AdminSession:
    id: str
    jid: JID
    csrf: str
    created: float
    used: float
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, text)

    def note(self, kind: str, text: str) -> None:
        """A line for the next page ("info" or "error")."""
        self.flash = [*self.flash[-(MAX_FLASH - 1) :], (kind, text)]

    def take_flash(self) -> list[tuple[str, str]]:
        out, self.flash = self.flash, []
        return out


class SessionTable:
    def __init__(
        self, timeout: float, clock: Callable[[], float] = time.monotonic, limit: int = MAX_SESSIONS
    ) -> None:
        self.timeout = timeout
        self.clock = clock
        self.limit = limit
        self._sessions: OrderedDict[str, AdminSession] = OrderedDict()
        self._login_key = secrets.token_bytes(32)

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, jid: JID, replaces: str | None = None) -> AdminSession:
        """A new session with a new id (the old one, if any, ends: ids rotate on login)."""
        if replaces:
            self._sessions.pop(replaces, None)
        now = self.clock()
        session = AdminSession(secrets.token_urlsafe(32), jid, secrets.token_urlsafe(32), now, now)
        self._sessions[session.id] = session
        while len(self._sessions) > self.limit:
            self._sessions.popitem(last=False)
        return session

    def get(self, sid: str | None) -> AdminSession | None:
        """The live session with this id, now marked used; None if there is none."""
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        now = self.clock()
        if now - session.used > self.timeout or now - session.created > MAX_AGE:
            del self._sessions[sid]
            return None
        session.used = now
        self._sessions.move_to_end(sid)
        return session

    def end(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)

    # -- the login form's token -------------------------------------------------------------

    def login_token(self, nonce: str) -> str:
        return hmac.new(self._login_key, nonce.encode(), hashlib.sha256).hexdigest()

    def login_token_ok(self, nonce: str | None, token: str) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.login_token(nonce).encode(), token.encode())


def token_ok(session: AdminSession, token: str) -> bool:
    """Whether a form's CSRF token is its session's (constant time)."""
    return bool(token) and hmac.compare_digest(session.csrf.encode(), token.encode())


def set_cookie(resp: web.StreamResponse, name: str, value: str, secure: bool) -> None:
    resp.set_cookie(name, value, path=PATH, httponly=True, samesite="Strict", secure=secure)


def clear_cookie(resp: web.StreamResponse, name: str) -> None:
    resp.del_cookie(name, path=PATH)


__all__ = ["COOKIE", "LOGIN_COOKIE", "AdminSession", "SessionTable", "token_ok"]
