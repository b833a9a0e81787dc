"""Load a Hulu-Med checkpoint onto transformers' native VideoLLaMA3 classes, offline, no remote code.

``load_model(folder, device='auto', quantization='auto')`` validates the folder
(:mod:`inference.checkpoint`), translates its config (:mod:`inference.config_translation`), picks
device/dtype/quantization from free memory (:mod:`inference.devices`) and loads the safetensors
weights with their names mapped by ``key_mapping``. Python files inside the folder are never
imported (``trust_remote_code`` is never set) and the Hugging Face hub is switched off before
transformers looks at anything, so a checkpoint cannot make the workstation reach the network.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from inference.checkpoint import IMAGE_TOKEN, CheckpointError, CheckpointInfo, validate_checkpoint
from inference.config_translation import KEY_MAPPING, translate_config
from inference.devices import DevicePlan, plan_device
from inference.int4_weights import int4_unavailable_reason, quantize_decoder_int4
from inference.offline import OFFLINE_ENV, enforce_offline
from inference.quantization import bitsandbytes_config, module_bytes

log = logging.getLogger(__name__)
__all__ = ["OFFLINE_ENV", "LoadReport", "LoadedModel", "enforce_offline", "load_model", "load_tokenizer"]


@dataclass(frozen=True)
class LoadReport:
    """What was loaded where, for the status bar and logs (no patient data)."""

    device: str
    dtype: str
    quantization: str
    memory_bytes: int  # model weights resident (parameters + buffers)
    slow_mode: bool
    checksum: str
    reason: str = ""
    free_bytes: int | None = None  # free VRAM (CUDA) or available RAM (CPU) before loading
    decoder: str = ""
    load_seconds: float = 0.0
    warnings: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        """One line: 'cuda:0 bf16 none 16.1 GiB (verified 11 files)'."""
        mode = " SLOW MODE" if self.slow_mode else ""
        return (
            f"{self.device} {self.dtype} quantization={self.quantization} "
            f"{self.memory_bytes / 2**30:.2f} GiB ({self.checksum}){mode}"
        )


@dataclass
class LoadedModel:
    """A resident model with its tokenizer and Hulu-Med preprocessing settings."""

    model: Any  # VideoLlama3ForConditionalGeneration
    tokenizer: Any  # transformers tokenizer
    processor_config: dict[str, Any]
    report: LoadReport
    image_token_id: int
    chat_template: str | None
    info: CheckpointInfo

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def vision_dtype(self) -> torch.dtype:
        """dtype that ``pixel_values`` must have (the vision encoder's weights)."""
        return self.model.model.vision_model.embeddings.patch_embedding.weight.dtype


def load_tokenizer(folder: Path) -> Any:
    """The checkpoint's own tokenizer, from local files only."""
    enforce_offline()
    from transformers import AutoTokenizer

    # Every Hulu-Med variant uses Qwen's byte-level BPE; naming the type keeps transformers from
    # reading config.json (whose hulumed_* model_type it does not know).
    return AutoTokenizer.from_pretrained(
        str(folder), tokenizer_type="qwen2", local_files_only=True, trust_remote_code=False
    )


class _DropInt8CastNotice(logging.Filter):
    """bitsandbytes logs a warning on *every* int8 matmul whose activations are not fp16."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("MatMul8bitLt: inputs will be cast")


def _silence_int8_cast_notice() -> None:
    bnb_logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropInt8CastNotice) for f in bnb_logger.filters):
        bnb_logger.addFilter(_DropInt8CastNotice())


def _load_weights(info: CheckpointInfo, config: Any, plan: DevicePlan) -> Any:
    from transformers import VideoLlama3ForConditionalGeneration

    quantization_config = bitsandbytes_config(plan.quantization, compute_dtype=plan.dtype)
    if plan.quantization == "int8":
        _silence_int8_cast_notice()
    int4 = plan.quantization == "int4"
    if int4 and (why := int4_unavailable_reason(plan.device)):
        raise RuntimeError(f"int4 quantization is not available: {why}; choose nf4")
    kwargs: dict[str, Any] = {
        "config": config,
        "key_mapping": KEY_MAPPING,
        "dtype": plan.dtype,
        "local_files_only": True,
        "use_safetensors": True,
        "output_loading_info": True,
        # int4: weights go to host memory first and are quantized layer by layer on the device
        "device_map": {"": "cpu" if int4 else plan.device},
        # SDPA (flash / memory-efficient kernels on CUDA) in the decoder and the vision tower: long
        # 3D prompts never materialise a tokens x tokens score matrix
        "attn_implementation": "sdpa",
    }
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    model, loading = VideoLlama3ForConditionalGeneration.from_pretrained(str(info.folder), **kwargs)
    problems = {k: sorted(v)[:5] for k, v in loading.items() if v and k != "error_msgs"}
    if problems or loading.get("error_msgs"):
        raise CheckpointError(
            info.folder / "model.safetensors.index.json",
            f"weights do not fit the Hulu-Med architecture {problems or loading['error_msgs']}",
            "use an unmodified Hulu-Med checkpoint",
        )
    if int4:
        count = quantize_decoder_int4(model, plan.device)
        log.info("int4: %d decoder linears quantized with torchao on %s", count, plan.device)
    return model.eval()


def load_model(
    folder: Path | str,
    device: str = "auto",
    quantization: str = "auto",
    check_sums: bool = True,
    hash_cache: Path | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> LoadedModel:
    """Validate and load a Hulu-Med checkpoint; see the module docstring.

    ``device``: auto, cpu, cuda, cuda:N. ``quantization``: auto, none, nf4, int8, int4. ``hash_cache``:
    a JSON file remembering verified SHA-256 sums so unchanged files are not re-hashed each start.
    ``on_phase``: told "checking files" then "loading weights" (for a progress display).
    """
    enforce_offline()
    started = time.perf_counter()
    if on_phase is not None:
        on_phase("checking files")
    info = validate_checkpoint(folder, check_sums=check_sums, hash_cache=hash_cache)
    tokenizer = load_tokenizer(info.folder)
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if image_token_id != info.image_token_id:
        raise CheckpointError(
            info.folder / "tokenizer_config.json",
            f"{IMAGE_TOKEN} is id {image_token_id} for "
            f"transformers but {info.image_token_id} in tokenizer.json",
            "use the tokenizer files shipped with the checkpoint",
        )
    config = translate_config(info.config, image_token_id, info.decoder)
    plan = plan_device(info, device=device, quantization=quantization)
    if plan.slow_mode:
        log.warning("%s", plan.reason)
    if plan.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(plan.device)
    log.info("Hulu-Med: files checked in %.1f s; loading weights", time.perf_counter() - started)
    if on_phase is not None:
        on_phase("loading weights")
    model = _load_weights(info, config, plan)
    gen_path = info.folder / "generation_config.json"
    if gen_path.is_file():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(str(info.folder), local_files_only=True)
    report = LoadReport(
        device=plan.device,
        dtype=str(plan.dtype).removeprefix("torch."),
        quantization=plan.quantization,
        memory_bytes=module_bytes(model),
        slow_mode=plan.slow_mode,
        checksum=info.checksum,
        reason=plan.reason,
        free_bytes=plan.free_bytes,
        decoder=info.decoder,
        load_seconds=time.perf_counter() - started,
        warnings=info.warnings,
    )
    log.info("Hulu-Med loaded: %s in %.1f s", report.summary(), report.load_seconds)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        processor_config=dict(info.preprocessor),
        report=report,
        image_token_id=image_token_id,
        chat_template=info.chat_template,
        info=info,
    )
