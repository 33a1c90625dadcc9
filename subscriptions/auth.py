"""Who may follow a job, and the credentials live connections present.

- An access token (the `Authorization` header, or the WebSocket `connection_init` payload):
  verified as for any request; its expiry bounds the connection.
- A stream token, for the browser's EventSource (which cannot send headers): minted by the
  `streamToken(jobId)` mutation for one job, signed with the service's signing key, valid a few
  minutes (`live_stream_token_ttl_seconds`), tied to the session that minted it. It lets a
  stream be *opened* (and re-opened by EventSource's automatic reconnects) until it expires;
  the stream it opened is closed at that expiry too.

A job whose course the user may not see is NOT_FOUND, as everywhere in the API: ids never
disclose what exists.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt
from tortoise.expressions import Subquery

from models import AuthSession, Course, GenerationJob
from services import accounts, tokens
from services.accounts import Viewer
from services.errors import DomainError, ErrorCode, not_found
from services.permissions import visible_courses_q
from settings import Settings

STREAM_TOKEN_TYPE = "stream"  # noqa: S105 -- a claim value, not a secret


@dataclass(frozen=True, slots=True)
class Credentials:
    viewer: Viewer
    expires_at: float  # epoch seconds: the connection is closed then


async def authenticate(settings: Settings, access_token: str) -> Credentials:
    """The viewer of an access token and when the token expires; UNAUTHENTICATED if not valid."""
    claims = tokens.decode_access_token(
        access_token,
        key=settings.signing_key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    viewer = await accounts.viewer_from_access_token(settings, access_token)
    return Credentials(viewer=viewer, expires_at=float(claims.expires_at))


def _stream_audience(settings: Settings) -> str:
    return f"{settings.jwt_audience}:stream"


def issue_stream_token(settings: Settings, viewer: Viewer, job_id: uuid.UUID) -> tuple[str, int]:
    """A token that opens the SSE stream of one job for `viewer`; and its lifetime in seconds."""
    ttl = settings.live_stream_token_ttl_seconds
    now = int(time.time())
    claims = {
        "sub": str(viewer.id),
        "sid": str(viewer.session_id),
        "job": str(job_id),
        "iat": now,
        "exp": now + ttl,
        "iss": settings.jwt_issuer,
        "aud": _stream_audience(settings),
        "typ": STREAM_TOKEN_TYPE,
    }
    return jwt.encode(claims, settings.signing_key, algorithm=tokens.ALGORITHM), ttl


async def authenticate_stream_token(
    settings: Settings, token: str, job_id: uuid.UUID
) -> Credentials:
    """The viewer a stream token was minted for, if it is valid for this job."""
    try:
        claims = jwt.decode(
            token,
            settings.signing_key,
            algorithms=[tokens.ALGORITHM],
            audience=_stream_audience(settings),
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "sub", "sid", "job", "iss", "aud"]},
        )
        if claims.get("typ") != STREAM_TOKEN_TYPE or claims["job"] != str(job_id):
            raise jwt.InvalidTokenError("not a stream token for this job")
        user_id, session_id = uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"])
    except jwt.ExpiredSignatureError:
        raise DomainError(
            ErrorCode.UNAUTHENTICATED, "The stream token has expired; ask for a new one."
        ) from None
    except (jwt.InvalidTokenError, ValueError, TypeError, KeyError):
        raise DomainError(ErrorCode.UNAUTHENTICATED, "The stream token is not valid.") from None
    session = (
        await AuthSession.filter(id=session_id, user_id=user_id, revoked_at=None)
        .select_related("user")
        .first()
    )
    if session is None:
        raise DomainError(ErrorCode.UNAUTHENTICATED, "The session has ended; log in again.")
    user = session.user
    viewer = Viewer(
        id=user.id,
        session_id=session.id,
        email=user.email,
        display_name=user.display_name,
        tier=user.tier,
        role=user.role,
    )
    return Credentials(viewer=viewer, expires_at=float(claims["exp"]))


async def followable_job(viewer_id: uuid.UUID, job_id: uuid.UUID) -> GenerationJob:
    """The job if the viewer may see its course; NOT_FOUND otherwise (never FORBIDDEN)."""
    visible = Subquery(Course.filter(visible_courses_q(viewer_id)).values("id"))
    job = await GenerationJob.filter(id=job_id, course_id__in=visible).first()
    if job is None:
        raise not_found("generation job", field="jobId")
    return job
