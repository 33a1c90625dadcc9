"""GraphQL enums, UPPER_CASE, mirroring the domain's own enums."""

from __future__ import annotations

import strawberry

from models import CourseLevel, CourseStatus, JobStatus, MemberRole, UserRole, UserTier
from services.course_reads import CourseOrder
from services.errors import ErrorCode
from services.permissions import Access

ErrorCodeEnum = strawberry.enum(ErrorCode, name="ErrorCode")
CourseLevelEnum = strawberry.enum(CourseLevel, name="CourseLevel")
CourseStatusEnum = strawberry.enum(CourseStatus, name="CourseStatus")
MemberRoleEnum = strawberry.enum(MemberRole, name="MemberRole")
UserTierEnum = strawberry.enum(UserTier, name="UserTier")
UserRoleEnum = strawberry.enum(UserRole, name="UserRole")
CourseOrderEnum = strawberry.enum(CourseOrder, name="CourseOrder")
CourseAccessEnum = strawberry.enum(Access, name="CourseAccess")
JobStatusEnum = strawberry.enum(JobStatus, name="JobStatus")
