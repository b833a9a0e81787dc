"""Hulu-Med prompts: ChatML conversations with ``<image>`` placeholders, thinking mode, reports.

Layout (reference): ``<|im_start|>user\\n<image>\\n{question}<|im_end|>\\n<|im_start|>assistant\\n``.
An image is one ``<image>``; a video or 3D stack is one ``<image>`` per frame joined by ``,``
(each preceded by ``Time X.Xs:`` for real video only). A video whose frame timing is unknown
gets no invented times: its turn's text starts with a note naming the frame numbers shown.
The text is rendered with the checkpoint's own chat template (it receives ``image_token``); a
built-in ChatML template of the same layout is used only when the checkpoint has none or its
template does not place the placeholders. Each
frame's placeholder is then expanded to as many ``<image>`` ids as the frame has LLM tokens; the
id is read from the checkpoint's tokenizer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from inference.preprocess import VisualItem

log = logging.getLogger(__name__)

IMAGE_TOKEN = "<image>"
THINK_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
REPORT_PROMPT = (
    "You are a helpful assistant. Please generate a report for the given images, including both "
    "findings and impressions. Return the report in the following format: Findings: {} Impression: {}."
)

# Hulu-Med's ChatML layout, used only when a checkpoint ships no usable chat template.
BUILTIN_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- image_token + '\\n' -}}"
    "{%- elif part['type'] == 'video' -%}"
    "{%- for i in range(part['num_frames']) -%}"
    "{%- if 'timestamps' in part -%}{{- 'Time ' + (part['timestamps'][i] | round(1) | string) + 's:' -}}"
    "{%- endif -%}"
    "{{- image_token + (',' if i < part['num_frames'] - 1 else '\\n') -}}"
    "{%- endfor -%}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def _without_placeholder(text: str) -> str:
    """Typed text must never add image slots: the reserved placeholder is removed from it."""
    return text.replace(IMAGE_TOKEN, "")


@dataclass
class Turn:
    """One message. User turns may carry visual items (placed before their text)."""

    role: Literal["system", "user", "assistant"]
    text: str
    visuals: list[VisualItem] = field(default_factory=list)


@dataclass
class Conversation:
    """A multi-turn chat about images; the model sees the whole history on every call."""

    system_prompt: str | None = None
    turns: list[Turn] = field(default_factory=list)

    def add_user(self, text: str, visuals: Sequence[VisualItem] = (), think: bool = False) -> Turn:
        """Append a question (with thinking mode, the step-by-step instruction is appended)."""
        text = _without_placeholder(text).strip()
        if not text and not visuals:
            raise ValueError("a user turn needs text or images")
        if think:
            text = f"{text}\n{THINK_INSTRUCTION}" if text else THINK_INSTRUCTION
        turn = Turn("user", text, list(visuals))
        self.turns.append(turn)
        return turn

    def add_assistant(self, text: str, think_open: bool = False) -> Turn:
        """Append the model's answer; its ``<think>`` reasoning is not fed back to the model.
        ``think_open``: the prompt it answered pre-opened ``<think>`` (``ModelInputs.think_open``)."""
        turn = Turn("assistant", _without_placeholder(split_reasoning(text, think_open)[1]))
        self.turns.append(turn)
        return turn

    def visual_items(self) -> list[VisualItem]:
        """Every visual item of the conversation, in prompt order."""
        return [item for turn in self.turns for item in turn.visuals]

    def messages(self) -> list[dict[str, Any]]:
        """Chat-template messages: visual parts (one per item) then the text part."""
        result: list[dict[str, Any]] = []
        if self.system_prompt:
            result.append({"role": "system", "content": self.system_prompt})
        for turn in self.turns:
            if not turn.visuals:
                result.append({"role": turn.role, "content": turn.text})
                continue
            parts: list[dict[str, Any]] = []
            for item in turn.visuals:
                if item.kind == "image":
                    parts.append({"type": "image"})
                else:
                    part: dict[str, Any] = {"type": "video", "num_frames": item.frame_count}
                    if item.kind == "video" and item.timestamps_s is not None:
                        part["timestamps"] = [float(t) for t in item.timestamps_s]
                    parts.append(part)
            notes = [untimed_video_note(item) for item in turn.visuals if _untimed_video(item)]
            parts.append({"type": "text", "text": "\n".join([*notes, turn.text])})
            result.append({"role": turn.role, "content": parts})
        return result


def _untimed_video(item: VisualItem) -> bool:
    return item.kind == "video" and item.timestamps_s is None


def untimed_video_note(item: VisualItem) -> str:
    """What the model is told about a cine without frame timing: no times, the frame numbers shown."""
    numbers = [index + 1 for index in item.sampled_indices] or list(range(1, item.frame_count + 1))
    return (
        f"The frame timing of this cine is unknown; its {item.frame_count} frames are shown in "
        f"order and are frames {', '.join(map(str, numbers))} of the cine."
    )


def image_token_id(tokenizer: Any) -> int:
    """The id of ``<image>`` in this checkpoint's tokenizer (error if it is not one added token)."""
    token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if (
        token_id is None
        or token_id == tokenizer.unk_token_id
        or tokenizer.convert_ids_to_tokens(token_id) != IMAGE_TOKEN
    ):
        raise ValueError(f"the checkpoint's tokenizer has no {IMAGE_TOKEN} token")
    return int(token_id)


def render_prompt(
    tokenizer: Any,
    conversation: Conversation,
    chat_template: str | None = None,
    add_generation_prompt: bool = True,
) -> str:
    """The prompt text with exactly one ``<image>`` per frame of every visual item.

    ``chat_template``: the checkpoint's template when the tokenizer object does not carry it
    (e.g. one read from ``chat_template.json``).
    """
    messages = conversation.messages()
    expected = sum(item.frame_count for item in conversation.visual_items())
    template = chat_template or getattr(tokenizer, "chat_template", None)
    if template:
        text = tokenizer.apply_chat_template(
            messages,
            chat_template=template,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            image_token=IMAGE_TOKEN,
        )
        if text.count(IMAGE_TOKEN) == expected:
            return text
        log.warning(
            "checkpoint chat template placed %d image placeholders for %d frames; using the "
            "built-in Hulu-Med ChatML layout",
            text.count(IMAGE_TOKEN),
            expected,
        )
    text = tokenizer.apply_chat_template(
        messages,
        chat_template=BUILTIN_CHAT_TEMPLATE,
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
        image_token=IMAGE_TOKEN,
    )
    if text.count(IMAGE_TOKEN) != expected:
        raise ValueError(
            f"built-in template placed {text.count(IMAGE_TOKEN)} placeholders for {expected} frames"
        )
    return text


def tokenize_prompt(tokenizer: Any, text: str, frame_tokens: Sequence[int]) -> list[int]:
    """Token ids of ``text`` with the i-th ``<image>`` replaced by ``frame_tokens[i]`` image ids."""
    chunks = text.split(IMAGE_TOKEN)
    if len(chunks) - 1 != len(frame_tokens):
        raise ValueError(f"prompt has {len(chunks) - 1} placeholders for {len(frame_tokens)} frames")
    image_id = image_token_id(tokenizer)
    ids: list[int] = []
    for index, chunk in enumerate(chunks):
        if chunk:
            ids.extend(tokenizer(chunk, add_special_tokens=False)["input_ids"])
        if index < len(frame_tokens):
            ids.extend([image_id] * frame_tokens[index])
    return ids


_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"


def opens_reasoning(prompt_text: str) -> bool:
    """Whether a rendered prompt ends inside an open ``<think>`` (a chat template that pre-opens the
    reasoning block for the model), so the output starts as reasoning."""
    last_open = prompt_text.rfind(_THINK_OPEN)
    return last_open >= 0 and not any(end in prompt_text[last_open:] for end in (_THINK_CLOSE, "<|im_end|>"))


def split_reasoning(text: str, think_open: bool = False) -> tuple[str, str]:
    """(reasoning, answer) of a model output; an unclosed ``<think>`` is still reasoning.

    The same splitter as :class:`ReasoningStream` (a stream fed the whole text at once), so a chat
    panel showing a growing output and the final split always agree. ``think_open``: the prompt
    pre-opened ``<think>`` (:func:`opens_reasoning`), so the output starts as reasoning.
    """
    reasoning, answer = ReasoningStream(think_open).push(text, final=True)
    return reasoning.strip(), answer.strip()


def boxed_answer(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (nested braces allowed), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for pos in range(begin, len(text)):
        if text[pos] == "{":
            depth += 1
        elif text[pos] == "}":
            if depth == 0:
                return text[begin:pos].strip()
            depth -= 1
    return None


def strip_reasoning(text: str, think_open: bool = False) -> str:
    """The answer only, with blank-line runs collapsed (what the reference returns by default)."""
    return re.sub(r"\n\s*\n", "\n\n", split_reasoning(text, think_open)[1])


class ReasoningStream:
    """Splits a streamed output into reasoning and answer as chunks arrive.

    ``push(chunk)`` returns (reasoning_delta, answer_delta); text that might be the start of a
    ``<think>``/``</think>`` tag is held back until the next chunk (or ``final=True``). Tags are
    never shown: ``think_open`` starts inside reasoning (the chat template pre-opened ``<think>``),
    and a ``</think>`` outside reasoning is dropped.
    """

    def __init__(self, think_open: bool = False) -> None:
        self._pending = ""
        self._in_think = think_open

    def push(self, chunk: str, final: bool = False) -> tuple[str, str]:
        text, self._pending = self._pending + chunk, ""
        reasoning: list[str] = []
        answer: list[str] = []
        while text:
            sink = reasoning if self._in_think else answer
            tags = (_THINK_CLOSE,) if self._in_think else (_THINK_OPEN, _THINK_CLOSE)
            found = [(pos, tag) for tag in tags if (pos := text.find(tag)) >= 0]
            if found:
                pos, tag = min(found)
                sink.append(text[:pos])
                text = text[pos + len(tag) :]
                self._in_think = tag == _THINK_OPEN
                continue
            hold = 0 if final else max(_partial_tag_suffix(text, tag) for tag in tags)
            sink.append(text[: len(text) - hold])
            self._pending = text[len(text) - hold :]
            break
        return "".join(reasoning), "".join(answer)


def _partial_tag_suffix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is a proper beginning of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0
