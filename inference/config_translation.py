"""Translate a Hulu-Med ``config.json`` into transformers' native VideoLLaMA3 config.

Hulu-Med is VideoLLaMA3's architecture with other names. The translation:

- ``text_config``: the Qwen2 (7B/32B) or Qwen3 (4B/14B) decoder fields found at the top level of
  Hulu's config. ``rope_theta`` moves into ``rope_parameters``: transformers 5.x ignores a bare
  ``rope_theta`` and falls back to 10000, which silently ruins a Qwen2.5 model (1e6);
- ``vision_config``: ``vision_encoder_config`` (SigLIP-NaViT, 2D axial RoPE with theta 10000);
- projector: only ``mlp2x_gelu`` exists natively (and in every released checkpoint);
- ``image_token_id`` = ``video_token_id`` = the tokenizer's ``<image>`` id: Hulu has one
  placeholder for images, frames and slices, and the id must come from the checkpoint's tokenizer.

Weight names differ only by prefix; :data:`KEY_MAPPING` renames them while loading.
"""

from __future__ import annotations

from typing import Any

import inference.offline  # noqa: F401  (hub off before transformers is imported)

# isort: split
from transformers import Qwen2Config, Qwen3Config, VideoLlama3Config
from transformers.models.video_llama_3.configuration_video_llama_3 import VideoLlama3VisionConfig

# Hulu-Med checkpoint name (regex) -> native VideoLlama3ForConditionalGeneration name.
KEY_MAPPING = {
    r"^model\.vision_encoder\.": "model.vision_model.",
    r"^model\.mm_projector\.": "model.projector.",
    r"^model\.(embed_tokens|layers|norm)\.": r"model.language_model.\1.",
}

# Defaults of Hulu's HulumedVisionEncoderConfig for fields a config might omit.
_VISION_DEFAULTS = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "num_channels": 3,
    "patch_size": 16,
    "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6,
    "attention_dropout": 0.0,
}
VISION_ROPE_THETA = 10000.0
_TEXT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
    "rms_norm_eps",
    "hidden_act",
    "attention_dropout",
    "initializer_range",
    "use_sliding_window",
    "sliding_window",
    "max_window_layers",
    "tie_word_embeddings",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
)
_QWEN3_FIELDS = ("head_dim", "attention_bias")
# Qwen2Config of transformers 4.x (what the reference code ran with) defaulted rope_theta to 10000.
_LEGACY_ROPE_THETA = 10000.0


class ConfigTranslationError(ValueError):
    """The Hulu-Med config uses something the native model cannot express."""


def rope_parameters(hulu: dict[str, Any]) -> dict[str, Any]:
    """Native ``rope_parameters`` from Hulu's ``rope_theta`` (+ optional legacy ``rope_scaling``)."""
    params: dict[str, Any] = {"rope_type": "default"}
    scaling = hulu.get("rope_scaling")
    if isinstance(scaling, dict):
        params.update(scaling)
        params["rope_type"] = params.pop("type", None) or params.get("rope_type", "default")
    params["rope_theta"] = float(hulu.get("rope_theta", _LEGACY_ROPE_THETA))
    return params


def text_config(hulu: dict[str, Any], decoder: str) -> Qwen2Config | Qwen3Config:
    """The decoder's native config (``decoder``: ``qwen2`` or ``qwen3``)."""
    fields = {k: hulu[k] for k in _TEXT_FIELDS if k in hulu}
    fields["rope_parameters"] = rope_parameters(hulu)
    if decoder == "qwen2":
        return Qwen2Config(**fields)
    if decoder == "qwen3":
        fields.update({k: hulu[k] for k in _QWEN3_FIELDS if k in hulu})
        return Qwen3Config(**fields)
    raise ConfigTranslationError(f"unknown decoder {decoder!r} (expected qwen2 or qwen3)")


def vision_config(hulu: dict[str, Any]) -> VideoLlama3VisionConfig:
    """The SigLIP-NaViT encoder's native config."""
    source = hulu.get("vision_encoder_config") or {}
    fields = {k: source.get(k, default) for k, default in _VISION_DEFAULTS.items()}
    return VideoLlama3VisionConfig(
        rope_parameters={"rope_type": "axial", "rope_theta": VISION_ROPE_THETA}, **fields
    )


def translate_config(hulu: dict[str, Any], image_token_id: int, decoder: str) -> VideoLlama3Config:
    """Native ``VideoLlama3Config`` for a Hulu-Med ``config.json`` dict."""
    projector = hulu.get("mm_projector_type", "mlp2x_gelu")
    if projector != "mlp2x_gelu":
        raise ConfigTranslationError(f"mm_projector_type {projector!r} is not supported (only mlp2x_gelu)")
    text = text_config(hulu, decoder)
    return VideoLlama3Config(
        text_config=text.to_dict(),
        vision_config=vision_config(hulu).to_dict(),
        image_token_id=int(image_token_id),
        video_token_id=int(image_token_id),
        tie_word_embeddings=bool(text.tie_word_embeddings),
    )
