"""schemathesis against the GraphQL endpoint of a running server, as a signed-in user.

Every root field of the committed schema (schema.graphql; tests/test_project.py keeps it equal
to the code's) gets `examples` generated operations, with a fixed seed. IDs are drawn from the
user's own rows (so resolvers reach real data) as often as from random strings and numbers.

A response is a failure when it is a 5xx, is not JSON, has an error that is neither one of our
stable codes nor graphql-core's own validation/coercion wording (no `extensions.code`, not the
masked "Unexpected error"), or shows an internal detail (traceback, file path, SQL, library or
exception names: tests.outage_support.find_leak). Used by tests/test_schemathesis.py (bounded,
in CI) and bench/schemathesis_run.py (the long run).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import schemathesis.graphql
from graphql import (
    BooleanValueNode,
    FloatValueNode,
    IntValueNode,
    ListValueNode,
    NameNode,
    NullValueNode,
    ObjectFieldNode,
    ObjectValueNode,
    StringValueNode,
    ValueNode,
)
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis.core.result import Err

from services.errors import ErrorCode
from tests.outage_support import find_leak

ROOT = Path(__file__).resolve().parent.parent

# Codes the API documents, besides the domain's ErrorCode: limits and transport refusals.
KNOWN_CODES = {code.value for code in ErrorCode} | {
    "QUERY_TOO_COSTLY",
    "PAYLOAD_TOO_LARGE",
    "REQUEST_TIMEOUT",
    "CSRF_PREVENTED",
    "PERSISTED_QUERY_NOT_FOUND",
    "OPERATION_NOT_TRUSTED",
}
# logOut would end the session every later request is signed in with.
EXCLUDED = frozenset({"Mutation.logOut"})
# What sync mutations and JSON arguments use as keys: generated objects hit real code paths.
_JSON_KEYS = [
    "courseId",
    "topicId",
    "subjectId",
    "noteId",
    "title",
    "body",
    "after",
    "before",
    "score",
    "description",
    "level",
]


@dataclass
class FuzzReport:
    requests: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    # Error codes in the answers; graphql-core's own errors (no code) count as "validation".
    codes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def problems(response: requests.Response) -> list[str]:
    """What is wrong with one answer (empty when it is fine)."""
    found: list[str] = []
    if response.status_code >= 500:
        found.append(f"HTTP {response.status_code}")
    leak = find_leak(response.text)
    if leak is not None:
        found.append(f"internal detail {leak!r}")
    try:
        body: Any = response.json()
    except ValueError:
        return [*found, "not JSON"]
    for error in (body.get("errors") or []) if isinstance(body, dict) else []:
        code = (error.get("extensions") or {}).get("code")
        message = str(error.get("message", ""))
        if code is None and message.startswith("Unexpected error"):
            found.append(f"unexpected error at {error.get('path')}")
        elif code is not None and code not in KNOWN_CODES:
            found.append(f"unknown code {code!r}")
    return found


def _codes(response: requests.Response) -> list[str]:
    try:
        body: Any = response.json()
    except ValueError:
        return []
    errors = (body.get("errors") or []) if isinstance(body, dict) else []
    found = [str((e.get("extensions") or {}).get("code") or "validation") for e in errors]
    data = body.get("data") if isinstance(body, dict) else None
    # Union results carry their code in the data: count the typed errors too.
    found += [str(v["code"]) for v in (data or {}).values() if isinstance(v, dict) and "code" in v]
    return found


def _json_value(ids: list[str]) -> st.SearchStrategy[ValueNode]:
    leaves: st.SearchStrategy[ValueNode] = st.one_of(
        st.sampled_from(ids).map(lambda v: StringValueNode(value=v)),
        st.text(max_size=30).map(lambda v: StringValueNode(value=v)),
        st.integers(-(2**40), 2**40).map(lambda v: IntValueNode(value=str(v))),
        st.floats(allow_nan=False, allow_infinity=False).map(
            lambda v: FloatValueNode(value=repr(v))
        ),
        st.booleans().map(lambda v: BooleanValueNode(value=v)),
        st.just(NullValueNode()),
    )

    key = st.sampled_from(_JSON_KEYS) | st.text(min_size=1, max_size=12)
    value: st.SearchStrategy[ValueNode] = st.deferred(lambda: leaves | objects | lists)
    objects = st.dictionaries(key, value, max_size=5).map(
        lambda d: ObjectValueNode(
            fields=tuple(ObjectFieldNode(name=NameNode(value=k), value=v) for k, v in d.items())
        )
    )
    lists = st.lists(value, max_size=4).map(lambda v: ListValueNode(values=tuple(v)))
    return value


def register_scalars(ids: list[str]) -> None:
    """IDs from the user's rows half of the time; JSON as arbitrary nested values."""
    real = st.sampled_from(ids).map(lambda v: StringValueNode(value=v))
    other = st.one_of(
        st.text(max_size=40).map(lambda v: StringValueNode(value=v)),
        st.integers(-(2**31), 2**31).map(lambda v: IntValueNode(value=str(v))),
    )
    schemathesis.graphql.scalar("ID", real | other)
    schemathesis.graphql.scalar("JSON", _json_value(ids))


def fuzz(
    base_url: str,
    token: str,
    ids: list[str],
    *,
    examples: int,
    seed_value: int = 20261129,
    excluded: frozenset[str] = EXCLUDED,
) -> FuzzReport:
    """Send `examples` generated operations per root field to `base_url` (the server root)."""
    register_scalars(ids)
    schema = schemathesis.graphql.from_path(str(ROOT / "schema.graphql"))
    report = FuzzReport()
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {token}"}
    endpoint = base_url.rstrip("/") + "/graphql"
    with requests.Session() as session:

        def send(label: str, case: Any) -> None:
            response = case.call(base_url=endpoint, session=session, headers=headers)
            report.requests += 1
            report.statuses[response.status_code] += 1
            report.by_operation[label] += 1
            report.codes.update(_codes(response))
            for problem in problems(response):
                report.failures.append(
                    f"{label}: {problem}\n  query: {case.body}\n"
                    f"  answer {response.status_code}: {response.text[:500]}"
                )

        for result in schema.get_all_operations():
            if isinstance(result, Err):  # a field schemathesis cannot build: a failure too
                report.failures.append(f"schema: {result.err()}")
                continue
            operation = result.ok()
            if operation.label not in excluded:
                _explore(operation, examples, seed_value, send)
    report.seconds = time.monotonic() - started
    return report


def _explore(operation: Any, examples: int, seed_value: int, send: Any) -> None:
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],  # failures are collected, not raised: nothing to shrink
        suppress_health_check=list(HealthCheck),
    )
    @seed(seed_value)
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        send(operation.label, case)

    run()
