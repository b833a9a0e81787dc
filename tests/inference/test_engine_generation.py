"""The engine: greedy parity with the native model, streaming, cancel, queueing, prefix-cache reuse."""

from __future__ import annotations

import threading

import pytest
import torch

import inference.engine as engine_module
from inference.engine import Engine, GenerationRequest, stop_token_ids
from inference.loading import load_model
from tests.inference.prompts import chat_inputs, follow_up_ids

IMAGE = (1, 4, 6, 1, 11)  # one 56x84 image, merge 1: 24 visual tokens
VIDEO = (3, 4, 4, 2, 12)  # a 3-frame stack, merge 2: 12 visual tokens


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return load_model(tiny_checkpoint)


@pytest.fixture(scope="module")
def engine(loaded):
    with Engine(loaded) as running:
        yield running


def native_greedy(loaded, inputs, max_new_tokens: int) -> list[int]:
    """transformers' own generate() on the same model: the reference for the engine's loop."""
    eos = sorted(stop_token_ids(loaded))
    out = loaded.model.generate(
        **inputs.as_model_kwargs(dtype=loaded.vision_dtype),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=eos,
        pad_token_id=eos[0],
    )
    tokens = out[0, inputs.prompt_tokens :].tolist()
    return [t for t in tokens if t not in eos]


@pytest.mark.parametrize("items", [(IMAGE,), (IMAGE, VIDEO), ()], ids=["image", "image+3d", "text"])
def test_greedy_matches_native_generate(loaded, items):
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Describe the findings.", items)
    with Engine(loaded) as engine:  # no cached conversation to borrow from
        result = engine.submit(GenerationRequest(inputs, max_new_tokens=24)).result(timeout=120)
    assert result.error is None
    assert result.token_ids == native_greedy(loaded, inputs, 24)
    assert len(result.token_ids) > 0
    assert result.prefill_tokens == inputs.prompt_tokens and result.reused_tokens == 0


def test_qwen3_variant_greedy_matches_native(tiny_checkpoint_qwen3):
    loaded = load_model(tiny_checkpoint_qwen3)
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Is there a fracture?", (IMAGE,))
    with Engine(loaded) as engine:
        result = engine.submit(GenerationRequest(inputs, max_new_tokens=16)).result(timeout=120)
    assert result.token_ids == native_greedy(loaded, inputs, 16)


def test_stream_chunks_and_callback_add_up_to_the_answer(loaded, engine):
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Findings?", (IMAGE,))
    seen: list[str] = []
    handle = engine.submit(GenerationRequest(inputs, max_new_tokens=20, ignore_eos=True, on_text=seen.append))
    chunks = list(handle)
    result = handle.result(timeout=60)
    assert len(chunks) > 1
    assert "".join(chunks) == result.text == "".join(seen)
    assert result.text == loaded.tokenizer.decode(result.token_ids, skip_special_tokens=True)
    assert result.finish_reason == "length" and result.new_tokens == 20


def test_cancel_stops_a_long_generation_promptly(loaded, engine):
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Write a long report.", (IMAGE,))
    first_chunk = threading.Event()
    handle = engine.submit(
        GenerationRequest(
            inputs, max_new_tokens=1_000_000, ignore_eos=True, on_text=lambda _text: first_chunk.set()
        )
    )
    assert first_chunk.wait(60)
    handle.cancel()
    result = handle.result(timeout=10)  # one decode step of a tiny model takes milliseconds
    assert result.finish_reason == "cancelled"
    assert 0 < result.new_tokens < 1_000_000
    assert "".join(handle) == result.text  # the iterator ends (no hang) once the result is in


def test_requests_run_in_order_and_a_queued_cancel_never_starts(loaded, engine):
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Findings?", (IMAGE,))
    gate = threading.Event()
    blocker = engine.submit(
        GenerationRequest(inputs, max_new_tokens=1_000_000, ignore_eos=True, on_text=lambda _t: gate.wait(30))
    )
    queued = engine.submit(GenerationRequest(inputs, max_new_tokens=5))
    last = engine.submit(GenerationRequest(inputs, max_new_tokens=5, ignore_eos=True))
    queued.cancel()
    blocker.cancel()
    gate.set()
    assert blocker.result(timeout=30).finish_reason == "cancelled"
    skipped = queued.result(timeout=30)
    assert skipped.finish_reason == "cancelled" and skipped.new_tokens == 0 and skipped.prefill_tokens == 0
    assert last.result(timeout=30).new_tokens == 5
    assert blocker.request_id < queued.request_id < last.request_id


def test_follow_up_prefills_only_the_new_turn_and_matches_a_fresh_run(loaded):
    tokenizer, image_id = loaded.tokenizer, loaded.image_token_id
    first = chat_inputs(tokenizer, image_id, "Describe the image.", (IMAGE,))
    with Engine(loaded) as engine:
        answer = engine.submit(
            GenerationRequest(first, conversation_id="study-1", max_new_tokens=8, ignore_eos=True)
        ).result(timeout=60)
        cached = engine.cached_tokens("study-1")
        # The last token is sampled but not yet fed to the decoder.
        assert cached == first.prompt_tokens + answer.new_tokens - 1
        history = follow_up_ids(tokenizer, first, answer.token_ids)
        second = chat_inputs(
            tokenizer, image_id, "Is it normal?", (), history_ids=history, all_items=(IMAGE,)
        )
        follow = engine.submit(
            GenerationRequest(second, conversation_id="study-1", max_new_tokens=12)
        ).result(timeout=60)
    assert follow.reused_tokens == cached
    assert follow.prefill_tokens == second.prompt_tokens - cached
    assert image_id in second.input_ids[0, :cached].tolist()  # the visual tokens came from the cache
    assert image_id not in second.input_ids[0, cached:].tolist()
    assert follow.vision_seconds == 0.0  # ...and the vision encoder did not run
    with Engine(loaded) as fresh:
        scratch = fresh.submit(GenerationRequest(second, max_new_tokens=12)).result(timeout=60)
    assert scratch.prefill_tokens == second.prompt_tokens
    assert follow.token_ids == scratch.token_ids
    assert follow.token_ids == native_greedy(loaded, second, 12)


def test_follow_up_with_a_new_image_uses_only_the_new_features(loaded):
    tokenizer, image_id = loaded.tokenizer, loaded.image_token_id
    first = chat_inputs(tokenizer, image_id, "Describe.", (IMAGE,))
    with Engine(loaded) as engine:
        answer = engine.submit(
            GenerationRequest(first, conversation_id="s", max_new_tokens=4, ignore_eos=True)
        ).result(timeout=60)
        history = follow_up_ids(tokenizer, first, answer.token_ids)
        second = chat_inputs(
            tokenizer,
            image_id,
            "Compare with the prior.",
            (VIDEO,),
            history_ids=history,
            all_items=(IMAGE, VIDEO),
        )
        follow = engine.submit(GenerationRequest(second, conversation_id="s", max_new_tokens=10)).result(
            timeout=60
        )
    assert follow.error is None and follow.reused_tokens > first.prompt_tokens
    assert follow.token_ids == native_greedy(loaded, second, 10)


def test_other_images_behind_the_same_placeholder_ids_are_not_reused(loaded, engine):
    tokenizer, image_id = loaded.tokenizer, loaded.image_token_id
    a = chat_inputs(tokenizer, image_id, "Describe.", (IMAGE,))
    b = chat_inputs(tokenizer, image_id, "Other question.", (VIDEO,))
    engine.submit(GenerationRequest(a, conversation_id="c", max_new_tokens=3)).result(timeout=60)
    result = engine.submit(GenerationRequest(b, conversation_id="c", max_new_tokens=10)).result(timeout=60)
    header = a.input_ids[0].tolist().index(image_id)
    assert a.input_ids[0, header + 5] == b.input_ids[0, header + 5] == image_id  # same ids, other pixels
    assert result.reused_tokens == header  # only the shared "<|im_start|>user\n" header
    assert result.token_ids == native_greedy(loaded, b, 10)
    engine.forget("c")
    assert engine.cached_tokens("c") == 0


def test_a_new_conversation_about_the_same_study_borrows_a_copy_of_the_prefix(loaded):
    tokenizer, image_id = loaded.tokenizer, loaded.image_token_id
    chat = chat_inputs(tokenizer, image_id, "Is there a fracture?", (IMAGE, VIDEO))
    draft = chat_inputs(tokenizer, image_id, "Write the report.", (IMAGE, VIDEO))
    with Engine(loaded) as engine:
        engine.submit(GenerationRequest(chat, conversation_id="chat", max_new_tokens=4)).result(timeout=60)
        chat_cached = engine.cached_tokens("chat")
        borrowed = engine.submit(GenerationRequest(draft, max_new_tokens=10)).result(timeout=60)
        # The donor's own cache is untouched by the borrower's crop and decode.
        assert engine.cached_tokens("chat") == chat_cached
        again = engine.submit(GenerationRequest(chat, conversation_id="chat", max_new_tokens=4)).result(
            timeout=60
        )
    shared = 0
    while chat.input_ids[0, shared] == draft.input_ids[0, shared]:
        shared += 1
    assert shared > 36  # header + 24 + 12 visual tokens + separators
    assert borrowed.reused_tokens == shared and borrowed.vision_seconds == 0.0
    assert borrowed.token_ids == native_greedy(loaded, draft, 10)
    assert again.reused_tokens == chat.prompt_tokens - 1


def test_chunked_prefill_gives_the_same_answer(loaded):
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Findings?", (IMAGE, VIDEO))
    with Engine(loaded, prefill_chunk=7) as engine:
        chunked = engine.submit(GenerationRequest(inputs, max_new_tokens=12)).result(timeout=60)
    assert chunked.token_ids == native_greedy(loaded, inputs, 12)


def test_repetition_penalty_matches_native_generate(loaded, engine):
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Findings?", (IMAGE,))
    ours = engine.submit(GenerationRequest(inputs, max_new_tokens=16, repetition_penalty=1.3)).result(
        timeout=60
    )
    plain = engine.submit(GenerationRequest(inputs, max_new_tokens=16)).result(timeout=60)
    eos = sorted(stop_token_ids(loaded))
    out = loaded.model.generate(
        **inputs.as_model_kwargs(),
        max_new_tokens=16,
        do_sample=False,
        eos_token_id=eos,
        pad_token_id=eos[0],
        repetition_penalty=1.3,
    )
    assert ours.token_ids == [t for t in out[0, inputs.prompt_tokens :].tolist() if t not in eos]
    assert ours.token_ids != plain.token_ids  # the penalty changed this answer


def test_vision_tower_in_frame_chunks_is_exact_and_stops_on_cancel(loaded, engine, monkeypatch):
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "x", (IMAGE, (6, 4, 4, 2, 13)))
    whole = engine.visual_features(inputs)
    monkeypatch.setattr(engine_module, "VISION_CHUNK_PATCHES", 32)  # 2 frames of 16 patches per pass
    polls: list[int] = []
    torch.testing.assert_close(engine.visual_features(inputs, lambda: polls.append(1) and False), whole)
    assert len(polls) == 1 + 3  # the image, then 3 passes over the 6-frame stack
    checks: list[int] = []

    def cancel_on_third_check() -> bool:
        checks.append(1)
        return len(checks) == 3

    with pytest.raises(engine_module._Cancelled):
        engine.visual_features(inputs, cancel_on_third_check)
    assert len(checks) == 3  # stopped before the stack's second pass


def test_sampling_is_reproducible_with_a_seed(loaded, engine):
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Findings?", (IMAGE,))
    runs = [
        engine.submit(
            GenerationRequest(inputs, max_new_tokens=12, temperature=0.6, top_p=0.9, seed=s, ignore_eos=True)
        )
        .result(timeout=60)
        .token_ids
        for s in (1, 1, 2)
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_a_failing_request_reports_an_error_and_the_engine_keeps_serving(loaded, engine):
    broken = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Findings?", (IMAGE,))
    broken.pixel_values = broken.pixel_values[:10]  # fewer patches than the grid says
    bad = engine.submit(GenerationRequest(broken, max_new_tokens=5)).result(timeout=60)
    assert bad.finish_reason == "error" and bad.error
    good = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Findings?", (IMAGE,))
    assert (
        engine.submit(GenerationRequest(good, max_new_tokens=5, ignore_eos=True))
        .result(timeout=60)
        .new_tokens
        == 5
    )


def test_close_cancels_running_and_queued_work_and_refuses_new_work(loaded):
    engine = Engine(loaded)
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Findings?", (IMAGE,))
    started = threading.Event()
    running = engine.submit(
        GenerationRequest(inputs, max_new_tokens=1_000_000, ignore_eos=True, on_text=lambda _t: started.set())
    )
    queued = engine.submit(GenerationRequest(inputs, max_new_tokens=5))
    assert started.wait(60)
    engine.close()
    assert running.result(timeout=10).finish_reason == "cancelled"
    assert queued.result(timeout=10).finish_reason == "cancelled" and queued.result().new_tokens == 0
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Findings?", ())
    with pytest.raises(RuntimeError, match="closed"):
        engine.submit(GenerationRequest(inputs))


def test_forget_during_the_conversations_generation_is_not_undone(loaded):
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Describe.", (IMAGE,))
    started, release = threading.Event(), threading.Event()

    def hold(_text: str) -> None:
        started.set()
        release.wait(30)

    with Engine(loaded) as engine:
        running = engine.submit(
            GenerationRequest(
                inputs, conversation_id="study-9", max_new_tokens=6, ignore_eos=True, on_text=hold
            )
        )
        queued = engine.submit(GenerationRequest(inputs, conversation_id="study-8", max_new_tokens=2))
        assert started.wait(60)
        engine.forget("study-9")  # the study is closed while its answer is being written
        engine.forget("study-8")  # ...and another one whose question still waits in the queue
        release.set()
        assert running.result(timeout=60).new_tokens == 6
        assert queued.result(timeout=60).new_tokens > 0
        assert engine.cached_tokens("study-9") == 0  # was the whole prompt + answer (stored at the end)
        assert engine.cached_tokens("study-8") == 0
        again = engine.submit(
            GenerationRequest(inputs, conversation_id="study-9", max_new_tokens=2, ignore_eos=True)
        ).result(timeout=60)
        assert again.reused_tokens == 0 and engine.cached_tokens("study-9") > 0  # a new question caches again


def test_progress_reports_seeing_reading_and_writing_in_order(loaded):
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Describe.", (IMAGE, VIDEO))
    seen: list[tuple[str, int, int]] = []
    with Engine(loaded, prefill_chunk=16) as engine:
        result = engine.submit(
            GenerationRequest(
                inputs, max_new_tokens=5, ignore_eos=True, on_progress=lambda *p: seen.append(p)
            )
        ).result(timeout=60)
    phases = [name for name, _, _ in seen]
    assert phases == sorted(phases, key=["seeing", "reading", "writing"].index)  # never back
    assert [p for p in seen if p[0] == "seeing"] == [
        ("seeing", 0, 4),
        ("seeing", 1, 4),
    ]  # image, 3-frame stack
    reading = [p for p in seen if p[0] == "reading"]
    assert reading[0] == ("reading", 0, inputs.prompt_tokens) and len(reading) == -(
        -inputs.prompt_tokens // 16
    )
    assert [p for p in seen if p[0] == "writing"] == [("writing", n, 5) for n in range(5)]
    assert result.new_tokens == 5


def test_a_cancel_seen_at_a_progress_step_stops_before_writing(loaded):
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Describe.", (IMAGE,))
    handles = []

    def stop_while_reading(phase: str, done: int, _total: int) -> None:
        if phase == "reading" and done > 0:
            handles[0].cancel()  # the Stop button pressed while the prompt is read

    with Engine(loaded, prefill_chunk=8) as engine:
        handles.append(
            engine.submit(GenerationRequest(inputs, max_new_tokens=50, on_progress=stop_while_reading))
        )
        result = handles[0].result(timeout=60)
    assert result.finish_reason == "cancelled" and result.new_tokens == 0
