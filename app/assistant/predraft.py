"""Optional background pre-drafting: when a new study has arrived and stopped changing, and the
model has been idle for a while, draft its report so it is ready when the radiologist opens it.

A pre-draft is an ordinary draft report (AI text marked, audit purpose ``predraft``); it is
never signed or sent. Any foreground request (chat, a draft the user asked for) cancels it.
Only studies received after the pre-drafter started are considered, each at most once.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from app.assistant.drafting import DraftSettings, draft_report
from app.assistant.model_service import ModelService
from app.reporting.audit import AuditRecord, ReportStore
from app.reporting.report import Report
from app.reporting.studies import open_archive, study_info, study_series_paths

log = logging.getLogger(__name__)


class PreDrafter:
    """Call :meth:`run_once` periodically (or :meth:`start` a thread that does)."""

    def __init__(
        self,
        service: ModelService,
        archive_dir: Path,
        store: ReportStore,
        *,
        stable_seconds: float = 30.0,
        idle_seconds: float = 60.0,
        slices: int = 32,
        settings: DraftSettings | None = None,
    ) -> None:
        self.service = service
        self.archive_dir = Path(archive_dir)
        self.store = store
        self.stable_seconds = stable_seconds
        self.idle_seconds = idle_seconds
        self.slices = slices
        self.settings = settings or DraftSettings()
        with open_archive(self.archive_dir) as archive:
            self._cursor = archive.change_cursor()
        self._last_change: dict[str, float] = {}
        self._done: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll_archive(self, now: float) -> None:
        with open_archive(self.archive_dir) as archive:
            self._cursor, changed = archive.changes_since(self._cursor)
        for study_uid in changed:
            if study_uid not in self._done:
                self._last_change[study_uid] = now

    def run_once(self, now: float | None = None) -> list[str]:
        """Draft every stable, unreported new study while the model stays idle; returns their UIDs."""
        now = time.monotonic() if now is None else now
        self._poll_archive(now)
        drafted = []
        for study_uid, changed_at in sorted(self._last_change.items(), key=lambda item: item[1]):
            if now - changed_at < self.stable_seconds or not self.service.idle(self.idle_seconds):
                continue
            del self._last_change[study_uid]
            self._done.add(study_uid)
            if self.store.reports_for_study(study_uid):
                continue
            if self._draft(study_uid):
                drafted.append(study_uid)
        return drafted

    def _draft(self, study_uid: str) -> bool:
        from app.assistant.ai_inputs import AIView, visual_item_for
        from app.assistant.chat import ScreenContext, default_scope, sent_input
        from viewer.loader import load_volume

        try:
            series = study_series_paths(study_uid, self.archive_dir)
            series_uid, modality, paths = series[0]
            volume, _warnings = load_volume(paths)
            context = ScreenContext(study_uid, series_uid, volume, modality=modality)
            depth = volume.voxels.shape[0]
            geometric = volume.metadata.get("has_patient_geometry", True) and not volume.frame_start_times_ms
            scope = default_scope(context, "volume" if depth > 1 and geometric else None, slices=self.slices)
            item = visual_item_for(volume, scope.view() if scope else AIView())
            report = Report(study_info(paths))
            audit = AuditRecord(report.report_id, study_uid)
            generation = draft_report(
                self.service,
                report,
                audit,
                [item],
                [sent_input(scope, item.sampled_indices)],
                settings=self.settings,
                background=True,
            )
        except Exception:  # one bad study must not stop pre-drafting of the others
            log.exception("pre-draft failed for study %s", study_uid)
            return False
        if generation.outcome != "completed":
            log.info("pre-draft for study %s %s; not kept", study_uid, generation.outcome)
            self._done.discard(study_uid)
            self._last_change[study_uid] = time.monotonic()
            return False
        self.store.save(report, audit)
        log.info("pre-drafted report %s for study %s", report.report_id, study_uid)
        return True

    def start(self, interval: float = 10.0) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                self.run_once()

        self._thread = threading.Thread(target=loop, name="pre-drafter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
