"""Outages of the services we depend on (PostgreSQL, Redis), told apart from bugs.

An error caused by a server being unreachable, restarting or shutting down is not the
caller's fault and not ours: the API answers it with TEMPORARILY_UNAVAILABLE (HTTP 503 and
`Retry-After` where a status applies) instead of a masked internal error, and the client
retries. Every other unexpected error stays masked.
"""

from __future__ import annotations

import errno
import socket

import asyncpg
from redis import exceptions as redis_errors
from tortoise.exceptions import DBConnectionError

from services.errors import DomainError, ErrorCode

# Seconds a client is told to wait: PostgreSQL restarts and Redis failovers take seconds.
RETRY_AFTER_SECONDS = 2
MESSAGE = "The service is temporarily unavailable; try again in a moment."

# SQLSTATE classes of an unusable connection or server: 08 connection exception,
# 57P01-57P03 admin/crash shutdown and "cannot connect now" (starting or stopping).
_SQLSTATE_PREFIXES = ("08", "57P01", "57P02", "57P03")

_NETWORK_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ETIMEDOUT,
}

_UNREACHABLE: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted, broken pipe
    TimeoutError,
    socket.gaierror,
    DBConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    redis_errors.ConnectionError,  # also BusyLoadingError (a Redis still loading)
    redis_errors.TimeoutError,
    # A Redis Cluster whose slots have no reachable owner (a node down, a failover under way).
    redis_errors.ClusterDownError,
    redis_errors.SlotNotCoveredError,
    redis_errors.RedisClusterUnreachableError,
)


def is_unavailable(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, says a backing server is unreachable."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DomainError):
            return current.code is ErrorCode.TEMPORARILY_UNAVAILABLE
        if (
            isinstance(current, _UNREACHABLE)
            or _network_oserror(current)
            or _broken_connection(current)
        ):
            return True
        state = getattr(current, "sqlstate", None)
        if isinstance(state, str) and state.startswith(_SQLSTATE_PREFIXES):
            return True
        current = current.__cause__ or current.__context__
    return False


def _broken_connection(error: BaseException) -> bool:
    message = str(error)
    if isinstance(error, asyncpg.exceptions.InterfaceError):
        # "connection is closed", "pool is closing": not a wrong query (also InterfaceError).
        return "closed" in message or "closing" in message
    # asyncpg's protocol raises this on a connection that the server terminated while a
    # query was on it (seen on `pg_ctl stop -m fast` under load): the connection is dead.
    return isinstance(error, asyncpg.exceptions.InternalClientError) and (
        "another operation" in message
    )


def _network_oserror(error: BaseException) -> bool:
    if not isinstance(error, OSError):
        return False
    # asyncio reports a connect that failed on every address as a bare OSError.
    return error.errno in _NETWORK_ERRNOS or "Connect call failed" in str(error)


def unavailable(message: str = MESSAGE) -> DomainError:
    return DomainError(ErrorCode.TEMPORARILY_UNAVAILABLE, message, retry_after=RETRY_AFTER_SECONDS)
