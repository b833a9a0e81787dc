"""Quantized loading: bitsandbytes on the decoder only, through the same load/generate path (CPU backend)."""

from __future__ import annotations

import pytest
import torch

from inference.engine import Engine, GenerationRequest, stop_token_ids
from inference.loading import load_model
from inference.quantization import (
    SKIP_MODULES,
    bitsandbytes_config,
    is_quantized_name,
    quantized_linear_count,
)
from tests.inference.prompts import chat_inputs

bnb = pytest.importorskip("bitsandbytes")
IMAGE = (1, 4, 6, 1, 21)


def test_only_decoder_linear_weights_are_quantized_names():
    assert is_quantized_name("model.layers.3.self_attn.q_proj.weight")
    assert is_quantized_name("model.layers.27.mlp.down_proj.weight")
    assert not is_quantized_name("model.layers.3.self_attn.q_proj.bias")
    assert not is_quantized_name("model.vision_encoder.encoder.layers.0.mlp.fc1.weight")
    assert not is_quantized_name("model.mm_projector.readout.0.weight")
    assert not is_quantized_name("lm_head.weight")


def test_nf4_config_is_double_quant_and_skips_vision_projector_head():
    config = bitsandbytes_config("nf4")
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.llm_int8_skip_modules == SKIP_MODULES
    assert bitsandbytes_config("int8").load_in_8bit
    assert bitsandbytes_config("none") is None


@pytest.mark.parametrize("kind, layer", [("nf4", "Linear4bit"), ("int8", "Linear8bitLt")])
def test_quantized_load_and_generate_on_cpu(tiny_checkpoint, kind, layer):
    full = load_model(tiny_checkpoint, device="cpu", quantization="none")
    loaded = load_model(tiny_checkpoint, device="cpu", quantization=kind)
    assert loaded.report.quantization == kind
    counts = quantized_linear_count(loaded.model)
    assert counts[layer] == 2 * 7  # 2 decoder layers x (q, k, v, o, gate, up, down)
    assert counts["Linear"] == 2 * 6 + 2 + 1  # vision (q, k, v, out, fc1, fc2) x 2, projector, lm_head
    assert type(loaded.model.model.projector.readout[0]) is torch.nn.Linear
    assert loaded.model.model.vision_model.encoder.layers[0].mlp.fc1.weight.dtype == torch.float32
    assert loaded.report.memory_bytes < full.report.memory_bytes
    # The quantized decoder still computes what the full one does, approximately.
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Findings?", (IMAGE,))
    kwargs = inputs.as_model_kwargs()
    with torch.inference_mode():
        exact = full.model(**kwargs).logits[0, -1]
        approx = loaded.model(**kwargs).logits[0, -1]
    assert torch.nn.functional.cosine_similarity(exact, approx, dim=0) > 0.98
    with Engine(loaded) as engine:
        result = engine.submit(GenerationRequest(inputs, max_new_tokens=6)).result(timeout=120)
    eos = sorted(stop_token_ids(loaded))
    native = loaded.model.generate(
        **kwargs, max_new_tokens=6, do_sample=False, eos_token_id=eos, pad_token_id=eos[0]
    )
    assert result.error is None
    assert result.token_ids == [t for t in native[0, inputs.prompt_tokens :].tolist() if t not in eos]
