"""The int4 path on the CPU: torchao int4 decoder weights (CPU packing) decoded through the static KV
buffer, against transformers' own ``generate()`` (DynamicCache, eager) on the same weights.

On CUDA the same code packs the weights for tinygemm and compiles the step with CUDA graphs
(tests/inference/test_gpu_runtime.py, run by bench/gpu_check.sh on a GPU machine).
"""

from __future__ import annotations

import pytest
import torch

from inference.engine import Engine, GenerationRequest, stop_token_ids
from inference.int4_weights import int4_linear_count
from inference.loading import load_model
from inference.static_decode import StaticDecoder
from tests.inference.prompts import chat_inputs

pytest.importorskip("torchao")
IMAGE = (1, 4, 6, 1, 21)
VIDEO = (3, 4, 4, 2, 22)


def _native(loaded, inputs, n):
    eos = sorted(stop_token_ids(loaded))
    with torch.inference_mode():
        out = loaded.model.generate(
            **inputs.as_model_kwargs(),
            max_new_tokens=n,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=eos[0],
        )
    return [t for t in out[0, inputs.prompt_tokens :].tolist() if t not in eos]


def _ask(engine, inputs, n, conversation=None):
    request = GenerationRequest(inputs, conversation_id=conversation, max_new_tokens=n, ignore_eos=True)
    result = engine.submit(request).result(timeout=300)
    assert result.error is None, result.error
    return result


@pytest.fixture(scope="module")
def int4_model(tiny_checkpoint):
    return load_model(tiny_checkpoint, device="cpu", quantization="int4", check_sums=False)


def test_int4_quantizes_only_the_decoder_linears(int4_model, tiny_checkpoint):
    full = load_model(tiny_checkpoint, device="cpu", quantization="none", check_sums=False)
    model = int4_model.model
    assert int4_model.report.quantization == "int4"
    assert int4_linear_count(model) == 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)
    assert int4_linear_count(model.model.language_model) == 14
    for plain in (
        model.model.projector.readout[0],
        model.lm_head,
        model.model.vision_model.encoder.layers[0].mlp.fc1,
    ):
        assert type(plain.weight) in (torch.Tensor, torch.nn.Parameter)
    # the packed weights are what the report counts: the decoder linears shrink ~6x from fp32
    assert int4_model.report.memory_bytes < full.report.memory_bytes


def test_int4_greedy_tokens_equal_transformers_generate(int4_model):
    for items in ((IMAGE,), (IMAGE, VIDEO)):
        inputs = chat_inputs(int4_model.tokenizer, int4_model.image_token_id, "Findings?", items)
        with Engine(int4_model) as engine:
            assert engine.static_decoder is not None and not engine.static_decoder.compiled  # CPU: eager
            result = _ask(engine, inputs, 12)
        assert result.token_ids == _native(int4_model, inputs, 12)


def test_static_buffer_with_an_earlier_longer_answer_equals_dynamic_decode(tiny_checkpoint):
    """A buffer reused after a longer answer holds stale keys past the prompt: they must stay masked;
    follow-ups continue the conversation's cache exactly as eager decoding does."""
    loaded = load_model(tiny_checkpoint, device="cpu", quantization="none", check_sums=False)
    tok, image = loaded.tokenizer, loaded.image_token_id
    first = chat_inputs(tok, image, "Describe the findings in detail.", (IMAGE,))
    short = chat_inputs(tok, image, "Fracture?", ((1, 4, 4, 1, 5),))
    runs = {}
    for static in (False, True):
        with Engine(loaded, static_decode=static) as engine:
            if static:
                engine.static_decoder = StaticDecoder(loaded.model, capacities=(96, 256))
            a = _ask(engine, first, 40, conversation="study")
            history = first.input_ids[0].tolist() + a.token_ids + tok("<|im_end|>\n").input_ids
            follow = chat_inputs(tok, image, "Any effusion?", history_ids=history, all_items=(IMAGE,))
            b = _ask(engine, follow, 20, conversation="study")
            c = _ask(engine, short, 20)
            cached = engine.cached_tokens("study")
            runs[static] = (a.token_ids, b.token_ids, b.reused_tokens, c.token_ids, cached)
            if static:
                assert engine.static_decoder.buffer_bytes() > 0
    assert runs[True] == runs[False]
    assert runs[True][2] > first.prompt_tokens  # the follow-up reused the first answer's keys


def test_prompt_larger_than_every_buffer_decodes_eagerly(tiny_checkpoint):
    loaded = load_model(tiny_checkpoint, device="cpu", quantization="none", check_sums=False)
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Findings?", (IMAGE,))
    with Engine(loaded, static_decode=True) as engine:
        engine.static_decoder = StaticDecoder(loaded.model, capacities=(16,))
        result = _ask(engine, inputs, 8)
        assert engine.static_decoder.buffer_bytes() == 0
    assert result.token_ids == _native(loaded, inputs, 8)


def test_compiled_int4_step_equals_generate_on_cpu(int4_model):
    """torch.compile(fullgraph=True) traces the whole step (int4 tensors, static cache, mask) in one
    graph: the same graph capture that CUDA graphs need on the GPU."""
    inputs = chat_inputs(int4_model.tokenizer, int4_model.image_token_id, "Findings?", (IMAGE,))
    with Engine(int4_model) as engine:
        engine.static_decoder = StaticDecoder(int4_model.model, capacities=(64, 128), compile=True)
        engine.static_decoder.warm_up()  # on this thread; the engine's thread reuses the compiled code
        assert (
            engine.static_decoder.buffer_bytes() == 2 * 2 * 2 * 16 * (64 + 128) * 4
        )  # layers, k/v, heads, dim
        result = _ask(engine, inputs, 8)
        assert engine.static_decoder.compiled  # no fallback to eager
    assert result.token_ids == _native(int4_model, inputs, 8)


def test_int4_memory_plan_for_the_7b_shape():
    from inference.devices import STATIC_CACHE_TOKENS, auto_gpu_quantization, gpu_needs
    from inference.quantization import estimated_weight_bytes
    from tests.inference.test_loading_native import _seven_b_shaped_info

    info = _seven_b_shaped_info()
    # decoder linears (6.5 B weights) at 4 bit + bf16 scale/zero per 128, input widths padded to a
    # multiple of 1024 for tinygemm (3584 -> 4096, 18944 -> 19456): 3.9 GB; the rest bf16 (3.0 GB)
    assert 6.7e9 < estimated_weight_bytes(info, "int4") < 7.0e9
    needs = gpu_needs(info)
    static_buffers = 57344 * sum(STATIC_CACHE_TOKENS)  # 56 KiB per token
    weights_difference = estimated_weight_bytes(info, "int4") - estimated_weight_bytes(info, "nf4")
    assert needs["int4"] - needs["nf4"] == weights_difference + static_buffers
    assert auto_gpu_quantization(needs, 14 * 2**30, four_bit="int4") == "int4"
    assert auto_gpu_quantization(needs, 24 * 2**30, four_bit="int4") == "none"
    assert auto_gpu_quantization(needs, 9 * 2**30, four_bit="int4") is None
