"""Follow-up answers with KV reuse equal fresh runs on the LOWEST transformers that pyproject allows.

installer/setup_venv.sh installs that version (installer/transformers-floor.txt) into
``<venv>/transformers-floor``; the engine, loading, ONNX-tower and 4-bit tests then run in a
subprocess with that folder first on the path. Before 5.14 ``DynamicCache.crop(0)`` emptied the cache, so an engine that
cropped by zero lost the images of every follow-up there while passing on current versions.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PINS = ROOT / "installer" / "transformers-floor.txt"
FLOOR_DIR = Path(os.environ.get("HULU_TRANSFORMERS_FLOOR_DIR", Path(sys.prefix) / "transformers-floor"))


# Engine reuse == fresh, loading of Hulu-Med checkpoints, the ONNX tower, prompting, 4-bit on CPU.
FLOOR_TESTS = [
    "tests/inference/test_engine_generation.py",
    "tests/inference/test_engine_with_prompting.py",
    "tests/inference/test_loading_native.py",
    "tests/inference/test_onnx_vision.py",
    "tests/inference/test_quantization_cpu.py",
]


def declared_range() -> tuple[str, str]:
    """(lower, upper) bound of transformers in pyproject.toml's dependencies."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if re.match(r"transformers\b", d))
    match = re.fullmatch(r"transformers>=([\d.]+),<([\d.]+)", spec.replace(" ", ""))
    assert match, f"transformers must have a tested lower and an upper bound, not {spec!r}"
    return match.group(1), match.group(2)


def pinned_floor() -> str:
    match = re.search(r"^transformers==([\d.]+)", PINS.read_text(), re.MULTILINE)
    assert match, f"{PINS} pins no transformers"
    return match.group(1)


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def test_the_floor_environment_pins_the_declared_lower_bound():
    lower, upper = declared_range()
    assert _release(pinned_floor()) == _release(lower) + (0,) * (3 - len(_release(lower)))
    assert _release(upper) <= (5, 40), "transformers 5.40 drops past_key_values=, which the engine passes"


def _floor_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(FLOOR_DIR), str(ROOT)])
    env["HF_HUB_OFFLINE"] = env["TRANSFORMERS_OFFLINE"] = "1"
    return env


@pytest.mark.skipif(
    not (FLOOR_DIR / "PINS").is_file(),
    reason=f"no transformers floor environment at {FLOOR_DIR} (run installer/setup_venv.sh)",
)
def test_runtime_tests_pass_on_the_lowest_allowed_transformers():
    env = _floor_env()
    probe = subprocess.run(
        [sys.executable, "-c", "import transformers; print(transformers.__version__)"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip() == pinned_floor(), f"{FLOOR_DIR} holds transformers {probe.stdout.strip()}"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *FLOOR_TESTS,
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:]
    summary = run.stdout.strip().splitlines()[-1]
    assert re.match(r"\d+ passed", summary) and "skipped" not in summary, summary
