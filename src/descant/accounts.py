"""Accounts: creating SCRAM credentials and checking passwords.

Only SCRAM salted keys are stored (RFC 5802 §3) — for SHA-1 and SHA-256 —
never the password. PLAIN logins are checked by deriving the keys again.
"""

from __future__ import annotations

import hmac

import scramp

from descant.storage.api import Account, ScramCredentials

ITERATIONS = 4096


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
