"""The web client (web/client/): `/` serves its page, `/assets/<name>.<hash>.<ext>` its files,
`/sw.js` its service worker.

Plain ES modules, no build step: the page's own (web/client/), the browser builds of the
libraries it uses (web/client/vendor/, see its README) and the sync client every JavaScript app
uses (clients/js/), served under one flat namespace. At startup every asset is read once and
named by a hash of its content; a module's relative imports (`from "./api.js"`) are rewritten to
the hashed names of what they import, so a change to any module changes the URL of every module
that imports it. Hashed URLs are cached for a year (`immutable`); the page itself is
`no-cache`, so a deploy is seen on the next load. The service worker lists every hashed URL, so
a deploy changes its bytes and the browser installs the new one, which caches the new shell.
Every response carries a Content-Security-Policy that allows scripts only from this origin (no
inline scripts, no eval).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from generation.requests import GenerateCourseData
from services.learning import MAX_NOTE

CLIENT_DIR = Path(__file__).resolve().parent / "client"
SYNC_CLIENT_DIR = Path(__file__).resolve().parent.parent / "clients" / "js"
# The browser half of clients/js (storage-file.js is Node's).
SYNC_CLIENT_FILES = ("sync-client.js", "storage.js")

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
        files = [p for p in sorted(directory.iterdir()) if p.suffix in _TYPES]
        if (directory / "vendor").is_dir():
            files += [p for p in sorted((directory / "vendor").iterdir()) if p.suffix in _TYPES]
        if directory == CLIENT_DIR:
            files += [SYNC_CLIENT_DIR / name for name in SYNC_CLIENT_FILES]
        sources: dict[str, str] = {}
        for path in files:
            if path.name in sources:
                raise ValueError(f"two web client files are named {path.name}")
            sources[path.name] = path.read_text("utf-8")
        pending = dict(sources)
        while pending:
            ready = [
                name
                for name, text in pending.items()
                if all(dep in self.urls for dep in _imports(text))
            ]
            if not ready:
                raise ValueError(f"web client modules import each other in a cycle: {pending}")
            for name in ready:
                body = _rewrite(pending.pop(name), self.urls).encode()
                digest = hashlib.sha256(body).hexdigest()[:16]
                stem, suffix = name.rsplit(".", 1)
                hashed = f"{stem}.{digest}.{suffix}"
                self.urls[name] = f"/assets/{hashed}"
                self.assets[hashed] = Asset(body, _TYPES[f".{suffix}"])
        page = (directory / "index.html").read_text("utf-8")
        page = page.replace("{{limits}}", html.escape(json.dumps(input_limits()), quote=True))
        self.page = _PLACEHOLDER.sub(lambda m: self.urls[m.group(1)], page).encode()
        worker = (directory / "sw.js.template").read_text("utf-8")
        shell = json.dumps(["/", *sorted(self.urls.values())], indent=2)
        version = hashlib.sha256(shell.encode()).hexdigest()[:16]
        self.service_worker = (
            worker.replace("/*{{shell}}*/[]", shell).replace("{{version}}", version).encode()
        )

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

    async def worker(self, request: Request) -> Response:
        # At the root so that its scope is the whole origin; never cached, so a deploy's
        # worker is found on the next visit (browsers re-check at most daily anyway).
        return Response(self.service_worker, media_type=_TYPES[".js"], headers=_headers("no-cache"))

    def routes(self) -> list[Route]:
        return [
            Route("/", self.index, methods=["GET", "HEAD"]),
            Route("/sw.js", self.worker, methods=["GET", "HEAD"]),
            Route("/assets/{name}", self.asset, methods=["GET", "HEAD"]),
        ]


def input_limits() -> dict[str, dict[str, int]]:
    """The server's own limits on what the page's forms send, so that the page checks them as
    the user types and can never drift from them: the generate form's fields (from its
    validation model) and a note's length."""
    schema = GenerateCourseData.model_json_schema(by_alias=True)["properties"]
    keys = ("minLength", "maxLength", "minimum", "maximum")
    limits = {
        _camel(name): {k: v for k, v in spec.items() if k in keys}
        for name, spec in schema.items()
        if any(k in spec for k in keys)
    }
    limits["note"] = {"maxLength": MAX_NOTE}
    return limits


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _code_lines(text: str) -> list[str]:
    # Comment lines are left alone: usage examples in them (`import … from "./x.js"`) are
    # not imports.
    return [line for line in text.splitlines() if not line.lstrip().startswith(("//", "*"))]


def _imports(text: str) -> list[str]:
    return [m.group(3) for line in _code_lines(text) for m in _IMPORT.finditer(line)]


def _rewrite(text: str, urls: dict[str, str]) -> str:
    """`text` with each relative import pointing at the hashed URL of what it imports."""
    out = []
    for line in text.splitlines(keepends=True):
        if not line.lstrip().startswith(("//", "*")):
            line = _IMPORT.sub(
                lambda m: f"{m.group(1)}{m.group(2)}{urls[m.group(3)]}{m.group(2)}", line
            )
        out.append(line)
    return "".join(out)
