"""Push: apply each client's mutations once, in order, atomically with their bookkeeping.

A client's batch runs in ONE transaction (split around `requestCourseGeneration`, and every
`TRANSACTION_MUTATIONS` so that a transaction stays short): the client row is locked once, each
mutation runs in a savepoint (a rejected one rolls back to it), and the stored results and
`lastMutationId` are written once at the end, in the same commit. Scope rows are locked and
bumped once per transaction (`services.scopes`). The commit pokes the users whose scopes
changed (`scopes.on_commit`, see sync/poke.py). A deadlock or serialization failure rolls the
whole transaction back; it runs again from the last committed point."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise import connections

from generation import jobs
from models import (
    Course,
    GenerationJob,
    SyncClient,
    SyncEntry,
    SyncMutationResult,
    SyncRejection,
    bulk,
)
from observability import metrics
from services import scopes
from services.accounts import Viewer
from services.errors import DomainError, ErrorCode, forbidden
from services.permissions import course_access
from settings import Settings
from sync import batch, faults
from sync import hlc as clocks
from sync.mutators import GENERATION, MUTATORS, MutationContext, Outcome, Rejected, Touched
from sync.protocol import (
    DUPLICATE,
    OUT_OF_ORDER,
    REJECTED,
    RETRY_LATER,
    Mutation,
    parse_push,
)

log = logging.getLogger("coursegen.sync")

ATTEMPTS = 4  # a deadlock or serialization failure is retried this often before RETRY_LATER
TRANSACTION_MUTATIONS = 1000  # at most this many mutations of a client in one transaction
SLOW_TRANSACTION_MUTATIONS = 200  # ... of which at most this many applied one at a time
TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57")
TRANSIENT_CODES = {ErrorCode.RATE_LIMITED, ErrorCode.TEMPORARILY_UNAVAILABLE}


@dataclass
class SyncEnv:
    """What a push needs beyond the database (from the app's runtime)."""

    settings: Settings
    jobs: Any = None
    events: Any = None
    rate_limits: Any = None
    writer: Any = None


class Transient(Exception):
    pass


def is_transient(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, Transient | ConnectionError | OSError | asyncio.TimeoutError):
            return True
        state = getattr(seen, "sqlstate", None)
        if isinstance(state, str) and state[:2] in TRANSIENT_SQLSTATE_CLASSES:
            return True
        name = type(seen).__name__
        if name in {"InterfaceError", "ConnectionDoesNotExistError", "DBConnectionError"}:
            return True
        if "database is locked" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _db() -> Any:
    return connections.get("default")


# (group, user) pairs this process has seen bound. A binding never changes (a group's row goes
# only with its user, whose sessions go with it), so a push or pull of a known pair skips the
# read. Bounded; the oldest are forgotten first.
_BOUND: OrderedDict[tuple[str, str], None] = OrderedDict()
BOUND_CACHE_SIZE = 50_000


def forget_bindings() -> None:
    """For tests that empty the sync tables under users that live on."""
    _BOUND.clear()


async def bind_group(group_id: str, user_id: uuid.UUID) -> None:
    """The group belongs to the user who used it first; anyone else is refused as a whole."""
    pair = (group_id, str(user_id))
    if pair in _BOUND:
        return
    db = _db()
    p = bulk.placeholder
    select = f"SELECT user_id FROM sync_client_groups WHERE id = {p(db, 1)}"  # noqa: S608
    rows = await db.execute_query_dict(select, [group_id])
    if not rows:
        await db.execute_query(
            "INSERT INTO sync_client_groups (id, user_id, created_at) "  # noqa: S608
            f"VALUES ({p(db, 1)}, {p(db, 2)}, {p(db, 3)}) ON CONFLICT (id) DO NOTHING",
            bulk.params(db, [group_id, user_id, datetime.now(UTC)]),
        )
        rows = await db.execute_query_dict(select, [group_id])
    if str(rows[0]["user_id"]) != str(user_id):
        raise forbidden("This client group belongs to another user; make a new one.")
    _BOUND[pair] = None
    if len(_BOUND) > BOUND_CACHE_SIZE:
        _BOUND.popitem(last=False)


async def _locked_client(
    group_id: str, client_id: str, scope: str | None
) -> tuple[uuid.UUID, int, dict[str, int]]:
    """The client's id and last mutation id, its row locked for the caller's transaction
    (created on first use), and the last mutation ids of the group's other clients as
    committed when it was locked (the push's answer reports them: one round trip fewer than
    reading them after the commit, and a lower bound is all a client may rely on). With
    `scope`, that scope's row is locked in the same statement (the next lock the segment
    would take anyway). Plain SQL: it runs once per push, where the ORM's query building
    costs more than the round trip."""
    db = _db()
    p = bulk.placeholder
    sqlite = bulk.is_sqlite(db)
    others = "json_group_object" if sqlite else "json_object_agg"
    lock = "" if sqlite else " FOR UPDATE"
    select = (
        "SELECT id, last_mutation_id, "  # noqa: S608
        f"(SELECT {others}(o.client_id, o.last_mutation_id) FROM sync_clients o "
        f"WHERE o.group_id = {p(db, 1)} AND o.client_id <> {p(db, 2)}) AS others, "
        f"(SELECT version FROM sync_scopes WHERE key = {p(db, 3)}{lock}) AS scope_version "
        f"FROM sync_clients WHERE group_id = {p(db, 4)} AND client_id = {p(db, 5)}"
    )
    if not sqlite:
        select += " FOR UPDATE OF sync_clients"
    keys = [group_id, client_id, scope or "", group_id, client_id]
    rows = await db.execute_query_dict(select, keys)
    if not rows:  # a concurrent first push may win the insert: then its row is read
        await db.execute_query(
            "INSERT INTO sync_clients (id, group_id, client_id, last_mutation_id, updated_at) "  # noqa: S608
            f"VALUES ({p(db, 1)}, {p(db, 2)}, {p(db, 3)}, 0, {p(db, 4)}) "
            "ON CONFLICT (group_id, client_id) DO NOTHING",
            bulk.params(db, [uuid.uuid4(), group_id, client_id, datetime.now(UTC)]),
        )
        rows = await db.execute_query_dict(select, keys)
    row = rows[0]
    if scope is not None:
        scopes.locked_with(scope, row["scope_version"])
    raw = row["id"]
    seen = row["others"]
    if isinstance(seen, str):
        seen = json.loads(seen)
    return (
        raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw)),
        int(row["last_mutation_id"]),
        {str(k): int(v) for k, v in (seen or {}).items()},
    )


async def last_mutation_ids(group_id: str) -> dict[str, int]:
    db = _db()
    rows = await db.execute_query_dict(
        "SELECT client_id, last_mutation_id FROM sync_clients "  # noqa: S608
        f"WHERE group_id = {bulk.placeholder(db, 1)}",
        [group_id],
    )
    return {row["client_id"]: int(row["last_mutation_id"]) for row in rows}


async def canonical(user_id: uuid.UUID, touched: list[Touched]) -> list[dict[str, Any]]:
    """The server's current state of the rows a mutation aimed at (to roll a client back)."""
    patches: list[dict[str, Any]] = []
    for scope, kind, ident in touched:
        if scope.startswith("course:"):
            try:
                await course_access(uuid.UUID(scope.partition(":")[2]), user_id)
            except DomainError:
                row = await SyncEntry.filter(
                    scope=scope, type=kind, entity_id=ident, op="DEL"
                ).first()
                if row is None:
                    patches.append(
                        {"op": "DROP_SCOPE", "scope": scope, "type": "", "id": "", "version": 0}
                    )
                    continue
        for row in await SyncEntry.filter(scope=scope, type=kind, entity_id=ident):
            patches.append(entry_patch(row))
    return patches


def entry_patch(row: SyncEntry) -> dict[str, Any]:
    patch: dict[str, Any] = {
        "op": row.op,
        "scope": row.scope,
        "type": row.type,
        "id": row.entity_id,
        "version": int(row.version),
    }
    if row.op == "PUT" and row.data is not None:
        patch["data"] = json.loads(row.data)
    return patch


def _result(m: Mutation, status: str, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"clientId": m.client_id, "id": m.id, "status": status}
    result.update({k: v for k, v in extra.items() if v is not None})
    return result


async def push(viewer: Viewer, body: Any, env: SyncEnv, size: int | None = None) -> dict[str, Any]:
    request = parse_push(body, size)
    group = request.client_group_id
    await bind_group(group, viewer.id)
    by_client: dict[str, list[Mutation]] = {}
    for m in request.mutations:
        by_client.setdefault(m.client_id, []).append(m)
    results: dict[int, dict[str, Any]] = {}
    lmids: dict[str, int] = {}  # as committed by this push's transactions
    for client_id, mutations in by_client.items():
        ordered = sorted(mutations, key=lambda item: item.id)
        answered = await _push_client(viewer, group, client_id, ordered, env, lmids)
        for m, result in zip(ordered, answered, strict=True):
            results[m.index] = result
            metrics.SYNC_MUTATIONS.labels(result["status"]).inc()
    answer = {
        "results": [results[i] for i in range(len(request.mutations))],
        "lastMutationIds": lmids
        if by_client.keys() <= lmids.keys()
        else await last_mutation_ids(group),  # a client's every transaction rolled back
        "serverTime": datetime.now(UTC).isoformat(),
    }
    await faults.pause_if_asked(env.settings, "commit")
    return answer


def _segments(mutations: list[Mutation]) -> list[list[Mutation]]:
    """Runs of mutations that share one transaction. `requestCourseGeneration` stands alone:
    its job is created and committed before its own transaction (a worker must see it). A run
    is cut every `TRANSACTION_MUTATIONS` (every `SLOW_TRANSACTION_MUTATIONS` of the ones applied
    one at a time, about fifty times slower than set-wise), so one transaction holds its locks
    for a bounded time and a push cut short (a request timeout) still keeps what it
    committed."""
    segments: list[list[Mutation]] = []
    slow = 0
    for m in mutations:
        last = segments[-1] if segments else None
        if (
            last is None
            or m.name == GENERATION
            or last[-1].name == GENERATION
            or len(last) >= TRANSACTION_MUTATIONS
            or slow >= SLOW_TRANSACTION_MUTATIONS
        ):
            segments.append([m])
            slow = 0
        else:
            last.append(m)
        slow += m.name not in batch.SETWISE
    return segments


async def _push_client(
    viewer: Viewer,
    group: str,
    client_id: str,
    mutations: list[Mutation],
    env: SyncEnv,
    lmids: dict[str, int],
) -> list[dict[str, Any]]:
    answered: list[dict[str, Any]] = []
    stop: str | None = None
    for segment in _segments(mutations):
        if stop is not None:
            answered += [_result(m, stop) for m in segment]
            continue
        results, stop = await _apply_segment(viewer, group, client_id, segment, env, lmids)
        answered += results
    return answered


async def _apply_segment(
    viewer: Viewer,
    group: str,
    client_id: str,
    segment: list[Mutation],
    env: SyncEnv,
    lmids: dict[str, int],
) -> tuple[list[dict[str, Any]], str | None]:
    """One transaction for the segment, retried whole on a deadlock or serialization failure:
    nothing of it was committed, so the retry starts again from the last committed point.
    `lmids` gets the group's last mutation ids once it has committed (never before: a client
    drops what they confirm)."""
    one_at_a_time: set[int] = set()  # first ids of runs whose set-wise write failed
    attempt = 0
    while True:
        try:
            pre: Outcome | Rejected | None = None
            if segment[0].name == GENERATION:
                lmid = await SyncClient.filter(group_id=group, client_id=client_id).values_list(
                    "last_mutation_id", flat=True
                )
                if segment[0].id == int(str(lmid[0] if lmid else 0)) + 1:
                    pre = await _request_generation(viewer, group, segment[0], env)
            async with scopes.transaction():
                results, stop, seen = await _apply_locked(
                    viewer, group, client_id, segment, pre, env.settings, one_at_a_time
                )
            lmids.update(seen)
            return results, stop
        except SetwiseFailed as failed:
            # Rolled back whole (a savepoint per run would cost every push two round trips);
            # the segment runs again with that run applied one mutation at a time.
            log.warning(
                "sync push %s/%s: a set-wise run from %d failed (%s); one at a time",
                group,
                client_id,
                failed.first_ids[0],
                type(failed.__cause__).__name__,
            )
            one_at_a_time.update(failed.first_ids)
            continue
        except Exception as error:
            if not is_transient(error):
                raise
            if isinstance(error, Transient) or attempt == ATTEMPTS - 1:
                log.warning(
                    "sync push %s/%s from %s: retry later (%s)",
                    group,
                    client_id,
                    segment[0].id,
                    error,
                )
                return [_result(m, RETRY_LATER, message=LATER) for m in segment], RETRY_LATER
            log.info(
                "sync push %s/%s: %s; the batch runs again (attempt %d)",
                group,
                client_id,
                type(error).__name__,
                attempt + 2,
            )
            await asyncio.sleep(0.02 * (2**attempt) * (0.5 + random.random()))
            attempt += 1


class SetwiseFailed(Exception):
    """A set-wise run failed for a reason other than a transient one (a row that a concurrent
    writer removed, say): its transaction is rolled back and the run goes one at a time."""

    def __init__(self, first_ids: list[int]) -> None:
        super().__init__(first_ids)
        self.first_ids = list(first_ids)


LATER = "Try again later."
RESULT_PRUNED = "RESULT_PRUNED"


async def _apply_locked(
    viewer: Viewer,
    group: str,
    client_id: str,
    segment: list[Mutation],
    pre: Outcome | Rejected | None,
    settings: Settings,
    one_at_a_time: set[int],
) -> tuple[list[dict[str, Any]], str | None, dict[str, int]]:
    """Inside the segment's transaction: the client row locked once; the new mutations applied
    in runs, set-wise where their names allow (sync/batch.py) and one at a time in a savepoint
    otherwise; then the stored results and `lastMutationId` written once, all committed
    together."""
    # A segment of learning mutations only takes the user's scope next (a course edit takes
    # course locks first: the order every writer keeps), so it is locked with the client row.
    learning = all(m.name in batch.SETWISE and m.name not in batch.COURSE_FIELDS for m in segment)
    client_pk, last, others = await _locked_client(
        group, client_id, scopes.user_scope(viewer.id) if learning else None
    )
    stored: dict[int, dict[str, Any]] = {}
    seen = [m.id for m in segment if m.id <= last]
    if seen:
        rows = await SyncMutationResult.filter(
            client_id=client_pk, mutation_id__in=seen
        ).values_list("mutation_id", "result")
        stored = {int(str(mid)): json.loads(str(text)) for mid, text in rows}
    # The new mutations: ids that run on from `lastMutationId` (a gap stops the client).
    new: list[Mutation] = []
    for m in segment:
        if m.id == last + len(new) + 1:
            new.append(m)
        elif m.id > last + len(new) + 1:
            break
    fresh: dict[int, dict[str, Any]] = {}  # applied in this transaction, not yet stored
    later: int | None = None  # the mutation that met a rate limit: it and the rest wait
    db = _db()
    writes = bulk.Writes(db)  # set-wise writes, sent together (before a read, and at the end)
    pending: list[int] = []  # first ids of the set-wise runs whose writes have not gone out

    async def send() -> None:
        try:
            await writes.flush()
        except Exception as error:
            if is_transient(error) or not pending:
                raise
            raise SetwiseFailed(pending) from error
        pending.clear()

    for setwise, run in _runs(new):
        await send()  # what this run reads includes what the runs before it wrote
        if setwise and run[0].id not in one_at_a_time:
            answered = await _apply_run(viewer, group, run, writes)
            pending.append(run[0].id)
        else:
            answered = []
            for m in run:
                try:
                    answered.append(
                        await _process(viewer, group, m, pre if m is segment[0] else None)
                    )
                except Transient as error:  # keep what came before, stop here
                    log.warning("sync mutation %s/%s: retry later (%s)", m.client_id, m.id, error)
                    later = m.id
                    break
        for m, result in zip(run, answered, strict=False):
            fresh[m.id] = result
            await faults.pause_if_asked(settings, f"mutation:{len(fresh)}")
        if later is not None:
            break
    # The answers, in the segment's order, as one-at-a-time processing gives them.
    results: list[dict[str, Any]] = []
    stop: str | None = None
    for m in segment:
        if stop is not None:
            results.append(_result(m, stop))
        elif m.id <= last:
            results.append(_duplicate(m, fresh.get(m.id) or stored.get(m.id) or {}))
        elif m.id > last + 1:
            message = f"Expected mutation {last + 1} of this client first."
            results.append(_result(m, OUT_OF_ORDER, message=message))
            stop = OUT_OF_ORDER
        elif m.id == later:
            results.append(_result(m, RETRY_LATER, message=LATER))
            stop = RETRY_LATER
        else:
            results.append(fresh[m.id])
            last = m.id
    if fresh:
        await bulk.insert(
            db,
            "sync_mutation_results",
            [
                ("client_id", "uuid"),
                ("mutation_id", "bigint"),
                ("result", "text"),
                ("created_at", "timestamptz"),
            ],
            [(client_pk, mid, json.dumps(r), datetime.now(UTC)) for mid, r in fresh.items()],
            into=writes,
        )
        p = bulk.placeholder
        await writes.add(
            f"UPDATE sync_clients SET last_mutation_id = {p(db, 1)}, "  # noqa: S608
            f"updated_at = {p(db, 2)} WHERE id = {p(db, 3)}",
            bulk.params(db, [last, datetime.now(UTC), client_pk]),
        )
    await send()
    return results, stop, {**others, client_id: last}


def _runs(mutations: list[Mutation]) -> list[tuple[bool, list[Mutation]]]:
    """Consecutive mutations cut where set-wise application starts or stops."""
    runs: list[tuple[bool, list[Mutation]]] = []
    for m in mutations:
        setwise = m.name in batch.SETWISE
        if runs and runs[-1][0] == setwise:
            runs[-1][1].append(m)
        else:
            runs.append((setwise, [m]))
    return runs


async def _apply_run(
    viewer: Viewer, group: str, run: list[Mutation], writes: bulk.Writes
) -> list[dict[str, Any]]:
    try:
        applied = await batch.apply_run(viewer, group, run, writes)
    except Exception as error:
        if is_transient(error):
            raise
        raise SetwiseFailed([run[0].id]) from error
    return [_answer(a.mutation, a.outcome, a.canonical) for a in applied]


def _answer(
    m: Mutation, outcome: Outcome | Rejected, canonical: list[dict[str, Any]] | None
) -> dict[str, Any]:
    if isinstance(outcome, Rejected):
        return _result(m, REJECTED, code=outcome.code, message=outcome.message, canonical=canonical)
    return _result(
        m,
        outcome.status,
        code=outcome.code,
        message=outcome.message,
        data=outcome.data,
        canonical=canonical if outcome.touched else None,
    )


def _duplicate(m: Mutation, previous: dict[str, Any]) -> dict[str, Any]:
    if not previous:  # pruned past the horizon (sync/gc.py): applied once, details gone
        return _result(
            m,
            DUPLICATE,
            code=RESULT_PRUNED,
            message="Applied long ago; its first result is no longer kept.",
        )
    return _result(
        m,
        DUPLICATE,
        firstStatus=previous.get("status"),
        code=previous.get("code"),
        message=previous.get("message"),
        data=previous.get("data"),
        canonical=previous.get("canonical"),
    )


async def _process(
    viewer: Viewer, group: str, m: Mutation, pre: Outcome | Rejected | None
) -> dict[str, Any]:
    """Run one new mutation; its result (REJECTED ones archived, merges logged)."""
    outcome = pre if pre is not None else await _run(viewer, group, m)
    if isinstance(outcome, Rejected):
        result = _result(
            m,
            REJECTED,
            code=outcome.code,
            message=outcome.message,
            canonical=await canonical(viewer.id, outcome.touched),
        )
        await _archive(viewer.id, group, m, "rejected", str(outcome.code), outcome.message)
        return result
    result = _result(
        m,
        outcome.status,
        code=outcome.code,
        message=outcome.message,
        data=outcome.data,
        canonical=await canonical(viewer.id, outcome.touched) if outcome.touched else None,
    )
    if outcome.conflict:
        await _archive(viewer.id, group, m, "conflict", outcome.code or "", outcome.message or "")
    return result


async def _archive(
    user_id: uuid.UUID, group: str, m: Mutation, kind: str, code: str, message: str
) -> None:
    try:
        args = json.dumps(m.args)
    except (TypeError, ValueError):
        args = json.dumps(repr(m.args))
    await SyncRejection.create(
        user_id=user_id,
        group_id=group,
        client_id=m.client_id,
        mutation_id=m.id,
        name=m.name[:64],
        args=args,
        kind=kind,
        code=code,
        message=message,
    )


async def _run(viewer: Viewer, group: str, m: Mutation) -> Outcome | Rejected:
    mutator = MUTATORS.get(m.name)
    if mutator is None:
        return Rejected(ErrorCode.UNKNOWN_MUTATION, f"No mutation named {m.name!r}.")
    try:
        clock = clocks.clamp(clocks.parse(m.hlc))
    except ValueError as error:
        return Rejected(ErrorCode.INVALID_INPUT, str(error))
    ctx = MutationContext(viewer, group, m.client_id, m.id, clock, m.base_version)
    try:
        async with scopes.transaction():  # a savepoint: a rejected mutation leaves nothing
            return await mutator(ctx, m.args)
    except Rejected as rejected:
        return rejected
    except DomainError as error:
        if error.code in TRANSIENT_CODES:
            raise Transient(error.message) from error
        return Rejected(error.code, error.message)
    except Exception as error:
        if is_transient(error):
            raise
        log.exception("sync mutation %s failed unexpectedly", m.name)
        return Rejected("INTERNAL_ERROR", "The server could not apply this change; it was kept.")


def _generation_key(group: str, m: Mutation) -> str:
    digest = hashlib.sha256(f"{group}\n{m.client_id}\n{m.id}".encode()).hexdigest()
    return f"sync:{digest[:48]}"


async def _request_generation(
    viewer: Viewer, group: str, m: Mutation, env: SyncEnv
) -> Outcome | Rejected:
    """Starts the job once (an idempotency key from group, client and mutation id), outside the
    push transaction: the worker must see the committed job."""
    args = m.args
    names = {"courseId", "topic", "level", "audience", "language", "subjectCount"}
    names |= {"topicsPerSubject"}
    if not isinstance(args, dict) or not {"courseId", "topic"} <= set(args) or set(args) - names:
        return Rejected(ErrorCode.INVALID_INPUT, "args: {courseId, topic, level?, audience?, ...}.")
    try:
        course_id = uuid.UUID(str(args["courseId"]))
    except ValueError:
        return Rejected(ErrorCode.INVALID_INPUT, "args.courseId: not a UUID.")
    key = _generation_key(group, m)
    taken = await Course.filter(id=course_id).exists()
    if (
        taken
        and not await GenerationJob.filter(requester_id=viewer.id, idempotency_key=key).exists()
    ):
        return Rejected(ErrorCode.INVALID_INPUT, "args.courseId: that id is taken; make a new one.")
    if env.jobs is None or env.writer is None:
        raise Transient("generation is not available in this process")
    snake = {"subjectCount": "subject_count", "topicsPerSubject": "topics_per_subject"}
    data: dict[str, Any] = {
        snake.get(str(k), str(k)): v for k, v in args.items() if k != "courseId"
    }
    rate = getattr(env.settings, f"generation_rate_{viewer.tier.value}")
    try:
        job, _ = await jobs.request_generation(
            viewer, data, key, env.jobs, env.events, env.rate_limits, rate, env.writer, course_id
        )
    except DomainError as error:
        if error.code in TRANSIENT_CODES:
            raise Transient(error.message) from error
        return Rejected(error.code, error.message)
    return Outcome(
        data={"jobId": str(job.id), "courseId": str(job.course_id)},
        touched=[(scopes.course_scope(job.course_id), "course", str(job.course_id))],
    )


def env_from_app(state: Any, settings: Settings) -> SyncEnv:
    """The env of a push from a Starlette app's state (its runtime)."""
    runtime = getattr(state, "runtime", None)
    return SyncEnv(
        settings=settings,
        jobs=getattr(runtime, "jobs", None),
        events=getattr(runtime, "events", None),
        rate_limits=getattr(runtime, "rate_limits", None),
        writer=getattr(runtime, "writer", None),
    )
