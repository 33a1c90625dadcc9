"""The demo account seeded into an empty database, so a newcomer can log in and look around."""

from __future__ import annotations

from tortoise.transactions import in_transaction

from ai.offline_writer import outline_for, topic_for
from ai.writer import CourseRequest
from models import Course, CourseLevel, CourseStatus, Subject, Topic, User, UserTier
from services.passwords import hash_password
from services.ranks import rank_after

DEMO_EMAIL = "demo@coursegen.local"
DEMO_PASSWORD = "coursegen-demo"  # noqa: S105 -- documented demo credentials, development only

DEMO_COURSES = [
    CourseRequest("SQL for analysts", "data analysts", "beginner", "en", 4, 4),
    CourseRequest("Linear algebra for data science", "data scientists", "intermediate", "en", 5, 3),
    CourseRequest("Writing clear technical documents", "engineers", "beginner", "en", 3, 4),
]


async def seed_demo_account() -> bool:
    """Create the demo user and its finished courses if the database has no users."""
    if await User.exists():
        return False
    async with in_transaction():
        user = await User.create(
            email=DEMO_EMAIL,
            password_hash=hash_password(DEMO_PASSWORD),
            display_name="Demo Learner",
            tier=UserTier.STANDARD,
        )
        for request in DEMO_COURSES:
            await _write_course(user, request)
    return True


async def _write_course(user: User, request: CourseRequest) -> None:
    course = await Course.create(
        owner_id=user.id,
        title=request.topic,
        description=f"A {request.level} course for {request.audience}.",
        level=CourseLevel(request.level),
        language=request.language,
        status=CourseStatus.READY,
    )
    subject_rank = None
    for outline in outline_for(request).subjects:
        subject_rank = rank_after(subject_rank)
        subject = await Subject.create(
            course_id=course.id, rank=subject_rank, title=outline.title, summary=outline.summary
        )
        topic_rank = None
        topics = []
        for title in outline.topics:
            topic_rank = rank_after(topic_rank)
            written = topic_for(request, outline.title, title)
            topics.append(
                Topic(
                    subject_id=subject.id,
                    course_id=course.id,
                    rank=topic_rank,
                    title=title,
                    objectives=written.objectives,
                    content=written.content,
                    estimated_minutes=written.estimated_minutes,
                )
            )
        await Topic.bulk_create(topics)
