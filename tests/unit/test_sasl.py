"""SASL (descant.c2s.sasl, descant.accounts): SCRAM (RFC 5802, RFC 7677) driven by scramp's
independent client, channel binding (RFC 5929), PLAIN (RFC 4616), per RFC 6120 §6."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
import scramp

from descant.accounts import ITERATIONS, check_password, make_account, make_credentials
from descant.c2s.sasl import Challenge, Failure, PlainAuth, ScramAuth, Step, Success
from descant.storage import AccountStore, open_storage
from descant.storage.api import ScramCredentials

HOST = "example.com"
PASSWORD = "pencil \u00e9\u2603"
CB = ("tls-server-end-point", bytes(range(32)))
SCRAM = ["SCRAM-SHA-1", "SCRAM-SHA-256"]
SCRAM_PLUS = ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"]


@pytest.fixture
async def accounts() -> AsyncIterator[AccountStore]:
    storage = open_storage("memory://", "/tmp")
    await storage.open()
    await storage.accounts.create(make_account(HOST, "juliet", PASSWORD))
    yield storage.accounts
    await storage.close()


async def scram_exchange(
    auth: ScramAuth, client: scramp.ScramClient, *, initial: bool = True
) -> Step:
    """Run a whole exchange; on success let the client verify the server (RFC 5802 §5.1 v=)."""
    first = client.get_client_first().encode()
    if initial:
        step = await auth.start(first)
    else:
        assert await auth.start(None) == Challenge(b"")
        step = await auth.step(first)
    assert isinstance(step, Challenge), step
    client.set_server_first(step.data.decode())
    step = await auth.step(client.get_client_final().encode())
    if isinstance(step, Success):
        client.set_server_final(step.data.decode())
    return step


def server_first_salt(step: Step) -> bytes:
    assert isinstance(step, Challenge)
    attrs = dict(a.split("=", 1) for a in step.data.decode().split(","))
    return base64.b64decode(attrs["s"])


# -- SCRAM without channel binding (RFC 5802, RFC 7677) -------------------------------------------


@pytest.mark.parametrize("mech", SCRAM)
async def test_scram_success_rfc5802_5(accounts: AccountStore, mech: str) -> None:
    auth = ScramAuth(mech, HOST, accounts, None)
    step = await scram_exchange(auth, scramp.ScramClient([mech], "juliet", PASSWORD))
    assert isinstance(step, Success)
    assert step.username == "juliet"
    assert step.data.startswith(b"v=")


@pytest.mark.parametrize("mech", SCRAM)
async def test_scram_without_initial_response_rfc6120_6_4_2(
    accounts: AccountStore, mech: str
) -> None:
    auth = ScramAuth(mech, HOST, accounts, None)
    client = scramp.ScramClient([mech], "juliet", PASSWORD)
    assert isinstance(await scram_exchange(auth, client, initial=False), Success)


async def test_scram_username_is_prepared_rfc7622_3_3(accounts: AccountStore) -> None:
    auth = ScramAuth("SCRAM-SHA-256", HOST, accounts, None)
    step = await scram_exchange(auth, scramp.ScramClient(["SCRAM-SHA-256"], "JULIET", PASSWORD))
    assert isinstance(step, Success)
    assert step.username == "juliet"


async def test_scram_password_is_saslprepped_rfc5802_2_2(accounts: AccountStore) -> None:
    # U+00A0 NO-BREAK SPACE maps to SPACE, U+00AD SOFT HYPHEN to nothing (RFC 4013 §2).
    variant = PASSWORD.replace(" ", "\u00a0\u00ad")
    auth = ScramAuth("SCRAM-SHA-256", HOST, accounts, None)
    step = await scram_exchange(auth, scramp.ScramClient(["SCRAM-SHA-256"], "juliet", variant))
    assert isinstance(step, Success)


@pytest.mark.parametrize("mech", SCRAM)
async def test_scram_wrong_password_is_not_authorized_rfc6120_6_5_10(
    accounts: AccountStore, mech: str
) -> None:
    auth = ScramAuth(mech, HOST, accounts, None)
    step = await scram_exchange(auth, scramp.ScramClient([mech], "juliet", "wrong"))
    assert step == Failure("not-authorized")


@pytest.mark.parametrize("mech", SCRAM)
async def test_scram_unknown_user_proceeds_then_fails_rfc6120_13_11(
    accounts: AccountStore, mech: str
) -> None:
    auth = ScramAuth(mech, HOST, accounts, None)
    step = await scram_exchange(auth, scramp.ScramClient([mech], "romeo", PASSWORD))
    assert step == Failure("not-authorized")


async def test_scram_unknown_user_salt_looks_like_a_real_one_rfc6120_13_11(
    accounts: AccountStore,
) -> None:
    """Probing must not tell accounts apart: an unknown user's salt is as long as a real
    one and the same on every attempt, as a stored salt would be."""

    async def salt(user: str) -> bytes:
        auth = ScramAuth("SCRAM-SHA-256", HOST, accounts, None)
        client = scramp.ScramClient(["SCRAM-SHA-256"], user, "x")
        return server_first_salt(await auth.start(client.get_client_first().encode()))

    real, fake = await salt("juliet"), await salt("romeo")
    assert real == await salt("juliet")
    assert fake == await salt("romeo")
    assert len(fake) == len(real)
    assert fake != await salt("mercutio")


async def test_scram_tampered_nonce_is_not_authorized_rfc5802_5_1(accounts: AccountStore) -> None:
    auth = ScramAuth("SCRAM-SHA-256", HOST, accounts, None)
    client = scramp.ScramClient(["SCRAM-SHA-256"], "juliet", PASSWORD)
    step = await auth.start(client.get_client_first().encode())
    assert isinstance(step, Challenge)
    client.set_server_first(step.data.decode())
    final = client.get_client_final()
    tampered = final.replace("r=", "r=X", 1)
    assert await auth.step(tampered.encode()) == Failure("not-authorized")


@pytest.mark.parametrize(
    "first",
    [
        b"garbage",
        b"n,,n=juliet",
        b"n,,r=abc",
        b"n,,n=juliet,r=",
        b"x,,n=juliet,r=abc",
        b"n,,n=juliet,r=abc,m=ext",
        b"n,,n=romeo,r=",
    ],
)
async def test_scram_malformed_client_first_is_malformed_request_rfc6120_6_5_8(
    accounts: AccountStore, first: bytes
) -> None:
    step = await ScramAuth("SCRAM-SHA-256", HOST, accounts, None).start(first)
    assert isinstance(step, Failure)
    assert step.condition == "malformed-request"


async def test_scram_malformed_answer_does_not_reveal_accounts_rfc6120_13_11(
    accounts: AccountStore,
) -> None:
    known = await ScramAuth("SCRAM-SHA-1", HOST, accounts, None).start(b"n,,n=juliet,r=")
    unknown = await ScramAuth("SCRAM-SHA-1", HOST, accounts, None).start(b"n,,n=romeo,r=")
    assert isinstance(known, Failure)
    assert isinstance(unknown, Failure)
    assert known.condition == unknown.condition


async def test_scram_non_utf8_is_incorrect_encoding_rfc6120_6_5_5(
    accounts: AccountStore,
) -> None:
    step = await ScramAuth("SCRAM-SHA-256", HOST, accounts, None).start(b"n,,n=\xff\xfe,r=abc")
    assert step == Failure("incorrect-encoding")


async def test_scram_invalid_username_is_not_authorized_rfc6120_6_5_10(
    accounts: AccountStore,
) -> None:
    step = await ScramAuth("SCRAM-SHA-256", HOST, accounts, None).start(b"n,,n=a@b,r=abc")
    assert step == Failure("not-authorized")


async def test_scram_garbage_client_final_is_not_authorized_rfc5802_7(
    accounts: AccountStore,
) -> None:
    auth = ScramAuth("SCRAM-SHA-256", HOST, accounts, None)
    client = scramp.ScramClient(["SCRAM-SHA-256"], "juliet", PASSWORD)
    assert isinstance(await auth.start(client.get_client_first().encode()), Challenge)
    assert await auth.step(b"not a scram message") == Failure("not-authorized")
    assert (await ScramAuth("SCRAM-SHA-1", HOST, accounts, None).step(b"\xff")) == Failure(
        "incorrect-encoding"
    )


# -- channel binding: SCRAM-*-PLUS with tls-server-end-point (RFC 5802 §6, RFC 5929 §4) ---------


@pytest.mark.parametrize("mech", SCRAM_PLUS)
async def test_scram_plus_with_matching_binding_rfc5802_6(
    accounts: AccountStore, mech: str
) -> None:
    auth = ScramAuth(mech, HOST, accounts, CB)
    client = scramp.ScramClient([mech], "juliet", PASSWORD, channel_binding=CB)
    step = await scram_exchange(auth, client)
    assert isinstance(step, Success)
    assert step.username == "juliet"


@pytest.mark.parametrize("mech", SCRAM_PLUS)
async def test_scram_plus_with_mismatching_binding_fails_rfc5802_6(
    accounts: AccountStore, mech: str
) -> None:
    """A man in the middle terminates TLS with its own certificate: the hashes differ."""
    auth = ScramAuth(mech, HOST, accounts, CB)
    other = ("tls-server-end-point", bytes(32))
    client = scramp.ScramClient([mech], "juliet", PASSWORD, channel_binding=other)
    assert await scram_exchange(auth, client) == Failure("not-authorized")


async def test_scram_plus_without_binding_from_client_fails_rfc5802_6(
    accounts: AccountStore,
) -> None:
    auth = ScramAuth("SCRAM-SHA-256-PLUS", HOST, accounts, CB)
    client = scramp.ScramClient(["SCRAM-SHA-256"], "juliet", PASSWORD)  # sends "n,,"
    step = await auth.start(client.get_client_first().encode())
    assert isinstance(step, Failure)


async def test_scram_plus_without_tls_fails_rfc5802_6(accounts: AccountStore) -> None:
    auth = ScramAuth("SCRAM-SHA-256-PLUS", HOST, accounts, None)
    client = scramp.ScramClient(["SCRAM-SHA-256-PLUS"], "juliet", PASSWORD, channel_binding=CB)
    step = await auth.start(client.get_client_first().encode())
    assert isinstance(step, Failure)


async def test_scram_downgrade_flag_y_is_refused_rfc5802_6(accounts: AccountStore) -> None:
    """'y' means "I could bind but think you cannot": with binding on offer, a downgrade."""
    auth = ScramAuth("SCRAM-SHA-256", HOST, accounts, CB)
    client = scramp.ScramClient(["SCRAM-SHA-256"], "juliet", PASSWORD, channel_binding=CB)
    first = client.get_client_first()
    assert first.startswith("y,,")
    step = await auth.start(first.encode())
    assert isinstance(step, Failure)


async def test_scram_without_binding_over_tls_for_clients_that_cannot_bind_rfc5802_6(
    accounts: AccountStore,
) -> None:
    auth = ScramAuth("SCRAM-SHA-256", HOST, accounts, CB)
    client = scramp.ScramClient(["SCRAM-SHA-256"], "juliet", PASSWORD)
    assert isinstance(await scram_exchange(auth, client), Success)


# -- PLAIN (RFC 4616) -----------------------------------------------------------------------------


async def plain(accounts: AccountStore, message: bytes) -> Step:
    return await PlainAuth(HOST, accounts).start(message)


async def test_plain_success_rfc4616_2(accounts: AccountStore) -> None:
    step = await plain(accounts, f"\0juliet\0{PASSWORD}".encode())
    assert step == Success("juliet")


async def test_plain_without_initial_response_rfc6120_6_4_2(accounts: AccountStore) -> None:
    auth = PlainAuth(HOST, accounts)
    assert await auth.start(None) == Challenge(b"")
    assert await auth.step(f"\0juliet\0{PASSWORD}".encode()) == Success("juliet")


async def test_plain_authcid_is_prepared_rfc7622_3_3(accounts: AccountStore) -> None:
    assert await plain(accounts, f"\0JuLiEt\0{PASSWORD}".encode()) == Success("juliet")


@pytest.mark.parametrize("authzid", ["juliet", "juliet@example.com", "Juliet@Example.COM"])
async def test_plain_matching_authzid_rfc6120_6_3_8(accounts: AccountStore, authzid: str) -> None:
    step = await plain(accounts, f"{authzid}\0juliet\0{PASSWORD}".encode())
    assert step == Success("juliet")


@pytest.mark.parametrize(
    "authzid", ["romeo", "romeo@example.com", "juliet@example.net", "juliet@example.com/r", "@"]
)
async def test_plain_other_authzid_is_invalid_authzid_rfc6120_6_5_6(
    accounts: AccountStore, authzid: str
) -> None:
    step = await plain(accounts, f"{authzid}\0juliet\0{PASSWORD}".encode())
    assert step == Failure("invalid-authzid")


async def test_plain_wrong_password_is_not_authorized_rfc6120_6_5_10(
    accounts: AccountStore,
) -> None:
    assert await plain(accounts, b"\0juliet\0wrong") == Failure("not-authorized")


async def test_plain_unknown_user_is_not_authorized_rfc6120_6_5_10(
    accounts: AccountStore,
) -> None:
    assert await plain(accounts, f"\0romeo\0{PASSWORD}".encode()) == Failure("not-authorized")


async def test_plain_unknown_user_costs_a_key_derivation(
    accounts: AccountStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown account is not revealed by answering faster (RFC 6120 §13.8)."""
    import descant.accounts

    calls: list[str] = []
    real = descant.accounts.check_password

    def counting(account: object, password: str) -> bool:
        calls.append(password)
        return real(account, password)  # type: ignore[arg-type]

    monkeypatch.setattr(descant.accounts, "check_password", counting)
    assert await plain(accounts, b"\0romeo\0guess") == Failure("not-authorized")
    assert calls == ["guess"]


@pytest.mark.parametrize(
    "message", [b"juliet\0pencil", b"\0juliet\0pencil\0x", b"juliet", b"", b"\0\xff\0pencil"]
)
async def test_plain_malformed_is_malformed_request_rfc6120_6_5_8(
    accounts: AccountStore, message: bytes
) -> None:
    assert await PlainAuth(HOST, accounts).step(message) == Failure("malformed-request")


# -- accounts: stored SCRAM keys and password checks (RFC 5802 §3) ---------------------------------


def test_make_account_stores_keys_not_passwords_rfc5802_3() -> None:
    account = make_account(HOST, "juliet", PASSWORD)
    assert account.host == HOST
    assert account.username == "juliet"
    assert account.sha1.iterations == account.sha256.iterations == ITERATIONS
    assert len(account.sha1.stored_key) == 20
    assert len(account.sha256.stored_key) == 32
    assert account.sha1.salt != account.sha256.salt
    assert PASSWORD.encode() not in repr(account).encode()


def test_credentials_use_fresh_salts_rfc5802_3() -> None:
    a, b = make_credentials("x", "SCRAM-SHA-256"), make_credentials("x", "SCRAM-SHA-256")
    assert a.salt != b.salt
    assert a.stored_key != b.stored_key


def test_check_password_rfc4616_2() -> None:
    account = make_account(HOST, "juliet", PASSWORD)
    assert check_password(account, PASSWORD)
    assert not check_password(account, "wrong")
    assert not check_password(account, "")
    assert not check_password(account, PASSWORD.upper())


def test_check_password_applies_saslprep_rfc4013_2() -> None:
    account = make_account(HOST, "juliet", "I\u00adX")
    assert check_password(account, "IX")
    assert check_password(account, "\u2168")  # ROMAN NUMERAL NINE: NFKC → "IX"


def test_check_password_with_prohibited_characters_is_false_rfc4013_2_3() -> None:
    account = make_account(HOST, "juliet", PASSWORD)
    assert not check_password(account, "a\u0007b")


async def test_plain_derivation_leaves_the_event_loop_free(accounts: AccountStore) -> None:
    """A PLAIN login derives SCRAM keys (PBKDF2) off the event loop: while several
    costly derivations run, the loop still turns every few milliseconds."""
    import asyncio
    import dataclasses
    import time

    slow = make_account(HOST, "slow", PASSWORD)
    slow = dataclasses.replace(  # ~50 ms of derivation each
        slow, sha256=make_credentials_with(PASSWORD, 200_000)
    )
    await accounts.create(slow)
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - t)

    tick = asyncio.create_task(ticker())
    began = time.perf_counter()
    steps = await asyncio.gather(
        *(PlainAuth(HOST, accounts).start(b"\0slow\0" + PASSWORD.encode()) for _ in range(6)),
        *(PlainAuth(HOST, accounts).start(b"\0nobody\0wrong") for _ in range(2)),
    )
    took = time.perf_counter() - began
    stop.set()
    await tick
    assert [type(s) for s in steps] == [Success] * 6 + [Failure] * 2
    # On the loop, the derivations would stall it for about all of ``took``; relative
    # to it, so that a loaded machine slows both sides alike.
    assert max(lags) < took / 3, f"the loop stalled {max(lags) * 1000:.0f} of {took * 1000:.0f} ms"


async def test_too_many_pending_derivations_is_a_temporary_failure(
    accounts: AccountStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Derivations waiting for the pool are bounded: past the bound a PLAIN login gets
    <temporary-auth-failure/> (RFC 6120 §6.5.12) instead of joining a backlog."""
    import asyncio

    from descant import accounts as accounts_module

    monkeypatch.setattr(accounts_module, "MAX_PENDING_DERIVATIONS", 2)
    steps = await asyncio.gather(
        *(PlainAuth(HOST, accounts).start(b"\0juliet\0" + PASSWORD.encode()) for _ in range(4))
    )
    assert sorted(type(s).__name__ for s in steps) == ["Failure", "Failure", "Success", "Success"]
    assert {s.condition for s in steps if isinstance(s, Failure)} == {"temporary-auth-failure"}
    assert accounts_module._pending == 0


def make_credentials_with(password: str, iterations: int) -> ScramCredentials:
    salt, stored_key, server_key, n = scramp.ScramMechanism("SCRAM-SHA-256").make_auth_info(
        password, iteration_count=iterations
    )
    return ScramCredentials(salt, n, stored_key, server_key)
