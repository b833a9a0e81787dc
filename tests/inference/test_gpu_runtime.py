"""The CUDA paths (bf16 resident model, NF4/int8 kernels, ORT CUDA EP); skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

from inference.engine import Engine, GenerationRequest, stop_token_ids
from inference.loading import load_model
from inference.onnx_vision import OnnxVisionEncoder, export_vision_encoder, torch_vision_forward
from inference.quantization import quantized_linear_count
from tests.inference.prompts import chat_inputs

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)"),
]
ITEMS = ((1, 4, 6, 1, 41), (3, 4, 4, 2, 42))


def _native(loaded, inputs, n):
    eos = sorted(stop_token_ids(loaded))
    out = loaded.model.generate(
        **inputs.as_model_kwargs(device=loaded.device, dtype=loaded.vision_dtype),
        max_new_tokens=n,
        do_sample=False,
        eos_token_id=eos,
        pad_token_id=eos[0],
    )
    return [t for t in out[0, inputs.prompt_tokens :].tolist() if t not in eos]


def test_auto_choice_loads_bf16_on_the_gpu_and_matches_native(tiny_checkpoint):
    loaded = load_model(tiny_checkpoint)
    assert loaded.report.device.startswith("cuda") and not loaded.report.slow_mode
    assert loaded.report.quantization == "none" and loaded.report.dtype in ("bfloat16", "float16")
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Findings?", ITEMS)
    with Engine(loaded) as engine:
        result = engine.submit(GenerationRequest(inputs, max_new_tokens=16)).result(timeout=120)
    assert result.error is None and result.token_ids == _native(loaded, inputs, 16)


@pytest.mark.parametrize("kind, layer", [("nf4", "Linear4bit"), ("int8", "Linear8bitLt")])
def test_bitsandbytes_cuda_kernels(tiny_checkpoint, kind, layer):
    loaded = load_model(tiny_checkpoint, device="cuda", quantization=kind)
    assert quantized_linear_count(loaded.model)[layer] == 14
    assert loaded.model.model.vision_model.encoder.layers[0].mlp.fc1.weight.dtype in (
        torch.bfloat16,
        torch.float16,
    )
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Findings?", ITEMS)
    with Engine(loaded) as engine:
        result = engine.submit(GenerationRequest(inputs, max_new_tokens=8)).result(timeout=120)
    assert result.error is None and result.token_ids == _native(loaded, inputs, 8)


def test_onnxruntime_cuda_provider_matches_torch(tiny_checkpoint, tmp_path):
    loaded = load_model(tiny_checkpoint, device="cuda")
    vision = loaded.model.model.vision_model.float()
    path = export_vision_encoder(vision, tmp_path / "v.onnx")
    runner = OnnxVisionEncoder(path, vision)
    if "CUDAExecutionProvider" not in runner.providers:
        pytest.skip("onnxruntime has no working CUDA provider here")
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "x", ITEMS)
    with torch.inference_mode():
        diff = (runner(inputs).to(loaded.device) - torch_vision_forward(vision, inputs)).abs().max()
    assert float(diff) < 1e-4


def test_int4_tinygemm_with_compiled_static_decode(tiny_checkpoint):
    """torchao int4 (tinygemm layout) + static KV buffer + torch.compile with CUDA graphs.

    The compiled step fuses bf16 ops differently from eager, so logits are compared with a
    tolerance under teacher forcing, and tokens only where the eager top-2 margin is clear."""
    pytest.importorskip("torchao")
    from inference.int4_weights import int4_linear_count
    from inference.static_decode import StaticDecoder

    loaded = load_model(tiny_checkpoint, device="cuda", quantization="int4")
    assert loaded.report.quantization == "int4" and int4_linear_count(loaded.model) == 14
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Findings?", ITEMS)
    with Engine(loaded) as engine:
        assert engine.static_decoder is not None and engine.static_decoder.compiled
        result = engine.submit(GenerationRequest(inputs, max_new_tokens=16, ignore_eos=True)).result(
            timeout=600
        )
        assert result.error is None and engine.static_decoder.compiled  # no fallback to eager
    native = _native(loaded, inputs, 16)
    assert result.token_ids[:1] == native[:1]  # from the (eager) prefill

    from transformers import DynamicCache

    def logits_along(decoder):
        cache = DynamicCache(config=loaded.model.config.text_config)
        with torch.inference_mode():
            embeds = loaded.model.get_input_embeddings()(torch.tensor([[1, 2, 3, 4]], device=loaded.device))
            loaded.model.model.language_model(inputs_embeds=embeds, past_key_values=cache, use_cache=True)
            session = decoder.session(cache, 32)
            out = [session.step(t) for t in result.token_ids[:12]]
        return torch.cat(out)

    compiled = logits_along(StaticDecoder(loaded.model, capacities=(64,), compile=True))
    eager = logits_along(StaticDecoder(loaded.model, capacities=(64,), compile=False))
    assert float((compiled - eager).norm() / eager.norm()) < 2e-2
    top2 = eager.topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > 0.05 * eager.abs().amax(dim=-1)
    assert torch.equal(compiled.argmax(-1)[clear], eager.argmax(-1)[clear])
