"""Pull cookies: an opaque, signed, compact encoding of `{scope: progress}`.

Per scope: the version the client has all of, an optional cursor `(version, type, id)` inside a
scope being walked page by page, and whether the scope is being sent whole (gained or reset).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import zlib
from dataclasses import dataclass

from services.errors import invalid

Cursor = tuple[int, str, str]


@dataclass(slots=True)
class ScopeState:
    version: int = 0
    cursor: Cursor | None = None
    whole: bool = False


def _key(secret: str) -> bytes:
    return hashlib.sha256(b"coursegen-sync-cookie:" + secret.encode()).digest()


def _short(scope: str) -> str:
    kind, _, ident = scope.partition(":")
    return kind[0] + ident.replace("-", "")


def _long(short: str) -> str:
    kind = {"c": "course", "u": "user"}[short[0]]
    h = short[1:]
    return f"{kind}:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def encode(states: dict[str, ScopeState], secret: str) -> str:
    items = []
    for scope in sorted(states):
        s = states[scope]
        item: list[object] = [_short(scope), s.version]
        if s.cursor is not None or s.whole:
            item += [list(s.cursor) if s.cursor else 0, 1 if s.whole else 0]
        items.append(item)
    raw = zlib.compress(json.dumps(items, separators=(",", ":")).encode(), 9)
    mac = hmac.new(_key(secret), raw, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(mac + raw).decode().rstrip("=")


def decode(cookie: str | None, secret: str) -> dict[str, ScopeState]:
    if not cookie:
        return {}
    try:
        blob = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
        mac, raw = blob[:12], blob[12:]
        if not hmac.compare_digest(mac, hmac.new(_key(secret), raw, hashlib.sha256).digest()[:12]):
            raise ValueError("bad signature")
        states: dict[str, ScopeState] = {}
        for item in json.loads(zlib.decompress(raw)):
            state = ScopeState(version=int(item[1]))
            if len(item) > 2:
                state.cursor = (
                    (int(item[2][0]), str(item[2][1]), str(item[2][2])) if item[2] else None
                )
                state.whole = bool(item[3])
            states[_long(item[0])] = state
        return states
    except Exception:
        raise invalid(
            "cookie: not a cookie this server issued; pull without one.", "cookie"
        ) from None
