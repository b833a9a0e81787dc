"""Background pre-drafting: new stable studies get an AI draft when the model is idle, never sent;
foreground requests cancel background work."""

from __future__ import annotations

import time

import numpy as np

from app.assistant.drafting import DraftSettings
from app.assistant.predraft import PreDrafter
from app.reporting.audit import ReportStore
from app.reporting.outbox import Outbox
from app.reporting.report import ReportStatus
from dicom_net.archive import Archive
from dicom_net.paths import default_archive_dir
from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets
from inference.engine import GenerationRequest
from inference.frames import image_item
from inference.inputs import build_model_inputs
from inference.prompting import Conversation


def store_study(tmp_path, name: str) -> str:
    datasets = list(ct_series(SeriesGeometry(rows=24, columns=24, slices=5)))
    with Archive(default_archive_dir()) as archive:
        for path in write_datasets(datasets, tmp_path / name):
            archive.store_file(path)
    return datasets[0].StudyInstanceUID


def test_new_stable_study_is_predrafted_once_and_not_sent(tmp_path, tiny_model_service):
    old_uid = store_study(tmp_path, "old")
    predrafter = PreDrafter(
        tiny_model_service,
        default_archive_dir(),
        ReportStore(),
        stable_seconds=30,
        idle_seconds=0,
        slices=4,
        settings=DraftSettings(max_new_tokens=16, max_visual_tokens=256),
    )
    new_uid = store_study(tmp_path, "new")
    assert predrafter.run_once(now=time.monotonic()) == []  # still arriving (not stable yet)
    assert predrafter.run_once(now=time.monotonic() + 31) == [new_uid]
    assert predrafter.run_once(now=time.monotonic() + 62) == []
    [report] = ReportStore().reports_for_study(new_uid)
    assert report.status is ReportStatus.DRAFT and report.unreviewed_ai_spans() >= 1
    audit = ReportStore().load(report.report_id)[1]
    assert audit.generations[0].purpose == "predraft" and len(audit.generations[0].inputs[0].slices) == 4
    assert ReportStore().reports_for_study(old_uid) == []
    assert Outbox().messages() == []


def test_foreground_request_cancels_background_work(tiny_model_service):
    loaded = tiny_model_service.loaded
    conversation = Conversation()
    conversation.add_user("Describe.", [image_item(np.zeros((28, 28), np.uint8))])
    inputs = build_model_inputs(
        loaded.tokenizer, conversation, max_tokens=64, chat_template=loaded.chat_template
    )
    background = tiny_model_service.submit(
        GenerationRequest(inputs=inputs, max_new_tokens=5000), background=True
    )
    next(iter(background))  # it is running
    assert not tiny_model_service.idle()
    foreground = tiny_model_service.submit(GenerationRequest(inputs=inputs, max_new_tokens=3))
    assert background.result(60).finish_reason == "cancelled"
    assert foreground.result(60).new_tokens == 3
    assert tiny_model_service.idle() and not tiny_model_service.idle(quiet_seconds=3600)
