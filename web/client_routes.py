"""The web client (web/client/): `/` serves its page, `/assets/<name>.<hash>.<ext>` its files.

Plain ES modules, no build step. At startup every asset is read once and named by a hash of its
content; a module's relative imports (`from "./api.js"`) are rewritten to the hashed names of
what they import, so a change to any module changes the URL of every module that imports it.
Hashed URLs are cached for a year (`immutable`); the page itself is `no-cache`, so a deploy is
seen on the next load. Every response carries a Content-Security-Policy that allows scripts
only from this origin (no inline scripts, no eval).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CLIENT_DIR = Path(__file__).resolve().parent / "client"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
IMMUTABLE = "public, max-age=31536000, immutable"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_IMPORT = re.compile(r"""(\bfrom\s*|\bimport\s*\(?\s*)(["'])\./([\w-]+\.js)\2""")
_PLACEHOLDER = re.compile(r"\{\{asset:([\w.-]+)\}\}")


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str


def _headers(cache: str) -> dict[str, str]:
    return {
        "Cache-Control": cache,
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


class WebClient:
    """The page and its hashed assets, built once from `directory`."""

    def __init__(self, directory: Path = CLIENT_DIR) -> None:
        self.urls: dict[str, str] = {}  # file name -> /assets/<name>.<hash>.<ext>
        self.assets: dict[str, Asset] = {}  # hashed name -> content
        sources = {
            path.name: path.read_text("utf-8")
            for path in sorted(directory.iterdir())
            if path.suffix in _TYPES
        }
        pending = dict(sources)
        while pending:
            ready = [
                name
                for name, text in pending.items()
                if all(dep in self.urls for dep in _imports(text) if dep != name)
            ]
            if not ready:
                raise ValueError(f"web client modules import each other in a cycle: {pending}")
            for name in ready:
                text = _IMPORT.sub(
                    lambda m: f"{m.group(1)}{m.group(2)}{self.urls[m.group(3)]}{m.group(2)}",
                    pending.pop(name),
                )
                body = text.encode()
                digest = hashlib.sha256(body).hexdigest()[:16]
                stem, suffix = name.rsplit(".", 1)
                hashed = f"{stem}.{digest}.{suffix}"
                self.urls[name] = f"/assets/{hashed}"
                self.assets[hashed] = Asset(body, _TYPES[f".{suffix}"])
        page = (directory / "index.html").read_text("utf-8")
        self.page = _PLACEHOLDER.sub(lambda m: self.urls[m.group(1)], page).encode()

    async def index(self, request: Request) -> Response:
        return Response(
            self.page, media_type="text/html; charset=utf-8", headers=_headers("no-cache")
        )

    async def asset(self, request: Request) -> Response:
        asset = self.assets.get(request.path_params["name"])
        if asset is None:
            return Response(
                "Not Found", status_code=404, media_type="text/plain", headers=_headers("no-cache")
            )
        return Response(asset.body, media_type=asset.media_type, headers=_headers(IMMUTABLE))

    def routes(self) -> list[Route]:
        return [
            Route("/", self.index, methods=["GET", "HEAD"]),
            Route("/assets/{name}", self.asset, methods=["GET", "HEAD"]),
        ]


def _imports(text: str) -> list[str]:
    return [match.group(3) for match in _IMPORT.finditer(text)]
