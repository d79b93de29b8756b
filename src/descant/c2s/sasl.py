"""SASL mechanisms for c2s (RFC 6120 §6): SCRAM-SHA-1/256 and their -PLUS
variants through scramp, and PLAIN (offered only over TLS).

Each mechanism is a small state machine driven by the session:
``start(initial)`` then ``step(response)`` until it returns Success or Failure.
Unknown users go through a SCRAM exchange with throw-away keys and fail at
the end with <not-authorized/>, so probing cannot tell which accounts exist.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

import scramp

from descant.accounts import ITERATIONS, password_matches
from descant.jid import JID, InvalidJID, prep_local, try_parse
from descant.storage.api import Account, AccountStore, ScramCredentials


@dataclass(slots=True)
class Challenge:
    data: bytes


@dataclass(slots=True)
class Success:
    username: str
    data: bytes = b""


@dataclass(slots=True)
class Failure:
    condition: str
    text: str | None = None


Step = Challenge | Success | Failure

# Keys this process's throw-away salts for unknown users (see ScramAuth._credentials).
_FAKE_SALT_KEY = os.urandom(32)

SCRAM_MECHANISMS = ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1")


def _scram_username(client_first: str) -> str | None:
    """The n= attribute of a SCRAM client-first message (RFC 5802 §5.1)."""
    parts = client_first.split(",")
    if len(parts) < 4:
        return None
    for attr in parts[2:]:
        if attr.startswith("n="):
            return attr[2:].replace("=2C", ",").replace("=3D", "=")
    return None


class ScramAuth:
    def __init__(
        self, mechanism: str, host: str, accounts: AccountStore, cb: tuple[str, bytes] | None
    ) -> None:
        self.mechanism = mechanism
        self.host = host
        self.accounts = accounts
        self.cb = cb
        self.username: str | None = None
        self.known = False
        self._server: scramp.core.ScramServer | None = None

    async def start(self, initial: bytes | None) -> Step:
        if not initial:
            return Challenge(b"")
        return await self._first(initial)

    async def _first(self, data: bytes) -> Step:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return Failure("incorrect-encoding")
        raw = _scram_username(text)
        if raw is None:
            return Failure("malformed-request")
        try:
            self.username = prep_local(raw)
        except InvalidJID:
            return Failure("not-authorized")
        account = await self.accounts.get(self.host, self.username)
        self.known = account is not None
        creds = self._credentials(account)
        base = self.mechanism.removesuffix("-PLUS")
        mech = scramp.ScramMechanism(self.mechanism if self.mechanism.endswith("PLUS") else base)

        def auth_fn(_: str) -> tuple[bytes, bytes, bytes, int]:
            return creds.salt, creds.stored_key, creds.server_key, creds.iterations

        try:
            self._server = mech.make_server(auth_fn, channel_binding=self.cb)
            self._server.set_client_first(text)
            return Challenge(self._server.get_server_first().encode())
        except scramp.ScramException as exc:
            # Same answer whether or not the account exists (RFC 6120 §13.11).
            return Failure("malformed-request", str(exc))

    def _credentials(self, account: Account | None) -> ScramCredentials:
        if account is not None:
            return account.sha256 if "256" in self.mechanism else account.sha1
        # Throw-away keys: the exchange proceeds and fails at the proof. The salt
        # must look stored: as long as a real one (32 bytes) and stable per name,
        # or asking twice would tell unknown users from real ones.
        name = f"{self.host}\0{self.username}".encode()
        salt = hmac.new(_FAKE_SALT_KEY, name, hashlib.sha256).digest()
        return ScramCredentials(salt, ITERATIONS, os.urandom(32), os.urandom(32))

    async def step(self, data: bytes) -> Step:
        if self._server is None:
            return await self._first(data)
        try:
            self._server.set_client_final(data.decode("utf-8"))
            final = self._server.get_server_final()
        except (scramp.ScramException, UnicodeDecodeError):
            return Failure("not-authorized")
        if not self.known or self.username is None:
            return Failure("not-authorized")
        return Success(self.username, final.encode())


class PlainAuth:
    mechanism = "PLAIN"

    def __init__(self, host: str, accounts: AccountStore) -> None:
        self.host = host
        self.accounts = accounts
        self.username: str | None = None

    async def start(self, initial: bytes | None) -> Step:
        if initial is None:
            return Challenge(b"")
        return await self.step(initial)

    async def step(self, data: bytes) -> Step:
        try:
            authzid, authcid, password = data.decode("utf-8").split("\0")
        except (UnicodeDecodeError, ValueError):
            return Failure("malformed-request")
        try:
            self.username = prep_local(authcid)
        except InvalidJID:
            return Failure("not-authorized")
        # The authzid is a bare JID (RFC 6120 §6.3.8), compared once prepared.
        if (
            authzid
            and authzid != self.username
            and try_parse(authzid) != JID(self.username, self.host, "")
        ):
            return Failure("invalid-authzid")
        account = await self.accounts.get(self.host, self.username)
        # For an unknown account, the same key derivation against a decoy, so the
        # answer's timing does not tell which accounts exist.
        ok = await password_matches(account or _decoy_account(), password)
        if ok is None:
            return Failure("temporary-auth-failure")
        if account is None or not ok:
            return Failure("not-authorized")
        return Success(self.username)


_decoy: list[Account] = []


def _decoy_account() -> Account:
    if not _decoy:
        from descant.accounts import make_account

        _decoy.append(make_account("decoy.invalid", "decoy", os.urandom(16).hex()))
    return _decoy[0]
