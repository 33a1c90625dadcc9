"""Sync devices for the scale drill, and the check that each acknowledged mutation was applied
exactly once.

A device is one user's client group (client `c`) pushing, through the load balancer, batches
of mutations whose effect can be counted on the server:
- `createNote` with a fresh note id each time: a lost one is a note that is missing;
- `saveNote` on one "chain" note, always on the version the device last wrote: applied once
  each, the note's version is 1 + the saves; applied twice, the second application finds
  another version and leaves a conflict copy (a note the device never created), so a double
  application shows as an extra note and a higher version.
A push is retried, the same batch with the same mutation ids, until its answer says every
mutation `APPLIED` or `DUPLICATE` (an acknowledgement): a 502 from the balancer, a dropped
connection (its web process was killed mid-push) or a 503/`RETRY_LATER` are all retried, as
the reference client does. The server's `lastMutationId` makes the retry exactly-once.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from models import Note, SyncClient, SyncRejection

ACKED = {"APPLIED", "DUPLICATE"}


@dataclass
class Device:
    token: str
    user_id: uuid.UUID
    topics: list[str]
    group: str = field(default_factory=lambda: uuid.uuid4().hex)
    chain: str = field(default_factory=lambda: str(uuid.uuid4()))
    next_id: int = 1
    chain_version: int = 1
    saves: int = 0
    created: list[str] = field(default_factory=list)  # acknowledged createNote ids
    last_body: str = "first"
    pushes: int = 0
    retries: int = 0
    acked: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    served_by: set[str] = field(default_factory=set)
    outages: list[float] = field(default_factory=list)  # first failure to the next ack, s
    unexpected: list[str] = field(default_factory=list)  # answers that are not acks or retries

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def _mutation(self, name: str, args: dict[str, Any], **extra: Any) -> dict[str, Any]:
        wall = int(time.time() * 1000)
        m = {"clientId": "c", "id": self.next_id, "name": name, "args": args, **extra}
        m["hlc"] = f"{wall}-{self.next_id}-{self.group}"
        self.next_id += 1
        return m

    def batch(self, size: int) -> tuple[list[dict[str, Any]], list[str], str | None]:
        """The next `size` mutations, the note ids they create and the chain's new text."""
        out: list[dict[str, Any]] = []
        creates: list[str] = []
        body = None
        if self.next_id == 1:
            args = {"noteId": self.chain, "topicId": self.topics[0], "body": "first"}
            out.append(self._mutation("createNote", args))
        while len(out) < size:
            if self.next_id % 2:
                note = str(uuid.uuid4())
                topic = self.topics[self.next_id % len(self.topics)]
                args = {"noteId": note, "topicId": topic, "body": f"note {self.next_id}"}
                out.append(self._mutation("createNote", args))
                creates.append(note)
            else:
                body = f"save {self.next_id}"
                args = {"noteId": self.chain, "body": body}
                base = self.chain_version + sum(1 for m in out if m["name"] == "saveNote")
                out.append(self._mutation("saveNote", args, baseVersion=base))
        return out, creates, body

    async def push_until_acked(
        self, client: httpx.AsyncClient, size: int, give_up_at: float
    ) -> bool:
        mutations, creates, body = self.batch(size)
        payload = {"protocolVersion": 1, "clientGroupId": self.group, "mutations": mutations}
        failed_at: float | None = None
        attempt = 0
        while time.monotonic() < give_up_at:
            self.pushes += 1
            problem = None
            try:
                response = await client.post("/sync/push", json=payload, headers=self.headers)
                self.served_by.add(response.headers.get("x-coursegen-web", "?"))
                if response.status_code == 200:
                    statuses = [r["status"] for r in response.json()["results"]]
                    for status in statuses:
                        self.statuses[status] = self.statuses.get(status, 0) + 1
                    if all(s in ACKED for s in statuses) and len(statuses) == len(mutations):
                        saves = sum(1 for m in mutations if m["name"] == "saveNote")
                        self.chain_version += saves
                        self.saves += saves
                        self.created.extend(creates)
                        self.last_body = body or self.last_body
                        self.acked += len(mutations)
                        if failed_at is not None:
                            self.outages.append(round(time.monotonic() - failed_at, 3))
                        return True
                    if not all(s in ACKED or s == "RETRY_LATER" for s in statuses):
                        self.unexpected.append(str(response.json()["results"])[:300])
                        return False
                    problem = "RETRY_LATER"
                else:
                    problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as error:
                problem = type(error).__name__
            self.failures[problem] = self.failures.get(problem, 0) + 1
            if failed_at is None:
                failed_at = time.monotonic()
            self.retries += 1
            attempt += 1
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0) * random.uniform(0.5, 1.0))
        return False

    async def run(
        self, base: str, size: int, stop: asyncio.Event, give_up_at: float, pause: float
    ) -> None:
        # One connection per device, as a phone has: a push in flight when its web process
        # dies is cut, and the retry goes through the balancer to another process.
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=base, timeout=20, limits=limits) as client:
            while not stop.is_set():
                if not await self.push_until_acked(client, size, give_up_at):
                    return
                await asyncio.sleep(pause * random.uniform(0.5, 1.5))


@dataclass
class Verdict:
    devices: int = 0
    sent: int = 0
    acked: int = 0
    lost: int = 0  # acknowledged, not on the server
    applied_twice: int = 0  # on the server more often than sent
    unacked: int = 0  # still unacknowledged when the drill gave up
    problems: list[str] = field(default_factory=list)


async def verify(devices: list[Device]) -> Verdict:
    """Compares each device's acknowledged mutations with the server's rows."""
    verdict = Verdict(devices=len(devices))
    for d in devices:
        sent = d.next_id - 1
        verdict.sent += sent
        verdict.acked += d.acked
        verdict.unacked += sent - d.acked
        client = await SyncClient.filter(group_id=d.group, client_id="c").first()
        last = client.last_mutation_id if client else 0
        if last < d.acked:
            verdict.lost += d.acked - last
            verdict.problems.append(f"{d.group}: lastMutationId {last} < acked {d.acked}")
        notes = {str(n.id): n for n in await Note.filter(user_id=d.user_id)}
        expected = {*d.created, d.chain} if d.acked else set(d.created)
        missing = expected - set(notes)
        extra = set(notes) - expected
        verdict.lost += len(missing)
        # A note nobody created here is a conflict copy: a save applied on a version it was
        # not based on, which only a second application of the same save could be. (Creates
        # of an un-acked last batch may be there too: those are not errors.)
        copies = [n for n in extra if notes[n].body.startswith("save ")]
        verdict.applied_twice += len(copies)
        chain = notes.get(d.chain)
        if chain is not None:
            expected_version = 1 + d.saves
            if chain.version < expected_version:
                verdict.lost += expected_version - chain.version
            elif chain.version > expected_version and d.acked == sent:
                verdict.applied_twice += chain.version - expected_version
            if d.acked == sent and chain.body != d.last_body:
                verdict.problems.append(f"{d.chain}: body {chain.body!r} != {d.last_body!r}")
        rejected = await SyncRejection.filter(group_id=d.group).count()
        if rejected:
            verdict.problems.append(f"{d.group}: {rejected} rejections or conflicts recorded")
        verdict.problems.extend(d.unexpected)
    return verdict
