"""Turn a model's answer into a validated pydantic object, repairing the usual slips locally.

Models asked for JSON still wrap it in ``` fences, put a sentence before it, or leave a
trailing comma. Those are fixed here, for free, instead of spending a re-ask. What cannot be
fixed locally raises `OutputRejected` carrying readable validation errors, which the router
quotes in its one re-ask to the same model.
"""

from __future__ import annotations

import json
import re
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from ai.errors import OutputRejected

M = TypeVar("M", bound=BaseModel)

_FENCE = re.compile(r"```[A-Za-z0-9_-]*\s*\n?(.*?)```", re.DOTALL)
_MAX_ERRORS = 8


def extract_json_text(answer: str) -> str:
    """The JSON object inside an answer: fenced block if any, from the first `{` to the last
    `}`; prose around it is dropped."""
    text = answer.strip()
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1).strip()
    elif text.startswith("```"):  # an opening fence whose closing one was cut off
        text = text.split("\n", 1)[1] if "\n" in text else ""
    start = text.find("{")
    if start == -1:
        return text
    end = text.rfind("}")
    return text[start : end + 1] if end > start else text[start:]


def remove_trailing_commas(text: str) -> str:
    """Drop commas directly before `}` or `]`, leaving string contents alone."""
    out: list[str] = []
    in_string = escaped = False
    pending_comma: int | None = None  # index in `out` of a comma that may be trailing
    for ch in text:
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch in "}]" and pending_comma is not None:
            del out[pending_comma]
        if ch == ",":
            pending_comma = len(out)
        elif not ch.isspace():
            pending_comma = None
        if ch == '"':
            in_string = True
        out.append(ch)
    return "".join(out)


def repair(answer: str) -> str:
    return remove_trailing_commas(extract_json_text(answer))


def describe(errors: ValidationError) -> str:
    """Validation errors as short lines a model can act on (`path: message`)."""
    lines = []
    for error in errors.errors()[:_MAX_ERRORS]:
        path = ".".join(str(p) for p in error["loc"]) or "(root)"
        lines.append(f"- {path}: {error['msg']}")
    return "\n".join(lines)


def parse_answer(answer: str, schema: type[M], *, model: str) -> M:
    """Repair, parse and validate; raise `OutputRejected` with the reasons otherwise."""
    text = repair(answer)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutputRejected(model, f"- (root): not valid JSON ({exc.msg})", answer) from None
    if not isinstance(data, dict):
        raise OutputRejected(model, "- (root): expected a JSON object", answer)
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise OutputRejected(model, describe(exc), answer) from None
