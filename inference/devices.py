"""Choose where the model runs and how it is stored, from the memory free right now.

The viewer shares the GPU, so the plan looks at *free* VRAM (``cudaMemGetInfo``), not the card's
size. Automatic choice on CUDA: bf16 everywhere when weights + KV cache + activations for a full
16k-token prompt fit, else a 4-bit decoder, else the CPU. The 4-bit decoder is torchao int4 (decoded
through a static KV cache with torch.compile) where torchao is installed and the GPU has the
tinygemm kernel (compute capability >= 8.0), else bitsandbytes NF4. int8 is only used when asked
for: bitsandbytes' LLM.int8 decodes markedly slower than NF4 or bf16. Without a GPU the model runs on
the CPU ("slow mode") through the same code path, in fp32 when RAM allows (CPUs without bf16
units are slower in bf16), else bf16.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil
import torch

from inference.checkpoint import CheckpointInfo
from inference.quantization import QUANTIZATIONS, estimated_weight_bytes

DEFAULT_CONTEXT_TOKENS = 16384
PREFILL_CHUNK = 2048  # prompt tokens per decoder pass (the engine prefills in chunks)
VISION_CHUNK_PATCHES = 16384  # vision-tower patches per pass (the engine encodes whole frames in chunks)
# Capacities (tokens) of the fixed-size KV buffers the int4 path decodes in (inference.static_decode):
# a short one for 2D questions, a long one for a full 3D prompt plus its answer.
STATIC_CACHE_TOKENS = (4096, DEFAULT_CONTEXT_TOKENS + 2048)
# The engine keeps the KV cache of this many recent conversations (follow-ups skip the images'
# prefill) beside the running request's own: the memory plan reserves room for all of them.
MAX_STORED_CONVERSATIONS = 2
KV_CACHES_KEPT = MAX_STORED_CONVERSATIONS + 1
_MARGIN_BYTES = 1 << 30  # CUDA context, allocator fragmentation, vision encoder activations
SLOW_MODE_NOTICE = (
    "No usable GPU: Hulu-Med runs on the CPU in slow mode (minutes per answer for the 7B "
    "model). Results are the same, only slower."
)
CPU_QUANTIZED_NOTICE = (
    "{kind} requested without a GPU: it runs on the CPU through bitsandbytes' CPU kernels, "
    "many times slower than unquantized fp32 (--quantization none)"
)


class DeviceUnavailable(ValueError):
    """The device asked for does not exist here (e.g. ``cuda`` without CUDA): bad input, one line."""


@dataclass(frozen=True)
class DevicePlan:
    """Where and how to load: ``device`` (``cuda:N``/``cpu``), weight ``dtype``, ``quantization``."""

    device: str
    dtype: torch.dtype
    quantization: str
    slow_mode: bool
    reason: str
    free_bytes: int | None  # free VRAM (CUDA) or available RAM (CPU) when planned
    needed_bytes: int  # estimated weights + runtime reserve for the chosen variant


def kv_bytes_per_token(info: CheckpointInfo, dtype_bytes: int = 2) -> int:
    """Keys + values of one token over all decoder layers (7B: 56 KiB in bf16)."""
    cfg = info.config
    heads = int(cfg["num_attention_heads"])
    head_dim = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads)
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    return 2 * int(cfg["num_hidden_layers"]) * kv_heads * head_dim * dtype_bytes


def runtime_reserve_bytes(info: CheckpointInfo, context_tokens: int = DEFAULT_CONTEXT_TOKENS) -> int:
    """Every KV cache the engine may hold at ``context_tokens`` each (``KV_CACHES_KEPT``: the stored
    conversations plus the running request), the larger of one vision-tower pass's and one prefill
    chunk's MLP activations, plus a fixed margin."""
    cfg = info.config
    kv_cache = kv_bytes_per_token(info) * context_tokens
    llm_chunk = 3 * min(context_tokens, PREFILL_CHUNK) * int(cfg["intermediate_size"]) * 2
    vision_intermediate = int((cfg.get("vision_encoder_config") or {}).get("intermediate_size", 4304))
    vision = 3 * min(4 * context_tokens, VISION_CHUNK_PATCHES) * vision_intermediate * 2
    return KV_CACHES_KEPT * kv_cache + max(llm_chunk, vision) + _MARGIN_BYTES


def gpu_needs(info: CheckpointInfo, context_tokens: int = DEFAULT_CONTEXT_TOKENS) -> dict[str, int]:
    """Estimated VRAM per quantization kind: weights (bf16 where unquantized) + runtime reserve
    (+ the static decode buffers for ``int4``)."""
    reserve = runtime_reserve_bytes(info, context_tokens)
    static = kv_bytes_per_token(info) * sum(STATIC_CACHE_TOKENS)
    return {
        kind: estimated_weight_bytes(info, kind) + reserve + (static if kind == "int4" else 0)
        for kind in QUANTIZATIONS
    }


def auto_gpu_quantization(needs: dict[str, int], free_bytes: int, four_bit: str = "nf4") -> str | None:
    """bf16 everywhere if it fits, else the ``four_bit`` decoder (``int4`` or ``nf4``), else None
    (the GPU cannot hold it)."""
    for kind in ("none", four_bit):
        if needs[kind] <= free_bytes:
            return kind
    return None


def four_bit_kind(device: str) -> str:
    """The 4-bit kind ``auto`` picks on ``device``: NF4 (bitsandbytes), the path measured so far.
    torchao ``int4`` is chosen by name until ``bench/gpu_check.sh`` has shown it faster on a GPU."""
    return "nf4"


def cuda_free_bytes(device: str = "cuda:0") -> int | None:
    """Free memory on a CUDA device, or None without CUDA."""
    if not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


def normalise_device(device: str) -> str:
    """``cuda:0``/``cuda:N``/``cpu`` for a requested device; DeviceUnavailable or ValueError when bad."""
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailable(
            f"device {device!r} requested but CUDA is not available (no GPU or CPU-only torch); "
            "choose cpu or auto"
        )
    if device != "cpu" and not device.startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {device!r}")
    return "cuda:0" if device == "cuda" else device


def _cpu_plan(info: CheckpointInfo, quantization: str, reserve: int, why: str) -> DevicePlan:
    available = int(psutil.virtual_memory().available)
    kind = "none" if quantization == "auto" else quantization
    fp32_need = estimated_weight_bytes(info, kind, bytes_per_unquantized=4) + reserve
    dtype = torch.float32 if fp32_need < available else torch.bfloat16
    needed = estimated_weight_bytes(info, kind, bytes_per_unquantized=dtype.itemsize) + reserve
    if kind != "none":
        why += f"; {CPU_QUANTIZED_NOTICE.format(kind=kind)}"
    return DevicePlan("cpu", dtype, kind, True, f"{why}; {SLOW_MODE_NOTICE}", available, needed)


def plan_device(
    info: CheckpointInfo,
    device: str = "auto",
    quantization: str = "auto",
    context_tokens: int = DEFAULT_CONTEXT_TOKENS,
) -> DevicePlan:
    """Pick device, dtype and quantization (``auto`` or an explicit override for each)."""
    if quantization != "auto" and quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be auto or one of {QUANTIZATIONS}, not {quantization!r}")
    requested = device
    device = normalise_device(device)
    reserve = runtime_reserve_bytes(info, context_tokens)
    if device == "cpu":
        why = "CPU requested" if requested == "cpu" else "no CUDA device"
        return _cpu_plan(info, quantization, reserve, why)

    free = cuda_free_bytes(device) or 0
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    needs = gpu_needs(info, context_tokens)
    if quantization != "auto":
        fits = needs[quantization] <= free
        note = "fits" if fits else "may NOT fit"
        return DevicePlan(
            device,
            dtype,
            quantization,
            False,
            f"{quantization} requested; needs ~{needs[quantization] / 2**30:.1f} GiB, "
            f"{free / 2**30:.1f} GiB free ({note})",
            free,
            needs[quantization],
        )
    four_bit = four_bit_kind(device)
    kind = auto_gpu_quantization(needs, free, four_bit)
    if kind is not None:
        label = {
            "none": "bf16 everywhere",
            "nf4": "NF4 decoder, bf16 vision/projector",
            "int4": "int4 decoder (torchao, compiled static-cache decode), bf16 vision/projector",
        }[kind]
        return DevicePlan(
            device,
            dtype,
            kind,
            False,
            f"{label}: needs ~{needs[kind] / 2**30:.1f} GiB of {free / 2**30:.1f} GiB free VRAM",
            free,
            needs[kind],
        )
    if requested == "auto":
        return _cpu_plan(
            info,
            "none",
            reserve,
            f"only {free / 2**30:.1f} GiB VRAM free, {four_bit} needs ~{needs[four_bit] / 2**30:.1f} GiB",
        )
    return DevicePlan(
        device,
        dtype,
        four_bit,
        False,
        f"{device} requested with only {free / 2**30:.1f} GiB free; "
        f"{four_bit} needs ~{needs[four_bit] / 2**30:.1f} GiB (may NOT fit)",
        free,
        needs[four_bit],
    )
