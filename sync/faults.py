"""Fault injection for the kill -9 tests of sync: exists only under COURSEGEN_ENV=test.

`COURSEGEN_FAULT_PAUSE_AFTER` names a point of a push where the server stops to be killed:
- `mutation:<k>`: after the k-th new mutation of a push was applied, before the next one (inside
  the push's uncommitted transaction);
- `commit`: after the push committed, before its response is sent.

At that point the server writes the file named by `COURSEGEN_FAULT_MARKER` and sleeps; the test
sees the file and sends SIGKILL. In any other environment both variables are ignored.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from settings import Environment, Settings


async def pause_if_asked(settings: Settings, point: str) -> None:
    if settings.env is not Environment.TEST:
        return
    if os.environ.get("COURSEGEN_FAULT_PAUSE_AFTER") != point:
        return
    marker = os.environ.get("COURSEGEN_FAULT_MARKER")
    if marker:
        await asyncio.to_thread(Path(marker).write_text, point)
    await asyncio.sleep(3600)  # until killed
