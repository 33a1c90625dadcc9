"""The root Mutation type: each field maps a resolver's outcome to its result union."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import strawberry
from strawberry.types import Info

from resolvers import mutations as resolve
from schema.admin import AdminMutation
from schema.errors import user_error
from schema.generation import GenerationMutation
from schema.inputs import (
    AddSubjectInput,
    AddTopicInput,
    BookmarkTopicInput,
    CompleteTopicInput,
    CreateCourseInput,
    LogInInput,
    MoveTopicInput,
    SaveNoteInput,
    ShareCourseInput,
    SignUpInput,
    UnbookmarkTopicInput,
    UncompleteTopicInput,
    UnshareCourseInput,
    UpdateCourseInput,
    UpdateTopicInput,
    provided,
)
from schema.results import (
    AddSubjectResult,
    AddSubjectSuccess,
    AddTopicResult,
    AddTopicSuccess,
    AuthSuccess,
    BookmarkTopicResult,
    BookmarkTopicSuccess,
    CompleteTopicResult,
    CompleteTopicSuccess,
    CreateCourseResult,
    CreateCourseSuccess,
    DeleteCourseResult,
    DeleteCourseSuccess,
    DeleteNoteResult,
    DeleteNoteSuccess,
    LogInResult,
    LogOutResult,
    LogOutSuccess,
    MoveTopicResult,
    MoveTopicSuccess,
    RefreshTokenResult,
    SaveNoteResult,
    SaveNoteSuccess,
    ShareCourseResult,
    ShareCourseSuccess,
    SignUpResult,
    UnbookmarkTopicResult,
    UnbookmarkTopicSuccess,
    UncompleteTopicResult,
    UncompleteTopicSuccess,
    UnshareCourseResult,
    UnshareCourseSuccess,
    UpdateCourseResult,
    UpdateCourseSuccess,
    UpdateTopicResult,
    UpdateTopicSuccess,
)
from schema.sync import SyncMutation
from schema.types import Course, Me, Member, Note, Subject, Topic
from services.accounts import TokenPair
from services.errors import DomainError

T = TypeVar("T")


async def _result(call: Awaitable[T], build: Callable[[T], Any]) -> Any:
    """The success type built from the outcome, or the UserError of an expected failure."""
    try:
        return build(await call)
    except DomainError as error:
        return user_error(error)


def _auth(pair: TokenPair) -> AuthSuccess:
    user = pair.user
    return AuthSuccess(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
        device_token=pair.device_token,
        user=Me(
            id=strawberry.ID(str(user.id)),
            email=user.email,
            display_name=user.display_name,
            tier=user.tier,
            role=user.role,
        ),
    )


def _id(value: object) -> strawberry.ID:
    return strawberry.ID(str(value))


@strawberry.type
class Mutation(GenerationMutation, SyncMutation, AdminMutation):
    @strawberry.mutation
    async def sign_up(self, info: Info, input: SignUpInput) -> SignUpResult:
        call = resolve.sign_up(info, input.email, input.password, input.display_name)
        return await _result(call, _auth)

    @strawberry.mutation
    async def log_in(self, info: Info, input: LogInInput) -> LogInResult:
        return await _result(
            resolve.log_in(info, input.email, input.password, input.device_token), _auth
        )

    @strawberry.mutation(description="Rotate a refresh token into a new token pair.")
    async def refresh_token(self, info: Info, token: str) -> RefreshTokenResult:
        return await _result(resolve.refresh_token(info, token), _auth)

    @strawberry.mutation(
        description="End this session: its refresh and access tokens stop working. With "
        "`everywhere`, every session of the account ends (log out on all devices)."
    )
    async def log_out(self, info: Info, everywhere: bool = False) -> LogOutResult:
        return await _result(resolve.log_out(info, everywhere), lambda _: LogOutSuccess())

    @strawberry.mutation
    async def create_course(self, info: Info, input: CreateCourseInput) -> CreateCourseResult:
        call = resolve.create_course(info, provided(input))
        return await _result(call, lambda r: CreateCourseSuccess(course=Course(record=r)))

    @strawberry.mutation
    async def update_course(
        self, info: Info, id: strawberry.ID, input: UpdateCourseInput, expected_version: int
    ) -> UpdateCourseResult:
        call = resolve.update_course(info, id, provided(input), expected_version)
        return await _result(call, lambda r: UpdateCourseSuccess(course=Course(record=r)))

    @strawberry.mutation(description="Delete a course you own (kept as a tombstone for sync).")
    async def delete_course(self, info: Info, id: strawberry.ID) -> DeleteCourseResult:
        call = resolve.delete_course(info, id)
        return await _result(call, lambda r: DeleteCourseSuccess(deleted_id=_id(r)))

    @strawberry.mutation
    async def add_subject(self, info: Info, input: AddSubjectInput) -> AddSubjectResult:
        call = resolve.add_subject(info, provided(input))
        return await _result(call, lambda r: AddSubjectSuccess(subject=Subject(record=r)))

    @strawberry.mutation
    async def add_topic(self, info: Info, input: AddTopicInput) -> AddTopicResult:
        call = resolve.add_topic(info, provided(input))
        return await _result(call, lambda r: AddTopicSuccess(topic=Topic(record=r)))

    @strawberry.mutation
    async def update_topic(self, info: Info, input: UpdateTopicInput) -> UpdateTopicResult:
        call = resolve.update_topic(info, provided(input))
        return await _result(call, lambda r: UpdateTopicSuccess(topic=Topic(record=r)))

    @strawberry.mutation
    async def move_topic(self, info: Info, input: MoveTopicInput) -> MoveTopicResult:
        call = resolve.move_topic(
            info, input.topic_id, input.subject_id, input.after_topic_id, input.before_topic_id
        )
        return await _result(call, lambda r: MoveTopicSuccess(topic=Topic(record=r)))

    @strawberry.mutation(description="Share a course you own with another user by email.")
    async def share_course(self, info: Info, input: ShareCourseInput) -> ShareCourseResult:
        call = resolve.share_course(info, input.course_id, input.email, input.role)
        return await _result(call, lambda r: ShareCourseSuccess(member=Member(record=r)))

    @strawberry.mutation(description="Remove a member (the owner), or leave a shared course.")
    async def unshare_course(self, info: Info, input: UnshareCourseInput) -> UnshareCourseResult:
        call = resolve.unshare_course(info, input.course_id, input.user_id)
        return await _result(
            call, lambda r: UnshareCourseSuccess(course_id=_id(r[0]), user_id=_id(r[1]))
        )

    @strawberry.mutation
    async def complete_topic(self, info: Info, input: CompleteTopicInput) -> CompleteTopicResult:
        call = resolve.set_completion(info, input.topic_id, True, input.score)
        return await _result(call, lambda r: CompleteTopicSuccess(topic=Topic(record=r)))

    @strawberry.mutation
    async def uncomplete_topic(
        self, info: Info, input: UncompleteTopicInput
    ) -> UncompleteTopicResult:
        call = resolve.set_completion(info, input.topic_id, False)
        return await _result(call, lambda r: UncompleteTopicSuccess(topic=Topic(record=r)))

    @strawberry.mutation
    async def bookmark_topic(self, info: Info, input: BookmarkTopicInput) -> BookmarkTopicResult:
        call = resolve.set_bookmark(info, input.topic_id, True)
        return await _result(call, lambda r: BookmarkTopicSuccess(topic=Topic(record=r)))

    @strawberry.mutation
    async def unbookmark_topic(
        self, info: Info, input: UnbookmarkTopicInput
    ) -> UnbookmarkTopicResult:
        call = resolve.set_bookmark(info, input.topic_id, False)
        return await _result(call, lambda r: UnbookmarkTopicSuccess(topic=Topic(record=r)))

    @strawberry.mutation
    async def save_note(self, info: Info, input: SaveNoteInput) -> SaveNoteResult:
        call = resolve.save_note(
            info, input.body, input.note_id, input.topic_id, input.expected_version
        )
        return await _result(call, lambda r: SaveNoteSuccess(note=Note.from_record(r)))

    @strawberry.mutation
    async def delete_note(self, info: Info, id: strawberry.ID) -> DeleteNoteResult:
        call = resolve.delete_note(info, id)
        return await _result(call, lambda r: DeleteNoteSuccess(deleted_id=_id(r)))
