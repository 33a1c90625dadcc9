"""What the router makes of answers and refusals, against the HTTP fake with the real `openai`
client: JSON repaired locally, one re-ask quoting validation errors, fallback on invalid output;
usage booked exactly or estimated and flagged; 401/403 never retried on the same model; a
context overflow moved to a larger window."""

from __future__ import annotations

import pytest

from ai.errors import AIUnavailable, InvalidOutput
from ai.pricing import cost_usd
from ai.writer import CourseRequest, Outline, Usage
from tests.ai_support import REQUEST, Build, topic, who
from tests.fake_openai import FakeOpenAI, Step, endpoint

# 8 -----------------------------------------------------------------------------------------


async def test_fenced_json_is_repaired_locally_without_a_reask(
    fake: FakeOpenAI, build: Build
) -> None:
    fake.script("a", Step(fenced=True))
    usage = Usage()
    result = await topic(build(), usage)
    assert result.content == "Lesson written by a."
    assert fake.hits["a"] == 1 and usage.attempts == 1


async def test_a_missing_field_gets_exactly_one_reask_quoting_the_error(
    fake: FakeOpenAI, build: Build
) -> None:
    fake.script("a", Step(answer='{"objectives": ["x"], "estimated_minutes": 5}'), Step())
    usage = Usage()
    await topic(build(), usage)
    assert fake.hits["a"] == 2
    reask = fake.requests["a"][1]["messages"]
    assert reask[-2]["role"] == "assistant"
    assert "content: Field required" in reask[-1]["content"]
    assert usage.calls == 2  # both answers were produced, both are billed


async def test_output_invalid_twice_moves_to_another_model(
    fake: FakeOpenAI, url: str, build: Build
) -> None:
    fake.always("a", Step(answer='{"content": ""}'))
    writer = build(
        [
            endpoint("a", url, quality={"outline": 0.9, "topic": 0.9}),
            endpoint("b", url, quality={"outline": 0.5, "topic": 0.5}),
        ]
    )
    result = await topic(writer, Usage())
    assert result.content == "Lesson written by b."
    assert fake.hits["a"] == 2 and fake.hits["b"] == 1  # original + one re-ask, then fallback


async def test_no_valid_answer_anywhere_is_a_typed_error(fake: FakeOpenAI, build: Build) -> None:
    fake.always("a", Step(answer="I cannot do that."))
    with pytest.raises(InvalidOutput) as caught:
        await topic(build(), Usage())
    assert caught.value.code == "AI_INVALID_OUTPUT"
    assert fake.hits["a"] == 2


# 9 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
async def test_an_answer_without_usage_is_estimated_and_flagged(
    fake: FakeOpenAI, build: Build, stream: bool
) -> None:
    fake.script("a", Step(omit_usage=True))
    usage = Usage()
    await topic(build(stream=stream), usage)
    assert usage.estimated is True
    assert usage.tokens_in > 0 and usage.tokens_out > 0 and usage.cost_usd > 0
    assert fake.requests["a"][0].get("stream", False) is stream


async def test_a_reported_usage_is_booked_exactly(fake: FakeOpenAI, build: Build) -> None:
    usage = Usage()
    writer = build()
    outline = await writer.write_outline(REQUEST, who(), usage)
    assert isinstance(outline, Outline)
    body = fake.requests["a"][0]
    assert body["stream_options"] == {"include_usage": True}
    prompt = "".join(m["content"] for m in body["messages"])
    assert usage.tokens_in == max(1, len(prompt) // 4) and usage.estimated is False
    assert usage.cost_usd == cost_usd(writer.router.models["a"], usage.tokens_in, usage.tokens_out)


# 11 ----------------------------------------------------------------------------------------


async def test_401_is_not_retried_on_that_model(fake: FakeOpenAI, url: str, build: Build) -> None:
    fake.always("a", Step(status=401))
    writer = build(
        [
            endpoint("a", url, quality={"outline": 0.9, "topic": 0.9}),
            endpoint("b", url, quality={"outline": 0.5, "topic": 0.5}),
        ]
    )
    assert (await topic(writer, Usage())).content == "Lesson written by b."
    assert fake.hits["a"] == 1
    await topic(writer, Usage(), name="Matrices")  # the bad key is set aside for a while
    assert fake.hits["a"] == 1 and fake.hits["b"] == 2


async def test_a_lone_model_with_a_bad_key_fails_after_one_hit(
    fake: FakeOpenAI, build: Build
) -> None:
    fake.always("a", Step(status=403))
    with pytest.raises(AIUnavailable):
        await topic(build(), Usage())
    assert fake.hits["a"] == 1


async def test_context_overflow_goes_to_a_larger_window(
    fake: FakeOpenAI, url: str, build: Build
) -> None:
    fake.always("small", Step(status=400, error_code="context_length_exceeded"))
    writer = build(
        [
            endpoint("small", url, context_window=8000, quality={"topic": 0.9, "outline": 0.9}),
            endpoint("same", url, context_window=8000, quality={"topic": 0.8, "outline": 0.8}),
            endpoint("big", url, context_window=128_000, price_input_per_mtok=5.0),
        ]
    )
    result = await topic(writer, Usage())
    assert result.content == "Lesson written by big."
    assert fake.hits["small"] == 1 and fake.hits["same"] == 0 and fake.hits["big"] == 1


async def test_a_prompt_too_long_for_a_window_is_never_sent_there(
    fake: FakeOpenAI, url: str, build: Build
) -> None:
    writer = build(
        [
            endpoint("small", url, context_window=8000, quality={"topic": 0.9, "outline": 0.9}),
            endpoint("big", url, context_window=128_000),
        ]
    )
    long_request = CourseRequest(topic="Linear algebra", notes="x" * 40_000)
    await writer.write_topic(long_request, "Basics", "Vectors", who(), Usage())
    assert fake.hits["small"] == 0 and fake.hits["big"] == 1
