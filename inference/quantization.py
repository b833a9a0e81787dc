"""Weight quantization for the decoder: bitsandbytes NF4 (double quant) or LLM.int8, or torchao
int4 weight-only (``int4``, :mod:`inference.int4_weights`; decoded through a static KV cache).

Only the decoder's linear layers are quantized. The vision encoder, the projector and ``lm_head``
stay in bf16: they are a small share of the bytes but sensitive (the reference quantizes
everything, which costs image understanding for little memory).
"""

from __future__ import annotations

import re

import torch

import inference.offline  # noqa: F401  (hub off before transformers is imported)

# isort: split
from transformers import BitsAndBytesConfig

from inference.checkpoint import CheckpointInfo

QUANTIZATIONS = ("none", "nf4", "int8", "int4")
BITSANDBYTES_KINDS = ("nf4", "int8")
# Native module names that bitsandbytes must leave alone (prefix match at a module boundary).
SKIP_MODULES = ["model.vision_model", "model.projector", "lm_head"]
_DECODER_LINEAR = re.compile(
    r"^model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$"
)
# Bytes per weight after quantization, including bitsandbytes' per-block scales.
_NF4_BYTES_PER_WEIGHT = 0.5 + 4 / 64 / 4 + 4 / 256 / 64  # 4 bit + double-quantized absmax
_INT8_BYTES_PER_WEIGHT = 1.0 + 4 / 4096  # int8 + one fp32 scale per row (rows >= 3584 wide)
_INT4_BYTES_PER_WEIGHT = 0.5 + 4 / 128  # 4 bit + bf16 scale and zero point per group of 128
_INT4_K_MULTIPLE = 1024  # torchao pads the input width for the tinygemm layout


def bitsandbytes_config(kind: str, compute_dtype: torch.dtype = torch.bfloat16) -> BitsAndBytesConfig | None:
    """The transformers quantization config for ``kind`` (``none`` and torchao's ``int4`` give None)."""
    if kind in ("none", "int4"):
        return None
    if kind == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
            llm_int8_skip_modules=SKIP_MODULES,
        )
    if kind == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=SKIP_MODULES)
    raise ValueError(f"quantization must be one of {QUANTIZATIONS}, not {kind!r}")


def is_quantized_name(hulu_name: str) -> bool:
    """Whether a Hulu-Med checkpoint tensor is a decoder linear weight (the quantized ones)."""
    return bool(_DECODER_LINEAR.match(hulu_name))


def estimated_weight_bytes(info: CheckpointInfo, kind: str, bytes_per_unquantized: int = 2) -> int:
    """Resident weight bytes once loaded with quantization ``kind`` (others at ``bytes_per_unquantized``)."""
    per_weight = {
        "none": float(bytes_per_unquantized),
        "nf4": _NF4_BYTES_PER_WEIGHT,
        "int8": _INT8_BYTES_PER_WEIGHT,
        "int4": _INT4_BYTES_PER_WEIGHT,
    }[kind]
    total = 0.0
    for name, tensor in info.tensors.items():
        count = 1
        for dim in tensor.shape:
            count *= dim
        if not is_quantized_name(name):
            total += count * bytes_per_unquantized
            continue
        if kind == "int4":  # padded input width
            width = tensor.shape[-1]
            count = count // width * -(-width // _INT4_K_MULTIPLE) * _INT4_K_MULTIPLE
        total += count * per_weight
    return int(total)


def quantized_linear_count(model: torch.nn.Module) -> dict[str, int]:
    """How many linear layers of each kind the loaded model holds (for reports and tests)."""
    counts: dict[str, int] = {}
    for module in model.modules():
        name = type(module).__name__
        if name in ("Linear4bit", "Linear8bitLt", "Linear"):
            counts[name] = counts.get(name, 0) + 1
    return counts


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor really occupies; a torchao tensor subclass counts its inner (packed) tensors."""
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is None:
        return tensor.numel() * tensor.element_size()
    names, _context = flatten()
    inner = (getattr(tensor, name) for name in names)
    return sum(tensor_bytes(t) for t in inner if t is not None)


def module_bytes(module: torch.nn.Module) -> int:
    """Resident bytes of a module's parameters and buffers (quantized ones at their packed size)."""
    return sum(tensor_bytes(t) for t in [*module.parameters(), *module.buffers()])
