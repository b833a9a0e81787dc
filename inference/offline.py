"""Hugging Face hub access off for this process, set when this module is first imported.

``transformers`` and ``huggingface_hub`` read the offline flags from the environment when they
are imported, so every module of this package that imports either imports this one first:
whatever path loads the model, no code can reach the network before the flags are set.
"""

from __future__ import annotations

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
