"""build_model_inputs end to end: counts, and the native VideoLLaMA3 model accepts the tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inference.inputs import build_model_inputs
from inference.loading import load_model
from inference.preprocess import VisualItem
from inference.prompting import Conversation


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint: Path):
    return load_model(tiny_checkpoint, device="cpu", quantization="none")


def _logits(loaded, inputs) -> torch.Tensor:
    with torch.inference_mode():
        out = loaded.model(**inputs.as_model_kwargs(device=loaded.device, dtype=loaded.vision_dtype))
    return out.logits[0, -1].float()


def test_image_inputs_counts_and_forward(loaded) -> None:
    conv = Conversation()
    conv.add_user("What is shown?", [VisualItem(np.full((56, 84, 3), 90, dtype=np.uint8))])
    inputs = build_model_inputs(loaded.tokenizer, conv, chat_template=loaded.chat_template)
    assert inputs.image_grid_thw.tolist() == [[1, 4, 6]] and inputs.image_merge_sizes.tolist() == [1]
    assert inputs.visual_tokens == inputs.visual_tokens_after_reduction == 24 and inputs.frames == 1
    assert int((inputs.input_ids == loaded.image_token_id).sum()) == 24
    assert inputs.text_tokens == inputs.prompt_tokens - 24
    kwargs = inputs.as_model_kwargs()
    assert set(kwargs) == {
        "input_ids",
        "attention_mask",
        "pixel_values",
        "image_grid_thw",
        "image_merge_sizes",
    }
    assert torch.isfinite(_logits(loaded, inputs)).all()


def test_text_only_conversation_has_no_pixels(loaded) -> None:
    conv = Conversation()
    conv.add_user("What is a pneumothorax?")
    inputs = build_model_inputs(loaded.tokenizer, conv, chat_template=loaded.chat_template)
    assert inputs.pixel_values is None and inputs.visual_tokens == 0 and inputs.frames == 0
    assert set(inputs.as_model_kwargs()) == {"input_ids", "attention_mask"}


def test_reduction_route_equals_image_route_when_nothing_is_dropped(loaded) -> None:
    frames = np.random.default_rng(3).integers(0, 256, (3, 56, 56, 3), dtype=np.uint8)
    conv = Conversation()
    conv.add_user("Describe.", [VisualItem(frames, kind="volume")])
    off = build_model_inputs(loaded.tokenizer, conv, chat_template=loaded.chat_template)
    on = build_model_inputs(loaded.tokenizer, conv, chat_template=loaded.chat_template, reduction="intended")
    assert off.video_compression_mask is None and bool(on.video_compression_mask.all())
    assert "video_compression_mask" in on.as_model_kwargs() and "pixel_values_videos" in on.as_model_kwargs()
    assert torch.equal(on.input_ids, off.input_ids)
    torch.testing.assert_close(_logits(loaded, on), _logits(loaded, off))


def test_reduction_drops_ids_and_features_together(loaded) -> None:
    frames = np.full((4, 112, 112, 3), 120, dtype=np.uint8)
    frames[2, :28, :28] = 250  # one merged token of frame 2 changes; frame 3 returns to normal
    frames[3] = frames[0]
    conv = Conversation()
    conv.add_user("Describe.", [VisualItem(frames, kind="volume")])
    off = build_model_inputs(loaded.tokenizer, conv, chat_template=loaded.chat_template)
    on = build_model_inputs(loaded.tokenizer, conv, chat_template=loaded.chat_template, reduction="intended")
    assert off.visual_tokens == on.visual_tokens == 4 * 16
    # frame 0 whole (16); frame 1 its first token; frame 2 the changed (first) token; frame 3 changed back
    assert on.visual_tokens_after_reduction == 16 + 1 + 1 + 1
    assert off.prompt_tokens - on.prompt_tokens == off.visual_tokens - on.visual_tokens_after_reduction
    assert int((on.input_ids == loaded.image_token_id).sum()) == 19
    assert torch.isfinite(_logits(loaded, on)).all()  # the model checks ids == surviving features
