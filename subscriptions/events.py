"""Progress events of a generation job, numbered per job from 1 with no gaps.

Event types (`type`), in the order a job emits them:
- `queued`: the job was accepted (or re-queued for a retry).
- `started`: a worker picked it up (`message` says which attempt).
- `stage`: the pipeline entered a stage; `stage` is `outline`, `topics` or `saving`.
- `outline_ready`: the outline exists; `data.subjects` lists subject and topic titles.
- `topic_started`: one topic's writing began; `data` has `subject`, `topic`, `index`, `total`.
- `topic_done`: one topic is written (`data.index` of `data.total`); `progress` grows.
- `completed`: terminal; the course is ready (`course_id`).
- `failed`: terminal; `data.code` and `message` say why.
- `cancelled`: terminal; the user cancelled the job.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

TERMINAL = frozenset({"completed", "failed", "cancelled"})


@dataclass(slots=True)
class ProgressEvent:
    seq: int
    type: str
    job_id: uuid.UUID
    progress: float
    stage: str | None = None
    message: str | None = None
    course_id: uuid.UUID | None = None
    at: float = field(default_factory=time.time)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "type": self.type,
            "job_id": str(self.job_id),
            "progress": self.progress,
            "stage": self.stage,
            "message": self.message,
            "course_id": str(self.course_id) if self.course_id else None,
            "at": self.at,
            "data": self.data,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ProgressEvent:
        return cls(
            seq=int(raw["seq"]),
            type=str(raw["type"]),
            job_id=uuid.UUID(raw["job_id"]),
            progress=float(raw["progress"]),
            stage=raw.get("stage"),
            message=raw.get("message"),
            course_id=uuid.UUID(raw["course_id"]) if raw.get("course_id") else None,
            at=float(raw["at"]),
            data=dict(raw.get("data") or {}),
        )
