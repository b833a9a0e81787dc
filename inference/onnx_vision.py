"""The SigLIP-NaViT vision tower as an ONNX graph run by onnxruntime, and a measured choice of path.

Hulu-Med's encoder attends within each frame only (block-diagonal attention). The traced graph
therefore takes a *batch of equally sized frames* ``pixels [frames, patches, 3*14*14]`` and the
rotary tables ``cos, sin [patches, head_dim]``; it needs no attention mask and no index tensors, and
both axes are dynamic. Everything data-dependent stays in torch outside the graph: splitting the
request into items, the 2D rotary positions (row/column per patch in merge-block order), and
the per-item bilinear downsampling (``merge_size``) after the encoder. The projector runs in torch.

``choose_vision_path`` times the torch encoder and the ONNX one on a sample and returns the ONNX
runner only when it is faster (and equal within tolerance); the engine accepts it as
``Engine(loaded, vision_encoder=runner)``.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inference.inputs import ModelInputs

log = logging.getLogger(__name__)
OPSET = 17
# Accepted max |ORT - torch| relative to the output's magnitude: fp32 towers agree to ~1e-6; a bf16
# resident tower differs from the fp32 graph by bf16 rounding.
PARITY_TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 5e-2, torch.float16: 2e-2}


class FrameBatchEncoder(nn.Module):
    """The encoder layers + post-LayerNorm on ``[frames, patches, 588]``, sharing the model's weights."""

    def __init__(self, vision_model: nn.Module) -> None:
        super().__init__()
        self.vision = vision_model
        config = vision_model.config
        self.channels, self.patch = config.num_channels, config.patch_size
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads

    def _attention(
        self, attn: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        frames, patches, width = x.shape
        shape = (frames, patches, self.heads, self.head_dim)
        q, k, v = attn.q_proj(x).view(shape), attn.k_proj(x).view(shape), attn.v_proj(x).view(shape)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [patches, 1, head_dim]
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [frames, heads, patches, hd]
        weights = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * attn.scaling, dim=-1)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(frames, patches, width)
        return attn.out_proj(out)

    def forward(self, pixels: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        frames, patches, _ = pixels.shape
        flat = pixels.reshape(frames * patches, self.channels, self.patch, self.patch)
        x = self.vision.embeddings.patch_embedding(flat).reshape(frames, patches, -1)
        for layer in self.vision.encoder.layers:
            x = x + self._attention(layer.self_attn, layer.layer_norm1(x), cos, sin)
            x = x + layer.mlp(layer.layer_norm2(x))
        return self.vision.post_layernorm(x)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _frame_rotary(vision_model: nn.Module, h: int, w: int, merge: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin ``[h*w, head_dim]`` for one frame, patches in merge-block order (as the model orders them).

    Axial 2D RoPE from the tower's own ``inv_freq`` (head_dim/4 frequencies): row angles then column
    angles, repeated for both halves of the head. Computed here rather than through the rotary
    module, whose call signature changed several times within transformers 5.x.
    """
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    blocks = (h // merge, merge, w // merge, merge)
    rows, cols = (grid.reshape(blocks).transpose(1, 2).flatten() for grid in (rows, cols))
    inv_freq = vision_model.rotary_pos_emb.inv_freq.detach().float().cpu()
    angles = torch.cat([rows[:, None] * inv_freq, cols[:, None] * inv_freq], dim=-1)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def _items(inputs: ModelInputs) -> list[tuple[int, int, int, int, torch.Tensor]]:
    """``(t, h, w, merge, pixels [t, h*w, 588])`` per visual item."""
    out, start = [], 0
    for (t, h, w), merge in zip(inputs.image_grid_thw.tolist(), inputs.image_merge_sizes.tolist()):
        count = t * h * w
        out.append((t, h, w, merge, inputs.pixel_values[start : start + count].reshape(t, h * w, -1)))
        start += count
    return out


def export_vision_encoder(vision_model: nn.Module, path: Path | str) -> Path:
    """Write the frame-batch encoder as ONNX (fp32, dynamic frames/patches); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A float32 CPU copy: the resident tower (bf16, maybe on the GPU) must stay as it is.
    encoder = FrameBatchEncoder(copy.deepcopy(vision_model).float().cpu()).eval()
    cos, sin = _frame_rotary(vision_model, 4, 4, 1)
    sample = torch.zeros((2, 16, encoder.channels * encoder.patch * encoder.patch))
    tmp = path.with_suffix(".onnx.tmp")
    # The TorchScript exporter traces this plain-tensor module fine; the torch.export-based one needs
    # the extra onnxscript package.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            encoder,
            (sample, cos, sin),
            str(tmp),
            dynamo=False,
            opset_version=OPSET,
            input_names=["pixels", "cos", "sin"],
            output_names=["hidden"],
            dynamic_axes={
                "pixels": {0: "frames", 1: "patches"},
                "cos": {0: "patches"},
                "sin": {0: "patches"},
                "hidden": {0: "frames", 1: "patches"},
            },
        )
    tmp.replace(path)
    return path


def available_providers() -> list[str]:
    """onnxruntime providers to use: CUDA first when the runtime really offers it."""
    import onnxruntime as ort

    providers = ort.get_available_providers()
    wanted = (
        ["CUDAExecutionProvider"]
        if torch.cuda.is_available() and "CUDAExecutionProvider" in providers
        else []
    )
    return [*wanted, "CPUExecutionProvider"]


class OnnxVisionEncoder:
    """Runs the exported encoder; ``__call__(inputs)`` returns what ``vision_model`` would (pre-projector)."""

    def __init__(
        self, onnx_path: Path | str, vision_model: nn.Module, providers: list[str] | None = None
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(onnx_path), options, providers=providers or available_providers()
        )
        self.providers = self.session.get_providers()
        self.vision = vision_model

    def __call__(self, inputs: ModelInputs) -> torch.Tensor:
        hidden = []
        for t, h, w, merge, pixels in _items(inputs):
            cos, sin = _frame_rotary(self.vision, h, w, merge)
            (out,) = self.session.run(
                None, {"pixels": pixels.float().cpu().numpy(), "cos": cos.numpy(), "sin": sin.numpy()}
            )
            hidden.append(torch.from_numpy(np.ascontiguousarray(out)).reshape(t * h * w, -1))
        grid = inputs.image_grid_thw
        return self.vision.pixel_unshuffle(torch.cat(hidden), grid, inputs.image_merge_sizes)


@dataclass(frozen=True)
class VisionPathChoice:
    """Measured seconds per call for both paths and the chosen one."""

    torch_seconds: float
    onnx_seconds: float | None
    max_abs_difference: float | None
    chosen: str  # "torch" or "onnx"
    providers: tuple[str, ...] = ()


def torch_vision_forward(vision_model: nn.Module, inputs: ModelInputs) -> torch.Tensor:
    """The native encoder's output (pre-projector) for ``inputs``."""
    device = next(vision_model.parameters()).device
    dtype = next(vision_model.parameters()).dtype
    out = vision_model(
        pixel_values=inputs.pixel_values.to(device, dtype),
        grid_thw=inputs.image_grid_thw.to(device),
        merge_sizes=inputs.image_merge_sizes.to(device),
        return_dict=True,
    )
    return out.last_hidden_state


def _best_of(fn: Any, repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return best, result


def choose_vision_path(
    vision_model: nn.Module, sample: ModelInputs, onnx_path: Path | str, repeats: int = 3
) -> tuple[OnnxVisionEncoder | None, VisionPathChoice]:
    """Export (if needed), time both paths on ``sample`` and return the ONNX runner only if it wins."""
    with torch.inference_mode():
        torch_seconds, reference = _best_of(lambda: torch_vision_forward(vision_model, sample), repeats)
    try:
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            export_vision_encoder(vision_model, onnx_path)
        runner = OnnxVisionEncoder(onnx_path, vision_model)
        with torch.inference_mode():
            onnx_seconds, output = _best_of(lambda: runner(sample), repeats)
    except Exception as exc:  # noqa: BLE001  (ONNX is an optimisation: any failure keeps the torch path)
        log.warning("ONNX vision encoder unavailable (%s: %s); using torch", type(exc).__name__, exc)
        return None, VisionPathChoice(torch_seconds, None, None, "torch")
    difference = float((output.float() - reference.float().cpu()).abs().max())
    tolerance = PARITY_TOLERANCE.get(reference.dtype, 5e-2) * max(1.0, float(reference.abs().max()))
    faster = onnx_seconds < torch_seconds and difference <= tolerance
    choice = VisionPathChoice(
        torch_seconds, onnx_seconds, difference, "onnx" if faster else "torch", tuple(runner.providers)
    )
    log.info(
        "vision encoder: torch %.3f s, onnx %.3f s (max diff %.2g) -> %s",
        torch_seconds,
        onnx_seconds,
        difference,
        choice.chosen,
    )
    return (runner if faster else None), choice


def sample_image_inputs(patches_per_side: int = 37, seed: int = 0) -> ModelInputs:
    """A representative 2D request (one 518x518 image, 1,369 patches) for timing the two paths."""
    generator = torch.Generator().manual_seed(seed)
    count = patches_per_side * patches_per_side
    pixels = torch.rand((count, 3 * 14 * 14), generator=generator) * 2 - 1
    ids = torch.zeros((1, count), dtype=torch.long)
    return ModelInputs(
        ids,
        torch.ones_like(ids),
        pixels,
        torch.tensor([[1, patches_per_side, patches_per_side]]),
        torch.tensor([1]),
        None,
        count,
        count,
        0,
        1,
    )


def best_vision_encoder(
    loaded: Any, cache_dir: Path | str
) -> tuple[OnnxVisionEncoder | None, VisionPathChoice]:
    """For a loaded model: export once per checkpoint into ``cache_dir``, time, keep the faster path."""
    folder = Path(loaded.info.folder).resolve()
    index = folder / "model.safetensors.index.json"
    stamp = index if index.is_file() else folder / "model.safetensors"
    key = hashlib.sha256(f"{folder}|{stamp.stat().st_mtime_ns}|{stamp.stat().st_size}".encode()).hexdigest()[
        :16
    ]
    return choose_vision_path(
        loaded.model.model.vision_model, sample_image_inputs(), Path(cache_dir) / f"vision-{key}.onnx"
    )
