"""``hulu-workstation ask``: ask the local Hulu-Med model about a series or an image, headless.

    hulu-workstation ask --model DIR (--series SERIES | --image FILE) [--mode M --plane P --slices N
        --index I --window W --level L --max-tokens N --visual-tokens N --think] [--dry-run --json] "question"

SERIES is a folder of DICOM files or a Series Instance UID of the local archive (``--archive``).
The answer streams to stdout (thinking-mode reasoning goes to stderr). ``--dry-run`` loads no
weights: only the tokenizer and chat template are read, and the token counts are printed.
AI text is a draft: nothing is stored or sent by this command.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.assistant.ai_inputs import AI_MODES, AIView, series_files, visual_item_for
from inference.checkpoint import CheckpointError
from inference.frames import DEFAULT_VIDEO_FPS, DEFAULT_VOLUME_SLICES, image_item
from inference.preprocess import VisualItem
from inference.preprocess_budget import MAX_TOKENS, MIN_TOKENS
from inference.prompting import Conversation, ReasoningStream, split_reasoning
from inference.token_reduction import REDUCTION_MODES
from viewer.loader import load_volume

if TYPE_CHECKING:  # torch loads with inference.inputs: keep it out of every other command's start-up
    from inference.inputs import ModelInputs

log = logging.getLogger(__name__)
PLANES = ("axial", "coronal", "sagittal", "native")
EXIT_BAD_INPUT = 2
UNTIMED_CINE_WARNING = "the cine has no frame timing: frames are sampled evenly and labelled by number"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ask",
        help="ask the local Hulu-Med model about a series or image",
        description="Ask the local Hulu-Med model a question about a series or an image. "
        "The answer is an AI draft for a radiologist to review.",
    )
    p.add_argument("question", help="the question (in quotes)")
    p.add_argument("--model", required=True, type=Path, help="Hulu-Med checkpoint folder")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--series", help="folder of DICOM files, or a Series Instance UID in the archive")
    source.add_argument("--image", type=Path, help="one image file (DICOM, PNG or JPEG)")
    p.add_argument(
        "--archive",
        type=Path,
        default=None,
        help="archive folder for --series UIDs (default: the workstation's archive)",
    )
    p.add_argument(
        "--mode",
        choices=AI_MODES,
        default="auto",
        help="2d: one slice; 3d: N slices through the stack; video: cine at --fps (default: auto)",
    )
    p.add_argument(
        "--plane", choices=PLANES, help="reslice plane (default: axial, or native without geometry)"
    )
    p.add_argument(
        "--slices", type=int, default=DEFAULT_VOLUME_SLICES, help="3D: slices sampled (default 64)"
    )
    p.add_argument("--index", type=int, help="2D: slice/frame index in the plane (default: middle)")
    p.add_argument("--window", type=float, help="window width (default: the series' opening window)")
    p.add_argument("--level", type=float, help="window level/centre")
    p.add_argument("--fps", type=float, default=DEFAULT_VIDEO_FPS, help="video: frames per second sampled")
    p.add_argument(
        "--visual-tokens",
        type=int,
        default=None,
        help=f"visual token budget shared by all frames (default: the checkpoint's, {MAX_TOKENS})",
    )
    p.add_argument(
        "--token-reduction",
        choices=REDUCTION_MODES,
        default="off",
        help="drop video/3D tokens that barely change between frames: intended = speed mode; "
        "reference = the released code's mask bit for bit, its bug included (research only; "
        "see inference/README.md); default off",
    )
    p.add_argument("--think", action="store_true", help="thinking mode: step-by-step reasoning, boxed answer")
    p.add_argument("--system-prompt", default=None, help="system prompt (default: none, as the reference)")
    p.add_argument(
        "--max-tokens",
        "--max-new-tokens",
        dest="max_new_tokens",
        type=int,
        default=1024,
        help="answer length limit in tokens (default 1024)",
    )
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument(
        "--quantization",
        default="auto",
        help="auto, none, nf4, int8 (bitsandbytes) or int4 (torchao, compiled static-cache decode)",
    )
    p.add_argument("--no-verify", action="store_true", help="skip the SHA256SUMS check of the weights")
    p.add_argument("--dry-run", action="store_true", help="load no weights; report the input token counts")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")
    p.set_defaults(func=run_ask)


def _view(args: argparse.Namespace) -> AIView:
    for name in ("slices", "visual_tokens", "max_new_tokens"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
    if args.fps <= 0:
        raise ValueError("--fps must be > 0")
    if args.temperature < 0:
        raise ValueError("--temperature must be >= 0 (0 = greedy)")
    return AIView(
        mode=args.mode,
        plane=args.plane,
        index=args.index,
        slices=args.slices,
        window=args.window,
        level=args.level,
        fps=args.fps,
    )


def _image_file_item(path: Path, view: AIView) -> tuple[VisualItem, list[str]]:
    """A DICOM file through the viewer's loader, any other picture through Pillow."""
    if not path.is_file():
        raise ValueError(f"image file {path} does not exist")
    with path.open("rb") as fh:
        head = fh.read(132)
    if head[128:132] == b"DICM":
        volume, warnings = load_volume([path])
        return visual_item_for(volume, view), warnings
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            pixels = img.convert("RGB")
            return image_item(np.asarray(pixels), source=f"file {path.name}"), []
    except UnidentifiedImageError as exc:
        raise ValueError(f"{path} is neither DICOM nor a picture Pillow can read") from exc


def _visual_item(args: argparse.Namespace, view: AIView) -> tuple[VisualItem, list[str]]:
    if args.image is not None:
        return _image_file_item(args.image, view)
    volume, warnings = load_volume(series_files(args.series, args.archive))
    log.info(
        "ask: series %s loaded, %d frames", volume.metadata.get("series_uid", "?"), volume.voxels.shape[0]
    )
    return visual_item_for(volume, view), warnings


def _tokenizer_only(folder: Path) -> tuple[Any, str | None, dict[str, Any]]:
    """Tokenizer, chat template and preprocessor settings, without reading any weight."""
    from inference.checkpoint import validate_checkpoint
    from inference.loading import load_tokenizer

    info = validate_checkpoint(folder, check_sums=False)
    return load_tokenizer(info.folder), info.chat_template, dict(info.preprocessor)


def _inputs(
    args: argparse.Namespace,
    item: VisualItem,
    tokenizer: Any,
    template: str | None,
    processor: dict[str, Any],
) -> ModelInputs:
    from inference.inputs import build_model_inputs

    conversation = Conversation(system_prompt=args.system_prompt)
    conversation.add_user(args.question, [item], think=args.think)
    return build_model_inputs(
        tokenizer,
        conversation,
        chat_template=template,
        max_tokens=args.visual_tokens or int(processor.get("max_tokens", MAX_TOKENS)),
        min_tokens=int(processor.get("min_tokens", MIN_TOKENS)),
        reduction=args.token_reduction,
    )


def _describe(item: VisualItem, inputs: ModelInputs) -> dict[str, Any]:
    grid = inputs.image_grid_thw.tolist() if inputs.image_grid_thw is not None else []
    merge = inputs.image_merge_sizes.tolist() if inputs.image_merge_sizes is not None else []
    return {
        **inputs.counts(),
        "kind": item.kind,
        "source": item.source,
        "frame_size": list(item.frames.shape[1:3]),
        "sampled_indices": item.sampled_indices,
        "timestamps_s": item.timestamps_s,
        "grid_thw": grid,
        "merge_sizes": merge,
    }


def run_ask(args: argparse.Namespace) -> int:
    try:
        view = _view(args)
        started = time.perf_counter()
        if not args.dry_run:  # a device that is not there fails before anything is read
            from inference.devices import normalise_device

            normalise_device(args.device)
        # the checkpoint folder is checked first: a wrong --model fails before any pixel is read
        tokenizer, template, processor = _tokenizer_only(args.model)
        item, warnings = _visual_item(args, view)
        if item.kind == "video" and item.timestamps_s is None:
            warnings = [*warnings, UNTIMED_CINE_WARNING]
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if args.dry_run:
            inputs = _inputs(args, item, tokenizer, template, processor)
            summary = {
                **_describe(item, inputs),
                "dry_run": True,
                "prepare_seconds": round(time.perf_counter() - started, 3),
            }
            print(json.dumps(summary) if args.json else _plain_summary(summary))
            return 0
        from inference.loading import load_model

        loaded = load_model(
            args.model, device=args.device, quantization=args.quantization, check_sums=not args.no_verify
        )
        inputs = _inputs(args, item, loaded.tokenizer, loaded.chat_template, loaded.processor_config)
    except (ValueError, OSError, MemoryError, CheckpointError) as exc:  # bad input: one clear line
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return _generate(args, loaded, item, inputs)


def _generate(args: argparse.Namespace, loaded: Any, item: VisualItem, inputs: ModelInputs) -> int:
    from inference.engine import Engine, GenerationRequest

    print(f"[{loaded.report.summary()}] AI draft - review before use", file=sys.stderr)
    if loaded.report.slow_mode:
        print(f"note: {loaded.report.reason}", file=sys.stderr)
    stream = ReasoningStream(inputs.think_open)
    with Engine(loaded) as engine:
        handle = engine.submit(
            GenerationRequest(inputs=inputs, max_new_tokens=args.max_new_tokens, temperature=args.temperature)
        )
        try:
            for chunk in handle:
                if not args.json:
                    _write(*stream.push(chunk))
        except KeyboardInterrupt:
            handle.cancel()
        result = handle.result()
    if not args.json:
        _write(*stream.push("", final=True))
        print()
    else:
        reasoning, answer = split_reasoning(result.text, inputs.think_open)
        print(
            json.dumps(
                {
                    **_describe(item, inputs),
                    "answer": answer,
                    "reasoning": reasoning,
                    "draft": True,
                    "finish_reason": result.finish_reason,
                    "new_tokens": result.new_tokens,
                    "ttft_seconds": round(result.ttft_seconds, 3),
                    "decode_tokens_per_second": round(result.decode_tokens_per_second, 2),
                }
            )
        )
    log.info(
        "ask: %d prompt tokens, %d new tokens, finish=%s",
        inputs.prompt_tokens,
        result.new_tokens,
        result.finish_reason,
    )
    if result.finish_reason == "error":
        print(f"error: generation failed: {result.error}", file=sys.stderr)
        return 1
    return 0


def _write(reasoning: str, answer: str) -> None:
    if reasoning:
        sys.stderr.write(reasoning)
        sys.stderr.flush()
    if answer:
        sys.stdout.write(answer)
        sys.stdout.flush()


def _plain_summary(summary: dict[str, Any]) -> str:
    return "\n".join(f"{key}: {value}" for key, value in summary.items() if key not in ("timestamps_s",))
