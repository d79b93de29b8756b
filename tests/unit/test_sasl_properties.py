"""Property tests of the SASL mechanisms (descant.c2s.sasl) against scramp's client.

For any username and password an account can have, a correct PLAIN or SCRAM exchange
succeeds, and any other password, an altered proof, nonce or channel binding fails
with <not-authorized/> (RFC 6120 §6.5.10). Whatever a client sends, as an initial
response or at any later step, the answer is a challenge or an RFC 6120 §6.5
failure, never an exception; channel-binding downgrades are refused (RFC 5802 §6);
and the answers never tell which accounts exist (RFC 6120 §13.11).

Every example runs real key derivations (4096 iterations), so the default profile
keeps to a few dozen examples; HYPOTHESIS_PROFILE=long (``make fuzz``) runs more.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import scramp
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from scramp.utils import saslprep

from descant.accounts import make_account
from descant.c2s.sasl import Challenge, Failure, PlainAuth, ScramAuth, Step, Success
from descant.jid import InvalidJID, prep_local
from descant.storage import AccountStore, open_storage

HOST = "example.com"
CB = ("tls-server-end-point", bytes(range(32)))
SCRAM = ["SCRAM-SHA-1", "SCRAM-SHA-256"]
SCRAM_PLUS = ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"]
# RFC 6120 §6.5: what a failure may say to input a client made up. The others
# (aborted, account-disabled, …) are the stream's to give, never a mechanism's.
GARBAGE_CONDITIONS = {
    "malformed-request",
    "incorrect-encoding",
    "not-authorized",
    "invalid-authzid",
}

# The same profiles as tests/unit/test_parser_properties.py (whichever module loads
# last, the settings are equal); tests with key derivations ask for fewer examples.
settings.register_profile(
    "descant", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "descant"))
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"


def costly(default: int) -> settings:
    """Settings for a property whose examples derive keys: ``default`` examples, or
    ten times as many in the long profile."""
    return settings(
        max_examples=default * 10 if LONG else default,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


T = TypeVar("T")


def run(fn: Callable[[AccountStore], Awaitable[T]], *accounts: tuple[str, str]) -> T:
    """Run ``fn`` on a fresh in-memory account store holding these (username, password)."""

    async def main() -> T:
        storage = open_storage("memory://", "/tmp")
        await storage.open()
        try:
            for username, password in accounts:
                await storage.accounts.create(make_account(HOST, username, password))
            return await fn(storage.accounts)
        finally:
            await storage.close()

    return asyncio.run(main())


# -- strategies ---------------------------------------------------------------------------------

# Usernames: mostly ones PRECIS accepts (a few letters and digits of any script), some not.
USERNAMES = st.one_of(
    st.from_regex(r"[A-Za-z0-9._-]{1,10}", fullmatch=True),
    st.text(st.characters(categories=("Ll", "Lu", "Lo", "Nd")), min_size=1, max_size=10),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=10),
)
# Passwords any client could type (saslprep may still refuse some).
PASSWORDS = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\0"), max_size=16
)
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=16)


def account_for(username: str, password: str) -> str | None:
    """The prepared username an account can be made with, or None if it cannot
    (PRECIS refuses the name, or saslprep the password)."""
    try:
        user = prep_local(username)
        saslprep(password)
    except (InvalidJID, scramp.ScramException):
        return None
    return user


def same_password(a: str, b: str) -> bool:
    """Whether two passwords are one after saslprep (RFC 4013), the only equality
    SCRAM keys know."""
    try:
        return bool(saslprep(a) == saslprep(b))
    except scramp.ScramException:
        return False


async def scram_exchange(
    auth: ScramAuth,
    client: scramp.ScramClient,
    tamper: Callable[[str], str] = lambda final: final,
) -> Step:
    step = await auth.start(client.get_client_first().encode())
    if not isinstance(step, Challenge):
        return step
    client.set_server_first(step.data.decode())
    step = await auth.step(tamper(client.get_client_final()).encode())
    if isinstance(step, Success):
        client.set_server_final(step.data.decode())  # the client verifies the server, too
    return step


# -- PLAIN (RFC 4616) -----------------------------------------------------------------------------


@costly(30)
@given(USERNAMES, PASSWORDS, ANY_TEXT)
@example("juliet", "pencil", "pencil\u00ad")  # soft hyphen: the same password (RFC 4013 §2.1)
@example("JULIET", "pencil", "Pencil")
def test_plain_succeeds_exactly_with_the_password_rfc4616_rfc6120_6_5_10(
    username: str, password: str, other: str
) -> None:
    user = account_for(username, password)
    assume(user is not None)
    assert user is not None

    async def check(accounts: AccountStore) -> None:
        ok = await PlainAuth(HOST, accounts).start(f"\0{username}\0{password}".encode())
        assert ok == Success(user)
        got = await PlainAuth(HOST, accounts).start(f"\0{username}\0{other}".encode())
        if "\0" in other:
            assert got == Failure("malformed-request")
        elif same_password(other, password):
            assert got == Success(user)
        else:
            assert got == Failure("not-authorized")

    run(check, (user, password))


@costly(30)
@given(USERNAMES, PASSWORDS)
def test_plain_for_a_missing_account_is_not_authorized_rfc6120_6_5_10(
    username: str, password: str
) -> None:
    async def check(accounts: AccountStore) -> None:
        got = await PlainAuth(HOST, accounts).start(f"\0{username}\0{password}".encode())
        assert got == Failure("not-authorized")

    run(check)


# -- SCRAM (RFC 5802, RFC 7677), with channel binding (RFC 5929) ----------------------------------


MECHS = st.sampled_from(SCRAM + SCRAM_PLUS)


def client_for(mech: str, username: str, password: str) -> scramp.ScramClient:
    cb = CB if mech.endswith("PLUS") else None
    return scramp.ScramClient([mech], username, password, channel_binding=cb)


def server_for(mech: str, accounts: AccountStore, tls: bool = True) -> ScramAuth:
    return ScramAuth(mech, HOST, accounts, CB if tls else None)


@costly(30)
@given(MECHS, USERNAMES, PASSWORDS)
def test_scram_succeeds_with_the_password_rfc5802_5(
    mech: str, username: str, password: str
) -> None:
    user = account_for(username, password)
    assume(user is not None)
    assert user is not None
    try:
        client = client_for(mech, user, password)
    except scramp.ScramException:
        assume(False)  # a name scramp's own saslprep refuses: no client could send it
        raise

    async def check(accounts: AccountStore) -> None:
        step = await scram_exchange(server_for(mech, accounts), client)
        assert step == Success(user, step.data if isinstance(step, Success) else b"")

    run(check, (user, password))


@costly(30)
@given(MECHS, st.from_regex(r"[a-z]{1,8}", fullmatch=True), PASSWORDS, PASSWORDS)
def test_scram_with_another_password_is_not_authorized_rfc6120_6_5_10(
    mech: str, user: str, password: str, other: str
) -> None:
    assume(account_for(user, password) is not None and account_for(user, other) is not None)
    assume(not same_password(password, other))

    async def check(accounts: AccountStore) -> None:
        step = await scram_exchange(server_for(mech, accounts), client_for(mech, user, other))
        assert step == Failure("not-authorized")

    run(check, (user, password))


def _replace_attr(final: str, key: str, change: Callable[[str], str]) -> str:
    parts = final.split(",")
    return ",".join(f"{key}={change(p[2:])}" if p.startswith(key + "=") else p for p in parts)


def _flip_bit(b64: str, bit: int) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[(bit // 8) % len(raw)] ^= 1 << (bit % 8)
    return base64.b64encode(bytes(raw)).decode()


@costly(30)
@given(
    MECHS,
    st.sampled_from(["p", "r", "c"]),
    st.integers(min_value=0, max_value=255),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=4),
)
def test_an_altered_proof_nonce_or_binding_is_not_authorized_rfc5802_5_1(
    mech: str, key: str, bit: int, junk: str
) -> None:
    """A proof with one bit flipped, a nonce other than the server's (RFC 5802 §5.1
    r=), or channel-binding data that is not this channel's (c=) never succeeds."""
    assume("," not in junk)

    def tamper(final: str) -> str:
        if key == "p":
            return _replace_attr(final, "p", lambda v: _flip_bit(v, bit))
        if key == "r":
            return _replace_attr(final, "r", lambda v: v[: bit % len(v)] + junk + v[bit % len(v) :])
        return _replace_attr(final, "c", lambda v: _flip_bit(v, bit))

    async def check(accounts: AccountStore) -> None:
        step = await scram_exchange(
            server_for(mech, accounts), client_for(mech, "juliet", "pencil"), tamper
        )
        assert step == Failure("not-authorized")

    run(check, ("juliet", "pencil"))


# -- what clients may send: any bytes, any message shape ------------------------------------------


def _check_step(step: Step) -> None:
    assert isinstance(step, Challenge | Failure), step
    if isinstance(step, Failure):
        assert step.condition in GARBAGE_CONDITIONS, step


@given(st.sampled_from([*SCRAM, *SCRAM_PLUS, "PLAIN"]), st.booleans(), st.lists(st.binary()))
def test_arbitrary_bytes_at_any_step_give_a_challenge_or_a_failure_rfc6120_6_5(
    mech: str, tls: bool, messages: list[bytes]
) -> None:
    async def check(accounts: AccountStore) -> None:
        auth = PlainAuth(HOST, accounts) if mech == "PLAIN" else server_for(mech, accounts, tls)
        step = await auth.start(messages[0] if messages else None)
        for data in messages[1:]:
            if isinstance(step, Success):
                break
            _check_step(step)
            step = await auth.step(data)
        if not isinstance(step, Success):
            _check_step(step)
        else:
            assert mech == "PLAIN"  # only PLAIN can be completed by a made-up message

    run(check, ("juliet", "pencil"))


GS2_FLAGS = st.sampled_from(
    ["n", "y", "p=tls-server-end-point", "p=tls-unique", "p=tls-exporter", "p=", "p", "x", ""]
)
SCRAM_ATTRS = st.lists(
    st.one_of(
        st.just("n=juliet"),
        st.just("n=romeo"),
        st.from_regex(r"r=[!-+\--~]{0,24}", fullmatch=True),
        st.from_regex(r"[a-z]=[!-+\--~]{0,8}", fullmatch=True),
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
    ),
    max_size=5,
)


@given(MECHS, st.booleans(), GS2_FLAGS, st.sampled_from(["", "a=juliet", "a=x=2C"]), SCRAM_ATTRS)
@example("SCRAM-SHA-256", True, "y", "", ["n=juliet", "r=abc"])  # downgrade (RFC 5802 §6)
@example("SCRAM-SHA-256-PLUS", True, "n", "", ["n=juliet", "r=abc"])
@example("SCRAM-SHA-256", False, "p=tls-server-end-point", "", ["n=juliet", "r=abc"])
@example("SCRAM-SHA-256", True, "n", "", ["r=abc", "n=juliet"])  # attributes out of order
def test_scram_client_first_shapes_rfc5802_5_1_rfc6120_13_11(
    mech: str, tls: bool, flag: str, authzid: str, attrs: list[str]
) -> None:
    """Any client-first message gets a challenge or a §6.5 failure; binding flags that
    disagree with what the channel offers fail (RFC 5802 §6); and a known user's name
    gets the same answer as an unknown one's (RFC 6120 §13.11)."""
    message = ",".join([flag, authzid, *attrs])

    async def check(accounts: AccountStore) -> None:
        step = await server_for(mech, accounts, tls).start(message.encode())
        _check_step(step)
        plus = mech.endswith("PLUS")
        if (
            (plus and not flag.startswith("p="))  # -PLUS must bind
            or (tls and not plus and flag == "y")  # "y" while binding is offered: downgrade
            or (not tls and flag.startswith("p="))  # nothing to bind to
            or flag not in ("n", "y", "p=tls-server-end-point")  # unknown flag or binding type
        ):
            assert isinstance(step, Failure), message
        # The same message naming the other user: the same kind of answer.
        swap = {"n=juliet": "n=romeo", "n=romeo": "n=juliet"}
        swapped = ",".join([flag, authzid, *(swap.get(a, a) for a in attrs)])
        other = await server_for(mech, accounts, tls).start(swapped.encode())
        assert type(other) is type(step), (message, step, other)
        if isinstance(step, Failure):
            assert isinstance(other, Failure)
            assert other.condition == step.condition, (message, step, other)

    run(check, ("juliet", "pencil"))


@given(MECHS, st.binary(max_size=200))
def test_a_client_final_is_answered_alike_for_known_and_unknown_users_rfc6120_13_11(
    mech: str, final: bytes
) -> None:
    """After a well-formed client-first, any client-final message fails the same way
    whether or not the account exists."""

    async def answer(accounts: AccountStore, user: str) -> Step:
        auth = server_for(mech, accounts)
        client = client_for(mech, user, "pencil")
        assert isinstance(await auth.start(client.get_client_first().encode()), Challenge)
        return await auth.step(final)

    async def check(accounts: AccountStore) -> None:
        known, unknown = await answer(accounts, "juliet"), await answer(accounts, "romeo")
        assert isinstance(known, Failure) and known == unknown, (known, unknown)

    run(check, ("juliet", "pencil"))


@costly(20)
@given(MECHS, st.permutations(["c", "r", "p"]), st.sampled_from(["", "x=ext", "m=ext"]))
def test_a_client_final_out_of_order_or_extended_never_succeeds_rfc5802_7(
    mech: str, order: list[str], extension: str
) -> None:
    """RFC 5802 §7: client-final is c=, r=, [extensions,] p=, in that order; the proof
    covers exactly that text. Reordered or extended, the proof no longer holds."""
    assume(order != ["c", "r", "p"] or extension)

    def tamper(final: str) -> str:
        attrs = dict(p.split("=", 1) for p in final.split(","))
        parts = [f"{k}={attrs[k]}" for k in order]
        if extension:
            parts.insert(len(parts) - 1, extension)
        return ",".join(parts)

    async def check(accounts: AccountStore) -> None:
        step = await scram_exchange(
            server_for(mech, accounts), client_for(mech, "juliet", "pencil"), tamper
        )
        assert step == Failure("not-authorized")

    run(check, ("juliet", "pencil"))
