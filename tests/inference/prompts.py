"""Hand-built ``ModelInputs`` for the runtime tests (independent of the preprocessing package)."""

from __future__ import annotations

import torch

from inference.inputs import ModelInputs

PATCH_VALUES = 3 * 14 * 14


def visual_item(t: int, h: int, w: int, merge: int, seed: int) -> tuple[torch.Tensor, list[int], int]:
    """Random normalised patches for one item of ``t`` frames of ``h`` x ``w`` patches."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.rand((t * h * w, PATCH_VALUES), generator=generator) * 2 - 1
    return pixels, [t, h, w], t * (h // merge) * (w // merge)


def chat_inputs(
    tokenizer,
    image_token_id: int,
    question: str,
    items=(),
    history_ids: list[int] | None = None,
    all_items=None,
) -> ModelInputs:
    """``history_ids`` + one ChatML user turn (``<image>`` runs for ``items``) + assistant header.

    ``items`` are ``(t, h, w, merge, seed)`` tuples placed in this turn; ``all_items`` (default:
    ``items``) are every item of the conversation, whose pixels the inputs carry, in order.
    """
    ids = list(history_ids or [])
    ids += tokenizer("<|im_start|>user\n").input_ids
    for t, h, w, merge, seed in items:
        _, _, tokens = visual_item(t, h, w, merge, seed)
        ids += [image_token_id] * tokens + tokenizer("\n").input_ids
    ids += tokenizer(question + "<|im_end|>\n<|im_start|>assistant\n").input_ids
    every = list(all_items if all_items is not None else items)
    if every:
        parts = [visual_item(*item) for item in every]
        pixels = torch.cat([p for p, _, _ in parts])
        grid = torch.tensor([g for _, g, _ in parts], dtype=torch.long)
        merges = torch.tensor([item[3] for item in every], dtype=torch.long)
        visual = sum(n for _, _, n in parts)
    else:
        pixels = grid = merges = None
        visual = 0
    return ModelInputs(
        input_ids=torch.tensor([ids], dtype=torch.long),
        attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
        pixel_values=pixels,
        image_grid_thw=grid,
        image_merge_sizes=merges,
        video_compression_mask=None,
        visual_tokens=visual,
        visual_tokens_after_reduction=visual,
        text_tokens=len(ids) - visual,
        frames=sum(item[0] for item in every),
    )


def follow_up_ids(tokenizer, previous: ModelInputs, answer_ids: list[int]) -> list[int]:
    """The conversation so far: previous prompt, the answer and its end-of-turn marker."""
    return previous.input_ids[0].tolist() + answer_ids + tokenizer("<|im_end|>\n").input_ids
