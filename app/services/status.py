"""Status-bar texts in plain Python: listener, last received study, model state, GPU memory."""

from __future__ import annotations

import sys

from app.assistant.model_service import ModelState
from app.reading.study_list import format_date
from dicom_net.archive_index import StudyRecord

_MODEL_WORDS = {"absent": "not installed", "loading": "loading", "ready": "ready", "failed": "error"}


def model_text(state: ModelState | None, detail: str = "") -> str:
    """The status bar's words for the model service's state (None: no service yet)."""
    words = _MODEL_WORDS[state.kind] if state is not None else "not loaded"
    return f"Model: {words}" + (f" ({detail})" if detail else "")


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
