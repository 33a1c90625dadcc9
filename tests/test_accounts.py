"""Accounts end to end through the GraphQL API: sign-up, log-in, password storage, `me`, the
secret key in each environment, and concurrent sign-ups with one email.

Tokens (the access JWT, refresh rotation, log-out) are in test_tokens.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from models import AuthSession, User
from settings import Environment, Settings, SettingsError
from tests.support import SIGN_UP, gql, sign_up

LOG_IN = """
mutation LogIn($input: LogInInput!) {
  logIn(input: $input) {
    __typename
    ... on AuthSuccess { accessToken refreshToken expiresIn user { id email displayName tier role } }
    ... on UserError { code message field }
  }
}
"""

ME = "{ me { id email displayName tier role } }"

PASSWORD = "correct horse battery staple"


async def _sign_up(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, display_name: str = "Ada"
) -> dict[str, Any]:
    """The `signUp` result object, whatever its type."""
    variables = {"input": {"email": email, "password": password, "displayName": display_name}}
    body = await gql(client, SIGN_UP, variables)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["signUp"]
    return result


async def _log_in(client: httpx.AsyncClient, email: str, password: str) -> dict[str, Any]:
    body = await gql(client, LOG_IN, {"input": {"email": email, "password": password}})
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["logIn"]
    return result


# --- sign-up ----------------------------------------------------------------------------------


async def test_sign_up_returns_tokens_and_the_user(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    result = await _sign_up(client, "  Ada.Lovelace@Example.COM ", display_name="Ada Lovelace")

    assert result["__typename"] == "AuthSuccess", result
    assert result["expiresIn"] == 900 == settings.access_token_ttl_seconds
    user = result["user"]
    assert user["email"] == "ada.lovelace@example.com"  # trimmed and stored lower-cased
    assert user["displayName"] == "Ada Lovelace"
    assert (user["tier"], user["role"]) == ("FREE", "USER")
    assert result["accessToken"] and result["refreshToken"]
    assert result["accessToken"] != result["refreshToken"]

    stored = await User.get(id=user["id"])
    assert stored.email == "ada.lovelace@example.com"
    assert await AuthSession.filter(user_id=stored.id).count() == 1

    me = await gql(client, ME, token=result["accessToken"])
    assert me == {"data": {"me": user}}


async def test_password_is_stored_as_an_argon2id_hash(client: httpx.AsyncClient) -> None:
    result = await _sign_up(client, "hash@example.com")
    assert result["__typename"] == "AuthSuccess", result

    stored = await User.get(email="hash@example.com")
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash


async def test_sign_up_with_a_taken_email_is_refused_whatever_its_case(
    client: httpx.AsyncClient,
) -> None:
    first = await _sign_up(client, "taken@example.com")
    assert first["__typename"] == "AuthSuccess", first

    for email in ("taken@example.com", "TAKEN@Example.Com", " Taken@example.com "):
        again = await _sign_up(client, email, password="another password 123")
        assert again["__typename"] == "EmailTakenError", again
        assert again["code"] == "EMAIL_TAKEN"
        assert again["message"]

    assert await User.filter(email="taken@example.com").count() == 1
    assert await User.all().count() == 1
    # The first account is untouched: its password still works.
    assert (await _log_in(client, "taken@example.com", PASSWORD))["__typename"] == "AuthSuccess"


@pytest.mark.parametrize(
    ("email", "password", "display_name", "field"),
    [
        pytest.param("not-an-email", PASSWORD, "Ada", "input.email", id="email-no-at"),
        pytest.param("ada@", PASSWORD, "Ada", "input.email", id="email-no-domain"),
        pytest.param("", PASSWORD, "Ada", "input.email", id="email-empty"),
        pytest.param("ok@example.com", "123456789", "Ada", "input.password", id="password-9"),
        pytest.param("ok@example.com", "", "Ada", "input.password", id="password-empty"),
        pytest.param("ok@example.com", PASSWORD, "", "input.displayName", id="name-empty"),
        pytest.param("ok@example.com", PASSWORD, "   ", "input.displayName", id="name-blank"),
        pytest.param(
            "ok@example.com", PASSWORD, "\x00\x07\x1b", "input.displayName", id="name-controls"
        ),
        pytest.param("ok@example.com", PASSWORD, "x" * 101, "input.displayName", id="name-101"),
    ],
)
async def test_invalid_sign_up_is_refused_and_creates_nothing(
    client: httpx.AsyncClient, email: str, password: str, display_name: str, field: str
) -> None:
    result = await _sign_up(client, email, password=password, display_name=display_name)

    assert await User.all().count() == 0
    assert await AuthSession.all().count() == 0
    assert result["__typename"] == "InvalidInputError", result
    assert result["code"] == "INVALID_INPUT"
    assert result["message"]
    # The dotted path of the GraphQL input field, as the other mutations report it.
    assert result["field"] == field


async def test_sign_up_limits_are_inclusive(client: httpx.AsyncClient) -> None:
    result = await _sign_up(client, "limits@example.com", password="0123456789", display_name="x")
    assert result["__typename"] == "AuthSuccess", result
    result = await _sign_up(client, "limits2@example.com", display_name="y" * 100)
    assert result["__typename"] == "AuthSuccess", result
    assert result["user"]["displayName"] == "y" * 100


async def test_control_characters_are_stripped_from_the_display_name(
    client: httpx.AsyncClient,
) -> None:
    result = await _sign_up(
        client, "ctrl@example.com", display_name="\x01Ada\x00 Love\x1blace\x7f "
    )

    assert result["__typename"] == "AuthSuccess", result
    assert result["user"]["displayName"] == "Ada Lovelace"
    assert (await User.get(email="ctrl@example.com")).display_name == "Ada Lovelace"


# --- log-in -----------------------------------------------------------------------------------


async def test_log_in_opens_a_new_session(client: httpx.AsyncClient) -> None:
    user = await sign_up(client, "login@example.com")

    result = await _log_in(client, " LOGIN@Example.com ", user.password)

    assert result["__typename"] == "AuthSuccess", result
    assert result["expiresIn"] == 900
    assert result["user"]["id"] == str(user.id)
    assert result["user"]["email"] == "login@example.com"
    assert result["accessToken"] != user.token
    assert result["refreshToken"] != user.refresh_token
    assert await AuthSession.filter(user_id=user.id).count() == 2
    me = await gql(client, ME, token=result["accessToken"])
    assert me["data"]["me"]["id"] == str(user.id)


async def test_log_in_failures_do_not_say_whether_the_account_exists(
    client: httpx.AsyncClient,
) -> None:
    user = await sign_up(client, "exists@example.com")

    wrong_password = await _log_in(client, user.email, "not the right password")
    unknown_email = await _log_in(client, "nobody@example.com", user.password)

    assert wrong_password["__typename"] == "InvalidCredentialsError", wrong_password
    assert wrong_password["code"] == "INVALID_CREDENTIALS"
    assert wrong_password["message"]
    assert unknown_email == wrong_password  # same type, code, message and field
    assert await AuthSession.filter(user_id=user.id).count() == 1  # only the sign-up's


# --- me ---------------------------------------------------------------------------------------


async def test_me_is_null_without_a_token(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    assert await gql(client, ME) == {"data": {"me": None}}


# --- settings and the signing key -------------------------------------------------------------


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SECRET_KEY or COURSEGEN_* from the process or a `.env` file; returns a data dir."""
    for name in ("SECRET_KEY", "COURSEGEN_ENV", "COURSEGEN_DATA_DIR", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "data"


def test_production_refuses_to_start_without_a_secret_key(clean_environment: Path) -> None:
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        Settings(
            COURSEGEN_ENV=Environment.PRODUCTION,
            COURSEGEN_DATA_DIR=clean_environment,
            SECRET_KEY=None,
        )
    assert not (clean_environment / "secret_key").exists()


def test_production_refuses_a_short_secret_key(clean_environment: Path) -> None:
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        Settings(
            COURSEGEN_ENV=Environment.PRODUCTION,
            COURSEGEN_DATA_DIR=clean_environment,
            SECRET_KEY="x" * 31,
        )


def test_production_uses_the_given_secret_key(clean_environment: Path) -> None:
    key = "k" * 32
    settings = Settings(
        COURSEGEN_ENV=Environment.PRODUCTION, COURSEGEN_DATA_DIR=clean_environment, SECRET_KEY=key
    )
    assert settings.signing_key == key
    assert key not in repr(settings)
    assert not (clean_environment / "secret_key").exists()


def test_development_generates_a_key_once_and_keeps_it(clean_environment: Path) -> None:
    first = Settings(
        COURSEGEN_ENV=Environment.DEVELOPMENT, COURSEGEN_DATA_DIR=clean_environment, SECRET_KEY=None
    )
    key = first.signing_key

    assert len(key) >= 32
    path = clean_environment / "secret_key"
    assert path.read_text().strip() == key
    assert path.stat().st_mode & 0o777 == 0o600

    second = Settings(
        COURSEGEN_ENV=Environment.DEVELOPMENT, COURSEGEN_DATA_DIR=clean_environment, SECRET_KEY=None
    )
    assert second.signing_key == key

    elsewhere = Settings(
        COURSEGEN_ENV=Environment.DEVELOPMENT,
        COURSEGEN_DATA_DIR=clean_environment / "other",
        SECRET_KEY=None,
    )
    assert elsewhere.signing_key != key


async def test_tokens_are_signed_with_the_settings_key(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    user = await sign_up(client)
    claims = jwt.decode(
        user.token,
        settings.signing_key,
        algorithms=["HS256"],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    assert claims["sub"] == str(user.id)
    assert abs(claims["iat"] - time.time()) < 60


# --- concurrency ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "emails",
    [
        pytest.param(("race@example.com", "race@example.com"), id="same-case"),
        pytest.param(("race@example.com", "RACE@example.com"), id="other-case"),
    ],
)
async def test_concurrent_sign_ups_with_one_email_create_one_account(
    client: httpx.AsyncClient, emails: tuple[str, str]
) -> None:
    results = await asyncio.gather(*(_sign_up(client, email) for email in emails))

    assert sorted(r["__typename"] for r in results) == ["AuthSuccess", "EmailTakenError"], results
    taken = next(r for r in results if r["__typename"] == "EmailTakenError")
    assert taken["code"] == "EMAIL_TAKEN"
    assert await User.all().count() == 1
    assert await AuthSession.all().count() == 1
    winner = next(r for r in results if r["__typename"] == "AuthSuccess")
    me = await gql(client, ME, token=winner["accessToken"])
    assert me["data"]["me"]["email"] == "race@example.com"
