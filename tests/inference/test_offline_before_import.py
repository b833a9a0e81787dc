"""The hub is switched off before transformers or huggingface_hub is imported by any module of
the loading path, whichever module the application imports first.

Each check runs in a fresh interpreter whose environment has no HF_* flags (the test session's
conftest sets them, which would hide the defect). An import hook records the value of
HF_HUB_OFFLINE at the moment transformers / huggingface_hub start importing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = r"""
import importlib, importlib.abc, json, os, sys
seen = {}
class Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in ("transformers", "huggingface_hub") and name not in seen:
            seen[name] = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
        return None
sys.meta_path.insert(0, Spy())
importlib.import_module(sys.argv[1])
print(json.dumps(seen))
"""


@pytest.mark.parametrize(
    "module",
    [
        "inference.loading",
        "inference.engine",
        "inference.config_translation",
        "inference.quantization",
    ],
)
def test_offline_flags_are_set_before_transformers_is_imported(module: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, module],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert "transformers" in seen, f"{module} no longer imports transformers: test needs updating"
    for name, flags in seen.items():
        assert flags == {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}, (module, name, flags)
