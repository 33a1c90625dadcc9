"""Sign-up, log-in, refresh-token rotation, log-out, and who the viewer is."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, EmailStr, Field, field_validator
from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models import AuthSession, RefreshToken, User, UserRole, UserTier, bulk
from services import tokens
from services.errors import DomainError, ErrorCode
from services.passwords import hash_password, needs_rehash, verify_password
from services.rate_limits import RateLimits
from services.validation import clean_text, validated
from settings import Settings


@dataclass(frozen=True, slots=True)
class Viewer:
    """The authenticated user of one request."""

    id: uuid.UUID
    session_id: uuid.UUID
    email: str
    display_name: str
    tier: UserTier
    role: UserRole


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    user: User
    device_token: str | None = None  # after a log-in: the known-device token to send next time


class SignUpData(BaseModel):
    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=10, max_length=256)
    display_name: str = Field(min_length=1, max_length=100)

    @field_validator("display_name", mode="before")
    @classmethod
    def _clean(cls, value: object) -> object:
        return clean_text(value) if isinstance(value, str) else value


class LogInData(BaseModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=256)


def _now() -> datetime:
    return datetime.now(UTC)


def _bad_credentials() -> DomainError:
    # One message for unknown email and wrong password: no account enumeration.
    return DomainError(ErrorCode.INVALID_CREDENTIALS, "The email or password is not correct.")


async def _issue(
    settings: Settings, user: User, session: AuthSession, *, refresh_token: str | None = None
) -> TokenPair:
    """A new access token and a refresh token: `refresh_token` (already stored) when given,
    otherwise a fresh one, stored here."""
    token = refresh_token
    if token is None:
        token, token_hash = tokens.new_refresh_token()
        await RefreshToken.create(
            session_id=session.id,
            token_hash=token_hash,
            expires_at=_now() + timedelta(seconds=settings.refresh_token_ttl_seconds),
        )
    access = tokens.issue_access_token(
        key=settings.signing_key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        user_id=user.id,
        session_id=session.id,
        ttl_seconds=settings.access_token_ttl_seconds,
    )
    return TokenPair(access, token, settings.access_token_ttl_seconds, user)


async def sign_up(
    settings: Settings,
    email: str,
    password: str,
    display_name: str,
    *,
    limits: RateLimits | None = None,
    client_ip: str | None = None,
) -> TokenPair:
    """Create an account. With `limits`, sign-ups per client IP are limited
    (`signup_rate_ip`) before anything is hashed or written."""
    if limits is not None and client_ip:
        await limits.hit_or_local("signup-ip", settings.signup_rate_ip, client_ip)
    data = validated(
        SignUpData,
        {"email": email.strip(), "password": password, "display_name": display_name},
        prefix="input.",
    )
    normalized = data.email.lower()
    password_hash = hash_password(data.password)
    try:
        async with in_transaction():
            if await User.filter(email=normalized).exists():
                raise DomainError(
                    ErrorCode.EMAIL_TAKEN, "An account with this email exists.", field="input.email"
                )
            user = await User.create(
                email=normalized, password_hash=password_hash, display_name=data.display_name
            )
            session = await AuthSession.create(user_id=user.id)
            return await _issue(settings, user, session)
    except IntegrityError:  # a concurrent sign-up with the same email won the race
        raise DomainError(
            ErrorCode.EMAIL_TAKEN, "An account with this email exists.", field="input.email"
        ) from None


async def log_in(
    settings: Settings,
    email: str,
    password: str,
    *,
    limits: RateLimits | None = None,
    client_ip: str | None = None,
    device_token: str | None = None,
) -> TokenPair:
    """Log in. With `limits`, every attempt (each aliased `logIn` of a request included) is
    counted before the password is checked, so guessing is bounded however it is packed, as
    OWASP's authentication cheat sheet advises, without letting an attacker lock the owner out:

    - a client with a valid known-device token of this account (from an earlier log-in) counts
      only against that device (`login_rate_device`): no one else's guesses refuse it;
    - any other client counts against the account from its IP (`login_rate_account_ip`: an
      attacker on one address slows down only there), against the account from everywhere
      (`login_rate_account`, high: distributed guessing) and against its IP (`login_rate_ip`:
      spraying many accounts). A refusal says when to try again (`retryAfter`)."""
    data = validated(LogInData, {"email": email.strip(), "password": password}, prefix="input.")
    email_key = data.email.lower()
    if limits is not None:
        device = tokens.device_token_id(settings.signing_key, device_token, email_key)
        if device is not None:
            await limits.hit_or_local("login-device", settings.login_rate_device, device)
        else:
            ip = client_ip or "unknown"
            await limits.hit_or_local("login-ip", settings.login_rate_ip, ip)
            await limits.hit_or_local(
                "login-account-ip", settings.login_rate_account_ip, email_key, ip
            )
            await limits.hit_or_local("login-account", settings.login_rate_account, email_key)
    user = await User.get_or_none(email=email_key)
    if not verify_password(user.password_hash if user else None, data.password) or user is None:
        raise _bad_credentials()
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(data.password)
        await user.save(update_fields=["password_hash"])
    async with in_transaction():
        session = await AuthSession.create(user_id=user.id)
        pair = await _issue(settings, user, session)
    return dataclasses.replace(
        pair, device_token=tokens.issue_device_token(settings.signing_key, email_key)
    )


async def refresh(settings: Settings, token: str) -> TokenPair:
    """Rotate a refresh token. Reuse of a rotated one revokes the whole session."""
    if not token or len(token) > 512:
        raise DomainError(ErrorCode.UNAUTHENTICATED, "The refresh token is not valid.")
    now = _now()
    async with in_transaction():
        row = (
            await RefreshToken.filter(token_hash=tokens.hash_refresh_token(token))
            # Lock only the token's row: PostgreSQL refuses FOR UPDATE on the nullable side of
            # the outer joins that select_related makes.
            .select_for_update(of=("refresh_tokens",))
            .select_related("session", "session__user")
            .first()
        )
        if row is None or row.expires_at <= now or row.session.revoked_at is not None:
            raise DomainError(ErrorCode.UNAUTHENTICATED, "The refresh token is not valid.")
        successor = tokens.successor_refresh_token(settings.signing_key, token)
        if row.used_at is None:
            row.used_at = now
            await row.save(update_fields=["used_at"])
            await RefreshToken.create(
                session_id=row.session.id,
                token_hash=tokens.hash_refresh_token(successor),
                expires_at=now + timedelta(seconds=settings.refresh_token_ttl_seconds),
            )
            return await _issue(settings, row.session.user, row.session, refresh_token=successor)
        if now - row.used_at <= timedelta(seconds=settings.refresh_reuse_grace_seconds):
            # A retry after a lost response on a flaky network: answer it with the same
            # successor, so the family stays one chain and a replay is caught when either
            # holder rotates that successor a second time.
            return await _issue(settings, row.session.user, row.session, refresh_token=successor)
        # A rotated token presented again: it may have been stolen. End the whole session,
        # committed before the error is raised.
        await AuthSession.filter(id=row.session.id).update(
            revoked_at=now, revoked_reason="refresh_reuse"
        )
    raise DomainError(
        ErrorCode.UNAUTHENTICATED,
        "This refresh token was already used; the session has been signed out everywhere.",
    )


async def log_out(viewer: Viewer, *, everywhere: bool = False) -> None:
    """End the viewer's session, or every live session of the account. Access tokens of ended
    sessions stop working at once (each request checks its session), live connections at their
    next session check, and their refresh tokens are refused."""
    live = AuthSession.filter(revoked_at=None)
    if everywhere:
        await live.filter(user_id=viewer.id).update(
            revoked_at=_now(), revoked_reason="logout_everywhere"
        )
    else:
        await live.filter(id=viewer.session_id).update(revoked_at=_now(), revoked_reason="logout")


async def viewer_from_access_token(settings: Settings, token: str) -> Viewer:
    """Verify the token and that its session is still live (one SQL statement)."""
    claims = tokens.decode_access_token(
        token, key=settings.signing_key, issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )
    # Plain SQL, not the ORM: every authenticated request runs this, and building the query
    # cost more than running it.
    db = connections.get("default")
    p = bulk.placeholder
    rows = await db.execute_query_dict(
        "SELECT u.email, u.display_name, u.tier, u.role FROM auth_sessions s "  # noqa: S608
        f"JOIN users u ON u.id = s.user_id WHERE s.id = {p(db, 1)} AND s.user_id = {p(db, 2)} "
        "AND s.revoked_at IS NULL LIMIT 1",
        bulk.params(db, [claims.session_id, claims.user_id]),
    )
    if not rows:
        raise DomainError(ErrorCode.UNAUTHENTICATED, "The session has ended; log in again.")
    user = rows[0]
    return Viewer(
        id=claims.user_id,
        session_id=claims.session_id,
        email=user["email"],
        display_name=user["display_name"],
        tier=UserTier(user["tier"]),
        role=UserRole(user["role"]),
    )
