"""A load-generator process for the scale drill: many live subscribers that survive the death
of their web process, each checking that it sees every event of its job exactly once.

    python -m bench.drill_subscribers < config.json

(The config comes on stdin: a thousand tokens are too long for a command line.)

Config: `port` (the load balancer's), `deadline` (seconds), `subscribers`: a list of
`{"job": id, "token": access token, "transport": "sse" | "ws"}`. Each subscriber follows its
job (SSE: `GET /events/jobs/{id}`; WS: GraphQL `generationProgress` over
graphql-transport-ws) until the terminal event. When its connection drops (its web process was
killed, or the server ended the stream), it reconnects through the balancer and resumes after
the last seq it has (`Last-Event-ID` for SSE, `after` for WS), as the web client does.

Per subscriber it records the seqs received in order, which web processes served it (the
balancer's `X-Coursegen-Web` header), its reconnects and how long each took (drop to stream
re-established). Prints `{"connected": n}` once every subscriber has had a first answer, then
one JSON line with everything at the end. Framing is hand-written and light (as in
bench/fanout_client.py): the client shares two cores with the servers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from bench.fanout_client import _frame, _read_frame

TERMINAL = {"completed", "failed", "cancelled"}
QUERY = (
    "subscription($jobId: ID!, $after: Int) { generationProgress(jobId: $jobId, after: $after) "
    "{ seq type } }"
)


class Dropped(Exception):
    """The stream ended before the terminal event: reconnect and resume."""


@dataclass
class Subscriber:
    job: str
    token: str
    transport: str
    seqs: list[int] = field(default_factory=list)
    last_type: str | None = None
    served_by: list[str] = field(default_factory=list)
    reconnects: int = 0
    reconnect_seconds: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    first_event_at: float | None = None  # time.time(), to compare with the orchestrator's clock
    timeline: list[tuple[int, float]] = field(default_factory=list)  # (seq, time) if asked
    keep_timeline: bool = False
    done: bool = False
    dropped_at: float | None = None  # monotonic, while reconnecting

    def established(self, served_by: str) -> None:
        """A 200 (SSE) or 101 (WS) through the balancer: following again."""
        self.served_by.append(served_by)
        if self.dropped_at is not None:
            self.reconnect_seconds.append(round(time.monotonic() - self.dropped_at, 3))
            self.dropped_at = None

    @property
    def last(self) -> int:
        return self.seqs[-1] if self.seqs else 0

    def receive(self, seq: int, kind: str) -> None:
        self.seqs.append(seq)  # in arrival order: a gap or a repeat shows in the list
        self.last_type = kind
        now = time.time()
        if self.first_event_at is None:
            self.first_event_at = now
        if self.keep_timeline:
            self.timeline.append((seq, round(now, 3)))
        if kind in TERMINAL:
            self.done = True

    def failed(self, reason: object) -> None:
        key = str(reason)[:60] or type(reason).__name__
        self.failures[key] = self.failures.get(key, 0) + 1


def _served_by(head: bytes) -> str:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-coursegen-web":
            return value.strip().decode()
    return "?"


async def _sse(host: str, port: int, sub: Subscriber, connected: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    try:
        writer.write(
            (
                f"GET /events/jobs/{sub.job} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {sub.token}\r\nAccept: text/event-stream\r\n"
                f"Last-Event-ID: {sub.last}\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status == b"204":  # already has the terminal event
            connected.set()
            sub.done = True
            return
        if status != b"200":
            raise Dropped(f"HTTP {status.decode()}")
        sub.established(_served_by(head))
        connected.set()
        chunked = b"transfer-encoding: chunked" in head.lower()
        buffer = b""
        while not sub.done:
            if chunked:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                if size == 0:
                    raise Dropped("stream ended")
                buffer += (await reader.readexactly(size + 2))[:-2]
            else:
                data = await reader.read(65536)
                if not data:
                    raise Dropped("stream ended")
                buffer += data
            buffer = buffer.replace(b"\r\n", b"\n")
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                event = None
                for line in block.split(b"\n"):
                    if line.startswith(b"event:"):
                        event = line[6:].strip()
                    elif line.startswith(b"data:") and event is None:
                        body = orjson.loads(line[5:])
                        sub.receive(int(body["seq"]), str(body["type"]))
                if event == b"close":
                    raise Dropped("server closed the stream")
    finally:
        writer.close()


async def _ws(host: str, port: int, sub: Subscriber, connected: asyncio.Event) -> None:
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
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise Dropped(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        sub.established(_served_by(head))
        connected.set()
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {sub.token}"}}
        writer.write(_frame(orjson.dumps(init)))
        subscribe = {
            "id": "1",
            "type": "subscribe",
            "payload": {"query": QUERY, "variables": {"jobId": sub.job, "after": sub.last}},
        }
        writer.write(_frame(orjson.dumps(subscribe)))
        while not sub.done:
            opcode, payload = await _read_frame(reader)
            if opcode == 9:  # ping
                writer.write(_frame(payload, opcode=10))
                continue
            if opcode == 8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
                raise Dropped(f"closed {code}")
            if opcode != 1:
                continue
            message = orjson.loads(payload)
            kind = message.get("type")
            if kind == "next":
                event = message["payload"]["data"]["generationProgress"]
                sub.receive(int(event["seq"]), str(event["type"]))
            elif kind == "complete":
                if not sub.done:
                    raise Dropped("complete before the terminal event")
            elif kind == "error":
                raise Dropped(f"error {str(message.get('payload'))[:40]}")
        writer.write(_frame(b"\x03\xe8", opcode=8))
    finally:
        writer.close()


async def follow(host: str, port: int, sub: Subscriber, connected: asyncio.Event) -> None:
    attempt = 0
    while not sub.done:
        try:
            if sub.transport == "sse":
                await _sse(host, port, sub, connected)
            else:
                await _ws(host, port, sub, connected)
        except (Dropped, OSError, asyncio.IncompleteReadError, ValueError) as error:
            sub.failed(error)
        if sub.done:
            return
        if sub.dropped_at is None:
            sub.dropped_at = time.monotonic()
            sub.reconnects += 1
            attempt = 0
        attempt += 1
        # Jittered back-off, as EventSource's `retry:` (1 s here) would, but shorter at first:
        # the balancer has other processes ready.
        await asyncio.sleep(min(0.1 * 2**attempt, 2.0) * random.uniform(0.5, 1.0))


async def main(config: dict[str, Any]) -> None:
    host, port = "127.0.0.1", int(config["port"])
    subs = [
        Subscriber(
            job=s["job"],
            token=s["token"],
            transport=s["transport"],
            keep_timeline=bool(s.get("timeline")),
        )
        for s in config["subscribers"]
    ]
    flags = [asyncio.Event() for _ in subs]
    tasks = []
    rate = float(config.get("rate", 500))  # new connections a second
    for index, (sub, flag) in enumerate(zip(subs, flags, strict=True)):
        tasks.append(asyncio.create_task(follow(host, port, sub, flag)))
        if index % 20 == 19:
            await asyncio.sleep(20 / rate)
    await asyncio.wait(
        [asyncio.create_task(flag.wait()) for flag in flags], timeout=float(config["deadline"])
    )
    print(json.dumps({"connected": sum(flag.is_set() for flag in flags)}), flush=True)
    _, pending = await asyncio.wait(tasks, timeout=float(config["deadline"]))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    out = []
    for sub in subs:
        row = asdict(sub)
        row.pop("token")
        out.append(row)
    print(json.dumps({"subscribers": out}), flush=True)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(main(json.loads(sys.stdin.readline())))
