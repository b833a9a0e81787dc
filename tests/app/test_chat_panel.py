"""The chat dock end to end with the tiny model: chips, streaming, stop, follow-ups, no model."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import Qt, QUrl

from app.assistant.ai_inputs import visual_item_for
from app.assistant.chat import AI_NOTICE, ScreenContext, default_scope, summarise
from app.assistant.model_service import ModelService
from app.gui.chat_panel import ChatPanel
from dicom_net.synthetic import SeriesGeometry, ct_series, write_datasets
from inference.inputs import build_model_inputs
from inference.prompting import Conversation
from tests.reporting.model_fixtures import *
from viewer.loader import load_volume


@pytest.fixture(scope="module")
def ct_context(tmp_path_factory):
    paths = write_datasets(
        list(ct_series(SeriesGeometry(rows=48, columns=48, slices=12))), tmp_path_factory.mktemp("chat-ct")
    )
    volume, _ = load_volume(paths)
    return ScreenContext(
        "1.2.3.100",
        str(volume.metadata["series_uid"]),
        volume,
        modality="CT",
        series_label="Phantom CT",
        plane="axial",
        slice_index=5,
        window=(400.0, 40.0),
    )


def test_token_estimate_on_the_chips_matches_what_the_model_gets(ct_context, tiny_model_service):
    tokenizer = tiny_model_service.loaded.tokenizer
    for kind in ("image", "volume"):
        scope = default_scope(ct_context, kind, slices=6)
        conversation = Conversation()
        conversation.add_user("q", [visual_item_for(ct_context.volume, scope.view())])
        inputs = build_model_inputs(
            tokenizer, conversation, max_tokens=512, chat_template=tiny_model_service.loaded.chat_template
        )
        assert summarise(ct_context.volume, scope, 512).visual_tokens == inputs.visual_tokens


def test_chips_show_what_will_be_sent_and_follow_edits(qtbot, ct_context, tiny_model_service):
    panel = ChatPanel(tiny_model_service, lambda: ct_context, max_visual_tokens=512)
    qtbot.addWidget(panel)
    assert panel.notice.text() == AI_NOTICE
    assert panel.chip_texts[:5] == ["Series Phantom CT", "Plane axial", "slice 6", "W/L 400/40", "1 image(s)"]
    assert "Series&nbsp;Phantom&nbsp;CT" in panel.chips.text()
    panel.kind_box.setCurrentIndex(panel.kind_box.findData("volume"))
    panel.slices_spin.setValue(8)
    panel.width_spin.setValue(1500)
    panel.level_spin.setValue(-600)
    assert "8 slices" in panel.chip_texts and "W/L 1500/-600" in panel.chip_texts
    assert panel.scope.kind == "volume" and panel.scope.window == (1500.0, -600.0)
    assert panel.quick_box.itemText(0) == "Describe the findings on these CT slices."


def test_ask_streams_then_follow_up_reuses_the_conversation(qtbot, ct_context, tiny_model_service):
    visits = []
    panel = ChatPanel(
        tiny_model_service,
        lambda: ct_context,
        max_new_tokens=12,
        max_visual_tokens=256,
        navigate=lambda *where: visits.append(where),
    )
    qtbot.addWidget(panel)
    deltas = []
    panel.delta_arrived.connect(lambda r, a: deltas.append(a))
    assert panel.ask("What organ is this?")
    assert not panel.send_button.isEnabled() and panel.stop_button.isEnabled()
    qtbot.waitUntil(lambda: panel._worker is None, timeout=60000)
    session = panel.session
    answer = session.history[-1]
    assert answer.role == "assistant" and answer.finished and answer.text
    assert answer.text == "".join(deltas)
    assert (
        "AI draft:" in panel.history_view.toPlainText()
        and "What organ is this?" in panel.history_view.toPlainText()
    )
    assert session.generations[-1].inputs[0].slices == [5]
    assert session.history[0].slices == [5] and "Images: axial 6" in panel.history_view.toPlainText()
    panel._toggle_reasoning(QUrl("goto:0:5"))  # the slice link under the question
    assert visits == [(ct_context.series_uid, "axial", 5)]
    first_prompt = session.generations[-1].prompt_tokens
    assert panel.ask("And the other side?")
    qtbot.waitUntil(lambda: panel._worker is None, timeout=60000)
    assert session.generations[-1].inputs == []  # same scope: no new images attached
    assert session.generations[-1].prompt_tokens > first_prompt
    assert tiny_model_service.engine.cached_tokens(session.conversation_id) > first_prompt
    assert len(session.history) == 4 and panel.send_button.isEnabled()

    reopened = ChatPanel(tiny_model_service, lambda: ct_context)  # e.g. after a restart
    qtbot.addWidget(reopened)
    assert reopened.session.restored == 4 and reopened.session.conversation.turns == []
    assert "And the other side?" in reopened.history_view.toPlainText()


def test_stop_cancels_the_answer(qtbot, ct_context, tiny_model_service):
    panel = ChatPanel(tiny_model_service, lambda: ct_context, max_new_tokens=3000, max_visual_tokens=256)
    qtbot.addWidget(panel)
    panel.delta_arrived.connect(lambda r, a: panel.stop())
    panel.ask("Describe.")
    qtbot.waitUntil(lambda: panel._worker is None, timeout=60000)
    generation = panel.session.generations[-1]
    assert generation.outcome == "cancelled" and generation.new_tokens < 3000


def test_thinking_reasoning_is_folded_until_clicked(qtbot, ct_context, tiny_model_service):
    panel = ChatPanel(tiny_model_service, lambda: ct_context)
    qtbot.addWidget(panel)
    session = panel.session
    from app.assistant.chat import ChatMessage

    session.history += [ChatMessage("user", "q"), ChatMessage("assistant", "Answer", reasoning="step one")]
    panel._render_history()
    assert "show reasoning (8 chars)" in panel.history_view.toPlainText()
    assert "step one" not in panel.history_view.toPlainText()
    panel._toggle_reasoning(QUrl("reason:1"))
    assert "step one" in panel.history_view.toPlainText()


def test_without_a_model_the_panel_says_how_to_install_and_cannot_send(qtbot, ct_context):
    panel = ChatPanel(ModelService(None), lambda: ct_context)
    qtbot.addWidget(panel)
    panel.show()
    assert panel.model_label.isVisible() and "Settings > Model" in panel.model_label.text()
    assert not panel.send_button.isEnabled()
    assert panel.ask("anything?") is False
    assert "Series Phantom CT" in panel.chip_texts  # the rest still works


def test_without_an_open_series_nothing_is_offered(qtbot, tiny_model_service):
    panel = ChatPanel(tiny_model_service, lambda: None)
    qtbot.addWidget(panel)
    assert "Open a series" in panel.chips.text() and not panel.send_button.isEnabled()


def test_scope_controls_appear_only_with_an_open_series(qtbot, ct_context, tiny_model_service):
    shown = [None]
    panel = ChatPanel(tiny_model_service, lambda: shown[0])
    qtbot.addWidget(panel)
    panel.show()
    controls = (
        panel.kind_box,
        panel.plane_box,
        panel.slice_spin,
        panel.slices_spin,
        panel.width_spin,
        panel.level_spin,
        panel.refresh_button,
    )
    assert not any(w.isVisibleTo(panel) for w in controls)  # no "slice 0", "W 1" placeholders
    shown[0] = ct_context
    panel.refresh_from_screen()
    assert all(
        w.isVisibleTo(panel)
        for w in (
            panel.kind_box,
            panel.plane_box,
            panel.slice_spin,
            panel.width_spin,
            panel.level_spin,
            panel.refresh_button,
        )
    )
    assert panel.slice_spin.value() == ct_context.slice_index + 1
    assert (panel.width_spin.value(), panel.level_spin.value()) == ct_context.window


def test_cine_is_asked_as_video_with_the_frames_on_the_chips(qtbot, tmp_path, tiny_model_service):
    from dicom_net.synthetic import ultrasound_cine

    cine = ultrasound_cine(frames=75, rows=64, columns=80, frame_time_ms=40.0)  # 3 s at 25 fps
    path = tmp_path / "us.dcm"
    cine.save_as(path, enforce_file_format=True)
    volume, _ = load_volume([path])
    context = ScreenContext(
        cine.StudyInstanceUID, cine.SeriesInstanceUID, volume, modality="US", frame_index=10
    )
    panel = ChatPanel(tiny_model_service, lambda: context, max_new_tokens=4, max_visual_tokens=256)
    qtbot.addWidget(panel)
    assert panel.scope.kind == "cine" and "cine 3 frames @ 1 fps" in panel.chip_texts
    assert panel.quick_box.itemText(0) == "Describe what this ultrasound clip shows."
    assert panel.ask("What moves?")
    qtbot.waitUntil(lambda: panel._worker is None, timeout=60000)
    sent = panel.session.generations[-1].inputs[0]
    assert (sent.kind, sent.slices, sent.frames) == ("cine", [0, 25, 50], 3)
    assert panel.session.generations[-1].outcome == "completed"


def test_panel_says_loading_then_enables_asking_when_the_model_is_ready(qtbot, ct_context, tiny_model_folder):
    service = ModelService(tiny_model_folder, device="cpu", quantization="none")
    panel = ChatPanel(service, lambda: ct_context)
    qtbot.addWidget(panel)
    panel.show()
    assert service.state.kind == "loading" and panel.model_label.isVisible()
    assert not panel.send_button.isEnabled()
    service.start_loading()
    try:
        qtbot.waitUntil(
            lambda: panel.send_button.isEnabled(), timeout=60000
        )  # state crossed threads by signal
        assert not panel.model_label.isVisible() and service.state.ready
    finally:
        service.close()


def test_a_broken_model_folder_is_reported_and_the_panel_keeps_working(qtbot, ct_context, tmp_path):
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    service = ModelService(tmp_path, device="cpu", quantization="none")
    panel = ChatPanel(service, lambda: ct_context)
    qtbot.addWidget(panel)
    service.start_loading()
    qtbot.waitUntil(lambda: service.state.kind == "failed", timeout=30000)
    qtbot.waitUntil(lambda: "could not be loaded" in panel.model_label.text(), timeout=5000)
    assert not panel.send_button.isEnabled() and "Series Phantom CT" in panel.chip_texts


def test_retention_spares_the_shown_and_open_studies_and_forgets_deleted_sessions(qtbot, ct_context):
    import os
    import time

    from app.assistant.chat import ChatMessage, ChatSession

    old = time.time() - 60 * 86400
    for uid in (ct_context.study_uid, "1.2.3.200", "1.2.3.300"):
        session = ChatSession(uid)
        session.history = [ChatMessage("user", f"question about {uid}")]
        session.save()
        os.utime(ChatSession.path_for(uid), (old, old))
    shown = [ct_context]
    panel = ChatPanel(ModelService(None), lambda: shown[0])
    qtbot.addWidget(panel)
    assert panel.session.restored == 1  # the shown study's history, 60 days old
    panel.sessions["1.2.3.300"] = ChatSession.load("1.2.3.300")  # visited earlier in this run
    assert panel.purge_expired_history(30, also_open={"1.2.3.200"}) == ["1.2.3.300"]
    assert ChatSession.path_for(ct_context.study_uid).exists()  # shown now: untouched
    assert ChatSession.path_for("1.2.3.200").exists()  # open for reading: untouched
    assert not ChatSession.path_for("1.2.3.300").exists() and "1.2.3.300" not in panel.sessions
    shown[0] = None  # the user moved away from that study
    panel.refresh_from_screen()
    assert sorted(panel.purge_expired_history(30)) == sorted([ct_context.study_uid, "1.2.3.200"])
    assert not ChatSession.path_for(ct_context.study_uid).exists()
    shown[0] = ct_context
    panel.refresh_from_screen()
    assert panel.session.history == [] and panel.session.restored == 0  # not shown, not written back


def test_mounted_panel_applies_the_configured_retention_at_start_and_on_settings_change(
    archive, make_window, qtbot
):
    import os
    import time

    from app.assistant.chat import ChatMessage, ChatSession
    from app.gui.launch import attach_assistant
    from app.services.settings_store import SettingsStore

    def old_history(uid: str, days: float) -> None:
        session = ChatSession(uid)
        session.history = [ChatMessage("user", "q")]
        session.save()
        stamp = time.time() - days * 86400
        os.utime(ChatSession.path_for(uid), (stamp, stamp))

    SettingsStore().apply_form({"general.outbox_retention_days": "10"})
    old_history("1.2.9.1", 12)
    old_history("1.2.9.2", 8)
    window = make_window(archive)
    workstation = attach_assistant(window)
    assert not ChatSession.path_for("1.2.9.1").exists() and ChatSession.path_for("1.2.9.2").exists()
    assert workstation.chat_panel.retention_timer.isActive()
    window.apply_settings(SettingsStore().apply_form({"general.outbox_retention_days": "5"}))
    assert not ChatSession.path_for("1.2.9.2").exists()


def test_phases_show_with_progress_while_the_model_works_then_hide(qtbot, ct_context, tiny_model_service):
    panel = ChatPanel(tiny_model_service, lambda: ct_context, max_new_tokens=6, max_visual_tokens=256)
    qtbot.addWidget(panel)
    panel.show()
    shown = []  # what the real widgets displayed at each phase signal (GUI thread)
    panel.phase_changed.connect(
        lambda phase: shown.append(
            (phase.name, panel.phase_label.text(), panel.progress.isVisible(), panel.progress.maximum())
        ),
        Qt.ConnectionType.QueuedConnection,  # after the panel's own slot has updated the widgets
    )
    assert not panel.phase_label.isVisible() and not panel.progress.isVisible()
    assert panel.ask("Describe the findings.")
    assert panel.phase_label.isVisible() and panel.phase_label.text().startswith("Preparing images")
    qtbot.waitUntil(lambda: panel._worker is None, timeout=60000)
    qtbot.wait(50)
    names = [name for name, *_ in shown]
    assert names[0] == "preparing" and {"seeing", "reading", "writing"} <= set(names)
    reading = next(s for s in shown if s[0] == "reading")
    prompt_tokens = panel.session.generations[-1].prompt_tokens
    assert (
        reading[1].startswith(f"Reading {prompt_tokens} prompt tokens")
        and reading[2]
        and reading[3] == prompt_tokens
    )
    writing = [s for s in shown if s[0] == "writing"]
    assert writing and writing[0][1].startswith("Writing: 0 of at most 6 tokens")
    assert all(visible for _n, _t, visible, _m in shown)
    assert not panel.phase_label.isVisible() and not panel.progress.isVisible()  # hidden when done


def test_stop_while_the_prompt_is_read_cancels_before_any_answer(qtbot, ct_context, tiny_model_service):
    panel = ChatPanel(tiny_model_service, lambda: ct_context, max_new_tokens=200, max_visual_tokens=256)
    qtbot.addWidget(panel)
    panel.show()

    def press_stop(phase) -> None:
        if phase.name == "reading" and panel.stop_button.isEnabled():
            qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)

    panel.phase_changed.connect(press_stop)
    engine = tiny_model_service.engine
    original = engine._decoder_step

    def reading_until_stopped(embeds, cache):  # the tiny model reads faster than a click
        deadline = time.monotonic() + 10
        while not (panel._cancel is not None and panel._cancel.is_set()) and time.monotonic() < deadline:
            time.sleep(0.01)
        return original(embeds, cache)

    engine._decoder_step = reading_until_stopped
    try:
        assert panel.ask("Describe the findings.")
        qtbot.waitUntil(lambda: panel._worker is None, timeout=60000)
    finally:
        del engine._decoder_step
    generation = panel.session.generations[-1]
    assert generation.outcome == "cancelled" and generation.new_tokens == 0
    assert panel.send_button.isEnabled() and not panel.progress.isVisible()


def test_cpu_slow_mode_is_said_before_asking_with_an_estimate_once_measured(
    qtbot, ct_context, tiny_model_folder
):
    service = ModelService(tiny_model_folder, device="cpu", quantization="none")
    assert service.load_now().ready and service.slow_mode
    try:
        panel = ChatPanel(service, lambda: ct_context, max_new_tokens=8, max_visual_tokens=256)
        qtbot.addWidget(panel)
        panel.show()
        assert panel.slow_label.isVisible() and panel.slow_label.text().startswith("CPU slow mode")
        assert "first answer measures" in panel.slow_label.text()
        assert panel.ask("Describe the findings.")
        qtbot.waitUntil(lambda: panel._worker is None, timeout=60000)
        speed = service.speed
        assert speed is not None and speed.read_tokens_per_s > 0 and speed.write_tokens_per_s > 0
        text = panel.slow_label.text()
        assert "This question: about " in text and f"writing {speed.write_tokens_per_s:.1f} tokens/s" in text
        assert panel.slow_label.isVisible()
    finally:
        service.close()


def test_closing_a_study_frees_its_cached_conversation(qtbot, ct_context, tiny_model_service):
    from app.assistant.chat import conversation_id_for

    panel = ChatPanel(tiny_model_service, lambda: ct_context, max_new_tokens=4, max_visual_tokens=256)
    qtbot.addWidget(panel)
    assert panel.ask("Describe the findings.")
    qtbot.waitUntil(lambda: panel._worker is None, timeout=60000)
    engine = tiny_model_service.engine
    assert engine.cached_tokens(conversation_id_for(ct_context.study_uid)) > 0
    panel.forget_study(ct_context.study_uid)
    assert engine.cached_tokens(conversation_id_for(ct_context.study_uid)) == 0


def test_status_bar_names_cpu_slow_mode_and_a_closed_study_frees_its_cache(
    demo_archive, make_window, qtbot, tiny_model_folder
):
    from app.assistant.chat import conversation_id_for
    from app.gui.launch import attach_assistant
    from app.services.settings_store import SettingsStore

    SettingsStore().apply_form({"model.folder": str(tiny_model_folder), "model.device": "cpu"})
    window = make_window(demo_archive)
    workstation = attach_assistant(window)
    assert workstation.model_service.quantization == "auto"  # not NF4 on a CPU by default
    qtbot.waitUntil(lambda: window.model_state is not None and window.model_state.ready, timeout=60000)
    assert window.model_label.text() == "Model: ready (CPU slow mode)"
    assert workstation.model_service.loaded.report.quantization == "none"
    study_uid = window.browser_logic.rows[0].study_uid
    window.open_study(study_uid)
    panel = workstation.chat_panel
    qtbot.waitUntil(lambda: panel.send_button.isEnabled(), timeout=60000)
    panel.max_new_tokens, panel.max_visual_tokens = 4, 256
    assert panel.ask("Describe the findings.")
    qtbot.waitUntil(lambda: panel._worker is None, timeout=60000)
    engine = workstation.model_service.engine
    assert engine.cached_tokens(conversation_id_for(study_uid)) > 0
    window.delete_study(study_uid, confirm=False)  # the study shown is closed
    assert engine.cached_tokens(conversation_id_for(study_uid)) == 0
    window.tasks.wait(30000)


def test_the_weights_are_hashed_once_not_at_every_start(tiny_model_folder):
    from app.assistant.model_service import hash_cache_path

    cache = hash_cache_path()
    cache.unlink(missing_ok=True)
    service = ModelService(tiny_model_folder, device="cpu", quantization="none")
    try:
        assert service.load_now().ready
    finally:
        service.close()
    remembered = __import__("json").loads(cache.read_text())
    assert any(name.endswith(".safetensors") for name in remembered)  # the next start re-hashes nothing
