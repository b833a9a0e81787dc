"""Status-bar texts in plain Python: listener, last received study, model state, GPU memory."""

from __future__ import annotations

import enum
import sys
from pathlib import Path

from app.reading.study_list import format_date
from app.services.settings_model import ModelSettings
from dicom_net.archive_index import StudyRecord


class ModelState(enum.Enum):
    NOT_INSTALLED = "not installed"
    NOT_LOADED = "not loaded"
    LOADING = "loading"
    READY = "ready"
    BUSY = "busy"
    ERROR = "error"


def initial_model_state(settings: ModelSettings) -> ModelState:
    """Installed means a folder with a ``config.json`` (weights are verified when loading)."""
    folder = Path(settings.folder) if settings.folder else None
    if folder is None or not (folder / "config.json").is_file():
        return ModelState.NOT_INSTALLED
    return ModelState.NOT_LOADED


def model_text(state: ModelState, detail: str = "") -> str:
    return f"Model: {state.value}" + (f" ({detail})" if detail else "")


def last_study_text(record: StudyRecord | None) -> str:
    if record is None:
        return "Last received: -"
    what = record.description or "/".join(record.modalities) or "study"
    return f"Last received: {what} {format_date(record.study_date)} ({record.instance_count} images)"


def gpu_memory_text() -> str:
    """GPU memory in use/total via torch.cuda when torch is already imported and sees a GPU, else CPU."""
    torch = sys.modules.get("torch")
    if torch is None:
        return "CPU"
    try:
        if not torch.cuda.is_available():
            return "CPU"
        free, total = torch.cuda.mem_get_info()
        return f"GPU {(total - free) / 2**30:.1f}/{total / 2**30:.1f} GiB"
    except Exception:  # noqa: BLE001 - a broken CUDA install must not break the status bar
        return "CPU (CUDA unavailable)"
