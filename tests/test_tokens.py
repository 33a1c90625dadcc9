"""Tokens end to end through the GraphQL API: the access JWT (and every way to forge or misuse
one), refresh-token rotation with its reuse grace and family revocation, and log-out.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from models import AuthSession, RefreshToken
from settings import Settings

# Aliased: a module-level name starting with "Test" would be collected as a test class.
from tests.support import TestUser as SignedUp
from tests.support import gql, sign_up

REFRESH = """
mutation Refresh($token: String!) {
  refreshToken(token: $token) {
    __typename
    ... on AuthSuccess { accessToken refreshToken expiresIn user { id email } }
    ... on UserError { code message field }
  }
}
"""

LOG_IN = """
mutation LogIn($input: LogInInput!) {
  logIn(input: $input) {
    __typename
    ... on AuthSuccess { accessToken refreshToken expiresIn user { id } }
    ... on UserError { code message field }
  }
}
"""

LOG_OUT = """
mutation {
  logOut {
    __typename
    ... on LogOutSuccess { ok }
    ... on UserError { code message field }
  }
}
"""

# Queries that need a viewer: a refused token must fail them, never read as "anonymous".
PROTECTED = ["{ me { id } }", "{ courses { totalCount } }"]

# What must never reach a client in an error.
LEAKS = ["Traceback", 'File "', "SELECT", "INSERT", "sqlite", "asyncpg", "tortoise"]


def _unverified_claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _valid_claims(settings: Settings, user: SignedUp) -> dict[str, Any]:
    """Claims the service would accept: those of the user's own session."""
    now = int(time.time())
    return {
        "sub": str(user.id),
        "sid": _unverified_claims(user.token)["sid"],
        "iat": now,
        "exp": now + 600,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "typ": "access",
    }


def _signed(settings: Settings, claims: dict[str, Any]) -> str:
    return jwt.encode(claims, settings.signing_key, algorithm="HS256")


def _mac_signed(settings: Settings, claims: dict[str, Any], *, header_alg: str, mac: str) -> str:
    """A token MACed with the secret by hand (jwt.encode warns on keys short for SHA-512)."""
    header = _b64(json.dumps({"alg": header_alg, "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims).encode())
    algorithm = jwt.get_algorithm_by_name(mac)
    key = algorithm.prepare_key(settings.signing_key)
    signature = algorithm.sign(f"{header}.{payload}".encode(), key)
    return f"{header}.{payload}.{_b64(signature)}"


async def _refresh(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    body = await gql(client, REFRESH, {"token": token})
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["refreshToken"]
    return result


async def _log_out(client: httpx.AsyncClient, token: str | None) -> dict[str, Any]:
    body = await gql(client, LOG_OUT, token=token)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["logOut"]
    return result


async def _log_in(client: httpx.AsyncClient, user: SignedUp) -> dict[str, Any]:
    variables = {"input": {"email": user.email, "password": user.password}}
    body = await gql(client, LOG_IN, variables)
    result: dict[str, Any] = body["data"]["logIn"]
    assert result["__typename"] == "AuthSuccess", body
    return result


async def _assert_refused(client: httpx.AsyncClient, token: str, query: str) -> None:
    """The query fails with UNAUTHENTICATED, and the answer shows nothing of the internals."""
    body = await gql(client, query, token=token)
    assert body.get("errors"), body
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"], body
    assert not body["errors"][0]["message"].startswith("Unexpected error"), body
    data = body.get("data")
    assert data is None or all(value is None for value in data.values()), body
    text = json.dumps(body).lower()
    for leak in LEAKS:
        assert leak.lower() not in text, body


async def _assert_accepted(client: httpx.AsyncClient, token: str, user_id: uuid.UUID) -> None:
    body = await gql(client, "{ me { id } courses { totalCount } }", token=token)
    assert body == {"data": {"me": {"id": str(user_id)}, "courses": {"totalCount": 0}}}, body


def _assert_unauthenticated(result: dict[str, Any]) -> None:
    assert result["__typename"] == "UnauthenticatedError", result
    assert result["code"] == "UNAUTHENTICATED"
    assert result["message"]


# --- the access token -------------------------------------------------------------------------


async def test_access_token_is_an_hs256_jwt_for_fifteen_minutes(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    user = await sign_up(client)

    assert jwt.get_unverified_header(user.token)["alg"] == "HS256"
    claims = jwt.decode(
        user.token,
        settings.signing_key,
        algorithms=["HS256"],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        options={"require": ["exp", "iat", "sub"]},
    )
    assert claims["exp"] - claims["iat"] == 900
    assert abs(claims["iat"] - time.time()) < 60
    assert claims["sub"] == str(user.id)
    assert claims["typ"] == "access"
    session = await AuthSession.get(id=claims["sid"])
    assert session.user_id == user.id


async def test_a_hand_built_token_with_valid_claims_is_accepted(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # The control for the forgeries below: they differ from this token in one respect each.
    user = await sign_up(client)
    await _assert_accepted(client, _signed(settings, _valid_claims(settings, user)), user.id)
    await _assert_accepted(client, user.token, user.id)


TokenFactory = Callable[[httpx.AsyncClient, Settings, SignedUp], Awaitable[str]]


async def _alg_none(client: httpx.AsyncClient, settings: Settings, user: SignedUp) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_valid_claims(settings, user)).encode())
    return f"{header}.{payload}."


async def _other_key(client: httpx.AsyncClient, settings: Settings, user: SignedUp) -> str:
    claims = _valid_claims(settings, user)
    return jwt.encode(claims, "another-secret-key-that-is-long-enough-012345", algorithm="HS256")


async def _hs512(client: httpx.AsyncClient, settings: Settings, user: SignedUp) -> str:
    # The right key, but not the pinned algorithm.
    return _mac_signed(settings, _valid_claims(settings, user), header_alg="HS512", mac="HS512")


async def _rs256_header(client: httpx.AsyncClient, settings: Settings, user: SignedUp) -> str:
    # Says RS256 but is MACed with the secret: only a pinned algorithm list refuses it.
    return _mac_signed(settings, _valid_claims(settings, user), header_alg="RS256", mac="HS256")


async def _rs256(client: httpx.AsyncClient, settings: Settings, user: SignedUp) -> str:
    rsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(_valid_claims(settings, user), key, algorithm="RS256")


def _without(claim: str) -> TokenFactory:
    async def build(client: httpx.AsyncClient, settings: Settings, user: SignedUp) -> str:
        claims = _valid_claims(settings, user)
        del claims[claim]
        return _signed(settings, claims)

    return build


def _with(**changes: Any) -> TokenFactory:
    async def build(client: httpx.AsyncClient, settings: Settings, user: SignedUp) -> str:
        return _signed(settings, {**_valid_claims(settings, user), **changes})

    return build


async def _expired(client: httpx.AsyncClient, settings: Settings, user: SignedUp) -> str:
    now = int(time.time())
    return _signed(settings, {**_valid_claims(settings, user), "iat": now - 960, "exp": now - 60})


async def _other_session(client: httpx.AsyncClient, settings: Settings, user: SignedUp) -> str:
    return _signed(settings, {**_valid_claims(settings, user), "sid": str(uuid.uuid4())})


async def _other_users_session(
    client: httpx.AsyncClient, settings: Settings, user: SignedUp
) -> str:
    other = await sign_up(client)
    return _signed(settings, {**_valid_claims(settings, user), "sub": str(other.id)})


async def _garbage(client: httpx.AsyncClient, settings: Settings, user: SignedUp) -> str:
    return "this-is-not-a-token"


async def _refresh_token(client: httpx.AsyncClient, settings: Settings, user: SignedUp) -> str:
    return user.refresh_token


async def _logged_out(client: httpx.AsyncClient, settings: Settings, user: SignedUp) -> str:
    assert (await _log_out(client, user.token))["__typename"] == "LogOutSuccess"
    return user.token


REFUSED_TOKENS: dict[str, TokenFactory] = {
    "alg-none": _alg_none,
    "other-key": _other_key,
    "hs512": _hs512,
    "rs256-header": _rs256_header,
    "rs256": _rs256,
    "expired": _expired,
    "no-exp": _without("exp"),
    "no-iat": _without("iat"),
    "no-sub": _without("sub"),
    "no-sid": _without("sid"),
    "no-typ": _without("typ"),
    "wrong-typ": _with(typ="refresh"),
    "wrong-audience": _with(aud="someone-else"),
    "wrong-issuer": _with(iss="someone-else"),
    "unknown-session": _other_session,
    "session-of-another-user": _other_users_session,
    "garbage": _garbage,
    "refresh-token": _refresh_token,
    "logged-out": _logged_out,
}


@pytest.mark.parametrize("query", PROTECTED, ids=["me", "courses"])
@pytest.mark.parametrize("case", list(REFUSED_TOKENS))
async def test_a_bad_access_token_is_refused(
    client: httpx.AsyncClient, settings: Settings, case: str, query: str
) -> None:
    user = await sign_up(client)
    token = await REFUSED_TOKENS[case](client, settings, user)
    await _assert_refused(client, token, query)


# --- refresh tokens ---------------------------------------------------------------------------


async def test_refresh_tokens_are_opaque_and_stored_hashed(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)

    assert user.refresh_token.count(".") != 2  # not a JWT
    rows = await RefreshToken.all()
    assert len(rows) == 1
    assert rows[0].token_hash != user.refresh_token
    assert user.refresh_token not in rows[0].token_hash


async def test_refresh_rotates_the_pair(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    sid = _unverified_claims(user.token)["sid"]

    first = await _refresh(client, user.refresh_token)
    assert first["__typename"] == "AuthSuccess", first
    assert first["refreshToken"] != user.refresh_token
    assert first["expiresIn"] == 900
    assert first["user"] == {"id": str(user.id), "email": user.email}
    assert _unverified_claims(first["accessToken"])["sid"] == sid  # same session
    await _assert_accepted(client, first["accessToken"], user.id)

    second = await _refresh(client, first["refreshToken"])
    assert second["__typename"] == "AuthSuccess", second
    assert second["refreshToken"] not in {user.refresh_token, first["refreshToken"]}

    rows = await RefreshToken.filter(session_id=sid)
    assert len(rows) == 3
    assert sum(row.used_at is None for row in rows) == 1  # only the newest is unused
    tokens = {user.refresh_token, first["refreshToken"], second["refreshToken"]}
    assert not {row.token_hash for row in rows} & tokens


async def test_reuse_within_the_grace_window_is_answered(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)

    first = await _refresh(client, user.refresh_token)
    retry = await _refresh(client, user.refresh_token)  # the client lost the first answer

    assert first["__typename"] == retry["__typename"] == "AuthSuccess", (first, retry)
    # The same successor, not a new member of the family: a replay inside the window cannot
    # start a chain of its own.
    assert retry["refreshToken"] == first["refreshToken"] != user.refresh_token
    await _assert_accepted(client, retry["accessToken"], user.id)
    assert (await _refresh(client, retry["refreshToken"]))["__typename"] == "AuthSuccess"
    sid = _unverified_claims(user.token)["sid"]
    assert await RefreshToken.filter(session_id=sid).count() == 3  # one chain: t0 -> t1 -> t2


async def test_a_token_replayed_inside_the_grace_window_is_caught_later(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """A thief replays a token inside the grace window: both holders now have the one
    successor, so when the owner rotates it and the thief presents it after the window, the
    reuse is seen and the session ends."""
    user = await sign_up(client)
    sid = _unverified_claims(user.token)["sid"]
    owner = await _refresh(client, user.refresh_token)
    thief = await _refresh(client, user.refresh_token)
    assert thief["refreshToken"] == owner["refreshToken"]

    assert (await _refresh(client, owner["refreshToken"]))["__typename"] == "AuthSuccess"
    past_grace = datetime.now(UTC) - timedelta(seconds=settings.refresh_reuse_grace_seconds + 50)
    await RefreshToken.filter(session_id=sid, used_at__isnull=False).update(used_at=past_grace)

    _assert_unauthenticated(await _refresh(client, thief["refreshToken"]))
    assert (await AuthSession.get(id=sid)).revoked_at is not None


async def test_reuse_after_the_grace_window_revokes_the_whole_family(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    user = await sign_up(client)
    other = await _log_in(client, user)  # another session of the same user
    sid = _unverified_claims(user.token)["sid"]
    rotated = await _refresh(client, user.refresh_token)
    assert rotated["__typename"] == "AuthSuccess", rotated
    newest = await _refresh(client, rotated["refreshToken"])
    assert newest["__typename"] == "AuthSuccess", newest

    past_grace = datetime.now(UTC) - timedelta(seconds=settings.refresh_reuse_grace_seconds + 50)
    updated = await RefreshToken.filter(session_id=sid, used_at__isnull=False).update(
        used_at=past_grace
    )
    assert updated == 2

    _assert_unauthenticated(await _refresh(client, user.refresh_token))

    _assert_unauthenticated(await _refresh(client, newest["refreshToken"]))
    for token in (user.token, rotated["accessToken"], newest["accessToken"]):
        for query in PROTECTED:
            await _assert_refused(client, token, query)
    session = await AuthSession.get(id=sid)
    assert session.revoked_at is not None
    # The user's other session is not part of the family.
    await _assert_accepted(client, other["accessToken"], user.id)
    assert (await _refresh(client, other["refreshToken"]))["__typename"] == "AuthSuccess"


async def test_an_expired_refresh_token_is_refused(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    sid = _unverified_claims(user.token)["sid"]
    expired = datetime.now(UTC) - timedelta(seconds=1)
    assert await RefreshToken.filter(session_id=sid).update(expires_at=expired) == 1

    _assert_unauthenticated(await _refresh(client, user.refresh_token))


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("an-unknown-refresh-token-0123456789abcdefghijklmnop", id="unknown"),
        pytest.param("", id="empty"),
        pytest.param("x" * 2000, id="overlong"),
    ],
)
async def test_an_unknown_refresh_token_is_refused(client: httpx.AsyncClient, token: str) -> None:
    await sign_up(client)
    _assert_unauthenticated(await _refresh(client, token))


async def test_an_access_token_is_not_a_refresh_token(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    _assert_unauthenticated(await _refresh(client, user.token))


# --- log-out ----------------------------------------------------------------------------------


async def test_log_out_ends_only_that_session(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    other = await _log_in(client, user)

    result = await _log_out(client, user.token)

    assert result == {"__typename": "LogOutSuccess", "ok": True}
    for query in PROTECTED:
        await _assert_refused(client, user.token, query)
    _assert_unauthenticated(await _refresh(client, user.refresh_token))
    _assert_unauthenticated(await _log_out(client, user.token))

    await _assert_accepted(client, other["accessToken"], user.id)
    renewed = await _refresh(client, other["refreshToken"])
    assert renewed["__typename"] == "AuthSuccess", renewed
    await _assert_accepted(client, renewed["accessToken"], user.id)


async def test_log_out_everywhere_ends_every_session_of_the_account_only(
    client: httpx.AsyncClient,
) -> None:
    user = await sign_up(client)
    phone = await _log_in(client, user)
    stranger = await sign_up(client)
    everywhere = LOG_OUT.replace("logOut {", "logOut(everywhere: true) {")

    body = await gql(client, everywhere, token=phone["accessToken"])

    assert body["data"]["logOut"] == {"__typename": "LogOutSuccess", "ok": True}
    for token in (user.token, phone["accessToken"]):
        await _assert_refused(client, token, PROTECTED[0])
    for refresh in (user.refresh_token, phone["refreshToken"]):
        _assert_unauthenticated(await _refresh(client, refresh))
    await _assert_accepted(client, stranger.token, stranger.id)
    assert await AuthSession.filter(user_id=user.id, revoked_at=None).count() == 0


async def test_log_out_also_ends_tokens_from_earlier_refreshes(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    rotated = await _refresh(client, user.refresh_token)

    assert (await _log_out(client, rotated["accessToken"]))["__typename"] == "LogOutSuccess"

    await _assert_refused(client, user.token, PROTECTED[0])
    _assert_unauthenticated(await _refresh(client, rotated["refreshToken"]))


async def test_log_out_without_a_token_is_unauthenticated(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)

    _assert_unauthenticated(await _log_out(client, None))

    await _assert_accepted(client, user.token, user.id)


def test_a_verified_token_is_remembered_only_until_it_expires() -> None:
    """The process remembers tokens it verified (services.tokens), but expiry is checked on
    every use: a remembered token past its `exp` is refused like any expired one."""
    from services import tokens
    from services.errors import DomainError

    key, iss, aud = "k" * 40, "coursegen", "coursegen-api"
    user, session = uuid.uuid4(), uuid.uuid4()
    token = tokens.issue_access_token(
        key=key, issuer=iss, audience=aud, user_id=user, session_id=session, ttl_seconds=1
    )
    first = tokens.decode_access_token(token, key=key, issuer=iss, audience=aud)
    assert first.user_id == user
    assert tokens.decode_access_token(token, key=key, issuer=iss, audience=aud) is first
    time.sleep(first.expires_at - time.time() + 0.2)
    with pytest.raises(DomainError) as refused:
        tokens.decode_access_token(token, key=key, issuer=iss, audience=aud)
    assert refused.value.code.value == "UNAUTHENTICATED"
    # Another key (a rotated secret) is not answered from what the old one verified.
    with pytest.raises(DomainError):
        tokens.decode_access_token(token, key="x" * 40, issuer=iss, audience=aud)
