"""A tiny, randomly initialised Hulu-Med checkpoint folder in the real Hulu-Med on-disk format.

The folder looks like a ZJU-AI4H/Hulu-Med-* download shrunk to a few hundred kB:

- ``config.json``: ``model_type`` ``hulumed_qwen2`` (or ``hulumed_qwen3``), the Qwen2/Qwen3 decoder
  fields at top level, ``vision_encoder_config`` (SigLIP-NaViT fields), ``mm_projector_type``
  ``mlp2x_gelu``, ``image_token_index``;
- ``model-0000N-of-00002.safetensors`` + ``model.safetensors.index.json`` with Hulu-Med's weight
  names (``model.vision_encoder.*``, ``model.mm_projector.readout.*``, ``model.embed_tokens``,
  ``model.layers.*``, ``model.norm``, ``lm_head``);
- a byte-level BPE tokenizer (``tokenizer.json`` + ``tokenizer_config.json``, class
  ``Qwen2Tokenizer``) with ChatML tokens and the added ``<image>`` token;
- ``preprocessor_config.json`` (Hulu's image-processor fields), ``chat_template.json``,
  ``generation_config.json`` and ``SHA256SUMS``.

The weights come from transformers' native ``VideoLlama3ForConditionalGeneration`` built from a
hand-written native config (independent of ``inference.config_translation``), renamed to Hulu's
names. ``native_config(folder)`` returns that config so tests can compare the translation with it.

Use from any test package: ``from tests.inference.tiny_checkpoint import write_tiny_checkpoint``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import Qwen2Config, Qwen3Config, VideoLlama3Config, VideoLlama3ForConditionalGeneration
from transformers.models.video_llama_3.configuration_video_llama_3 import VideoLlama3VisionConfig

IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ROPE_THETA = 1_000_000.0  # Qwen2.5's value; transformers' default (10000) would be wrong
VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "patch_size": 14,
}
TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}

# A ChatML template in Hulu-Med's prompt layout: "<image>\n" per image, "<image>,...,<image>\n" per
# video/3D item (optional "Time X.Xs:" per frame), then the text.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{- image_token | default('<image>') + '\\n' -}}"
    "{%- elif item['type'] in ('video', '3d') -%}"
    "{%- for i in range(item['num_frames']) -%}"
    "{%- if 'timestamps' in item -%}{{- 'Time ' + (item['timestamps'][i] | round(1) | string) + 's:' -}}"
    "{%- endif -%}"
    "{{- image_token | default('<image>') + (',' if not loop.last else '\\n') -}}"
    "{%- endfor -%}"
    "{%- elif item['type'] == 'text' -%}{{- item['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

_CORPUS = [
    "Findings: no focal consolidation, pleural effusion or pneumothorax. Heart size is normal.",
    "Impression: no acute cardiopulmonary abnormality. Please describe the CT of the abdomen.",
    "What is the abnormality in this image? Is there a fracture of the left femur? Answer yes or no.",
    "The liver, spleen, pancreas and kidneys are unremarkable. There is a 12 mm nodule in the right lung.",
]

# Native (transformers 5.x VideoLLaMA3) name prefix -> Hulu-Med checkpoint prefix.
_NATIVE_TO_HULU = [
    (re.compile(r"^model\.vision_model\."), "model.vision_encoder."),
    (re.compile(r"^model\.projector\."), "model.mm_projector."),
    (re.compile(r"^model\.language_model\."), "model."),
]


def build_tokenizer() -> Tokenizer:
    """A byte-level BPE (a few hundred tokens) with ChatML specials and ``<image>`` added last."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=360,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer)
    tokenizer.add_special_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)])
    return tokenizer


def _native_config(
    decoder: str,
    vocab_size: int,
    image_token_id: int,
    eos_id: int,
    pad_id: int,
    text_shape: dict = TEXT,
    vision_shape: dict = VISION,
    max_positions: int = 4096,
):
    """The transformers-native config this checkpoint must translate to."""
    common = dict(
        vocab_size=vocab_size,
        max_position_embeddings=max_positions,
        rms_norm_eps=1e-6,
        hidden_act="silu",
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        bos_token_id=None,
        **text_shape,
    )
    if decoder == "qwen2":
        text = Qwen2Config(tie_word_embeddings=False, **common)
    else:
        head_dim = text_shape["hidden_size"] // text_shape["num_attention_heads"]
        text = Qwen3Config(tie_word_embeddings=True, head_dim=head_dim, attention_bias=False, **common)
    vision = VideoLlama3VisionConfig(
        num_channels=3,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
        rope_parameters={"rope_type": "axial", "rope_theta": 10000.0},
        **vision_shape,
    )
    return VideoLlama3Config(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        image_token_id=image_token_id,
        video_token_id=image_token_id,
        tie_word_embeddings=text.tie_word_embeddings,
    )


def _hulu_config(
    decoder: str,
    vocab_size: int,
    image_token_id: int,
    eos_id: int,
    pad_id: int,
    text_shape: dict = TEXT,
    vision_shape: dict = VISION,
    max_positions: int = 4096,
) -> dict:
    """config.json with Hulu-Med's field names (HulumedQwen2Config / Qwen3 variant)."""
    config = {
        "architectures": ["HulumedQwen2ForCausalLM" if decoder == "qwen2" else "HulumedQwen3ForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_hulumed_qwen2.HulumedQwen2Config",
            "AutoModelForCausalLM": "modeling_hulumed_qwen2.HulumedQwen2ForCausalLM",
        },
        "model_type": f"hulumed_{decoder}",
        "vocab_size": vocab_size,
        "max_position_embeddings": max_positions,
        "rope_theta": ROPE_THETA,
        "rms_norm_eps": 1e-6,
        "hidden_act": "silu",
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "use_sliding_window": False,
        "sliding_window": max_positions,
        "max_window_layers": text_shape["num_hidden_layers"],
        "bos_token_id": None,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "torch_dtype": "bfloat16",
        "tie_word_embeddings": decoder == "qwen3",
        "transformers_version": "4.51.2",
        **text_shape,
        "vision_encoder": None,  # the released configs are saved after the tower was built from config
        "vision_encoder_config": {
            "model_type": "hulumed_vision_encoder",
            "num_channels": 3,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": 1e-6,
            "attention_dropout": 0.0,
            **vision_shape,
        },
        "mm_projector_type": "mlp2x_gelu",
        "use_token_compression": True,
        "image_token_index": image_token_id,
    }
    if decoder == "qwen3":
        config.update(
            head_dim=text_shape["hidden_size"] // text_shape["num_attention_heads"], attention_bias=False
        )
    return config


def hulu_weight_name(native_name: str) -> str:
    """Rename one native VideoLLaMA3 parameter to its name in a Hulu-Med checkpoint."""
    for pattern, replacement in _NATIVE_TO_HULU:
        if pattern.match(native_name):
            return pattern.sub(replacement, native_name, count=1)
    return native_name  # lm_head.weight


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def write_sha256sums(folder: Path) -> None:
    """``SHA256SUMS`` in ``sha256sum`` format for every other file of the folder."""
    lines = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name != "SHA256SUMS"):
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n")
    (folder / "SHA256SUMS").write_text("".join(lines), encoding="utf-8")


def _write_auxiliary_files(folder: Path) -> tuple[Tokenizer, int, int, int]:
    """Tokenizer, chat template, preprocessor and generation configs; returns (tokenizer, image, eos, pad ids)."""
    tokenizer = build_tokenizer()
    tokenizer.save(str(folder / "tokenizer.json"))
    image_id = tokenizer.token_to_id(IMAGE_TOKEN)
    eos_id, pad_id = tokenizer.token_to_id("<|im_end|>"), tokenizer.token_to_id("<|endoftext|>")
    added = {
        str(tokenizer.token_to_id(t)): {
            "content": t,
            "special": True,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "single_word": False,
        }
        for t in [*SPECIAL_TOKENS, IMAGE_TOKEN]
    }
    _write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "Qwen2Tokenizer",
            "added_tokens_decoder": added,
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "model_max_length": 4096,
            "split_special_tokens": False,
            "chat_template": CHAT_TEMPLATE,
        },
    )
    _write_json(folder / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    _write_json(
        folder / "preprocessor_config.json",
        {
            "do_convert_rgb": True,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            "image_processor_type": "HulumedImageProcessor",
            "processor_class": "HulumedProcessor",
            "max_tokens": 16384,
            "min_tokens": 16,
            "patch_size": 14,
            "resample": 3,
            "rescale_factor": 1 / 255,
        },
    )
    _write_json(
        folder / "generation_config.json",
        {
            "bos_token_id": None,
            "eos_token_id": [eos_id, pad_id],
            "pad_token_id": pad_id,
            "do_sample": False,
            "transformers_version": "4.51.2",
        },
    )
    return tokenizer, image_id, eos_id, pad_id


def write_tiny_checkpoint(folder: Path | str, decoder: str = "qwen2", seed: int = 0) -> Path:
    """Write a tiny random Hulu-Med checkpoint (``decoder``: ``qwen2`` or ``qwen3``) into ``folder``."""
    if decoder not in ("qwen2", "qwen3"):
        raise ValueError(f"decoder must be qwen2 or qwen3, not {decoder!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    tokenizer, image_id, eos_id, pad_id = _write_auxiliary_files(folder)

    # Real Qwen checkpoints pad the embedding matrix beyond the tokenizer's length.
    vocab_size = ((tokenizer.get_vocab_size() + 63) // 64) * 64
    native = _native_config(decoder, vocab_size, image_id, eos_id, pad_id)
    _write_json(folder / "config.json", _hulu_config(decoder, vocab_size, image_id, eos_id, pad_id))

    torch.manual_seed(seed)
    model = VideoLlama3ForConditionalGeneration(native).to(torch.bfloat16).eval()
    state = {hulu_weight_name(k): v.contiguous() for k, v in model.state_dict().items()}
    if native.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    # Two shards like a real download: language model first, vision tower + projector second.
    names = sorted(state)
    second = [n for n in names if n.startswith(("model.vision_encoder.", "model.mm_projector."))]
    first = [n for n in names if n not in second]
    weight_map, total = {}, 0
    for index, shard_names in enumerate((first, second), start=1):
        shard = f"model-{index:05d}-of-00002.safetensors"
        save_file({n: state[n] for n in shard_names}, str(folder / shard), metadata={"format": "pt"})
        for n in shard_names:
            weight_map[n] = shard
            total += state[n].numel() * state[n].element_size()
    _write_json(
        folder / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map}
    )
    write_sha256sums(folder)
    return folder


def native_config(folder: Path | str) -> VideoLlama3Config:
    """The native config the fixture's weights were created with, rebuilt independently (tests only)."""
    folder = Path(folder)
    hulu = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return _native_config(
        hulu["model_type"].removeprefix("hulumed_"),
        hulu["vocab_size"],
        tokenizer.token_to_id(IMAGE_TOKEN),
        tokenizer.token_to_id("<|im_end|>"),
        tokenizer.token_to_id("<|endoftext|>"),
    )


def write_random_checkpoint(
    folder: Path | str,
    text_shape: dict,
    vision_shape: dict,
    vocab_size: int,
    decoder: str = "qwen2",
    shard_bytes: int = 4 << 30,
    seed: int = 0,
    device: str = "cpu",
) -> Path:
    """A Hulu-Med-format folder of any size with N(0, 0.02) bf16 weights (norm weights 1, biases 0),
    written shard by shard without building the model (benchmarks at the real 7B shape).
    ``device="cuda"`` draws the random numbers on the GPU (16 GB of 7B weights in seconds)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _tokenizer, image_id, eos_id, pad_id = _write_auxiliary_files(folder)
    shape_args = {"text_shape": text_shape, "vision_shape": vision_shape, "max_positions": 32768}
    native = _native_config(decoder, vocab_size, image_id, eos_id, pad_id, **shape_args)
    _write_json(
        folder / "config.json", _hulu_config(decoder, vocab_size, image_id, eos_id, pad_id, **shape_args)
    )
    with torch.device("meta"):
        shapes = {
            hulu_weight_name(k): tuple(v.shape)
            for k, v in VideoLlama3ForConditionalGeneration(native).state_dict().items()
        }
    if native.tie_word_embeddings:
        shapes.pop("lm_head.weight", None)
    shards: list[list[str]] = [[]]
    size = 0
    for name, shape in shapes.items():
        nbytes = 2 * torch.Size(shape).numel()
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    generator = torch.Generator(device=device).manual_seed(seed)
    weight_map, total = {}, 0
    for index, names in enumerate(shards, start=1):
        shard = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for name in names:
            if re.search(r"(norm|layer_norm\d|layernorm)\.weight$", name):
                tensors[name] = torch.ones(shapes[name], dtype=torch.bfloat16)
            elif name.endswith(".bias"):
                tensors[name] = torch.zeros(shapes[name], dtype=torch.bfloat16)
            else:
                drawn = torch.randn(shapes[name], generator=generator, device=device, dtype=torch.bfloat16)
                tensors[name] = (drawn * 0.02).cpu()
            weight_map[name] = shard
            total += 2 * tensors[name].numel()
        save_file(tensors, str(folder / shard), metadata={"format": "pt"})
    _write_json(
        folder / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map}
    )
    return folder
