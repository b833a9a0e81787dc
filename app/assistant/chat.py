"""Asking the local model about what is on screen (plain Python; the chat panel is its view).

A :class:`ScreenContext` is what the active viewport shows (read from the reading model:
series, plane or oblique geometry, slice or exact position, slab, window, orientation, cine
frame); an :class:`AskScope` is what will be sent, derived from it and editable (the panel's
chips): the current image (exactly the image on screen), the series as a volume (N slices
through the displayed plane) or the cine. Only scopes that fit are offered (:func:`offered_scopes`).
:class:`ChatSession` keeps one conversation per study: follow-up questions reuse it (and the
engine's prefix cache); visuals are attached again only when the scope changed. Every answer
is an AI draft; nothing here stores or sends anything outside the workstation.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from app.assistant.ai_inputs import (
    AIView,
    is_cine,
    plane_name,
    resolve_plane,
    resolve_window,
    shown_image,
    visual_item_for,
)
from app.assistant.model_service import ModelService
from app.reading.layouts import ViewKind
from app.reporting.atomic import read_json, write_json_atomic
from app.reporting.audit import Generation, SentInput, now_iso
from app.reporting.outbox import DAY_SECONDS
from dicom_net.paths import data_dir
from inference.frames import DEFAULT_VIDEO_FPS, MAX_VIDEO_FRAMES
from inference.preprocess_budget import MAX_TOKENS, MIN_TOKENS, merge_size_for, target_size, tokens_per_frame
from inference.prompting import Conversation, ReasoningStream
from viewer.cine import cine_start_times_ms
from viewer.reslice import Plane, plane_positions
from viewer.volume import Volume

log = logging.getLogger(__name__)

ScopeKind = Literal["image", "volume", "cine"]
Display = tuple[tuple[float, float], tuple[float, float]]
AI_NOTICE = "AI-generated answers can be wrong. Review them against the images; not for diagnosis."


@dataclass
class ScreenContext:
    """What the active viewport shows right now."""

    study_uid: str
    series_uid: str
    volume: Volume
    modality: str = ""
    series_label: str = ""
    plane: str | None = None
    slice_index: int | None = None
    window: tuple[float, float] | None = None  # (width, level) as displayed
    invert: bool | None = None
    frame_index: int | None = None  # cine: the frame on screen
    shows: Literal["image", "3d", "cine"] = "image"  # a 2D image, a 3D rendering or a cine
    geometry: Plane | None = None  # the plane as resliced (an Oblique in a rotated MPR)
    position_mm: float | None = None  # the exact position shown (MPR), else the slice's
    slab: tuple[float, str] = (0.0, "mip")  # (thickness mm, mode) as displayed
    display: Display | None = None  # on-screen flips and quarter turns


def offered_scopes(ctx: ScreenContext) -> tuple[ScopeKind, ...]:
    """The scopes that fit what the viewport shows, the default first: a cine for a cine; the
    current image whenever a 2D image is on screen; the series as a volume for a stack with
    patient geometry (never a cine for a CT, nor a current image for a 3D rendering)."""
    volume = ctx.volume
    cine = ctx.shows == "cine" or is_cine(volume)  # a cine viewport, also one without frame timing
    kinds: list[ScopeKind] = []
    if cine and volume.voxels.shape[0] > 1:
        kinds.append("cine")
    if ctx.shows != "3d":
        kinds.append("image")
    if not cine and volume.voxels.shape[0] > 1 and volume.metadata.get("has_patient_geometry", True):
        kinds.append("volume")
    return tuple(kinds)


@dataclass
class AskScope:
    """What one question sends: the chips of the panel show and edit these fields."""

    kind: ScopeKind
    series_uid: str
    series_label: str
    plane: str
    slice_index: int
    slices: int
    window: tuple[float, float] | None
    invert: bool | None = None
    fps: float = DEFAULT_VIDEO_FPS
    max_frames: int = MAX_VIDEO_FRAMES
    geometry: Plane | None = None  # the exact on-screen plane (oblique), until the plane is edited
    position_mm: float | None = None
    slab_mm: float = 0.0
    slab_mode: str = "mip"
    display: Display | None = None

    def view(self) -> AIView:
        mode = {"image": "2d", "volume": "3d", "cine": "video"}[self.kind]
        width, level = self.window if self.window else (None, None)
        return AIView(
            mode=mode,
            plane=self.geometry if self.geometry is not None else (self.plane or None),
            index=self.slice_index,
            slices=self.slices,
            window=width,
            level=level,
            invert=self.invert,
            fps=self.fps,
            max_frames=self.max_frames,
            position_mm=self.position_mm if self.kind == "image" else None,
            slab_mm=self.slab_mm,
            slab_mode=self.slab_mode,
            display=self.display,
        )

    def choose(self, plane: str, slice_index: int) -> None:
        """The reader edited plane or slice: a named plane at a scroll step from now on (the
        exact on-screen geometry and position no longer apply)."""
        if plane != self.plane or slice_index != self.slice_index:
            if plane != self.plane:
                self.geometry = None
            self.plane, self.slice_index, self.position_mm = plane, slice_index, None


@dataclass(frozen=True)
class ScopeSummary:
    """The chips' text: exactly what will be sent."""

    series: str
    plane: str
    slices: str
    window: str
    images: int
    visual_tokens: int

    def chips(self) -> list[str]:
        return [
            f"Series {self.series}",
            f"Plane {self.plane}",
            self.slices,
            f"W/L {self.window}",
            f"{self.images} image(s)",
            f"~{self.visual_tokens} visual tokens",
        ]


def conversation_id_for(study_uid: str) -> str:
    """The engine conversation (KV cache) of a study's chat."""
    return f"chat-{study_uid}"


def default_scope(ctx: ScreenContext, kind: ScopeKind | None = None, slices: int = 32) -> AskScope:
    """The scope for what is on screen: the first of :func:`offered_scopes` (the cine for a cine,
    else the current image, else the series); ValueError for a kind that is not offered."""
    volume = ctx.volume
    offered = offered_scopes(ctx)
    if kind is None:
        if not offered:
            raise ValueError("nothing on screen can be sent")
        kind = offered[0]
    if kind not in offered:
        raise ValueError(f"{kind!r} does not fit this series (offered: {', '.join(offered)})")
    base_view = AIView(
        plane=ctx.geometry if ctx.geometry is not None else ctx.plane,
        window=ctx.window[0] if ctx.window else None,
        level=ctx.window[1] if ctx.window else None,
    )
    geometry = resolve_plane(volume, base_view)
    depth = len(plane_positions(volume, geometry))
    index = ctx.frame_index if kind == "cine" and ctx.frame_index is not None else ctx.slice_index
    index = depth // 2 if index is None else min(max(int(index), 0), depth - 1)
    window = ctx.window if ctx.window is not None else resolve_window(volume, base_view)
    return AskScope(
        kind=kind,
        series_uid=ctx.series_uid,
        series_label=ctx.series_label or ctx.series_uid[-12:],
        plane=plane_name(geometry),
        slice_index=index,
        slices=min(slices, depth),
        window=window,
        invert=ctx.invert,
        geometry=geometry if not isinstance(geometry, str) else None,
        position_mm=ctx.position_mm,
        slab_mm=float(ctx.slab[0]),
        slab_mode=ctx.slab[1],
        display=ctx.display,
    )


def frame_count(volume: Volume, scope: AskScope) -> int:
    if scope.kind == "image":
        return 1
    if scope.kind == "volume":
        return min(scope.slices, len(plane_positions(volume, scope.view().plane or scope.plane)))
    from inference.frames import video_frame_indices

    return len(
        video_frame_indices(volume.voxels.shape[0], cine_start_times_ms(volume), scope.fps, scope.max_frames)
    )


def summarise(volume: Volume, scope: AskScope, max_tokens: int = MAX_TOKENS) -> ScopeSummary:
    """Chip text and token estimate without resampling the pixels (cheap: one plane's shape)."""
    images = frame_count(volume, scope)
    if scope.kind == "cine":
        height, width = volume.voxels.shape[1:3]
    else:
        view = scope.view()
        view.mode = "2d"
        height, width = shown_image(volume, view).on_screen().shape[:2]
    merge = merge_size_for(scope.kind != "image")
    new_h, new_w = target_size(
        height, width, merge_size=merge, frame_count=images, max_tokens=max_tokens, min_tokens=MIN_TOKENS
    )
    tokens = tokens_per_frame(new_h, new_w, merge) * images
    if scope.kind == "image":
        slices = f"slice {scope.slice_index + 1}"
        if scope.slab_mm:
            slices += f", {scope.slab_mode.upper()} {scope.slab_mm:g} mm"
    elif scope.kind == "volume":
        slices = f"{images} slices"
    else:
        timing = f"@ {scope.fps:g} fps" if cine_start_times_ms(volume) else "(timing unknown)"
        slices = f"cine {images} frames {timing}"
    window = f"{scope.window[0]:g}/{scope.window[1]:g}" if scope.window else "as stored"
    return ScopeSummary(
        scope.series_label, scope.plane if scope.kind != "cine" else "cine", slices, window, images, tokens
    )


def sent_input(scope: AskScope, sampled: list[int]) -> SentInput:
    width, level = scope.window if scope.window else (None, None)
    return SentInput(
        scope.series_uid,
        scope.kind,
        scope.plane if scope.kind != "cine" else "",
        list(sampled),
        level,
        width,
        len(sampled),
    )


@dataclass
class ChatMessage:
    role: Literal["user", "assistant"]
    text: str
    reasoning: str = ""
    chips: list[str] = field(default_factory=list)
    finished: bool = True
    # what the question's answer rests on (the panel links each slice back to the viewer)
    series_uid: str = ""
    plane: str = ""
    slices: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Phase:
    """Where a question stands: ``preparing`` (images for the model), ``seeing`` (vision tower,
    frames), ``reading`` (prompt tokens), ``writing`` (new tokens); ``total`` 0 = unknown."""

    name: str
    done: int
    total: int
    elapsed_s: float

    def describe(self) -> str:
        if self.name == "preparing":
            return "Preparing images ..."
        if self.name == "seeing":
            return f"Looking at the images: frame {self.done} of {self.total}"
        if self.name == "reading":
            return f"Reading {self.total} prompt tokens: {self.done} done"
        return f"Writing: {self.done} of at most {self.total} tokens"


class _PhaseLog:
    """Relays phases to a callback and logs each phase change with the time spent (counts only)."""

    def __init__(self, study_uid: str, callback: Callable[[Phase], None] | None) -> None:
        self.study_uid, self.callback = study_uid, callback
        self.started = self.phase_started = time.perf_counter()
        self.current = ""

    def __call__(self, name: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if name != self.current:
            if self.current:
                log.info("chat %s: %s took %.2f s", self.study_uid, self.current, now - self.phase_started)
            log.info("chat %s: %s (%d)", self.study_uid, name, total)
            self.current, self.phase_started = name, now
        if self.callback is not None:
            self.callback(Phase(name, done, total, now - self.started))

    def finished(self, reason: str, new_tokens: int) -> None:
        now = time.perf_counter()
        log.info(
            "chat %s: %s took %.2f s; answer %s, %d tokens, %.2f s in all",
            self.study_uid,
            self.current,
            now - self.phase_started,
            reason,
            new_tokens,
            now - self.started,
        )


class ChatSession:
    """One study's conversation with the model, its visible history and audit of model calls."""

    def __init__(self, study_uid: str) -> None:
        self.study_uid = study_uid
        self.conversation = Conversation()
        self.history: list[ChatMessage] = []
        self.generations: list[Generation] = []
        self._last_scope: AskScope | None = None
        self._last_slices: list[int] = []
        self.restored = 0  # messages of an earlier session: shown, but not in the model's context

    @property
    def conversation_id(self) -> str:
        return conversation_id_for(self.study_uid)

    @staticmethod
    def path_for(study_uid: str) -> Path:
        if not re.fullmatch(r"[0-9.]{1,64}", study_uid):
            raise ValueError(f"not a DICOM UID: {study_uid!r}")
        return data_dir() / "chat" / f"{study_uid}.json"

    def save(self) -> None:
        """Keep the visible history (finished messages) in the data directory, atomically."""
        messages = [asdict(m) for m in self.history if m.finished]
        write_json_atomic(self.path_for(self.study_uid), {"study_uid": self.study_uid, "history": messages})

    @staticmethod
    def purge_expired(retention_days: int, keep: set[str], now: float | None = None) -> list[str]:
        """Delete the chat histories (PHI) last written more than ``retention_days`` ago, the
        same rule as the outbox's delivered payloads; studies in ``keep`` (open now) are never
        touched. Returns the study UIDs whose history was deleted."""
        if retention_days < 1:
            raise ValueError(f"retention_days must be at least 1, got {retention_days}")
        folder = data_dir() / "chat"
        if not folder.is_dir():
            return []
        cutoff = (time.time() if now is None else now) - retention_days * DAY_SECONDS
        purged = []
        for path in folder.glob("*.json"):
            study_uid = path.stem
            try:
                if study_uid in keep or path.stat().st_mtime > cutoff:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue  # removed meanwhile (another instance)
            purged.append(study_uid)
        if purged:
            log.info("chat: deleted %d history file(s) older than %d days", len(purged), retention_days)
        return purged

    @classmethod
    def load(cls, study_uid: str) -> ChatSession:
        """The study's earlier history (display only: the model starts a fresh conversation)."""
        session = cls(study_uid)
        try:
            path = cls.path_for(study_uid)
            if path.is_file():
                session.history = [ChatMessage(**m) for m in read_json(path)["history"]]
                session.restored = len(session.history)
        except (ValueError, KeyError, TypeError, OSError) as exc:
            log.warning("chat history of study %s not restored: %s", study_uid, type(exc).__name__)
        return session

    def ask(
        self,
        service: ModelService,
        question: str,
        volume: Volume,
        scope: AskScope,
        *,
        think: bool = False,
        max_new_tokens: int = 512,
        max_tokens: int = MAX_TOKENS,
        on_delta: Callable[[str, str], None] | None = None,
        cancel: threading.Event | None = None,
        on_phase: Callable[[Phase], None] | None = None,
    ) -> ChatMessage:
        """Ask on the calling (worker) thread; ``on_delta(reasoning, answer)`` per streamed piece,
        ``on_phase`` at each step of the work (preparing images, seeing, reading, writing).
        ``cancel`` stops the request at its next step, whichever phase it is in.

        Returns the assistant message (also appended to :attr:`history`).
        """
        from inference.engine import GenerationRequest
        from inference.inputs import build_model_inputs

        if not service.state.ready:
            raise RuntimeError(service.state.message)
        if not question.strip():
            raise ValueError("type a question first")
        phases = _PhaseLog(self.study_uid, on_phase)
        attach = self._last_scope != scope
        phases("preparing", 0, 0)
        visuals = [visual_item_for(volume, scope.view())] if attach else []
        summary = summarise(volume, scope, max_tokens)
        turn_count = len(self.conversation.turns)
        self.conversation.add_user(question, visuals, think=think)
        shown = [int(i) for i in visuals[0].sampled_indices] if visuals else self._last_slices
        self.history.append(
            ChatMessage(
                "user",
                question.strip(),
                chips=summary.chips(),
                series_uid=scope.series_uid,
                plane=scope.plane if scope.kind != "cine" else "cine",
                slices=list(shown),
            )
        )
        loaded = service.loaded
        try:
            inputs = build_model_inputs(
                loaded.tokenizer,
                self.conversation,
                max_tokens=max_tokens,
                chat_template=loaded.chat_template,
            )
        except Exception:
            del self.conversation.turns[turn_count:]
            self.history.pop()
            raise
        sampled = [int(i) for item in visuals for i in item.sampled_indices]
        generation = Generation(
            purpose="chat",
            model_id=service.model_id,
            model_checksum=service.checksum,
            prompt=question,
            settings={"think": think, "max_new_tokens": max_new_tokens, "max_visual_tokens": max_tokens},
            inputs=[sent_input(scope, sampled)] if attach else [],
            started_at=now_iso(),
            prompt_tokens=inputs.prompt_tokens,
        )
        self.generations.append(generation)
        answer = ChatMessage("assistant", "", finished=False)
        self.history.append(answer)
        splitter = ReasoningStream(inputs.think_open)
        handles: list[Any] = []

        def progress(phase: str, done: int, total: int) -> None:  # on the engine thread
            if cancel is not None and cancel.is_set() and handles:
                handles[0].cancel()
            phases(phase, done, total)

        handles.append(
            service.submit(
                GenerationRequest(
                    inputs=inputs,
                    conversation_id=self.conversation_id,
                    max_new_tokens=max_new_tokens,
                    on_progress=progress,
                )
            )
        )
        handle = handles[0]
        if cancel is not None and cancel.is_set():
            handle.cancel()
        for chunk in handle:
            if cancel is not None and cancel.is_set():
                handle.cancel()
            reasoning, text = splitter.push(chunk)
            self._grow(answer, reasoning, text, on_delta)
        reasoning, text = splitter.push("", final=True)
        self._grow(answer, reasoning, text, on_delta)
        result = handle.result()
        service.record_speed(result)
        phases.finished(result.finish_reason, result.new_tokens)
        answer.finished = True
        generation.finished_at = now_iso()
        generation.new_tokens = result.new_tokens
        generation.output_chars = len(result.text)
        generation.outcome = (
            "cancelled"
            if result.finish_reason == "cancelled"
            else f"failed: {result.error}"
            if result.finish_reason == "error"
            else "completed"
        )
        if result.finish_reason == "error":
            answer.text = answer.text or f"(the model failed: {result.error})"
        self.conversation.add_assistant(result.text, inputs.think_open)
        self._last_scope = replace(scope)
        self._last_slices = list(shown)
        self.save()
        return answer

    @staticmethod
    def _grow(
        answer: ChatMessage, reasoning: str, text: str, on_delta: Callable[[str, str], None] | None
    ) -> None:
        if not reasoning and not text:
            return
        answer.reasoning += reasoning
        answer.text += text
        if on_delta is not None:
            on_delta(reasoning, text)


def screen_context_from(main_window: Any) -> ScreenContext | None:
    """What the main window's active viewport shows, read from the reading model (the session's
    active viewport and its view state), never from the widgets."""
    reading = getattr(main_window, "reading", None)
    session = getattr(reading, "session", None)
    model = session.active_viewport() if session is not None else None
    series_uid = model.series_uid if model is not None else None
    volume = session.volumes.get(series_uid) if series_uid else None
    if volume is None or session.prior_of(series_uid) is not None:
        return None  # a prior's series (comparison) is never asked about or keyed into this study's report
    info = session.info(series_uid)
    base = ScreenContext(
        study_uid=session.study_uid,
        series_uid=series_uid,
        volume=volume,
        modality=getattr(info, "modality", "") or "",
        series_label=getattr(info, "description", "") or series_uid[-12:],
    )
    state = model.active_state()
    if state is None:  # a 3D rendering: the series can be sent, not an image of it
        return replace(base, shows="3d")
    if state.source is not volume:
        return None  # its view is not built yet
    m = state.display_matrix()
    cine = model.kind is ViewKind.CINE or is_cine(volume)
    return replace(
        base,
        plane=state.plane,
        slice_index=int(state.slice_index),
        window=None if volume.is_color else (float(state.window_width), float(state.window_center)),
        invert=state.invert,
        frame_index=int(state.slice_index) if cine else None,
        shows="cine" if cine else "image",
        geometry=state.geometry,
        position_mm=state.position_mm,
        slab=(state.slab_mm, state.slab_mode),
        display=((float(m[0, 0]), float(m[0, 1])), (float(m[1, 0]), float(m[1, 1]))),
    )
