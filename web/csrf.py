"""CSRF prevention in the style of Apollo Server's.

A browser sends a cross-site request without a CORS preflight only when it is "simple": GET,
or POST with no content type or `text/plain`, `application/x-www-form-urlencoded` or
`multipart/form-data`, and no custom header. Such a request to a GraphQL endpoint is refused
(400) unless it carries a header that forces a preflight: `Apollo-Require-Preflight`,
`X-Apollo-Operation-Name` or `X-Requested-With` (any non-empty value). `application/json`
POSTs (every ordinary client) pass untouched. GET requests are checked only when they carry an
operation (`?query=`); the GraphiQL page and event streams (`Accept: text/event-stream`, which
`EventSource` cannot decorate with headers) are not.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from observability import metrics
from web.limits import send_error

SIMPLE_TYPES = {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}
PREFLIGHT_HEADERS = (b"apollo-require-preflight", b"x-apollo-operation-name", b"x-requested-with")


def needs_refusal(scope: Scope) -> bool:
    headers = dict(scope.get("headers", []))
    if any(headers.get(name, b"").strip() for name in PREFLIGHT_HEADERS):
        return False
    method = scope["method"]
    if method == "GET":
        if b"text/event-stream" in headers.get(b"accept", b""):
            return False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        return "query" in query or "extensions" in query
    if method != "POST":
        return False
    content_type = headers.get(b"content-type", b"").decode("latin-1")
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "" or media_type in SIMPLE_TYPES


class CSRFMiddleware:
    def __init__(
        self, app: ASGIApp, paths: tuple[str, ...] = ("/graphql", "/graphql/stream")
    ) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.paths and needs_refusal(scope):
            metrics.LIMIT_REFUSALS.labels("csrf").inc()
            await send_error(
                send,
                400,
                "CSRF_PREVENTED",
                "This request has been blocked as a potential Cross-Site Request Forgery. "
                "Send it with `Content-Type: application/json`, or add a non-empty "
                "`Apollo-Require-Preflight` header.",
            )
            return
        await self.app(scope, receive, send)
