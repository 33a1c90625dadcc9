"""Fan-out of job progress to the subscribers of this process.

- One `JobFeed` per job that has followers in this process: it listens to the job's wake-ups
  through the broker (one pub/sub connection for the whole process), reads the job's log ONCE
  per wake-up (XRANGE after its cursor) and offers each new event to every local follower.
  Nothing blocks per subscriber on Redis.
- One `Follower` per subscription: it first replays the log after the subscriber's `after`
  (in batches, straight from the log), then takes the feed's live events from its queue.
  It keeps its own `last` sequence number: it skips what it already delivered and reads any
  gap back from the log, so joins, reconnects of the broker and replays never lose or repeat
  an event.
- Offers never wait. A follower's queue counts toward its connection's send queue; a
  connection with more than `live_send_queue_size` events waiting is closed (slow consumer),
  so a slow client never slows the feed, the broker or other subscribers.
- The terminal state also comes from the database (`subscriptions.terminal`): when the log holds
  no terminal event (expired, lost in a Redis restart, or never written because a process died)
  and the job row says it ended, the follower gets a synthesized terminal event.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable

from subscriptions.broker import Broker
from subscriptions.connections import SLOW_CONSUMER, LiveConnection
from subscriptions.events import ProgressEvent
from subscriptions.progress_log import ReadableLog
from subscriptions.terminal import TerminalState, terminal_state

log = logging.getLogger("coursegen.live")

TerminalLookup = Callable[[uuid.UUID], Awaitable[TerminalState | None]]


class ProgressHub:
    def __init__(
        self,
        log: ReadableLog,
        broker: Broker,
        *,
        poll_seconds: float = 5.0,
        terminal_grace_seconds: float = 2.0,
        batch_size: int = 500,
        terminal_lookup: TerminalLookup = terminal_state,
    ) -> None:
        self.log = log
        self.broker = broker
        self.poll_seconds = poll_seconds
        self.terminal_grace_seconds = terminal_grace_seconds
        self.batch_size = batch_size
        self.terminal_lookup = terminal_lookup
        self.feeds: dict[uuid.UUID, JobFeed] = {}

    def follower(
        self,
        job_id: uuid.UUID,
        after: int = 0,
        connection: LiveConnection | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> Follower:
        return Follower(self, job_id, after, connection, on_close)

    async def attach(self, follower: Follower) -> JobFeed:
        feed = self.feeds.get(follower.job_id)
        if feed is None:
            feed = self.feeds[follower.job_id] = JobFeed(self, follower.job_id)
        feed.followers.add(follower)
        while not feed.ready.is_set() and not follower.stopped:
            await _first_of(feed.ready, follower._wake)
            follower._wake.clear()
        return feed

    def detach(self, follower: Follower) -> None:
        feed = self.feeds.get(follower.job_id)
        if feed is None:
            return
        feed.followers.discard(follower)
        if not feed.followers:
            feed.stop()
            del self.feeds[follower.job_id]

    @property
    def follower_count(self) -> int:
        return sum(len(feed.followers) for feed in self.feeds.values())

    async def close(self) -> None:
        for feed in list(self.feeds.values()):
            for follower in list(feed.followers):
                follower.close()
            feed.stop()
        self.feeds.clear()


class JobFeed:
    """The one reader of a job's log in this process. It keeps the newest events it has seen
    (`window`), so subscribers who join read their backlog from memory, not from Redis."""

    WINDOW = 256

    def __init__(self, hub: ProgressHub, job_id: uuid.UUID) -> None:
        self.hub = hub
        self.job_id = job_id
        self.followers: set[Follower] = set()
        self.cursor = 0
        self.last_event: ProgressEvent | None = None
        self.window: deque[ProgressEvent] = deque(maxlen=self.WINDOW)
        self.window_is_whole = False  # nothing in the log comes before the window
        self.ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._quiet_since = time.monotonic()
        # Listen before reading the cursor: a wake-up in between only causes one more read.
        self._unwatch = hub.broker.watch_job(job_id, self._wake.set)
        self._task = asyncio.create_task(self._run(), name=f"feed-{job_id}")

    def stop(self) -> None:
        self._unwatch()
        self._task.cancel()

    async def _run(self) -> None:
        delay = 0.05
        while True:
            try:
                newest = await self.hub.log.tail(self.job_id, self.WINDOW)
                break
            except Exception:
                log.warning("feed %s: log unreachable; retrying", self.job_id, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self.window.extend(newest)
        self.window_is_whole = len(newest) < self.WINDOW
        self.last_event = newest[-1] if newest else None
        self.cursor = self.last_event.seq if self.last_event else 0
        self.ready.set()
        delay = 0.05
        while True:
            woke = await self._wait()
            try:
                grew = await self._pull()
                if not grew and not woke:
                    await self._check_database()
                delay = 0.05
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("feed %s: read failed; retrying", self.job_id, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                self._wake.set()

    async def _wait(self) -> bool:
        """True when woken (the log may have grown), False after a quiet poll interval."""
        if not self._wake.is_set():
            try:
                async with asyncio.timeout(self.hub.poll_seconds):
                    await self._wake.wait()
            except TimeoutError:
                return False
        self._wake.clear()
        return True

    async def _pull(self) -> bool:
        grew = False
        while True:
            events = await self.hub.log.read(self.job_id, self.cursor, limit=self.hub.batch_size)
            if not events:
                return grew
            grew = True
            followers = tuple(self.followers)
            for event in events:
                self.cursor = event.seq
                if len(self.window) == self.WINDOW:
                    self.window_is_whole = False
                self.window.append(event)
                for follower in followers:
                    follower.offer(event)
            self.last_event = events[-1]
            self._quiet_since = time.monotonic()
            if len(events) < self.hub.batch_size:
                return grew

    def window_after(self, seq: int) -> list[ProgressEvent] | None:
        """The events after `seq` up to the cursor, from memory; None if the window does not
        reach back that far."""
        if not self.ready.is_set():
            return None
        if self.window and (self.window_is_whole or self.window[0].seq <= seq + 1):
            return [event for event in self.window if event.seq > seq]
        return [] if self.window_is_whole else None

    async def _check_database(self) -> None:
        """A quiet log whose job has ended per the database: end the followers from it."""
        if self.last_event is not None and self.last_event.terminal:
            return
        if time.monotonic() - self._quiet_since < self.hub.poll_seconds:
            return
        state = await self.hub.terminal_lookup(self.job_id)
        if state is None or state.age_seconds() < self.hub.terminal_grace_seconds:
            return
        if await self._pull() and self.last_event is not None and self.last_event.terminal:
            return
        for follower in tuple(self.followers):
            follower.end_with(state)


class Follower:
    """One subscription's events: an async iterator (for GraphQL) and `next()` (for SSE)."""

    __slots__ = (
        "_closed",
        "_done",
        "_ending",
        "_feed",
        "_gap_checked",
        "_hub",
        "_in_backlog",
        "_on_close",
        "_pending",
        "_queue",
        "_wake",
        "connection",
        "job_id",
        "last",
    )

    def __init__(
        self,
        hub: ProgressHub,
        job_id: uuid.UUID,
        after: int,
        connection: LiveConnection | None,
        on_close: Callable[[], None] | None,
    ) -> None:
        self._hub = hub
        self.job_id = job_id
        self.last = max(after, 0)
        self.connection = connection
        self._on_close = on_close
        self._queue: deque[ProgressEvent] = deque()  # live events offered by the feed
        self._pending: deque[ProgressEvent] = deque()  # events read from the log
        self._wake = asyncio.Event()
        self._feed: JobFeed | None = None
        self._ending: TerminalState | None = None
        self._in_backlog = True
        self._gap_checked = 0
        self._closed = False
        self._done = False
        if connection is not None:
            connection.followers.add(self)

    # -- the feed's side: never waits -------------------------------------------------------

    def offer(self, event: ProgressEvent) -> None:
        if self._closed or event.seq <= self.last:
            return
        connection = self.connection
        if connection is not None:
            if connection.queued >= connection.queue_limit:
                connection.close(SLOW_CONSUMER)
                return
            connection.queued += 1
        self._queue.append(event)
        self._wake.set()

    def end_with(self, state: TerminalState) -> None:
        if not self._done:
            self._ending = state
            self._wake.set()

    def wake_up(self) -> None:
        self._wake.set()

    @property
    def stopped(self) -> bool:
        return (
            self._done
            or self._closed
            or (self.connection is not None and self.connection.is_closed)
        )

    # -- the subscriber's side --------------------------------------------------------------

    def __aiter__(self) -> Follower:
        return self

    async def __anext__(self) -> ProgressEvent:
        event = await self.next()
        if event is not None:
            return event
        if not self._done and self.connection is not None and self.connection.is_closed:
            # The transport ends the connection itself (a WebSocket close code, the end of an
            # SSE stream) so the client reconnects and resumes. Completing the subscription
            # here would tell the client it is over: wait to be cancelled instead.
            await asyncio.get_running_loop().create_future()
        raise StopAsyncIteration

    async def prepare(self) -> bool:
        """Join the feed and read what the log holds already. False when nothing more will
        come for this subscriber: it already has the terminal event."""
        if self._feed is None and not self.stopped:
            await self._start()
        return not self._done

    async def next(self) -> ProgressEvent | None:
        """The next event; None once the terminal one was delivered, or when closed."""
        while True:
            if self.stopped:
                return None
            if self._feed is None:
                await self._start()
                continue
            event = self._take()
            if event is None:
                if self._in_backlog:
                    await self._read_backlog()
                    continue
                if self._ending is not None:
                    event = self._ending.event(self.job_id, self.last + 1)
                    self._ending = None
                else:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
            if event.seq <= self.last:
                continue
            self.last = event.seq
            if event.terminal and not self._more_after(event.seq):
                self._finish()
            return event

    def _take(self) -> ProgressEvent | None:
        if self._pending:
            return self._pending.popleft()
        if self._in_backlog or not self._queue:
            return None
        event = self._queue.popleft()
        if self.connection is not None:
            self.connection.queued -= 1
        if event.seq > self.last + 1 and self._gap_checked < event.seq:
            # Events between were not offered to us (we joined, or the feed caught up after a
            # reconnect): read them from the log, then come back to this one.
            self._gap_checked = event.seq
            self._queue.appendleft(event)
            if self.connection is not None:
                self.connection.queued += 1
            self._in_backlog = True
            return None
        return event

    def _more_after(self, seq: int) -> bool:
        if self._pending and self._pending[-1].seq > seq:
            return True
        return bool(self._queue) and self._queue[-1].seq > seq

    async def _start(self) -> None:
        feed = self._feed = await self._hub.attach(self)
        if self.stopped:
            return
        await self._read_backlog()
        if self._pending or self._in_backlog:
            return
        newest = feed.last_event
        if newest is not None and newest.seq <= self.last and newest.terminal:
            self._finish()  # the subscriber already has everything, the end included
            return
        if newest is None or newest.seq <= self.last:
            # Nothing to replay. The log may be gone (expired, or lost in a Redis restart):
            # the database says whether the job has ended.
            state = await self._hub.terminal_lookup(self.job_id)
            if state is not None and (
                newest is None or state.age_seconds() >= self._hub.terminal_grace_seconds
            ):
                self._ending = state

    async def _read_backlog(self) -> None:
        """Read the next batch after `last` (from the feed's window when it reaches back so far,
        else from the log); leave backlog mode when caught up."""
        remembered = self._feed.window_after(self.last) if self._feed is not None else None
        if remembered is not None:
            self._pending.extend(remembered)
            self._in_backlog = False
            return
        batch = self._hub.batch_size
        delay = 0.05
        while True:
            try:
                events = await self._hub.log.read(self.job_id, self.last, limit=batch)
                break
            except Exception:
                if self._closed or (self.connection is not None and self.connection.is_closed):
                    return
                log.warning("follower %s: log unreachable; retrying", self.job_id, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self._pending.extend(events)
        if len(events) < batch:
            self._in_backlog = False

    def _finish(self) -> None:
        self._done = True
        self._release()

    def close(self) -> None:
        self._closed = True
        self._release()
        self._wake.set()

    async def aclose(self) -> None:
        self.close()

    def _release(self) -> None:
        self._hub.detach(self)
        connection = self.connection
        if connection is not None and self in connection.followers:
            connection.followers.discard(self)
            connection.queued -= len(self._queue)
        self._queue.clear()
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
