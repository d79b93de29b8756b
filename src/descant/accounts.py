"""Accounts: creating SCRAM credentials and checking passwords.

Only SCRAM salted keys are stored (RFC 5802 §3) — for SHA-1 and SHA-256 —
never the password. PLAIN logins are checked by deriving the keys again, on a
small thread pool (:func:`password_matches`): a derivation costs about a
millisecond of CPU per 4,096 iterations, which on the event loop would hold up
every other user's stanzas; ``hashlib`` releases the GIL while it derives.
"""

from __future__ import annotations

import asyncio
import hmac
from concurrent.futures import ThreadPoolExecutor

import scramp

from descant.storage.api import Account, ScramCredentials

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
    global _pending
    if _pending >= MAX_PENDING_DERIVATIONS:
        return None
    _pending += 1
    try:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_kdf_pool, check_password, account, password)
    finally:
        _pending -= 1
