"""Input checks shared by every entry point: text cleaning, ids, pydantic errors."""

from __future__ import annotations

import re
import uuid
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from services.errors import invalid

# C0/C1 control characters except tab and newline; they have no place in course text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

M = TypeVar("M", bound=BaseModel)


def clean_text(value: str) -> str:
    """Strip control characters and surrounding white space."""
    return _CONTROL.sub("", value).strip()


def parse_id(value: Any, field: str = "id") -> uuid.UUID:
    """A client-supplied id as a UUID, or INVALID_INPUT naming the field."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        raise invalid("Not a valid id (expected a UUID).", field=field) from None


def _camel(name: str) -> str:
    """The API's spelling of a field (`subject_count` -> `subjectCount`)."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def validated(model: type[M], data: dict[str, Any], prefix: str = "") -> M:
    """Validate with pydantic; the first error becomes INVALID_INPUT naming its field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(_camel(str(p)) for p in first["loc"]) or None
        field = f"{prefix}{loc}" if loc else None
        message = first["msg"]
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        raise invalid(f"{field}: {message}" if field else message, field=field) from None
