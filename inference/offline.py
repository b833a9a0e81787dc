"""Hugging Face hub access off for this process, set when this module is first imported.

``transformers`` and ``huggingface_hub`` read the offline flags from the environment when they
are imported, so every module of this package that imports either imports this one first:
whatever path loads the model, no code can reach the network before the flags are set.

It also quiets two import-time messages nobody can act on, which ``transformers`` triggers by
importing torchao when it is installed: torchao's CUDA-only extensions failing to load on a
CPU-only torch, and torch's deprecation notice about torchao registering enums.
"""

from __future__ import annotations

import logging
import os
import sys

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


def enforce_offline() -> None:
    """Set the offline flags (again); also in ``huggingface_hub`` when it was imported before us."""
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # imported earlier by someone else: it cached the flag at import
        constants.HF_HUB_OFFLINE = True


enforce_offline()
logging.getLogger("torchao").setLevel(logging.ERROR)
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
