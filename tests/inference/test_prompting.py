"""Hulu-Med prompts: ChatML layout, <image> expansion with the checkpoint's id, turns, thinking mode."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from inference.inputs import build_model_inputs
from inference.loading import load_tokenizer
from inference.preprocess import VisualItem
from inference.prompting import (
    IMAGE_TOKEN,
    REPORT_PROMPT,
    THINK_INSTRUCTION,
    Conversation,
    ReasoningStream,
    boxed_answer,
    image_token_id,
    opens_reasoning,
    render_prompt,
    split_reasoning,
    strip_reasoning,
    tokenize_prompt,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint: Path):
    return load_tokenizer(tiny_checkpoint)


def _image(h: int = 56, w: int = 56) -> VisualItem:
    return VisualItem(np.zeros((h, w, 3), dtype=np.uint8))


def _stack(t: int, kind: str = "volume", timestamps: list[float] | None = None) -> VisualItem:
    return VisualItem(np.zeros((t, 56, 56, 3), dtype=np.uint8), kind=kind, timestamps_s=timestamps)  # type: ignore[arg-type]


def test_single_image_prompt_layout(tokenizer) -> None:
    conv = Conversation()
    conv.add_user("  What is shown? ", [_image()])
    assert render_prompt(tokenizer, conv) == (
        "<|im_start|>user\n<image>\nWhat is shown?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_volume_frames_joined_by_comma_without_timestamps(tokenizer) -> None:
    conv = Conversation(system_prompt="You are a radiologist.")
    conv.add_user("Describe.", [_stack(3)])
    assert render_prompt(tokenizer, conv) == (
        "<|im_start|>system\nYou are a radiologist.<|im_end|>\n"
        "<|im_start|>user\n<image>,<image>,<image>\nDescribe.<|im_end|>\n<|im_start|>assistant\n"
    )


def test_real_video_frames_carry_timestamps(tokenizer) -> None:
    conv = Conversation()
    conv.add_user("Motion?", [_stack(3, "video", [0.0, 1.04, 2.0])])
    text = render_prompt(tokenizer, conv)
    assert "user\nTime 0.0s:<image>,Time 1.0s:<image>,Time 2.0s:<image>\nMotion?<|im_end|>" in text


def test_video_without_timing_is_labelled_by_frame_number_not_time(tokenizer) -> None:
    conv = Conversation()
    untimed = VisualItem(np.zeros((3, 56, 56, 3), dtype=np.uint8), kind="video", sampled_indices=[0, 5, 9])
    conv.add_user("Motion?", [untimed])
    text = render_prompt(tokenizer, conv)
    assert "Time " not in text
    assert (
        "user\n<image>,<image>,<image>\nThe frame timing of this cine is unknown; its 3 frames are shown "
        "in order and are frames 1, 6, 10 of the cine.\nMotion?<|im_end|>"
    ) in text


def test_thinking_mode_appends_instruction(tokenizer) -> None:
    conv = Conversation()
    conv.add_user("Is there a fracture?", [_image()], think=True)
    assert conv.turns[0].text == f"Is there a fracture?\n{THINK_INSTRUCTION}"
    assert THINK_INSTRUCTION == "Please reason step by step, and put your final answer within \\boxed{}."
    assert render_prompt(tokenizer, conv).endswith(f"{THINK_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n")


def test_multi_turn_history_keeps_answers_without_reasoning(tokenizer) -> None:
    conv = Conversation()
    conv.add_user("Any nodule?", [_image()])
    conv.add_assistant("<think>look at the right lung</think>Yes, \\boxed{right upper lobe}.")
    conv.add_user("How large?")
    text = render_prompt(tokenizer, conv)
    assert text == (
        "<|im_start|>user\n<image>\nAny nodule?<|im_end|>\n"
        "<|im_start|>assistant\nYes, \\boxed{right upper lobe}.<|im_end|>\n"
        "<|im_start|>user\nHow large?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert "look at the right lung" not in text


def test_typed_placeholder_cannot_add_image_slots(tokenizer) -> None:
    conv = Conversation()
    conv.add_user("what is <image> here", [_image()])
    assert render_prompt(tokenizer, conv).count(IMAGE_TOKEN) == 1


def test_expansion_uses_checkpoint_image_id_and_exact_counts(tokenizer) -> None:
    conv = Conversation()
    conv.add_user("Compare.", [_image(), _stack(2)])
    text = render_prompt(tokenizer, conv)
    ids = tokenize_prompt(tokenizer, text, [5, 3, 3])
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert image_token_id(tokenizer) == image_id
    assert ids.count(image_id) == 11
    # chunk-wise tokenisation equals tokenising the fully expanded string
    expanded = text.replace(IMAGE_TOKEN, "\0", 3)
    for n in (5, 3, 3):
        expanded = expanded.replace("\0", IMAGE_TOKEN * n, 1)
    assert ids == tokenizer(expanded, add_special_tokens=False)["input_ids"]


def test_placeholder_count_mismatch_is_an_error(tokenizer) -> None:
    with pytest.raises(ValueError, match="placeholders"):
        tokenize_prompt(tokenizer, "<image>\nhi", [4, 4])


def test_template_without_image_support_falls_back_to_builtin_layout(tokenizer, caplog) -> None:
    conv = Conversation()
    conv.add_user("Describe.", [_image()])
    text_only = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n<|im_end|>\n{% endfor %}"
    with caplog.at_level(logging.WARNING):
        text = render_prompt(tokenizer, conv, chat_template=text_only)
    assert text == "<|im_start|>user\n<image>\nDescribe.<|im_end|>\n<|im_start|>assistant\n"
    assert "built-in" in caplog.text


def test_report_prompt_is_the_authors_evaluation_prompt() -> None:
    assert REPORT_PROMPT.startswith(
        "You are a helpful assistant. Please generate a report for the given images"
    )
    assert REPORT_PROMPT.endswith("Findings: {} Impression: {}.")


@pytest.mark.parametrize(
    ("output", "reasoning", "answer"),
    [
        (
            "<think>step 1\nstep 2</think>\n\nThe answer is \\boxed{B}.",
            "step 1\nstep 2",
            "The answer is \\boxed{B}.",
        ),
        ("<think>still thinking", "still thinking", ""),  # streaming, not closed yet
        ("plain answer", "", "plain answer"),
        ("stray</think> tag", "", "stray tag"),  # a closing tag outside reasoning is never shown
    ],
)
def test_split_reasoning(output: str, reasoning: str, answer: str) -> None:
    assert split_reasoning(output) == (reasoning, answer)


TEMPLATE_OPENS_THINK = (
    "{%- for message in messages -%}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{%- endfor -%}{%- if add_generation_prompt -%}<|im_start|>assistant\n<think>\n{%- endif -%}"
)


def test_a_template_that_pre_opens_think_streams_and_splits_alike(tokenizer) -> None:
    conv = Conversation()
    conv.add_user("Is there a fracture?")
    prompt = render_prompt(tokenizer, conv, TEMPLATE_OPENS_THINK)
    assert prompt.endswith("assistant\n<think>") and opens_reasoning(prompt)
    assert build_model_inputs(tokenizer, conv, chat_template=TEMPLATE_OPENS_THINK).think_open
    assert not build_model_inputs(tokenizer, conv).think_open
    output = "The cortex is intact.\n</think>\n\nNo fracture."
    stream = ReasoningStream(opens_reasoning(prompt))
    pieces = [stream.push(output[i : i + 3]) for i in range(0, len(output), 3)] + [
        stream.push("", final=True)
    ]
    streamed = ("".join(r for r, _ in pieces), "".join(a for _, a in pieces))
    assert "</think>" not in streamed[1]  # was shown as answer text
    assert (streamed[0].strip(), streamed[1].strip()) == split_reasoning(output, True)
    assert split_reasoning(output, True) == ("The cortex is intact.", "No fracture.")
    conv.add_assistant(output, think_open=True)
    assert conv.turns[-1].text == "No fracture."


def test_prompts_that_do_not_leave_think_open() -> None:
    assert not opens_reasoning("<|im_start|>assistant\n")
    assert not opens_reasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n")  # thinking switched off
    assert not opens_reasoning("<|im_start|>user\nwhat is <think>?<|im_end|>\n<|im_start|>assistant\n")


def test_boxed_answer_handles_nested_braces() -> None:
    assert boxed_answer("so \\boxed{\\frac{1}{2}} and \\boxed{C}") == "C"
    assert boxed_answer("x \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert boxed_answer("no box") is None
    assert strip_reasoning("<think>a</think>Line 1\n\n\n\nLine 2") == "Line 1\n\nLine 2"


def test_reasoning_stream_splits_tags_across_chunks() -> None:
    stream = ReasoningStream()
    chunks = ["Sure. <th", "ink>the left", " lung</thi", "nk>Answer: ", "\\boxed{A}", "<"]
    pieces = [stream.push(c) for c in chunks] + [stream.push("", final=True)]
    reasoning = "".join(r for r, _ in pieces)
    answer = "".join(a for _, a in pieces)
    assert reasoning == "the left lung"
    assert answer == "Sure. Answer: \\boxed{A}<"
    assert pieces[0] == ("", "Sure. ")  # "<th" held back until it is known not to be text
