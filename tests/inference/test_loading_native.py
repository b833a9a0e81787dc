"""Loading Hulu-Med folders onto transformers' native classes: config translation, weights, offline."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from inference.checkpoint import CheckpointInfo, TensorEntry, validate_checkpoint
from inference.config_translation import ConfigTranslationError, rope_parameters, translate_config
from inference.devices import (
    KV_CACHES_KEPT,
    DeviceUnavailable,
    auto_gpu_quantization,
    gpu_needs,
    plan_device,
    runtime_reserve_bytes,
)
from inference.engine import Engine
from inference.loading import load_model
from inference.quantization import estimated_weight_bytes
from tests.inference.tiny_checkpoint import native_config


@pytest.mark.parametrize("fixture", ["tiny_checkpoint", "tiny_checkpoint_qwen3"])
def test_translation_equals_the_native_config_the_weights_were_made_with(fixture, request):
    folder = request.getfixturevalue(fixture)
    info = validate_checkpoint(folder)
    translated = translate_config(info.config, info.image_token_id, info.decoder)
    expected = native_config(folder)
    assert translated.image_token_id == translated.video_token_id == info.image_token_id
    assert translated.tie_word_embeddings == expected.tie_word_embeddings
    assert type(translated.text_config) is type(expected.text_config)
    for name in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "rms_norm_eps",
        "head_dim",
        "rope_parameters",
        "tie_word_embeddings",
    ):
        assert getattr(translated.text_config, name, None) == getattr(expected.text_config, name, None), name
    for name in (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "patch_size",
        "hidden_act",
        "layer_norm_eps",
        "rope_parameters",
    ):
        assert getattr(translated.vision_config, name) == getattr(expected.vision_config, name), name


def test_rope_theta_moves_into_rope_parameters():
    assert rope_parameters({"rope_theta": 1_000_000.0}) == {"rope_type": "default", "rope_theta": 1e6}
    # transformers 4.x Qwen2Config (the reference's runtime) defaulted to 10000 when absent
    assert rope_parameters({})["rope_theta"] == 10000.0
    scaled = rope_parameters({"rope_theta": 1e6, "rope_scaling": {"type": "yarn", "factor": 4.0}})
    assert scaled == {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6}


def test_unknown_projector_is_refused(tiny_checkpoint):
    info = validate_checkpoint(tiny_checkpoint)
    with pytest.raises(ConfigTranslationError, match="linear"):
        translate_config({**info.config, "mm_projector_type": "linear"}, info.image_token_id, "qwen2")


def test_loaded_weights_are_the_checkpoint_tensors_under_native_names(tiny_checkpoint):
    loaded = load_model(tiny_checkpoint)
    params = dict(loaded.model.named_parameters())
    pairs = {
        "model.embed_tokens.weight": "model.language_model.embed_tokens.weight",
        "model.layers.1.self_attn.q_proj.bias": "model.language_model.layers.1.self_attn.q_proj.bias",
        "model.norm.weight": "model.language_model.norm.weight",
        "model.vision_encoder.embeddings.patch_embedding.weight": "model.vision_model.embeddings.patch_embedding.weight",
        "model.vision_encoder.encoder.layers.1.mlp.fc2.weight": "model.vision_model.encoder.layers.1.mlp.fc2.weight",
        "model.mm_projector.readout.2.weight": "model.projector.readout.2.weight",
        "lm_head.weight": "lm_head.weight",
    }
    info = loaded.info
    for hulu, native in pairs.items():
        with safe_open(str(tiny_checkpoint / info.tensors[hulu].shard), "pt") as shard:
            stored = shard.get_tensor(hulu)
        assert torch.equal(params[native].detach().to(stored.dtype), stored), hulu
    # rope_theta really reached the decoder: inverse frequencies of base 1e6, not 10000
    head_dim = 64 // 4
    expected = 1.0 / (1e6 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    torch.testing.assert_close(loaded.model.model.language_model.rotary_emb.inv_freq.float(), expected)


def test_qwen3_checkpoint_loads_with_tied_head_and_qk_norm(tiny_checkpoint_qwen3):
    loaded = load_model(tiny_checkpoint_qwen3)
    model = loaded.model
    assert loaded.report.decoder == "qwen3"
    assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()
    with safe_open(str(tiny_checkpoint_qwen3 / "model-00001-of-00002.safetensors"), "pt") as shard:
        q_norm = shard.get_tensor("model.layers.0.self_attn.q_norm.weight")
    assert torch.equal(
        model.model.language_model.layers[0].self_attn.q_norm.weight.detach().to(q_norm.dtype), q_norm
    )


def test_report_on_a_machine_without_gpu(tiny_checkpoint):
    loaded = load_model(tiny_checkpoint)
    report = loaded.report
    assert report.device == "cpu" and report.slow_mode and "slow mode" in report.reason
    assert report.dtype == "float32" and report.quantization == "none"
    assert report.checksum == "verified 9 files"
    param_bytes = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    assert param_bytes <= report.memory_bytes < param_bytes + 64 * 1024
    assert loaded.processor_config["patch_size"] == 14 and loaded.chat_template
    assert "SLOW MODE" in report.summary()


def test_loading_is_offline_and_never_runs_code_from_the_folder(tiny_checkpoint, tmp_path, monkeypatch):
    folder = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ck"))
    marker = tmp_path / "remote-code-ran"
    payload = f"open({str(marker)!r}, 'w').write('x')\n"
    for name in (
        "configuration_hulumed_qwen2.py",
        "modeling_hulumed_qwen2.py",
        "processing_hulumed.py",
        "tokenization_hulumed.py",
    ):
        (folder / name).write_text(payload)
    # point the Auto* classes at that code as the released checkpoints do, so anything that
    # honoured remote code (trust_remote_code=True anywhere) would run the payload
    for file, auto_map in (
        (
            "config.json",
            {
                "AutoConfig": "configuration_hulumed_qwen2.HulumedQwen2Config",
                "AutoModelForCausalLM": "modeling_hulumed_qwen2.HulumedQwen2ForCausalLM",
            },
        ),
        (
            "tokenizer_config.json",
            {
                "AutoTokenizer": ["tokenization_hulumed.HulumedTokenizer", None],
                "AutoProcessor": "processing_hulumed.HulumedProcessor",
            },
        ),
    ):
        payload_json = json.loads((folder / file).read_text())
        payload_json["auto_map"] = auto_map
        (folder / file).write_text(json.dumps(payload_json))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    attempts: list[object] = []

    def no_network(self, address):
        attempts.append(address)
        raise OSError("network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: no_network(None, a[0] if a else None))
    loaded = load_model(folder, check_sums=False)
    assert loaded.report.decoder == "qwen2"
    assert attempts == []  # not even a try
    assert not marker.exists()
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_explicit_cuda_without_gpu_is_a_clear_error(tiny_checkpoint):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceUnavailable, match="CUDA is not available"):  # a ValueError: bad input
        load_model(tiny_checkpoint, device="cuda")


def _seven_b_shaped_info() -> CheckpointInfo:
    """CheckpointInfo with the tensor shapes of Hulu-Med-7B (Qwen2.5-7B + SigLIP-so400m)."""
    tensors: dict[str, TensorEntry] = {}

    def add(name: str, *shape: int) -> None:
        count = 1
        for dim in shape:
            count *= dim
        tensors[name] = TensorEntry("x", "BF16", shape, count * 2)

    add("model.embed_tokens.weight", 152064, 3584)
    add("lm_head.weight", 152064, 3584)
    add("model.norm.weight", 3584)
    for i in range(28):
        p = f"model.layers.{i}."
        add(p + "self_attn.q_proj.weight", 3584, 3584), add(p + "self_attn.q_proj.bias", 3584)
        add(p + "self_attn.k_proj.weight", 512, 3584), add(p + "self_attn.k_proj.bias", 512)
        add(p + "self_attn.v_proj.weight", 512, 3584), add(p + "self_attn.v_proj.bias", 512)
        add(p + "self_attn.o_proj.weight", 3584, 3584)
        add(p + "mlp.gate_proj.weight", 18944, 3584), add(p + "mlp.up_proj.weight", 18944, 3584)
        add(p + "mlp.down_proj.weight", 3584, 18944)
        add(p + "input_layernorm.weight", 3584), add(p + "post_attention_layernorm.weight", 3584)
    add("model.vision_encoder.all", 412_000_000)
    (
        add("model.mm_projector.readout.0.weight", 3584, 1152),
        add("model.mm_projector.readout.2.weight", 3584, 3584),
    )
    config = {
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "hidden_size": 3584,
        "num_hidden_layers": 28,
        "intermediate_size": 18944,
        "vision_encoder_config": {"intermediate_size": 4304},
    }
    return CheckpointInfo(Path("/x"), "hulumed_qwen2", "qwen2", config, tensors, 151665, {}, None, "")


def test_memory_estimates_for_the_7b_shape():
    info = _seven_b_shaped_info()
    bf16 = estimated_weight_bytes(info, "none")
    nf4 = estimated_weight_bytes(info, "nf4")
    int8 = estimated_weight_bytes(info, "int8")
    assert 15.9e9 < bf16 < 16.2e9  # the real 7B index says 16,089,489,888 bytes
    # decoder linears (6.5 B weights) at ~4.2 bit = 3.5 GB; embeddings, head, vision stay bf16 (3.0 GB)
    assert 6.2e9 < nf4 < 6.7e9
    assert nf4 < int8 < bf16
    kv_16k = 2 * 28 * 4 * 128 * 2 * 16384
    assert kv_16k == 939_524_096  # 56 KiB per token
    # the engine keeps two conversations' caches beside the running one: all three are reserved
    assert runtime_reserve_bytes(info) > KV_CACHES_KEPT * kv_16k
    stored = inspect.signature(Engine).parameters["max_conversations"].default
    assert KV_CACHES_KEPT == stored + 1


def test_automatic_gpu_choice_follows_free_vram_for_the_7b_shape():
    needs = gpu_needs(_seven_b_shaped_info())
    # 15.0 GiB weights + 3 x 0.9 GiB KV at 16k tokens + 0.4 GiB for one 16k-patch ViT pass + 1 GiB margin
    assert 19 * 2**30 < needs["none"] < 20 * 2**30
    assert 9.5 * 2**30 < needs["nf4"] < 10.5 * 2**30
    assert auto_gpu_quantization(needs, 24 * 2**30) == "none"  # an idle RTX 4090
    assert auto_gpu_quantization(needs, 14 * 2**30) == "nf4"  # the viewer holds a few GiB of a 16 GiB card
    assert auto_gpu_quantization(needs, 6 * 2**30) is None  # -> CPU slow mode


def test_cpu_plan_without_gpu(tiny_checkpoint):
    info = validate_checkpoint(tiny_checkpoint, check_sums=False)
    plan = plan_device(info, device="cpu", quantization="auto")
    assert (
        plan.device == "cpu"
        and plan.quantization == "none"
        and plan.slow_mode
        and plan.dtype == torch.float32
    )
    assert plan_device(info, device="cpu", quantization="nf4").quantization == "nf4"
    with pytest.raises(ValueError, match="quantization"):
        plan_device(info, quantization="gptq")
