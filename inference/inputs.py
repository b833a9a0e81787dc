"""The tensors one Hulu-Med call feeds to transformers' native VideoLLaMA3 model, plus token counts.

Hulu-Med has ONE placeholder token (``<image>``), used for images, video frames and 3D slices
alike, so the checkpoint config sets ``image_token_id == video_token_id``. Every visual item of a
call (an image, a video, a 3D stack) is one row of ``grid_thw`` ``[t, h, w]`` (in 14-pixel patches,
before merging) with its own merge size; the model turns it into ``t * (h/m) * (w/m)`` features
that replace the ``<image>`` ids of ``input_ids`` in order.

Without token reduction everything goes through the model's *image* path (``pixel_values``,
``image_grid_thw``, ``image_merge_sizes``). With reduction the same tensors go through the *video*
path, the only one that accepts ``video_compression_mask`` (one bool per merged token, before
reduction; pruned ``<image>`` ids are already removed from ``input_ids``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from inference.preprocess import preprocess_items
from inference.preprocess_budget import MAX_TOKENS, MIN_TOKENS
from inference.prompting import Conversation, opens_reasoning, render_prompt, tokenize_prompt
from inference.token_reduction import DEFAULT_THRESHOLD, ReductionMode, reduce_tokens


@dataclass
class ModelInputs:
    """Batch-of-one inputs for ``VideoLlama3ForConditionalGeneration.forward/generate``.

    ``input_ids``/``attention_mask``: (1, L) int64. ``pixel_values``: (num_patches, 3*14*14)
    float32, or None for a text-only call. ``image_grid_thw``: (items, 3) int64 patch grid per item.
    ``image_merge_sizes``: (items,) int64. ``video_compression_mask``: (visual_tokens,) bool or None.
    Counters: ``visual_tokens`` before reduction, ``visual_tokens_after_reduction`` (what the LLM
    sees), ``text_tokens`` (prompt tokens that are not ``<image>``), ``frames`` (2D images handed to
    the vision encoder: 1 per image, t per video/3D item).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pixel_values: torch.Tensor | None
    image_grid_thw: torch.Tensor | None
    image_merge_sizes: torch.Tensor | None
    video_compression_mask: torch.Tensor | None
    visual_tokens: int
    visual_tokens_after_reduction: int
    text_tokens: int
    frames: int
    think_open: bool = False  # the prompt pre-opens <think>: the output starts as reasoning

    @property
    def prompt_tokens(self) -> int:
        """Length of the prompt the LLM prefills."""
        return int(self.input_ids.shape[-1])

    def as_model_kwargs(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        """Keyword arguments for ``model.generate(**kwargs)`` / ``model(**kwargs)``.

        ``device`` moves every tensor; ``dtype`` casts only ``pixel_values`` (the vision weights'
        dtype, e.g. bfloat16).
        """
        kwargs: dict[str, torch.Tensor] = {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
        }
        if self.pixel_values is not None:
            pixels = self.pixel_values if dtype is None else self.pixel_values.to(dtype)
            if self.video_compression_mask is None:
                kwargs["pixel_values"] = pixels
                kwargs["image_grid_thw"] = self.image_grid_thw
                kwargs["image_merge_sizes"] = self.image_merge_sizes
            else:
                kwargs["pixel_values_videos"] = pixels
                kwargs["video_grid_thw"] = self.image_grid_thw
                kwargs["video_merge_sizes"] = self.image_merge_sizes
                kwargs["video_compression_mask"] = self.video_compression_mask
        if device is not None:
            kwargs = {k: v.to(device) for k, v in kwargs.items()}
        return kwargs

    def counts(self) -> dict[str, int]:
        """The token/frame counters as a JSON-ready dict."""
        return {
            "visual_tokens": self.visual_tokens,
            "visual_tokens_after_reduction": self.visual_tokens_after_reduction,
            "text_tokens": self.text_tokens,
            "prompt_tokens": self.prompt_tokens,
            "frames": self.frames,
        }


def build_model_inputs(
    tokenizer: Any,
    conversation: Conversation,
    *,
    max_tokens: int = MAX_TOKENS,
    min_tokens: int = MIN_TOKENS,
    reduction: ReductionMode = "off",
    threshold: float = DEFAULT_THRESHOLD,
    chat_template: str | None = None,
) -> ModelInputs:
    """Preprocess every visual item of ``conversation``, reduce tokens if asked, build the prompt.

    All items share one ``max_tokens`` budget; if any item is a video or 3D stack every item uses
    2x2 merging. ``reduction`` is ``"off"`` by default (see :mod:`inference.token_reduction`).
    ``chat_template`` overrides the tokenizer's own (the checkpoint's template file).
    """
    text = render_prompt(tokenizer, conversation, chat_template)
    items = conversation.visual_items()
    if not items:
        ids = tokenize_prompt(tokenizer, text, [])
        return ModelInputs(
            input_ids=torch.tensor([ids], dtype=torch.long),
            attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
            pixel_values=None,
            image_grid_thw=None,
            image_merge_sizes=None,
            video_compression_mask=None,
            visual_tokens=0,
            visual_tokens_after_reduction=0,
            text_tokens=len(ids),
            frames=0,
            think_open=opens_reasoning(text),
        )
    visuals = preprocess_items(items, max_tokens=max_tokens, min_tokens=min_tokens)
    reduced = reduce_tokens(
        visuals.pixel_values,
        visuals.grid_thw,
        visuals.merge_sizes,
        visuals.frame_tokens,
        [item.kind for item in items],
        mode=reduction,
        threshold=threshold,
    )
    ids = tokenize_prompt(tokenizer, text, [n for tokens in reduced.frame_tokens for n in tokens])
    mask = None if reduced.mask is None else torch.from_numpy(np.ascontiguousarray(reduced.mask))
    return ModelInputs(
        input_ids=torch.tensor([ids], dtype=torch.long),
        attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
        pixel_values=torch.from_numpy(visuals.pixel_values),
        image_grid_thw=torch.from_numpy(visuals.grid_thw),
        image_merge_sizes=torch.from_numpy(visuals.merge_sizes),
        video_compression_mask=mask,
        visual_tokens=visuals.visual_tokens,
        visual_tokens_after_reduction=reduced.kept,
        text_tokens=len(ids) - reduced.kept,
        frames=visuals.frames,
        think_open=opens_reasoning(text),
    )
