"""Structured JSON logs, one object a line, with the request id of the request being served."""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime

import orjson

from web.request_id import current_request_id

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


# Secrets a URL may carry: EventSource and WebSocket clients cannot send headers, so stream
# tokens travel as `?token=`. The servers' own loggers print request lines with the query.
_SECRET_PARAMS = re.compile(
    r"([?&](?:token|access_token|refresh_token|stream_token|streamToken|key|api_key)=)[^&\s\"']*",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    return _SECRET_PARAMS.sub(r"\1[redacted]", text)


class RedactSecrets(logging.Filter):
    """Rewrites a record whose message holds a secret query parameter (uvicorn's access lines,
    its `"WebSocket /path?token=…" [accepted]` lines), whatever formatter prints it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


# Loggers of the servers we run under, which log request lines with their query strings.
SERVER_LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn")


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
