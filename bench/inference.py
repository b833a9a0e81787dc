"""Hulu-Med runtime speed: TTFT for a 2D and a 3D prompt, decode tok/s against the memory-bandwidth
ceiling, peak memory, for bf16 (CPU: fp32), NF4 and int8, all through the product's load/engine path.

    .venv/bin/python bench/inference.py                   # 7B shape with CUDA, a small shape on CPU
    .venv/bin/python bench/inference.py --shape 7b --variants none,nf4,int8 --decode-tokens 128

The checkpoint is a Hulu-Med-format folder with random weights at the chosen shape (7B: Qwen2.5-7B
decoder + SigLIP-so400m tower, 16.1 GB bf16), written once to --workdir. Prompts: 2D = one
512x512 image (37x37 patches, merge 1: 1,369 visual tokens); 3D = 180 slices of 18x18 patches
(merge 2: 14,580 visual tokens, 58,320 ViT patches). Peers measured in the same run:
memory bandwidth (a large tensor copy) -> decode ceiling = bandwidth / bytes read per token
(decoder weights + lm_head + KV cache); transformers' own ``generate()`` TTFT on the 2D prompt;
the ONNX vision tower against the torch one.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from inference.engine import Engine, GenerationRequest, stop_token_ids  # noqa: E402
from inference.loading import LoadedModel, load_model  # noqa: E402
from inference.onnx_vision import choose_vision_path  # noqa: E402
from inference.quantization import module_bytes  # noqa: E402
from tests.inference.prompts import chat_inputs  # noqa: E402
from tests.inference.tiny_checkpoint import write_random_checkpoint  # noqa: E402

SHAPES = {
    "7b": (
        {
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
        },
        {
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_hidden_layers": 27,
            "num_attention_heads": 16,
            "patch_size": 14,
        },
        152064,
    ),
    "small": (
        {
            "hidden_size": 512,
            "intermediate_size": 1536,
            "num_hidden_layers": 8,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
        },
        {
            "hidden_size": 384,
            "intermediate_size": 1536,
            "num_hidden_layers": 6,
            "num_attention_heads": 6,
            "patch_size": 14,
        },
        151936,
    ),
}
PROMPTS = {"2d": (1, 37, 37, 1, 7), "3d": (180, 18, 18, 2, 8)}  # (t, h, w, merge, seed)


def measure_bandwidth(device: str) -> float:
    """Bytes/s of a large device-local copy (read + write), best of 5."""
    nbytes = (2 << 30) if device.startswith("cuda") else (256 << 20)
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(5):
        _sync(device)
        started = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        best = min(best, time.perf_counter() - started)
    return 2 * nbytes / best


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bytes_per_decode_token(loaded: LoadedModel, context: int) -> int:
    """Decoder + final norm + lm_head storage, plus the KV cache read at ``context`` tokens."""
    model = loaded.model
    modules = [model.model.language_model.layers, model.model.language_model.norm, model.lm_head]
    weights = sum(module_bytes(m) for m in modules)  # packed sizes for quantized weights
    text = model.config.text_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    kv_dtype_bytes = 2 if loaded.report.dtype in ("bfloat16", "float16") else 4
    kv = 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * kv_dtype_bytes * context
    return weights + kv


def peak_memory(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB VRAM"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB RSS (process high-water)"


def run_variant(folder: Path, variant: str, prompts: list[str], decode_tokens: int, peers: bool) -> None:
    loaded = load_model(folder, device="auto", quantization=variant, check_sums=False)
    device = loaded.report.device
    print(f"\n== {variant}: {loaded.report.summary()} (load {loaded.report.load_seconds:.1f} s)")
    tokenizer, image_id = loaded.tokenizer, loaded.image_token_id
    with Engine(loaded) as engine:
        warm = chat_inputs(tokenizer, image_id, "Warm up.", ((1, 4, 4, 1, 0),))
        engine.submit(GenerationRequest(warm, max_new_tokens=2, ignore_eos=True)).result()
        for name in prompts:
            inputs = chat_inputs(tokenizer, image_id, "Describe the findings.", (PROMPTS[name],))
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats(device)
            result = engine.submit(GenerationRequest(inputs, max_new_tokens=1, ignore_eos=True)).result()
            if result.error:
                print(f"  {name}: ERROR {result.error}")
                continue
            print(
                f"  {name}: {inputs.prompt_tokens:,} prompt tokens ({inputs.visual_tokens:,} visual): "
                f"TTFT {result.ttft_seconds:.3f} s (vision {result.vision_seconds:.3f} s), "
                f"peak {peak_memory(device)}"
            )
        inputs = chat_inputs(tokenizer, image_id, "Describe the findings.", (PROMPTS["2d"],))
        result = engine.submit(
            GenerationRequest(inputs, max_new_tokens=decode_tokens, ignore_eos=True)
        ).result()
        context = inputs.prompt_tokens + decode_tokens // 2
        per_token = bytes_per_decode_token(loaded, context)
        bandwidth = measure_bandwidth(device)
        ceiling = bandwidth / per_token
        print(
            f"  decode after the 2D prompt: {result.decode_tokens_per_second:.1f} tok/s over {result.new_tokens} "
            f"tokens; reads {per_token / 2**30:.3f} GiB/token; measured copy bandwidth "
            f"{bandwidth / 1e9:.1f} GB/s -> ceiling {ceiling:.1f} tok/s; "
            f"fraction {result.decode_tokens_per_second / ceiling:.2f}"
        )
        if peers:
            native_ttft(loaded, inputs, result.ttft_seconds)
            onnx_peer(loaded, inputs)
    del engine, loaded
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def native_ttft(loaded: LoadedModel, inputs, engine_ttft: float) -> None:
    """transformers' generate() producing one token for the same prompt (full-prompt lm_head, no chunks)."""
    eos = sorted(stop_token_ids(loaded))
    kwargs = inputs.as_model_kwargs(device=loaded.device, dtype=loaded.vision_dtype)
    device = loaded.report.device
    with torch.inference_mode():
        _sync(device)
        started = time.perf_counter()
        loaded.model.generate(**kwargs, max_new_tokens=1, do_sample=False, pad_token_id=eos[0])
        _sync(device)
    native = time.perf_counter() - started
    print(
        f"  peer: transformers generate() TTFT on the 2D prompt {native:.3f} s vs engine {engine_ttft:.3f} s "
        f"(engine/native {engine_ttft / native:.2f})"
    )


def onnx_peer(loaded: LoadedModel, inputs) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _runner, choice = choose_vision_path(
            loaded.model.model.vision_model, inputs, Path(tmp) / "vision.onnx", repeats=2
        )
    if choice.onnx_seconds is None:
        print(f"  peer: ONNX vision tower unavailable; torch {choice.torch_seconds:.3f} s")
        return
    print(
        f"  peer: vision tower on the 2D image: torch {choice.torch_seconds:.3f} s, onnxruntime "
        f"{choice.onnx_seconds:.3f} s ({','.join(choice.providers)}), max |diff| {choice.max_abs_difference:.1e} "
        f"-> engine would use {choice.chosen}"
    )


def main() -> int:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", choices=sorted(SHAPES), default="7b" if cuda else "small")
    parser.add_argument("--variants", default="none,nf4,int8", help="comma list of none, nf4, int8")
    parser.add_argument("--prompts", default="2d,3d", help="comma list of 2d, 3d")
    parser.add_argument(
        "--quantized-prompts",
        default=None,
        help="prompts for nf4/int8 (default: same as --prompts with CUDA, 2d on CPU where "
        "bitsandbytes is 13-20x slower)",
    )
    parser.add_argument("--decode-tokens", type=int, default=128 if cuda else 32)
    parser.add_argument("--workdir", type=Path, default=None, help="reuse/keep the random checkpoint here")
    args = parser.parse_args()

    text, vision, vocab = SHAPES[args.shape]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hulu-bench-"))
    folder = workdir / f"random-{args.shape}"
    if not (folder / "model.safetensors.index.json").is_file():
        started = time.perf_counter()
        write_random_checkpoint(folder, text, vision, vocab)
        print(f"wrote random {args.shape} checkpoint to {folder} in {time.perf_counter() - started:.1f} s")
    prompts = args.prompts.split(",")
    quantized_prompts = (args.quantized_prompts or (args.prompts if cuda else "2d")).split(",")
    print(
        f"torch {torch.__version__}, device {'cuda: ' + torch.cuda.get_device_name(0) if cuda else 'cpu'}, "
        f"{torch.get_num_threads()} CPU threads, load average {os.getloadavg()[0]:.1f}, shape {args.shape}"
    )
    try:
        for index, variant in enumerate(args.variants.split(",")):
            run_variant(
                folder,
                variant,
                prompts if variant == "none" else quantized_prompts,
                args.decode_tokens,
                peers=index == 0,
            )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
