"""The terminal state of a job as the database holds it, as a progress event.

Event logs are short-lived (a Redis Stream expires an hour after its job ends, an in-process
ring is evicted, and a Redis restart loses everything) but the database keeps every job's
final state. A follower whose log holds no terminal event gets one synthesized from the job
row: `completed`, `failed` (with `data.code`) or `cancelled`, numbered right after the last
event that follower saw.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from models import GenerationJob, JobStatus
from subscriptions.events import ProgressEvent

_TYPES = {
    JobStatus.SUCCEEDED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


@dataclass(frozen=True, slots=True)
class TerminalState:
    type: str
    progress: float
    course_id: uuid.UUID
    message: str | None
    code: str | None
    finished_at: datetime | None

    def age_seconds(self) -> float:
        if self.finished_at is None:
            return float("inf")
        return time.time() - self.finished_at.timestamp()

    def event(self, job_id: uuid.UUID, seq: int) -> ProgressEvent:
        return ProgressEvent(
            seq=seq,
            type=self.type,
            job_id=job_id,
            progress=self.progress,
            stage="saving" if self.type == "completed" else None,
            message=self.message,
            course_id=self.course_id,
            at=self.finished_at.timestamp() if self.finished_at else time.time(),
            data={"code": self.code, "fromDatabase": True} if self.code else {"fromDatabase": True},
        )


async def terminal_state(job_id: uuid.UUID) -> TerminalState | None:
    """The job's final state, or None while it is queued or running (or does not exist)."""
    rows = await GenerationJob.filter(id=job_id).values(
        "status", "progress", "course_id", "error_code", "error_message", "finished_at"
    )
    if not rows:
        return None
    row = rows[0]
    kind = _TYPES.get(JobStatus(row["status"]))
    if kind is None:
        return None
    return TerminalState(
        type=kind,
        progress=1.0 if kind == "completed" else float(row["progress"] or 0.0),
        course_id=uuid.UUID(str(row["course_id"])),
        message=row["error_message"] if kind == "failed" else None,
        code=row["error_code"] if kind == "failed" else None,
        finished_at=row["finished_at"],
    )
