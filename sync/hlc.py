"""Hybrid logical clocks `<wall ms>-<counter>-<clientId>`, clamped to server time + 5 minutes."""

from __future__ import annotations

import time
from dataclasses import dataclass

MAX_AHEAD_MS = 5 * 60 * 1000


def server_now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, order=True, slots=True)
class Hlc:
    wall: int
    counter: int
    client: str

    def __str__(self) -> str:
        return f"{self.wall}-{self.counter}-{self.client}"


def parse(text: object) -> Hlc:
    if not isinstance(text, str) or len(text) > 120:
        raise ValueError("hlc: expected '<wall ms>-<counter>-<clientId>'")
    wall, _, rest = text.partition("-")
    counter, _, client = rest.partition("-")
    if not (wall.isdigit() and counter.isdigit()):
        raise ValueError("hlc: expected '<wall ms>-<counter>-<clientId>'")
    return Hlc(int(wall), int(counter), client)


def clamp(hlc: Hlc, now_ms: int | None = None) -> Hlc:
    """A clock at most 5 minutes ahead of the server's: a fast device cannot win for ever."""
    limit = (server_now_ms() if now_ms is None else now_ms) + MAX_AHEAD_MS
    return hlc if hlc.wall <= limit else Hlc(limit, hlc.counter, hlc.client)


def server_clock() -> Hlc:
    """The clock of a web API write (no client clock): the server's time."""
    return Hlc(server_now_ms(), 0, "")


def newer(incoming: Hlc, stored: str | None) -> bool:
    return stored is None or incoming > parse(stored)
