"""The ONNX vision tower: same output as the native encoder for any frame count/size, same answers."""

from __future__ import annotations

import pytest
import torch

from inference.engine import Engine, GenerationRequest
from inference.loading import load_model
from inference.onnx_vision import (
    FrameBatchEncoder,
    OnnxVisionEncoder,
    _frame_rotary,
    _items,
    best_vision_encoder,
    choose_vision_path,
    export_vision_encoder,
    torch_vision_forward,
)
from tests.inference.prompts import chat_inputs

pytest.importorskip("onnxruntime")
# Exported once with 2 frames of 16 patches; run with other frame counts, grid sizes and merges.
ITEMS = ((1, 4, 6, 1, 31), (5, 6, 4, 2, 32), (1, 10, 8, 1, 33))


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return load_model(tiny_checkpoint)


@pytest.fixture(scope="module")
def onnx_file(loaded, tmp_path_factory):
    return export_vision_encoder(
        loaded.model.model.vision_model, tmp_path_factory.mktemp("onnx") / "vision.onnx"
    )


def test_frame_batch_encoder_equals_the_native_block_diagonal_encoder(loaded):
    """Per-frame batching (no mask) is the same computation as native per-frame attention."""
    vision = loaded.model.model.vision_model
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "x", ITEMS)
    with torch.inference_mode():
        reference = torch_vision_forward(vision, inputs)
    encoder = FrameBatchEncoder(vision)
    rows = []
    with torch.inference_mode():
        for t, h, w, merge, pixels in _items(inputs):
            cos, sin = _frame_rotary(vision, h, w, merge)
            rows.append(encoder(pixels, cos, sin).reshape(t * h * w, -1))
        ours = vision.pixel_unshuffle(torch.cat(rows), inputs.image_grid_thw, inputs.image_merge_sizes)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_onnxruntime_matches_torch_with_dynamic_shapes(loaded, onnx_file):
    vision = loaded.model.model.vision_model
    runner = OnnxVisionEncoder(onnx_file, vision)
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "x", ITEMS)
    with torch.inference_mode():
        reference = torch_vision_forward(vision, inputs)
        output = runner(inputs)
    assert output.shape == reference.shape == (24 + 5 * 6 + 80, 32)
    assert float((output - reference).abs().max()) < 2e-5


def test_engine_answers_identically_through_the_onnx_tower(loaded, onnx_file):
    runner = OnnxVisionEncoder(onnx_file, loaded.model.model.vision_model)
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Findings?", ITEMS)
    results = []
    for vision_encoder in (None, runner):
        with Engine(loaded, vision_encoder=vision_encoder) as engine:
            results.append(engine.submit(GenerationRequest(inputs, max_new_tokens=12)).result(timeout=60))
    assert results[0].token_ids == results[1].token_ids and results[1].error is None


def test_choice_reports_both_timings_and_keeps_a_correct_path(loaded, tmp_path):
    vision = loaded.model.model.vision_model
    sample = chat_inputs(loaded.tokenizer, loaded.image_token_id, "x", ITEMS[:2])
    runner, choice = choose_vision_path(vision, sample, tmp_path / "v.onnx", repeats=2)
    assert (tmp_path / "v.onnx").is_file()
    assert choice.torch_seconds > 0 and choice.onnx_seconds > 0
    assert choice.max_abs_difference < 2e-5
    assert choice.chosen == ("onnx" if choice.onnx_seconds < choice.torch_seconds else "torch")
    assert (runner is not None) == (choice.chosen == "onnx")
    assert "CPUExecutionProvider" in choice.providers


def test_best_vision_encoder_exports_once_and_leaves_the_resident_tower_untouched(tiny_checkpoint, tmp_path):
    loaded = load_model(tiny_checkpoint)
    loaded.model.model.vision_model.to(torch.bfloat16)
    _runner, choice = best_vision_encoder(loaded, tmp_path)
    exported = list(tmp_path.glob("vision-*.onnx"))
    assert len(exported) == 1 and choice.max_abs_difference is not None
    assert loaded.vision_dtype == torch.bfloat16  # export worked on a float32 copy
    stamp = exported[0].stat().st_mtime_ns
    best_vision_encoder(loaded, tmp_path)
    assert exported[0].stat().st_mtime_ns == stamp  # reused, not exported again


def test_a_broken_onnx_file_falls_back_to_torch(loaded, tmp_path):
    bad = tmp_path / "v.onnx"
    bad.write_bytes(b"not an onnx model")
    sample = chat_inputs(loaded.tokenizer, loaded.image_token_id, "x", ITEMS[:1])
    runner, choice = choose_vision_path(loaded.model.model.vision_model, sample, bad, repeats=1)
    assert runner is None and choice.chosen == "torch" and choice.onnx_seconds is None
