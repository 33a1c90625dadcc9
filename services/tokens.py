"""Access tokens (JWT, HS256 pinned) and opaque refresh tokens (stored hashed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import jwt

from services.errors import DomainError, ErrorCode

ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    expires_at: int


def issue_access_token(
    *,
    key: str,
    issuer: str,
    audience: str,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    ttl_seconds: int,
) -> str:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "sid": str(session_id),
        "iat": now,
        "exp": now + ttl_seconds,
        "iss": issuer,
        "aud": audience,
        "typ": "access",
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


# Tokens this process verified, with their claims: a client sends the same token with every
# request until it expires, and checking its signature and claims again cost more than the
# request's session query. Expiry is checked on every use; a revoked session is still caught
# by the session check that follows (services.accounts). Bounded; oldest forgotten first.
_VERIFIED: OrderedDict[tuple[str, str, str, str], AccessClaims] = OrderedDict()
VERIFIED_CACHE_SIZE = 10_000


def decode_access_token(token: str, *, key: str, issuer: str, audience: str) -> AccessClaims:
    """Verify signature, algorithm, expiry, issuer and audience; raise UNAUTHENTICATED if not."""
    cache_key = (token, key, issuer, audience)
    known = _VERIFIED.get(cache_key)
    if known is not None:
        if known.expires_at > time.time():
            return known
        del _VERIFIED[cache_key]
    claims = _verify(token, key=key, issuer=issuer, audience=audience)
    _VERIFIED[cache_key] = claims
    if len(_VERIFIED) > VERIFIED_CACHE_SIZE:
        _VERIFIED.popitem(last=False)
    return claims


def _verify(token: str, *, key: str, issuer: str, audience: str) -> AccessClaims:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "sub", "sid", "iss", "aud"]},
        )
        if claims.get("typ") != "access":
            raise jwt.InvalidTokenError("not an access token")
        return AccessClaims(
            user_id=uuid.UUID(claims["sub"]),
            session_id=uuid.UUID(claims["sid"]),
            expires_at=int(claims["exp"]),
        )
    except jwt.ExpiredSignatureError:
        raise DomainError(ErrorCode.UNAUTHENTICATED, "The access token has expired.") from None
    except (jwt.InvalidTokenError, ValueError, TypeError):
        raise DomainError(ErrorCode.UNAUTHENTICATED, "The access token is not valid.") from None


def new_refresh_token() -> tuple[str, str]:
    """A fresh opaque token and the hash under which it is stored."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def successor_refresh_token(key: str, token: str) -> str:
    """The token that replaces `token` when it is rotated, derived from it with the server's key.

    Deterministic so that a retry inside the reuse grace window (a response lost on a flaky
    network) gets the very token the first rotation issued: only a hash is stored, so the
    successor could not otherwise be answered again, and a fresh token per retry would let a
    replayed stolen token start a parallel chain that reuse detection never sees. Without the
    key, knowing a token tells nothing about its successor."""
    digest = hmac.new(key.encode(), b"refresh-successor:" + token.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


DEVICE_TOKEN_VERSION = "d1"  # noqa: S105 -- a format tag, not a secret


def issue_device_token(key: str, email: str) -> str:
    """A known-device token (OWASP's device cookie) for the account `email`: handed out at a
    successful log-in, sent back with later log-ins, so a client that has logged in before is
    not locked out by someone else's failed guesses. Stateless: a nonce and an HMAC."""
    nonce = secrets.token_urlsafe(12)
    return f"{DEVICE_TOKEN_VERSION}.{nonce}.{_device_signature(key, email, nonce)}"


def device_token_id(key: str, token: str | None, email: str) -> str | None:
    """The token's nonce when it is a valid device token of `email`, else None."""
    if not token or len(token) > 200:
        return None
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != DEVICE_TOKEN_VERSION:
        return None
    expected = _device_signature(key, email, parts[1])
    return parts[1] if hmac.compare_digest(parts[2], expected) else None


def _device_signature(key: str, email: str, nonce: str) -> str:
    message = f"device:{email.lower()}:{nonce}".encode()
    digest = hmac.new(key.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def hash_refresh_token(token: str) -> str:
    # The token has 256 bits of entropy, so a fast hash is enough (no brute force possible).
    return hashlib.sha256(token.encode()).hexdigest()
