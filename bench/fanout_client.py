"""A load-generator process for bench/fanout.py: many subscribers to one job, kept light.

    python -m bench.fanout_client '<json config>'

Opens `count` subscribers over `transport` ("sse": GET /events/jobs/{id}; "ws": GraphQL
`generationProgress` over graphql-transport-ws), each on its own TCP connection, with minimal
hand-written HTTP/1.1, chunked, SSE and WebSocket framing (no client library: the client shares
two cores with the server). Prints `{"connected": n, "failed": m}` once all tried, then waits
for events until `expect` were received by every subscriber or `deadline` passes, and prints
`{"latencies": [...], "received": k, "closed": c}`: for every event received, receipt time
minus the event's `at` (the publisher's clock; same machine).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    subscribed: int = 0  # got the warm-up event (seq 1): following live from now on
    received: int = 0
    closed: int = 0
    done: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def failed(self, reason: object) -> None:
        self.closed += 1
        key = str(reason)[:80]
        self.reasons[key] = self.reasons.get(key, 0) + 1

    def record(self, event: dict[str, Any]) -> None:
        if event["seq"] == 1:
            self.subscribed += 1
        else:
            self.latencies.append(_latency(event["at"]))
            self.received += 1


def _latency(at: str) -> float:
    return time.time() - datetime.fromisoformat(at).timestamp()


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    return head


async def sse_subscriber(
    host: str, port: int, path: str, token: str, stats: Stats, expect: int
) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    try:
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                "Accept: text/event-stream\r\n\r\n"
            ).encode()
        )
        head = await _read_head(reader)
        if not head.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(head[:40])
        buffer = b""
        got = 0
        while got < expect:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.strip(), 16)
            if size == 0:
                break
            buffer += await reader.readexactly(size + 2)
            buffer = buffer[:-2] if buffer.endswith(b"\r\n") else buffer
            while b"\r\n\r\n" in buffer:
                block, buffer = buffer.split(b"\r\n\r\n", 1)
                for line in block.split(b"\r\n"):
                    if line.startswith(b"data: "):
                        stats.record(orjson.loads(line[6:]))
                        got += 1
        stats.done += 1
    except (ConnectionError, asyncio.IncompleteReadError) as error:
        stats.failed(error)
    finally:
        writer.close()


def _frame(payload: bytes, opcode: int = 1) -> bytes:
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, 0x80 | length])
    elif length < 65536:
        header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(length)


QUERY = (
    "subscription($jobId: ID!) { generationProgress(jobId: $jobId) "
    "{ seq type jobId progress stage message courseId at } }"
)


async def ws_subscriber(
    host: str, port: int, job_id: str, token: str, stats: Stats, expect: int
) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /graphql HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
            ).encode()
        )
        head = await _read_head(reader)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head[:40])
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        writer.write(_frame(orjson.dumps(init)))
        subscribe = {
            "id": "1",
            "type": "subscribe",
            "payload": {"query": QUERY, "variables": {"jobId": job_id}},
        }
        writer.write(_frame(orjson.dumps(subscribe)))
        got = 0
        while got < expect:
            opcode, payload = await _read_frame(reader)
            if opcode == 9:  # ping
                writer.write(_frame(payload, opcode=10))
                continue
            if opcode == 8:
                raise ConnectionError("closed")
            if opcode != 1:
                continue
            message = orjson.loads(payload)
            if message.get("type") == "next":
                stats.record(message["payload"]["data"]["generationProgress"])
                got += 1
            elif message.get("type") in ("error", "complete"):
                raise ConnectionError(str(message)[:200])
        stats.done += 1
    except (ConnectionError, asyncio.IncompleteReadError) as error:
        stats.failed(error)
    finally:
        writer.close()


async def main(config: dict[str, Any]) -> None:
    host, port = "127.0.0.1", int(config["port"])
    count, expect = int(config["count"]), int(config["expect"])
    stats = Stats()
    tasks: list[asyncio.Task[None]] = []
    expect += 1  # the warm-up event, then the measured ones
    rate = float(config.get("rate", 400))
    for index in range(count):
        if config["transport"] == "sse":
            coro = sse_subscriber(host, port, config["path"], config["token"], stats, expect)
        else:
            coro = ws_subscriber(host, port, config["jobId"], config["token"], stats, expect)
        tasks.append(asyncio.create_task(coro))
        if index % 20 == 19:
            await asyncio.sleep(20 / rate)  # arrive at `rate` connections a second
    settle = time.monotonic() + float(config["connect_timeout"])
    while stats.subscribed + stats.closed < count and time.monotonic() < settle:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    print(
        json.dumps(
            {"subscribed": stats.subscribed, "closed": stats.closed, "reasons": stats.reasons}
        ),
        flush=True,
    )
    # The orchestrator now publishes the measured events.
    deadline = time.monotonic() + float(config["deadline"])
    _, pending = await asyncio.wait(tasks, timeout=max(deadline - time.monotonic(), 0.1))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    print(
        json.dumps(
            {
                "latencies": [round(x, 5) for x in stats.latencies],
                "received": stats.received,
                "closed": stats.closed,
                "done": stats.done,
                "timed_out": len(pending),
                "reasons": stats.reasons,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(main(json.loads(sys.argv[1])))
