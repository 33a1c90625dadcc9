"""The pieces of replica routing that need no server: which operations read from a replica,
how lag is told from WAL positions, the read-your-writes marks (in-process, and in Redis when
the run has one), and the settings."""

from __future__ import annotations

import math
import os
import uuid

import pytest
from graphql import get_operation_ast, parse

import keyspace
from redis_connection import connect_redis
from replicas.lag import LagTracker, parse_lsn
from replicas.marks import WriteMarks
from schema.read_routing import _reads_from_replica
from settings import Environment, Settings, SettingsError


def _routed(document: str, name: str | None = None) -> bool:
    return _reads_from_replica(get_operation_ast(parse(document), name))


def test_only_dashboard_and_course_page_queries_read_from_a_replica() -> None:
    assert _routed("query Dashboard { courses(first: 5) { totalCount } me { id } }")
    assert _routed('{ course(id: "x") { id } __typename }')
    assert not _routed('mutation { createCourse(input: {title: "t"}) { __typename } }')
    assert not _routed("subscription { syncPoke { scopes } }")
    assert not _routed('{ courses(first: 1) { totalCount } generationJob(id: "j") { id } }')
    assert not _routed("{ admin { __typename } }")
    # The pull routes its own snapshot (it also writes): not the whole operation.
    assert not _routed(
        '{ syncPull(input: {protocolVersion: 1, clientGroupId: "g"}) { __typename } }'
    )
    assert not _routed("query { ...Root } fragment Root on Query { courses { totalCount } }")
    two = "query A { courses { totalCount } } mutation B { logOut { __typename } }"
    assert _routed(two, "A") and not _routed(two, "B")


def test_lsn_text_compares_as_integers() -> None:
    assert parse_lsn("0/16B3748") == 0x16B3748
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert parse_lsn("1/0") > parse_lsn("0/FFFFFFFF")


def test_lag_is_the_age_of_the_oldest_position_not_replayed() -> None:
    lag = LagTracker()
    lag.primary_at(100.0, 10)
    # Until the first noted position is replayed, how far behind it is, is unknown.
    assert lag.replayed(100.5, 9) == math.inf
    assert lag.replayed(101.0, 10) == 0.0
    # An idle primary (no new position) never makes the replica look behind.
    lag.primary_at(105.0, 10)
    assert lag.replayed(110.0, 10) == 0.0
    # Writes the replica does not replay: it falls behind from the first of them.
    lag.primary_at(111.0, 20)
    lag.primary_at(112.0, 30)
    assert lag.replayed(112.0, 10) == 1.0
    assert lag.replayed(114.0, 25) == 2.0  # 20 replayed, 30 (seen at 112) not
    assert lag.replayed(115.0, 30) == 0.0


async def test_marks_in_process_only_rise_and_expire() -> None:
    marks = WriteMarks(None, ttl=60)
    user = uuid.uuid4()
    assert await marks.get(user) == 0
    await marks.raise_to(user, 200)
    await marks.raise_to(user, 100)  # an older write finishing late does not lower it
    assert await marks.get(user) == 200
    expired = WriteMarks(None, ttl=-1)
    await expired.raise_to(user, 5)
    assert await expired.get(user) == 0


@pytest.mark.skipif(not os.environ.get("COURSEGEN_TEST_REDIS_URL"), reason="needs Redis")
async def test_marks_in_redis_are_shared_and_only_rise() -> None:
    url = os.environ["COURSEGEN_TEST_REDIS_URL"]
    one, two = connect_redis(url), connect_redis(url)
    user = uuid.uuid4()
    try:
        first, second = WriteMarks(one, ttl=60), WriteMarks(two, ttl=60)
        await first.raise_to(user, (0x16 << 32) | 5)
        await second.raise_to(user, 7)  # lower: kept as is
        assert await second.get(user) == (0x16 << 32) | 5
        await second.raise_to(user, (0x17 << 32))
        assert await first.get(user) == 0x17 << 32
        assert 0 < await one.ttl(keyspace.key("replica-marks", str(user))) <= 60
    finally:
        await one.delete(keyspace.key("replica-marks", str(user)))
        await one.aclose()
        await two.aclose()


def test_replica_urls_are_comma_separated_and_need_postgres() -> None:
    settings = Settings(
        COURSEGEN_ENV=Environment.TEST,
        DATABASE_URL="postgres://u@primary/db",
        DATABASE_REPLICA_URLS=" postgres://u@r1/db, ,postgres://u@r2/db ",
    )
    assert settings.replica_urls == ["postgres://u@r1/db", "postgres://u@r2/db"]
    assert Settings(COURSEGEN_ENV=Environment.TEST).replica_urls == []
    with pytest.raises(SettingsError, match="SQLite"):
        Settings(
            COURSEGEN_ENV=Environment.TEST,
            DATABASE_URL="sqlite://x.sqlite3",
            DATABASE_REPLICA_URLS="postgres://u@r1/db",
        )
