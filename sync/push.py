"""Push: apply each client's mutations once, in order, each atomically with its bookkeeping."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from generation import jobs
from models import (
    Course,
    GenerationJob,
    SyncClient,
    SyncClientGroup,
    SyncEntry,
    SyncMutationResult,
    SyncRejection,
)
from services import scopes
from services.accounts import Viewer
from services.errors import DomainError, ErrorCode, forbidden
from services.permissions import course_access
from settings import Settings
from sync import hlc as clocks
from sync.mutators import GENERATION, MUTATORS, MutationContext, Outcome, Rejected, Touched
from sync.poke import Publisher, poke
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
TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57")
TRANSIENT_CODES = {ErrorCode.RATE_LIMITED, ErrorCode.TEMPORARILY_UNAVAILABLE}


@dataclass
class SyncEnv:
    """What a push needs beyond the database (from the app's runtime)."""

    settings: Settings
    publisher: Publisher | None = None
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


async def bind_group(group_id: str, user_id: uuid.UUID) -> None:
    """The group belongs to the user who used it first; anyone else is refused as a whole."""
    owner = await SyncClientGroup.filter(id=group_id).values_list("user_id", flat=True)
    if not owner:
        try:
            async with in_transaction():
                await SyncClientGroup.create(id=group_id, user_id=user_id)
            return
        except IntegrityError:
            owner = await SyncClientGroup.filter(id=group_id).values_list("user_id", flat=True)
    if str(owner[0]) != str(user_id):
        raise forbidden("This client group belongs to another user; make a new one.")


async def _client_pk(group_id: str, client_id: str) -> uuid.UUID:
    row = await SyncClient.filter(group_id=group_id, client_id=client_id).first()
    if row is None:
        try:
            async with in_transaction():
                row = await SyncClient.create(group_id=group_id, client_id=client_id)
        except IntegrityError:
            row = await SyncClient.filter(group_id=group_id, client_id=client_id).get()
    return row.id


async def last_mutation_ids(group_id: str) -> dict[str, int]:
    rows = await SyncClient.filter(group_id=group_id).values("client_id", "last_mutation_id")
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
    changed: list[tuple[str, int]] = []
    for client_id, mutations in by_client.items():
        pk = await _client_pk(group, client_id)
        stop: str | None = None
        for m in sorted(mutations, key=lambda item: item.id):
            if stop is not None:
                results[m.index] = _result(m, stop)
                continue
            result, stamped = await _apply(viewer, group, pk, m, env)
            results[m.index] = result
            changed += stamped
            if result["status"] in (OUT_OF_ORDER, RETRY_LATER):
                stop = result["status"]
    await poke(env.publisher, changed)
    return {
        "results": [results[i] for i in range(len(request.mutations))],
        "lastMutationIds": await last_mutation_ids(group),
        "serverTime": datetime.now(UTC).isoformat(),
    }


async def _apply(
    viewer: Viewer, group: str, pk: uuid.UUID, m: Mutation, env: SyncEnv
) -> tuple[dict[str, Any], list[tuple[str, int]]]:
    for attempt in range(ATTEMPTS):
        scopes.take_changed()
        try:
            pre: Outcome | Rejected | None = None
            if m.name == GENERATION:
                lmid = await SyncClient.filter(id=pk).values_list("last_mutation_id", flat=True)
                if m.id == int(str(lmid[0])) + 1:
                    pre = await _request_generation(viewer, group, m, env)
            async with in_transaction():
                result = await _apply_locked(viewer, group, pk, m, pre)
            return result, scopes.take_changed()
        except Exception as error:
            scopes.forget_changed()
            if not is_transient(error):
                raise
            if isinstance(error, Transient) or attempt == ATTEMPTS - 1:
                log.warning("sync mutation %s/%s: retry later (%s)", m.client_id, m.id, error)
                return _result(m, RETRY_LATER, message="Try again later."), []
            await asyncio.sleep(0.02 * (2**attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


async def _apply_locked(
    viewer: Viewer, group: str, pk: uuid.UUID, m: Mutation, pre: Outcome | Rejected | None
) -> dict[str, Any]:
    client = await SyncClient.filter(id=pk).select_for_update().get()
    last = int(client.last_mutation_id)
    if m.id <= last:
        stored = await SyncMutationResult.filter(client_id=pk, mutation_id=m.id).first()
        previous = json.loads(stored.result) if stored else {}
        return _result(
            m,
            DUPLICATE,
            firstStatus=previous.get("status"),
            code=previous.get("code"),
            message=previous.get("message"),
            data=previous.get("data"),
            canonical=previous.get("canonical"),
        )
    if m.id > last + 1:
        return _result(
            m, OUT_OF_ORDER, message=f"Expected mutation {last + 1} of this client first."
        )
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
    else:
        result = _result(
            m,
            outcome.status,
            code=outcome.code,
            message=outcome.message,
            data=outcome.data,
            canonical=await canonical(viewer.id, outcome.touched) if outcome.touched else None,
        )
        if outcome.conflict:
            await _archive(
                viewer.id, group, m, "conflict", outcome.code or "", outcome.message or ""
            )
    await SyncClient.filter(id=pk).update(last_mutation_id=m.id, updated_at=datetime.now(UTC))
    await SyncMutationResult.create(client_id=pk, mutation_id=m.id, result=json.dumps(result))
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
        async with in_transaction():  # a savepoint: a rejected mutation leaves nothing behind
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
    """The env of a push from a Starlette app's state (runtime and live broker)."""
    runtime = getattr(state, "runtime", None)
    live = getattr(state, "live", None)
    return SyncEnv(
        settings=settings,
        publisher=getattr(live, "broker", None),
        jobs=getattr(runtime, "jobs", None),
        events=getattr(runtime, "events", None),
        rate_limits=getattr(runtime, "rate_limits", None),
        writer=getattr(runtime, "writer", None),
    )
