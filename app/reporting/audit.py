"""The audit record kept with every report: which model wrote what from which inputs, with which
prompt and settings, when, who signed, and what was sent where. Persisted atomically beside the
report in the data directory (``<data_dir>/reports/<report_id>/``)."""

from __future__ import annotations

import fcntl
import hashlib
import io
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.reporting.atomic import read_json, write_bytes_atomic, write_json_atomic
from app.reporting.report import Report
from dicom_net.paths import data_dir

log = logging.getLogger(__name__)


def now_iso() -> str:
    return datetime.now().astimezone().isoformat()


@dataclass
class SentInput:
    """One visual input handed to the model (never pixels: where they came from and how shown)."""

    series_instance_uid: str
    kind: str  # "image", "volume" or "cine"
    plane: str = ""
    slices: list[int] = field(default_factory=list)
    window_center: float | None = None
    window_width: float | None = None
    frames: int = 0


@dataclass
class Generation:
    """One model call that wrote text into the report (or answered in chat)."""

    purpose: str  # "draft" or "chat"
    model_id: str
    model_checksum: str
    prompt: str
    settings: dict[str, Any]
    inputs: list[SentInput]
    started_at: str
    finished_at: str = ""
    outcome: str = ""  # "completed", "cancelled" or "failed: <reason>"
    output_chars: int = 0
    prompt_tokens: int = 0
    new_tokens: int = 0


@dataclass
class AuditRecord:
    report_id: str
    study_instance_uid: str
    generations: list[Generation] = field(default_factory=list)
    events: list[dict[str, str]] = field(default_factory=list)

    def add_event(self, kind: str, **details: str) -> None:
        """A signature, export, ACK ... ``details`` carry names/ids, never report text."""
        self.events.append({"at": now_iso(), "kind": kind, **{k: str(v) for k, v in details.items()}})

    def ai_models(self) -> list[tuple[str, str]]:
        """(model id, version) of each model that wrote report text, in first-use order; the
        version is the checkpoint's checksum."""
        found: list[tuple[str, str]] = []
        for generation in self.generations:
            model = (generation.model_id, generation.model_checksum)
            if generation.purpose in ("draft", "predraft") and model not in found:
                found.append(model)
        return found

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditRecord:
        generations = []
        for g in data.get("generations", []):
            g = dict(g)
            g["inputs"] = [SentInput(**i) for i in g.get("inputs", [])]
            generations.append(Generation(**g))
        return cls(data["report_id"], data["study_instance_uid"], generations, list(data.get("events", [])))


def reports_dir() -> Path:
    return data_dir() / "reports"


INDEX_NAME = "index.json"
KEY_IMAGES_NAME = "key_images.json"
INDEX_VERSION = 1


class ReportStore:
    """Reports and their audit records on disk, one folder per report, written atomically.

    ``index.json`` maps Study Instance UID -> report ids so that opening a study reads only its
    own reports. A report's id enters the index (atomic rewrite, under a lock shared with other
    processes) before its files are written, so a crash between the two leaves an id without a
    report, which readers skip, never a report the index does not list. A missing, damaged or
    foreign-version index is rebuilt from the report files.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else reports_dir()
        self._lock = threading.Lock()

    def _folder(self, report_id: str) -> Path:
        if not report_id.isalnum():
            raise ValueError(f"report id must be alphanumeric, got {report_id!r}")
        return self.root / report_id

    def save(self, report: Report, audit: AuditRecord) -> None:
        if audit.report_id != report.report_id:
            raise ValueError("audit record belongs to another report")
        folder = self._folder(report.report_id)
        self._index_add(report.study.study_instance_uid, report.report_id)
        write_json_atomic(folder / "audit.json", audit.to_dict())
        write_json_atomic(folder / "report.json", report.to_dict())

    def save_key_image(self, report_id: str, name: str, label: str, pixels: np.ndarray) -> None:
        """Keep a key image's displayed pixels (PNG) beside the report, listed in its manifest."""
        folder = self._folder(report_id)
        file = f"key-{hashlib.sha256(name.encode()).hexdigest()[:16]}.png"
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
        write_bytes_atomic(folder / file, buffer.getvalue())
        manifest = [entry for entry in self._key_manifest(folder) if entry["name"] != name]
        manifest.append({"name": name, "label": label, "file": file})
        write_json_atomic(folder / KEY_IMAGES_NAME, manifest)

    def key_images(self, report_id: str) -> list[tuple[str, str, np.ndarray]]:
        """(name, label, pixels) of the report's saved key images, in the order they were added;
        an unreadable image is skipped (logged)."""
        folder = self._folder(report_id)
        found = []
        for entry in self._key_manifest(folder):
            try:
                with Image.open(folder / entry["file"]) as image:
                    found.append((entry["name"], entry["label"], np.asarray(image.convert("RGB"))))
            except (OSError, ValueError) as exc:
                log.warning("report %s: key image unreadable (%s); skipped", report_id, type(exc).__name__)
        return found

    @staticmethod
    def _key_manifest(folder: Path) -> list[dict[str, str]]:
        path = folder / KEY_IMAGES_NAME
        if not path.exists():
            return []
        try:
            entries = read_json(path)
            return [e for e in entries if {"name", "label", "file"} <= set(e) and "/" not in e["file"]]
        except (OSError, ValueError, TypeError) as exc:
            log.warning("key image list %s unreadable (%s)", folder.name, type(exc).__name__)
            return []

    def load(self, report_id: str) -> tuple[Report, AuditRecord]:
        folder = self._folder(report_id)
        report = Report.from_dict(read_json(folder / "report.json"))
        audit_path = folder / "audit.json"
        audit = (
            AuditRecord.from_dict(read_json(audit_path))
            if audit_path.exists()
            else AuditRecord(report.report_id, report.study.study_instance_uid)
        )
        return report, audit

    def reports_for_study(self, study_instance_uid: str) -> list[Report]:
        """The study's reports, oldest first, read through the index. An unreadable record is
        skipped (and logged by its report id): one damaged file must not stop every other
        study's report from opening."""
        if not self.root.is_dir():
            return []
        found = []
        for report_id in self.study_index().get(study_instance_uid, []):
            data = self._read_record(self.root / report_id / "report.json")
            if data is None or data["study"]["study_instance_uid"] != study_instance_uid:
                continue  # never written, or the index is stale: the file decides
            try:
                found.append(Report.from_dict(data))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("report store: record %s unreadable (%s); skipped", report_id, type(exc).__name__)
        return sorted(found, key=lambda r: r.created_at)

    def study_index(self) -> dict[str, list[str]]:
        """Study Instance UID -> report ids, from ``index.json`` (rebuilt first if unusable)."""
        with self._locked():
            index = self._read_index()
            if index is None:
                index = self._rebuild_index()
            return index

    # -- index ------------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise index read-modify-write between threads and processes."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.root / ".index.lock", "a+b") as fd:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _read_index(self) -> dict[str, list[str]] | None:
        path = self.root / INDEX_NAME
        if not path.exists():
            return None
        try:
            data = read_json(path)
            studies = data["studies"]
            if (
                data.get("version") != INDEX_VERSION
                or not isinstance(studies, dict)
                or not all(
                    isinstance(ids, list) and all(isinstance(i, str) for i in ids) for ids in studies.values()
                )
            ):
                raise ValueError("unexpected layout")
            return studies
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning(
                "report store: index unreadable (%s); rebuilt from the report files", type(exc).__name__
            )
            return None

    def _rebuild_index(self) -> dict[str, list[str]]:
        studies: dict[str, list[str]] = {}
        for path in sorted(self.root.glob("*/report.json")):
            data = self._read_record(path)
            if data is not None:
                studies.setdefault(data["study"]["study_instance_uid"], []).append(path.parent.name)
        self._write_index(studies)
        log.info("report store: index rebuilt (%d studies)", len(studies))
        return studies

    def _write_index(self, studies: dict[str, list[str]]) -> None:
        write_json_atomic(self.root / INDEX_NAME, {"version": INDEX_VERSION, "studies": studies})

    def _index_add(self, study_instance_uid: str, report_id: str) -> None:
        with self._locked():
            index = self._read_index()
            if index is None:
                index = self._rebuild_index()
            ids = index.setdefault(study_instance_uid, [])
            if report_id not in ids:
                ids.append(report_id)
                self._write_index(index)

    @staticmethod
    def _read_record(path: Path) -> dict[str, Any] | None:
        try:
            data = read_json(path)
            if not isinstance(data["study"]["study_instance_uid"], str):
                raise TypeError("study_instance_uid is not text")
            return data
        except FileNotFoundError:
            return None  # listed but never written (crash between index and report)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "report store: record %s unreadable (%s); skipped", path.parent.name, type(exc).__name__
            )
            return None
