"""bench/gpu_check.sh in its CPU dry-run mode: the one-command GPU check runs end to end on tiny
shapes and every variant produces every figure the GPU run will report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ("int4", "nf4", "none", "int8", "none+static")

pytest.importorskip("torchao")
pytest.importorskip("bitsandbytes")


def test_gpu_check_dry_run_reports_every_variant(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    env.pop("OUT", None)
    done = subprocess.run(
        [
            "bash",
            str(ROOT / "bench" / "gpu_check.sh"),
            "--dry-run",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert "results" in (out / "gpu_check.log").read_text()

    meta = report["meta"]
    assert meta["mode"] == "dry-run" and meta["bandwidth_bytes_per_second"] > 0
    assert meta["versions"]["torchao"][0].isdigit() and meta["versions"]["bitsandbytes"][0].isdigit()
    linear = meta["linear"]
    for name in ("dense", "int4"):
        assert (
            linear[f"{name}_m1_weight_bytes_per_second"] > 0 and linear[f"{name}_m2048_flops_per_second"] > 0
        )
    assert set(report["variants"]) == set(VARIANTS)
    for name, variant in report["variants"].items():
        assert variant["error"] is None, (name, variant["error"])
        assert variant["load"]["weights_bytes"] > 0 and variant["load"]["seconds"] >= 0
        assert variant["attention"] == {"decoder": "sdpa", "vision": "sdpa"}
        assert variant["ttft"]["2d"]["visual_tokens"] == 64  # 8x8 patches, merge 1
        assert variant["ttft"]["3d"]["visual_tokens"] == 6 * 4 * 4  # 6 slices of 8x8, merge 2
        for prompt in ("2d", "3d"):
            assert variant["ttft"][prompt]["seconds"] > 0 and variant["ttft"][prompt]["peak_vram_bytes"] > 0
        decode = variant["decode"]
        assert decode["tokens"] == 8 and decode["tokens_per_second"] > 0
        assert decode["bytes_per_token"] > 0 and decode["ceiling_tokens_per_second"] > 0
        assert (
            0
            < decode["fraction_of_ceiling"]
            == pytest.approx(decode["tokens_per_second"] / decode["ceiling_tokens_per_second"], rel=1e-2)
        )
        assert variant["peak_vram_bytes"] > 0
    variants = report["variants"]
    # the 4-bit kinds really hold packed decoder weights: fewer bytes per decode step than fp32
    for kind in ("int4", "nf4"):
        assert variants[kind]["decode"]["bytes_per_token"] < variants["none"]["decode"]["bytes_per_token"]
    assert variants["int4"]["static_warm_up_seconds"] > 0 and variants["int4"]["static_capacities"]
    for name in ("int4", "none+static"):  # decoded through the static buffer (eager on the CPU)
        assert variants[name]["decode"]["static_buffer_bytes"] > 0
        assert variants[name]["decode"]["static_compiled"] is False
        assert variants[name]["decode"]["step_only_tokens_per_second"] > 0
    assert "static_buffer_bytes" not in variants["none"]["decode"]

    assert report["tests"]["returncode"] == 0 and "skipped" in report["tests"]["summary"]  # no CUDA here
    goals = report["goals"]
    assert set(goals) == {"int4_decode_fraction_of_ceiling", "int4_ttft_3d_seconds", "int4_peak_vram_bytes"}
    assert all(goal["value"] is not None and goal["met"] is None for goal in goals.values())
