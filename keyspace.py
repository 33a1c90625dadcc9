"""The namespace every Redis key and channel of the service lives under (REDIS_NAMESPACE).

Two deployments, or two test runs, can share one Redis when their namespaces differ. It is one
value per process, set once at startup (app.create_app, manage.py worker), like the logging
configuration: every process of one deployment must use the same one, since web processes and
workers meet on these keys. Names are read when a key is built, never cached at import.
"""

from __future__ import annotations

import re

DEFAULT = "coursegen"
# No ':' (our separator) and no braces (a Redis Cluster hash tag must come only from us).
_VALID = re.compile(r"[A-Za-z0-9_.-]{1,64}")

_namespace = DEFAULT


def valid(namespace: str) -> bool:
    return _VALID.fullmatch(namespace) is not None


def use(namespace: str) -> None:
    global _namespace
    if not valid(namespace):
        raise ValueError(f"not a usable Redis namespace: {namespace!r}")
    _namespace = namespace


def current() -> str:
    return _namespace


def key(*parts: str) -> str:
    """`<namespace>:part:part...`."""
    return ":".join((_namespace, *parts))
