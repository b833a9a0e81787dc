"""Optional: logits of our native-class loading vs Hulu-Med's own remote code on the same checkpoint.

Needs two things this project does not ship (the reference pins transformers 4.51.2 and does not
import under 5.x, and its code must never run inside the workstation's process):

- ``HULUMED_REFERENCE_DIR``: a folder holding the reference's remote-code files
  (``configuration_hulumed_qwen2.py``, ``modeling_hulumed_qwen2.py`` and the encoder files), e.g. a
  downloaded ZJU-AI4H/Hulu-Med-7B folder (only its ``*.py`` files are used);
- ``HULUMED_REFERENCE_PYTHON``: an interpreter with transformers 4.51.2 and torch.

The tiny checkpoint is copied with those files next to it and run by that interpreter in a
subprocess (trust_remote_code there, never here) with token compression off and SDPA attention
(the reference's eager attention path ignores the per-frame mask).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from inference.loading import load_model
from tests.inference.prompts import chat_inputs

REFERENCE_DIR = os.environ.get("HULUMED_REFERENCE_DIR")
REFERENCE_PYTHON = os.environ.get("HULUMED_REFERENCE_PYTHON")
pytestmark = pytest.mark.skipif(
    not (REFERENCE_DIR and REFERENCE_PYTHON),
    reason="reference parity needs HULUMED_REFERENCE_DIR (reference remote-code files) and "
    "HULUMED_REFERENCE_PYTHON (a Python with transformers 4.51.2)",
)

SCRIPT = """
import sys, torch
from transformers import AutoModelForCausalLM
folder, io_path = sys.argv[1], sys.argv[2]
data = torch.load(io_path)
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, torch_dtype=torch.float32,
                                             attn_implementation="sdpa").eval()
model.config.use_token_compression = False
with torch.no_grad():
    out = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"],
                pixel_values=data["pixel_values"], grid_sizes=data["grid_sizes"],
                merge_sizes=data["merge_sizes"], modals=data["modals"])
torch.save({"logits": out.logits.float()}, io_path + ".out")
"""


def test_logits_match_the_reference_implementation(tiny_checkpoint, tmp_path):
    folder = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ck"))
    (folder / "SHA256SUMS").unlink()
    sources = sorted(Path(REFERENCE_DIR).glob("*.py"))
    assert sources, f"no *.py files in HULUMED_REFERENCE_DIR={REFERENCE_DIR}"
    for source in sources:
        shutil.copy(source, folder / source.name)

    loaded = load_model(folder, device="cpu", quantization="none")
    assert loaded.report.dtype == "float32"
    items = ((1, 4, 6, 1, 51), (4, 4, 4, 2, 52))  # a non-square image and a 4-frame stack
    inputs = chat_inputs(loaded.tokenizer, loaded.image_token_id, "Describe both.", items)
    io_path = tmp_path / "io.pt"
    torch.save(
        {
            "input_ids": inputs.input_ids,
            "attention_mask": inputs.attention_mask,
            "pixel_values": inputs.pixel_values,
            "grid_sizes": inputs.image_grid_thw,
            "merge_sizes": inputs.image_merge_sizes,
            "modals": ["image", "video"],
        },
        io_path,
    )
    script = tmp_path / "reference_forward.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run(
        [REFERENCE_PYTHON, str(script), str(folder), str(io_path)], check=True, env=env, timeout=600
    )
    reference = torch.load(str(io_path) + ".out")["logits"]
    with torch.inference_mode():
        ours = loaded.model(**inputs.as_model_kwargs()).logits.float()
    assert ours.shape == reference.shape
    assert float((ours - reference).abs().max()) < 1e-4
    assert torch.equal(ours.argmax(-1), reference.argmax(-1))
