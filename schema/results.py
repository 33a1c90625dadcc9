"""Success types and the result union of each mutation (`FooBarResult`)."""

from __future__ import annotations

from typing import Annotated

import strawberry

from schema.errors import (
    EmailTakenError,
    ForbiddenError,
    InvalidCredentialsError,
    InvalidInputError,
    NotFoundError,
    RateLimitedError,
    UnauthenticatedError,
    VersionConflictError,
)
from schema.types import Course, Me, Member, Note, Subject, Topic


@strawberry.type
class AuthSuccess:
    access_token: str
    refresh_token: str
    expires_in: int = strawberry.field(description="Seconds until the access token expires.")
    user: Me
    device_token: str | None = strawberry.field(
        default=None,
        description="After a log-in: keep it on this device and send it with later log-ins.",
    )


@strawberry.type
class LogOutSuccess:
    ok: bool = True


@strawberry.type
class CreateCourseSuccess:
    course: Course


@strawberry.type
class UpdateCourseSuccess:
    course: Course


@strawberry.type
class DeleteCourseSuccess:
    deleted_id: strawberry.ID


@strawberry.type
class AddSubjectSuccess:
    subject: Subject


@strawberry.type
class AddTopicSuccess:
    topic: Topic


@strawberry.type
class UpdateTopicSuccess:
    topic: Topic


@strawberry.type
class MoveTopicSuccess:
    topic: Topic


@strawberry.type
class ShareCourseSuccess:
    member: Member


@strawberry.type
class UnshareCourseSuccess:
    course_id: strawberry.ID
    user_id: strawberry.ID


@strawberry.type
class CompleteTopicSuccess:
    topic: Topic


@strawberry.type
class UncompleteTopicSuccess:
    topic: Topic


@strawberry.type
class BookmarkTopicSuccess:
    topic: Topic


@strawberry.type
class UnbookmarkTopicSuccess:
    topic: Topic


@strawberry.type
class SaveNoteSuccess:
    note: Note


@strawberry.type
class DeleteNoteSuccess:
    deleted_id: strawberry.ID


SignUpResult = Annotated[
    AuthSuccess | InvalidInputError | EmailTakenError | RateLimitedError,
    strawberry.union("SignUpResult"),
]
LogInResult = Annotated[
    AuthSuccess | InvalidInputError | InvalidCredentialsError | RateLimitedError,
    strawberry.union("LogInResult"),
]
RefreshTokenResult = Annotated[
    AuthSuccess | InvalidInputError | UnauthenticatedError, strawberry.union("RefreshTokenResult")
]
LogOutResult = Annotated[LogOutSuccess | UnauthenticatedError, strawberry.union("LogOutResult")]
CreateCourseResult = Annotated[
    CreateCourseSuccess | InvalidInputError | UnauthenticatedError,
    strawberry.union("CreateCourseResult"),
]
UpdateCourseResult = Annotated[
    UpdateCourseSuccess
    | InvalidInputError
    | NotFoundError
    | ForbiddenError
    | VersionConflictError
    | UnauthenticatedError,
    strawberry.union("UpdateCourseResult"),
]
DeleteCourseResult = Annotated[
    DeleteCourseSuccess | InvalidInputError | NotFoundError | ForbiddenError | UnauthenticatedError,
    strawberry.union("DeleteCourseResult"),
]
AddSubjectResult = Annotated[
    AddSubjectSuccess | InvalidInputError | NotFoundError | ForbiddenError | UnauthenticatedError,
    strawberry.union("AddSubjectResult"),
]
AddTopicResult = Annotated[
    AddTopicSuccess | InvalidInputError | NotFoundError | ForbiddenError | UnauthenticatedError,
    strawberry.union("AddTopicResult"),
]
UpdateTopicResult = Annotated[
    UpdateTopicSuccess | InvalidInputError | NotFoundError | ForbiddenError | UnauthenticatedError,
    strawberry.union("UpdateTopicResult"),
]
MoveTopicResult = Annotated[
    MoveTopicSuccess | InvalidInputError | NotFoundError | ForbiddenError | UnauthenticatedError,
    strawberry.union("MoveTopicResult"),
]
ShareCourseResult = Annotated[
    ShareCourseSuccess | InvalidInputError | NotFoundError | ForbiddenError | UnauthenticatedError,
    strawberry.union("ShareCourseResult"),
]
UnshareCourseResult = Annotated[
    UnshareCourseSuccess
    | InvalidInputError
    | NotFoundError
    | ForbiddenError
    | UnauthenticatedError,
    strawberry.union("UnshareCourseResult"),
]
CompleteTopicResult = Annotated[
    CompleteTopicSuccess | InvalidInputError | NotFoundError | UnauthenticatedError,
    strawberry.union("CompleteTopicResult"),
]
UncompleteTopicResult = Annotated[
    UncompleteTopicSuccess | InvalidInputError | NotFoundError | UnauthenticatedError,
    strawberry.union("UncompleteTopicResult"),
]
BookmarkTopicResult = Annotated[
    BookmarkTopicSuccess | InvalidInputError | NotFoundError | UnauthenticatedError,
    strawberry.union("BookmarkTopicResult"),
]
UnbookmarkTopicResult = Annotated[
    UnbookmarkTopicSuccess | InvalidInputError | NotFoundError | UnauthenticatedError,
    strawberry.union("UnbookmarkTopicResult"),
]
SaveNoteResult = Annotated[
    SaveNoteSuccess
    | InvalidInputError
    | NotFoundError
    | VersionConflictError
    | UnauthenticatedError,
    strawberry.union("SaveNoteResult"),
]
DeleteNoteResult = Annotated[
    DeleteNoteSuccess | InvalidInputError | NotFoundError | UnauthenticatedError,
    strawberry.union("DeleteNoteResult"),
]
