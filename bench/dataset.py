"""Fill a database with a benchmark dataset, fast (bulk inserts in one transaction).

    PYTHONPATH=. .venv/bin/python -m bench.dataset \
        --database-url postgres://postgres@127.0.0.1:5432/coursegen_bench
    PYTHONPATH=. .venv/bin/python -m bench.dataset --database-url sqlite://data/bench.sqlite3 \
        --reset [--users 10 --courses 50 --subjects 8 --topics 6]

Defaults: 10 users (bench-user-{i}@example.com / "bench-password-123"), each owning
50 courses x 8 subjects x 6 topics, all `ready`, with a few hundred characters of Markdown per
topic; every third topic of each course is completed by its owner (a `topic_progress` row).
The migrations are applied first. A database that already has users is refused unless
`--reset`, which empties every table of the app (not the migration bookkeeping).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from tortoise import Tortoise, connections
from tortoise.transactions import in_transaction

from models import (
    Course,
    CourseLevel,
    CourseStatus,
    Subject,
    Topic,
    TopicProgress,
    User,
    UserTier,
    db,
)
from services.passwords import hash_password
from services.ranks import rank_after
from settings import Environment, Settings

EMAIL = "bench-user-{i}@example.com"
PASSWORD = "bench-password-123"
# Only used to build Settings (the builder signs no tokens); production-length anyway.
SECRET_KEY = "bench-dataset-secret-key-0123456789abcdef"

_COURSE_SUBJECTS = [
    "SQL",
    "Python",
    "Linear algebra",
    "Statistics",
    "Technical writing",
    "Kubernetes",
    "Rust",
    "Data visualisation",
    "Machine learning",
    "Product management",
    "TypeScript",
    "Cryptography",
    "Spanish grammar",
    "Music theory",
    "Photography",
    "Accounting",
    "Negotiation",
    "PostgreSQL",
    "Distributed systems",
    "UX research",
]
_COURSE_SHAPES = [
    "{s} for beginners",
    "Practical {s}",
    "{s} in depth",
    "A crash course in {s}",
    "{s}: from zero to useful",
    "Everyday {s}",
    "{s} for working professionals",
    "Advanced {s}",
    "{s} by example",
    "The essentials of {s}",
]
_SUBJECT_SHAPES = [
    "Foundations of {s}",
    "Core ideas in {s}",
    "Working with {s} in practice",
    "Common patterns in {s}",
    "Tools and workflows",
    "Pitfalls and how to avoid them",
    "{s} in real projects",
    "Measuring and improving",
    "Advanced techniques",
    "Putting it together",
    "Reviewing and extending",
    "Where to go next",
]
_TOPIC_SHAPES = [
    "What it means",
    "Key vocabulary",
    "A first worked example",
    "Reading the results",
    "Step-by-step exercise",
    "Common mistakes",
    "Choosing the right approach",
    "A guided mini-project",
    "Checking your understanding",
    "Trade-offs and alternatives",
    "Case study",
    "Summary and next steps",
]
_LEVELS = [CourseLevel.BEGINNER, CourseLevel.INTERMEDIATE, CourseLevel.ADVANCED]


def _ranks(count: int) -> list[str]:
    ranks: list[str] = []
    last: str | None = None
    for _ in range(count):
        last = rank_after(last)
        ranks.append(last)
    return ranks


def _content(course: str, subject: str, topic: str, n: int) -> str:
    """A few hundred characters of Markdown (about 550-650 bytes)."""
    steps = "\n".join(
        f"{k}. Step {k}: look at the example, predict the result, then check it."
        for k in range(1, 3 + n % 3)
    )
    return (
        f"## {topic}\n\n"
        f"*{subject}* — part of **{course}**.\n\n"
        "### Why it matters\n"
        f"Most work with {course.lower()} touches this idea sooner or later; knowing it well "
        "saves time and avoids subtle mistakes.\n\n"
        "### Walk-through\n"
        f"{steps}\n\n"
        "### Try it\n"
        "Take a small example from your own work, apply the steps above and write down "
        "what surprised you. `Compare` it with the worked example."
    )


def build_settings(url: str) -> Settings:
    return Settings(DATABASE_URL=url, COURSEGEN_ENV=Environment.TEST, SECRET_KEY=SECRET_KEY)


def _app_tables() -> list[str]:
    return [model._meta.db_table for model in Tortoise.apps["models"].values()]


async def reset(settings: Settings) -> None:
    connection = connections.get("default")
    tables = _app_tables()
    if settings.uses_sqlite:
        await connection.execute_script("PRAGMA foreign_keys = OFF;")
        for table in tables:
            await connection.execute_query(f'DELETE FROM "{table}"')
        await connection.execute_script("PRAGMA foreign_keys = ON;")
    else:
        names = ", ".join(f'"{t}"' for t in tables)
        await connection.execute_query(f"TRUNCATE {names} CASCADE")


async def fill(
    *,
    users: int,
    courses: int,
    subjects: int,
    topics: int,
    progress_every: int,
    batch_size: int,
) -> dict[str, int]:
    password_hash = hash_password(PASSWORD)  # argon2 is slow on purpose: once, reused
    subject_ranks = _ranks(subjects)
    topic_ranks = _ranks(topics)
    # created_at spaced one minute apart (newest first = course 0 of each user) so the
    # dashboard's default order is deterministic; updated_at is auto_now (the insert time).
    base = datetime.now(UTC) - timedelta(days=30)
    counts = {"users": 0, "courses": 0, "subjects": 0, "topics": 0, "topic_progress": 0}

    user_rows = [
        User(
            id=uuid.uuid4(),
            email=EMAIL.format(i=i),
            password_hash=password_hash,
            display_name=f"Bench User {i}",
            tier=UserTier.STANDARD,
        )
        for i in range(users)
    ]
    async with in_transaction():
        await User.bulk_create(user_rows, batch_size=batch_size)
        counts["users"] = len(user_rows)
        for u_index, user in enumerate(user_rows):
            course_rows: list[Course] = []
            subject_rows: list[Subject] = []
            topic_rows: list[Topic] = []
            progress_rows: list[TopicProgress] = []
            for c in range(courses):
                theme = _COURSE_SUBJECTS[(u_index * 7 + c) % len(_COURSE_SUBJECTS)]
                shape = _COURSE_SHAPES[(c // len(_COURSE_SUBJECTS) + c) % len(_COURSE_SHAPES)]
                title = shape.format(s=theme)
                course = Course(
                    id=uuid.uuid4(),
                    owner_id=user.id,
                    title=title,
                    description=(
                        f"A {_LEVELS[c % 3].value} course on {theme.lower()}: {subjects} parts, "
                        f"{subjects * topics} short lessons with exercises."
                    ),
                    level=_LEVELS[c % 3],
                    language="en",
                    status=CourseStatus.READY,
                    version=1,
                    created_at=base + timedelta(minutes=courses - c),
                )
                course_rows.append(course)
                for s in range(subjects):
                    s_title = f"{s + 1}. " + _SUBJECT_SHAPES[(s + c) % len(_SUBJECT_SHAPES)].format(
                        s=theme
                    )
                    subject = Subject(
                        id=uuid.uuid4(),
                        course_id=course.id,
                        rank=subject_ranks[s],
                        title=s_title,
                        summary=f"Part {s + 1} of {title}.",
                    )
                    subject_rows.append(subject)
                    for t in range(topics):
                        t_title = _TOPIC_SHAPES[(t + s + c) % len(_TOPIC_SHAPES)]
                        topic = Topic(
                            id=uuid.uuid4(),
                            subject_id=subject.id,
                            course_id=course.id,
                            rank=topic_ranks[t],
                            title=t_title,
                            objectives=[
                                f"Explain {t_title.lower()} in your own words",
                                f"Apply it to a small {theme} problem",
                            ],
                            content=_content(title, s_title, t_title, t + s),
                            estimated_minutes=(10, 15, 20, 25, 30)[(t + s + c) % 5],
                        )
                        topic_rows.append(topic)
                        if progress_every and (s * topics + t) % progress_every == 0:
                            progress_rows.append(
                                TopicProgress(
                                    id=uuid.uuid4(),
                                    user_id=user.id,
                                    topic_id=topic.id,
                                    completed=True,
                                    completed_at=base + timedelta(days=1, minutes=t),
                                    score=60 + (t * 7 + s) % 41,
                                )
                            )
            await Course.bulk_create(course_rows, batch_size=batch_size)
            await Subject.bulk_create(subject_rows, batch_size=batch_size)
            await Topic.bulk_create(topic_rows, batch_size=batch_size)
            await TopicProgress.bulk_create(progress_rows, batch_size=batch_size)
            counts["courses"] += len(course_rows)
            counts["subjects"] += len(subject_rows)
            counts["topics"] += len(topic_rows)
            counts["topic_progress"] += len(progress_rows)
    return counts


async def main_async(args: argparse.Namespace) -> int:
    settings = build_settings(args.database_url)
    started = time.perf_counter()
    await db.apply_migrations(settings)
    migrated = time.perf_counter()
    await db.connect(settings)
    try:
        if await User.exists():
            if not args.reset:
                print(
                    "refusing: the database already has users; pass --reset to empty it first",
                    file=sys.stderr,
                )
                return 2
            await reset(settings)
        filled_from = time.perf_counter()
        counts = await fill(
            users=args.users,
            courses=args.courses,
            subjects=args.subjects,
            topics=args.topics,
            progress_every=args.progress_every,
            batch_size=args.batch_size,
        )
        done = time.perf_counter()
        stored = {
            "users": await User.all().count(),
            "courses": await Course.all().count(),
            "subjects": await Subject.all().count(),
            "topics": await Topic.all().count(),
            "topic_progress": await TopicProgress.all().count(),
        }
        # Fresh planner statistics, as a long-lived database would have.
        await connections.get("default").execute_script("ANALYZE;")
    finally:
        await db.close()
    backend = "SQLite" if settings.uses_sqlite else "PostgreSQL"
    print(
        f"dataset on {backend}: migrations {migrated - started:.1f}s, "
        f"inserts {done - filled_from:.1f}s, total {time.perf_counter() - started:.1f}s"
    )
    for table, count in stored.items():
        print(f"  {table:<15} {count:>8}")
    if stored != counts:
        print(f"warning: inserted {counts} but the tables hold {stored}", file=sys.stderr)
        return 1
    print(f"log in as {EMAIL.format(i=0)} / {PASSWORD}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dataset", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--database-url", required=True, help="postgres://... or sqlite://path")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--courses", type=int, default=50, help="courses per user")
    parser.add_argument("--subjects", type=int, default=8, help="subjects per course")
    parser.add_argument("--topics", type=int, default=6, help="topics per subject")
    parser.add_argument(
        "--progress-every",
        type=int,
        default=3,
        help="the owner completed every Nth topic of each course (0: no progress rows)",
    )
    parser.add_argument("--batch-size", type=int, default=1000, help="rows per INSERT batch")
    parser.add_argument("--reset", action="store_true", help="empty the app's tables first")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
