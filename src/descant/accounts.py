"""Accounts: creating SCRAM credentials and checking passwords.

Only SCRAM salted keys are stored (RFC 5802 §3) — for SHA-1 and SHA-256 —
never the password. PLAIN logins are checked by deriving the keys again, and the
keys of new accounts and passwords are made, on a small thread pool
(:func:`password_matches`, :func:`derive_account`): a derivation costs about a
millisecond of CPU per 4,096 iterations, which on the event loop would hold up
every other user's stanzas; ``hashlib`` releases the GIL while it derives.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import scramp

from descant.storage.api import Account, ScramCredentials

T = TypeVar("T")

ITERATIONS = 4096
# Derivations running or waiting at once; past it a login is told to try again
# later rather than queue without bound (a login flood must not build a backlog).
MAX_PENDING_DERIVATIONS = 256
_kdf_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="descant-kdf")
_pending = 0


def make_credentials(password: str, mechanism: str) -> ScramCredentials:
    salt, stored_key, server_key, iterations = scramp.ScramMechanism(mechanism).make_auth_info(
        password, iteration_count=ITERATIONS
    )
    return ScramCredentials(salt, iterations, stored_key, server_key)


def make_account(host: str, username: str, password: str) -> Account:
    return Account(
        host,
        username,
        make_credentials(password, "SCRAM-SHA-1"),
        make_credentials(password, "SCRAM-SHA-256"),
    )


def check_password(account: Account, password: str) -> bool:
    cred = account.sha256
    try:
        _, stored_key, _, _ = scramp.ScramMechanism("SCRAM-SHA-256").make_auth_info(
            password, iteration_count=cred.iterations, salt=cred.salt
        )
    except scramp.ScramException:
        return False
    return hmac.compare_digest(stored_key, cred.stored_key)


async def password_matches(account: Account, password: str) -> bool | None:
    """:func:`check_password` off the event loop; None when too many derivations are
    already pending (the caller answers with a temporary failure)."""
    return await _derive(check_password, account, password)


async def derive_account(host: str, username: str, password: str) -> Account | None:
    """:func:`make_account` off the event loop (two key derivations, for a new account
    or a new password); None when too many derivations are already pending."""
    return await _derive(make_account, host, username, password)


async def _derive(fn: Callable[..., T], *args: Any) -> T | None:
    global _pending
    if _pending >= MAX_PENDING_DERIVATIONS:
        return None
    _pending += 1
    try:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_kdf_pool, fn, *args)
    finally:
        _pending -= 1
