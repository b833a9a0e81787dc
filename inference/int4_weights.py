"""torchao int4 weight-only quantization of the decoder's linear layers (the ``int4`` choice).

The gpt-fast recipe: 4-bit weights in groups with a bf16 scale and zero point per group,
dequantized inside the matrix kernel, so a decode step reads ~0.53 bytes per decoder weight. On
CUDA the weights are packed for tinygemm (``torch.ops.aten._weight_int4pack_mm``, part of torch
itself; compute capability >= 8.0, bf16 activations; torchao pads K to a multiple of 1024); on the
CPU torchao packs them for ``_weight_int4pack_mm_for_cpu`` (its "opaque" layout). Both come from
the same groupwise asymmetric quantization (tinygemm qparams); the rest of the model (vision tower,
projector, embeddings, ``lm_head``) stays unquantized, as with bitsandbytes.

On CUDA the checkpoint is first loaded into host memory and each decoder linear is quantized on
the GPU one at a time, so VRAM never holds the bf16 decoder.
"""

from __future__ import annotations

import importlib.util
import logging
import re

import torch

log = logging.getLogger(__name__)
GROUP_SIZES = (128, 64, 32)  # the largest that divides the input width is used (128 in released shapes)
_DECODER_LINEAR = re.compile(
    r"^model\.language_model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)$"
)
# Import-time log lines that say nothing about this machine: torchao names each CUDA-only extension
# it cannot load on a CPU build and says that triton is missing; torch deprecates torchao's Enum
# registration. transformers imports torchao whenever it is installed, so the filters stay on.
_IMPORT_NOISE = {
    "torchao": "Failed to load",
    "torchao.kernel.intmm": "Warning: Detected no triton",
    "torch.utils._pytree": "<enum",
}


class _DropImportNotice(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def _quiet_import_notices() -> None:
    for name, prefix in _IMPORT_NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropImportNotice) for f in logger.filters):
            logger.addFilter(_DropImportNotice(prefix))


_quiet_import_notices()


def torchao_installed() -> bool:
    """Whether the torchao package can be imported (without importing it)."""
    return importlib.util.find_spec("torchao") is not None


def int4_unavailable_reason(device: str) -> str | None:
    """Why the int4 path cannot run on ``device`` (``cpu``/``cuda:N``), or None when it can."""
    if not torchao_installed():
        return "torchao is not installed"
    if device.startswith("cuda"):
        major, minor = torch.cuda.get_device_capability(torch.device(device))
        if major < 8:
            return f"the tinygemm int4 kernel needs compute capability >= 8.0 (this GPU: {major}.{minor})"
    return None


def decoder_linear_names(model: torch.nn.Module) -> list[str]:
    """Module names of the decoder's attention and MLP projections (the layers quantized)."""
    return [name for name, module in model.named_modules() if _DECODER_LINEAR.match(name)]


def _config(weight: torch.Tensor):
    """The torchao config for one weight on its device, or None when its shape cannot be packed."""
    from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
    from torchao.quantization import Int4WeightOnlyConfig

    group = next((g for g in GROUP_SIZES if weight.shape[-1] % g == 0), None)
    if group is None:
        return None
    if weight.device.type == "cuda":
        return Int4WeightOnlyConfig(
            group_size=group, int4_packing_format="tile_packed_to_4d", set_inductor_config=False
        )
    return PrototypeInt4WeightOnlyConfig(group_size=group, set_inductor_config=False)


def quantize_decoder_int4(model: torch.nn.Module, device: str) -> int:
    """Move ``model`` to ``device`` with its decoder linears in torchao int4; returns how many.

    Each linear is moved and quantized on its own, so at most one bf16 weight is on the GPU at a
    time; the rest of the model follows afterwards. Linears whose width cannot be packed stay as
    they are (none in the released shapes).
    """
    from torchao.quantization import quantize_

    target = torch.device(device)
    quantized = 0
    for name in decoder_linear_names(model):
        linear = model.get_submodule(name)
        linear.to(target)
        if target.type == "cuda" and linear.weight.dtype != torch.bfloat16:
            raise ValueError(f"int4 on CUDA needs bf16 weights, not {linear.weight.dtype}")
        config = _config(linear.weight)
        if config is None:
            log.warning(
                "int4: %s %s stays unquantized (width not packable)", name, tuple(linear.weight.shape)
            )
            continue
        quantize_(linear, config)
        quantized += 1
    model.to(target)
    if target.type == "cuda":
        torch.cuda.empty_cache()
    return quantized


def int4_linear_count(model: torch.nn.Module) -> int:
    """How many linear layers hold torchao int4 weights."""
    return sum(
        1
        for module in model.modules()
        if isinstance(module, torch.nn.Linear) and "Int4" in type(module.weight).__name__
    )
