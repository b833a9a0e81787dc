"""One GPU check of the Hulu-Med runtime: bf16 / NF4 / int8 / int4 at the 7B shape, plus the GPU tests.

    python3 bench/gpu_check.py --out $OUT            # on a GPU machine (via bench/gpu_check.sh)
    python3 bench/gpu_check.py --dry-run --out DIR   # tiny shapes on the CPU (CI checks the JSON)

Per variant, through the product's own load/engine path: load time and resident weight bytes; TTFT
of a 2D prompt (one 512x512 image, 1,369 visual tokens) and of a 3D prompt (180 slices, 14,580
visual tokens) with the peak memory of each; decode tok/s after the 2D prompt beside the ceiling
= measured copy bandwidth / bytes one step must read (the decoder's stored weight bytes, final
norm and lm_head, plus the KV cache at that context). The int4 variant also reports whether its
step ran compiled and the static buffer bytes it reads. Then ``tests/inference/test_gpu_runtime.py``
runs in a subprocess. Everything lands in ``gpu_check.json`` (rewritten after every step, so a run
cut short keeps what it measured) and ``gpu_check.log`` in the output folder. Goals checked at the
end (issue 12): int4 decode >= 50 % of its ceiling, 3D TTFT <= 1 s, peak VRAM <= 10 GB.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.inference import PROMPTS, SHAPES, bytes_per_decode_token, measure_bandwidth  # noqa: E402
from dicom_net.atomic import write_bytes_atomic  # noqa: E402
from inference.engine import Engine, GenerationRequest  # noqa: E402
from inference.loading import load_model  # noqa: E402
from inference.quantization import module_bytes  # noqa: E402
from tests.inference.prompts import chat_inputs  # noqa: E402
from tests.inference.tiny_checkpoint import write_random_checkpoint  # noqa: E402

log = logging.getLogger("gpu_check")
# The new path and its fallback first; "none+static" is bf16 through the compiled static-cache step
# (what compilation alone gives, without 4-bit weights).
VARIANTS = ("int4", "nf4", "none", "int8", "none+static")
DRY_SHAPE = (
    {
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
    {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "patch_size": 14,
    },
    1024,
)
DRY_PROMPTS = {"2d": (1, 8, 8, 1, 7), "3d": (6, 8, 8, 2, 8)}
GOALS = {"int4_decode_fraction_of_ceiling": 0.5, "ttft_3d_seconds": 1.0, "peak_vram_bytes": 10e9}


class Report:
    """The JSON document, written atomically after every update."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.data: dict[str, Any] = {"meta": meta, "variants": {}, "tests": None, "goals": None}
        self.save()

    def save(self) -> None:
        write_bytes_atomic(self.path, (json.dumps(self.data, indent=2) + "\n").encode())


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak(device: str) -> int:
    """Peak bytes since the last reset: allocated VRAM on CUDA, the process's RSS high-water on the CPU."""
    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in ("torch", "transformers", "torchao", "bitsandbytes", "accelerate", "triton"):
        try:
            module = __import__(name)
            found[name] = getattr(module, "__version__", "?")
        except Exception as exc:  # a missing or broken package is a finding, not a crash
            found[name] = f"unavailable: {type(exc).__name__}: {exc}"[:200]
    return found


def _ask(engine: Engine, inputs, new_tokens: int):
    request = GenerationRequest(inputs, max_new_tokens=new_tokens, ignore_eos=True)
    result = engine.submit(request).result()
    if result.error:
        raise RuntimeError(result.error)
    return result


def run_variant(
    folder: Path, variant: str, device: str, prompts: dict, decode_tokens: int, bandwidth: float
) -> dict:
    """Load ``variant`` (``kind`` or ``kind+static``) and measure it; returns the variant's JSON entry."""
    entry: dict[str, Any] = {"error": None}
    kind, _, decode = variant.partition("+")
    _reset_peak(device)
    loaded = load_model(folder, device=device, quantization=kind, check_sums=False)
    entry["load"] = {
        "seconds": round(loaded.report.load_seconds, 3),
        "summary": loaded.report.summary(),
        "weights_bytes": loaded.report.memory_bytes,
        "peak_vram_bytes": _peak(device),
    }
    text = loaded.model.config.text_config
    vision = loaded.model.config.vision_config
    entry["attention"] = {"decoder": text._attn_implementation, "vision": vision._attn_implementation}
    tokenizer, image_id = loaded.tokenizer, loaded.image_token_id
    with Engine(loaded, static_decode=True if decode == "static" else None) as engine:
        static = engine.static_decoder
        if static is not None and kind == "int4":  # the product pays this once per buffer and load
            capacity = static.capacities[0]  # the buffer the 2D decode below uses
            entry["static_warm_up_seconds"] = round(static.warm_up((capacity,)), 2)
            entry["static_capacities"] = [capacity]
            log.info("%s: static decoder warmed up in %.1f s", variant, entry["static_warm_up_seconds"])
        warm = chat_inputs(tokenizer, image_id, "Warm up.", ((1, 4, 4, 1, 0),))
        started = time.perf_counter()
        _ask(engine, warm, 4)  # static decode: (compiles and) captures the engine thread's CUDA graph
        entry["warmup_seconds"] = round(time.perf_counter() - started, 3)
        entry["ttft"] = {}
        for name, item in prompts.items():
            inputs = chat_inputs(tokenizer, image_id, "Describe the findings.", (item,))
            runs = []
            for _ in range(2):  # the first run of a new shape includes kernel selection
                _reset_peak(device)
                result = _ask(engine, inputs, 1)
                runs.append(result)
            best = min(runs, key=lambda r: r.ttft_seconds)
            entry["ttft"][name] = {
                "prompt_tokens": inputs.prompt_tokens,
                "visual_tokens": inputs.visual_tokens,
                "seconds": round(best.ttft_seconds, 4),
                "first_run_seconds": round(runs[0].ttft_seconds, 4),
                "vision_seconds": round(best.vision_seconds, 4),
                "peak_vram_bytes": _peak(device),
            }
            log.info("%s %s: %s", variant, name, entry["ttft"][name])
        inputs = chat_inputs(tokenizer, image_id, "Describe the findings.", (prompts["2d"],))
        result = _ask(engine, inputs, decode_tokens)
        context = inputs.prompt_tokens + decode_tokens // 2
        per_token = bytes_per_decode_token(loaded, context)
        ceiling = bandwidth / per_token
        entry["decode"] = {
            "tokens": result.new_tokens,
            "tokens_per_second": round(result.decode_tokens_per_second, 2),
            "bytes_per_token": per_token,
            "ceiling_tokens_per_second": round(ceiling, 2),
            "fraction_of_ceiling": result.decode_tokens_per_second / ceiling,
        }
        if static is not None:
            entry["decode"]["static_compiled"] = static.compiled
            entry["decode"]["static_buffer_bytes"] = static.buffer_bytes()
            step_rate = step_only_rate(loaded, static, inputs.prompt_tokens, decode_tokens, device)
            entry["decode"]["step_only_tokens_per_second"] = round(step_rate, 2)
            entry["decode"]["step_only_fraction_of_ceiling"] = step_rate / ceiling
        log.info("%s decode: %s", variant, entry["decode"])
    entry["peak_vram_bytes"] = _peak(device)
    del engine, loaded
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return entry


def step_only_rate(loaded, static, prompt_tokens: int, steps: int, device: str) -> float:
    """Tokens/s of the static decoder's steps alone, on this thread, after a prompt of
    ``prompt_tokens`` (no sampling, streaming or per-token sync): the engine's overhead is the
    difference to the engine's own rate."""
    from transformers import DynamicCache

    model = loaded.model
    cache = DynamicCache(config=model.config.text_config)
    with torch.inference_mode():
        ids = torch.ones((1, prompt_tokens), dtype=torch.long, device=loaded.device)
        model.model.language_model(
            inputs_embeds=model.get_input_embeddings()(ids), past_key_values=cache, use_cache=True
        )
        session = static.session(cache, steps + 3)
        for _ in range(3):  # this thread's CUDA graph: warm-up run, capture, first replay
            session.step(1)
        _sync(device)
        started = time.perf_counter()
        for _ in range(steps):
            session.step(1)
        _sync(device)
    return steps / (time.perf_counter() - started)


def linear_rates(device: str, out_features: int, in_features: int) -> dict:
    """One decoder MLP projection, dense (bf16 on CUDA: cuBLAS) and torchao int4 (tinygemm on
    CUDA), at M = 1 (decode: weight bytes per second) and M = 2048 (a prefill chunk: FLOP/s): does
    int4 lose prefill speed to dense, how close does its decode kernel get to the copy bandwidth."""
    from torchao.quantization import quantize_

    from inference.int4_weights import _config

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    dense = torch.nn.Linear(in_features, out_features, bias=False, device=device, dtype=dtype)
    packed = torch.nn.Linear(in_features, out_features, bias=False, device=device, dtype=dtype)
    packed.weight.data.copy_(dense.weight.data)
    quantize_(packed, _config(packed.weight))
    rates: dict[str, Any] = {"shape": [out_features, in_features]}
    with torch.inference_mode():
        for name, layer in (("dense", dense), ("int4", packed)):
            weight_bytes = module_bytes(layer)
            for rows in (1, 2048):
                x = torch.randn(rows, in_features, device=device, dtype=dtype)
                for _ in range(3):
                    layer(x)
                _sync(device)
                repeats = 20
                started = time.perf_counter()
                for _ in range(repeats):
                    layer(x)
                _sync(device)
                seconds = (time.perf_counter() - started) / repeats
                rates[f"{name}_m{rows}_microseconds"] = round(seconds * 1e6, 2)
                if rows == 1:
                    rates[f"{name}_m1_weight_bytes_per_second"] = weight_bytes / seconds
                else:
                    rates[f"{name}_m{rows}_flops_per_second"] = (
                        2 * rows * in_features * out_features / seconds
                    )
    return rates


def run_tests(timeout: float) -> dict:
    """``tests/inference/test_gpu_runtime.py`` in a subprocess; its outcome line and exit code."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/inference/test_gpu_runtime.py",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(timeout, 1)
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout or ""
        output = output.decode() if isinstance(output, bytes) else output
        log.info("tests timed out after %.0f s:\n%s", timeout, output[-4000:])
        return {"returncode": None, "summary": f"timed out after {timeout:.0f} s", "seconds": timeout}
    output = done.stdout + done.stderr
    log.info("tests (rc %d):\n%s", done.returncode, output[-6000:])
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return {
        "returncode": done.returncode,
        "summary": lines[-1] if lines else "",
        "seconds": round(time.perf_counter() - started, 1),
    }


def check_goals(variants: dict, evaluate: bool = True) -> dict:
    """Issue 12's targets on the int4 variant; ``met`` is None where there is no figure or
    ``evaluate`` is False (a dry run's figures are not the GPU's)."""
    int4 = variants.get("int4") or {}
    fraction = (int4.get("decode") or {}).get("fraction_of_ceiling")
    ttft_3d = ((int4.get("ttft") or {}).get("3d") or {}).get("seconds")
    peak = int4.get("peak_vram_bytes")
    return {
        "int4_decode_fraction_of_ceiling": {
            "value": fraction,
            "goal": GOALS["int4_decode_fraction_of_ceiling"],
            "met": None
            if fraction is None or not evaluate
            else fraction >= GOALS["int4_decode_fraction_of_ceiling"],
        },
        "int4_ttft_3d_seconds": {
            "value": ttft_3d,
            "goal": GOALS["ttft_3d_seconds"],
            "met": None if ttft_3d is None or not evaluate else ttft_3d <= GOALS["ttft_3d_seconds"],
        },
        "int4_peak_vram_bytes": {
            "value": peak,
            "goal": GOALS["peak_vram_bytes"],
            "met": None if peak is None or not evaluate else peak <= GOALS["peak_vram_bytes"],
        },
    }


def _table(report: dict) -> str:
    rows = [
        f"{'variant':11} {'load s':>7} {'weights GB':>10} {'TTFT 2D s':>9} {'TTFT 3D s':>9} "
        f"{'tok/s':>7} {'ceiling':>8} {'frac':>5} {'step t/s':>8} {'peak GB':>7}"
    ]
    for name, v in report["variants"].items():
        if v.get("error"):
            rows.append(f"{name:11} ERROR {v['error'][:90]}")
            continue
        ttft, dec = v.get("ttft", {}), v.get("decode", {})
        peak = v.get("peak_vram_bytes")
        rows.append(
            f"{name:11} {v['load']['seconds']:7.1f} {v['load']['weights_bytes'] / 1e9:10.2f} "
            f"{ttft.get('2d', {}).get('seconds', float('nan')):9.3f} "
            f"{ttft.get('3d', {}).get('seconds', float('nan')):9.3f} "
            f"{dec.get('tokens_per_second', float('nan')):7.1f} {dec.get('ceiling_tokens_per_second', float('nan')):8.1f} "
            f"{dec.get('fraction_of_ceiling', float('nan')):5.2f} "
            f"{dec.get('step_only_tokens_per_second', float('nan')):8.1f} {(peak or 0) / 1e9:7.2f}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu_check_out"))
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU (CI)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--decode-tokens", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None, help="where the random checkpoint is written")
    parser.add_argument(
        "--budget", type=float, default=500.0, help="seconds for the whole check (tests last)"
    )
    parser.add_argument("--tests-reserve", type=float, default=150.0, help="seconds kept for the GPU tests")
    parser.add_argument("--no-tests", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    args.out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(args.out / "gpu_check.log", mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=logging.INFO, handlers=[handler, console], force=True)
    torch._logging.set_logs(perf_hints=True)  # "skipping cudagraphs due to ..." lands in the log

    cuda = torch.cuda.is_available() and not args.dry_run
    device = "cuda:0" if cuda else "cpu"
    text, vision, vocab = DRY_SHAPE if args.dry_run else SHAPES["7b"]
    prompts = DRY_PROMPTS if args.dry_run else {name: PROMPTS[name] for name in ("2d", "3d")}
    decode_tokens = args.decode_tokens or (8 if args.dry_run else 128)
    meta: dict[str, Any] = {
        "mode": "dry-run" if args.dry_run else "gpu",
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "capability": ".".join(map(str, torch.cuda.get_device_capability(0))) if cuda else None,
        "memory_bytes": torch.cuda.get_device_properties(0).total_memory if cuda else None,
        "versions": _versions(),
        "python": sys.version.split()[0],
        "shape": {"text": text, "vision": vision, "vocab": vocab},
        "decode_tokens": decode_tokens,
        "peak_memory": "torch.cuda.max_memory_allocated" if cuda else "process RSS high-water (CPU)",
    }
    report = Report(args.out / "gpu_check.json", meta)
    log.info("gpu check: %s", json.dumps(meta))

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hulu-gpu-check-"))
    folder = workdir / "random-checkpoint"
    t0 = time.perf_counter()
    write_random_checkpoint(folder, text, vision, vocab, device=device)
    meta["checkpoint_seconds"] = round(time.perf_counter() - t0, 1)
    bandwidth = measure_bandwidth(device)
    meta["bandwidth_bytes_per_second"] = bandwidth
    try:
        meta["linear"] = linear_rates(device, text["intermediate_size"], text["hidden_size"])
    except Exception as exc:  # torchao missing or broken here: the int4 variant will say so too
        meta["linear"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    report.save()
    log.info("checkpoint in %.1f s; copy bandwidth %.1f GB/s", meta["checkpoint_seconds"], bandwidth / 1e9)
    log.info("one MLP projection, bf16 vs int4: %s", meta["linear"])

    for variant in args.variants.split(","):
        left = args.budget - (time.perf_counter() - started) - (0 if args.no_tests else args.tests_reserve)
        if left < 60:  # a 7B variant needs about a minute at least
            report.data["variants"][variant] = {"error": f"skipped: {left:.0f} s of the budget left"}
            report.save()
            continue
        try:
            report.data["variants"][variant] = run_variant(
                folder, variant, device, prompts, decode_tokens, bandwidth
            )
        except Exception as exc:  # one broken variant must not cost the others' figures
            log.error("%s failed:\n%s", variant, traceback.format_exc())
            report.data["variants"][variant] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
        report.save()

    if not args.no_tests:
        left = args.budget - (time.perf_counter() - started)
        report.data["tests"] = run_tests(left)
    report.data["goals"] = check_goals(report.data["variants"], evaluate=cuda)
    report.data["meta"]["total_seconds"] = round(time.perf_counter() - started, 1)
    report.save()
    table = _table(report.data)
    log.info("results (%s):\n%s", meta["device"], table)
    log.info("goals: %s", json.dumps(report.data["goals"]))
    log.info("tests: %s", report.data["tests"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
