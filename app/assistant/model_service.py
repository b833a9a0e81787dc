"""The local Hulu-Med model as a service shared by the chat panel and the report drafter.

States: ``absent`` (no weights folder configured or found: says how to fix it), ``loading``
(in a background thread), ``ready``, ``failed`` (the reason). Nothing here touches Qt: the
widgets observe :attr:`ModelService.state` through ``on_state`` callbacks (from any thread).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HOW_TO_INSTALL = (
    "No Hulu-Med model is installed. Put a Hulu-Med checkpoint folder (safetensors + SHA256SUMS) on "
    "this machine and choose it in Settings > Model > folder. The rest of the workstation works without it."
)


SLOW_MODE_CHAT_NOTICE = (
    "CPU slow mode: no usable GPU, the model runs on the processor; answers take much longer"
)


@dataclass(frozen=True)
class ModelState:
    kind: str  # absent | loading | ready | failed
    message: str

    @property
    def ready(self) -> bool:
        return self.kind == "ready"


def hash_cache_path() -> Path:
    """Verified SHA-256 sums of the weights (by size and mtime): a 7B checkpoint (16 GB) is hashed
    once, not at every start (tens of seconds before the first answer)."""
    from dicom_net.paths import data_dir

    return data_dir() / "model-hashes.json"


def model_checksum(folder: Path) -> str:
    """SHA-256 of the checkpoint's SHA256SUMS manifest (it pins every file), or a note when absent."""
    manifest = Path(folder) / "SHA256SUMS"
    if not manifest.is_file():
        return "unverified: no SHA256SUMS"
    return "sha256:" + hashlib.sha256(manifest.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Speed:
    """Measured prompt-reading and writing speed (tokens/s) of the loaded model on this machine."""

    read_tokens_per_s: float
    write_tokens_per_s: float

    def estimate_seconds(self, prompt_tokens: int, new_tokens: int) -> float:
        return prompt_tokens / self.read_tokens_per_s + new_tokens / self.write_tokens_per_s


class ModelService:
    """Loads the model once in the background and owns its generation engine."""

    def __init__(
        self, folder: str | Path | None, *, device: str = "auto", quantization: str = "auto"
    ) -> None:
        self.folder = Path(folder) if folder else None
        self.device = device
        self.quantization = quantization
        self.loaded: Any = None
        self.engine: Any = None
        self._listeners: list[Callable[[ModelState], None]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._inflight: list[Any] = []
        self._background: list[Any] = []
        self._last_foreground = 0.0
        self._generation = 0  # bumped by reconfigure: a load started before it is discarded
        self._state = self._initial_state()
        self.speed: Speed | None = None  # measured on this machine by the last answers

    def _initial_state(self) -> ModelState:
        if self.folder is None or not self.folder.is_dir():
            where = f" ({self.folder} not found)" if self.folder else ""
            return ModelState("absent", HOW_TO_INSTALL + where)
        return ModelState("loading", "Model not loaded yet.")

    def reconfigure(self, folder: str | Path | None, *, device: str, quantization: str) -> None:
        """Settings > Model changed: drop the loaded model (freed in the background) and load the
        new folder in the background; no restart needed. Running requests are cancelled."""
        with self._lock:
            self._generation += 1
            old_engine = self.engine
            self.engine = self.loaded = None
            self._thread = None
            self.folder = Path(folder) if folder else None
            self.device, self.quantization = device, quantization
            self._inflight, self._background = [], []
        if old_engine is not None:
            threading.Thread(target=old_engine.close, name="model-unload", daemon=True).start()
        self._set_state(self._initial_state())
        self.start_loading()

    @property
    def state(self) -> ModelState:
        return self._state

    @property
    def model_id(self) -> str:
        if self.folder is None:
            return ""
        info = getattr(self.loaded, "info", None)
        model_type = getattr(info, "model_type", "")
        return f"{self.folder.name} ({model_type})" if model_type else self.folder.name

    @property
    def checksum(self) -> str:
        return model_checksum(self.folder) if self.folder else ""

    @property
    def slow_mode(self) -> bool:
        """The model runs on the CPU (no usable GPU): answers take much longer."""
        report = getattr(self.loaded, "report", None)
        return bool(getattr(report, "slow_mode", False))

    def record_speed(self, result: Any) -> None:
        """Remember how fast the last answer read its prompt and wrote (for time estimates)."""
        if result.finish_reason == "error" or result.ttft_seconds <= 0 or result.prefill_tokens <= 0:
            return
        write = result.decode_tokens_per_second or (self.speed.write_tokens_per_s if self.speed else 0.0)
        if write > 0:
            self.speed = Speed(result.prefill_tokens / result.ttft_seconds, write)

    def estimate_seconds(self, prompt_tokens: int, new_tokens: int) -> float | None:
        """Expected seconds for a question from the measured speed (None before any answer)."""
        return None if self.speed is None else self.speed.estimate_seconds(prompt_tokens, new_tokens)

    def forget_conversation(self, conversation_id: str) -> None:
        """Free the engine's cached KV of a conversation (its study was closed)."""
        engine = self.engine
        if engine is not None:
            engine.forget(conversation_id)

    def on_state(self, callback: Callable[[ModelState], None]) -> None:
        self._listeners.append(callback)

    def _set_state(self, state: ModelState) -> None:
        self._state = state
        for callback in list(self._listeners):
            callback(state)

    def start_loading(self) -> None:
        """Load in a background thread (no-op when absent, loading, ready)."""
        with self._lock:
            if self._state.kind == "absent" or self._thread is not None or self.engine is not None:
                return
            self._set_state(ModelState("loading", f"Loading the model from {self.folder.name} ..."))
            self._thread = threading.Thread(target=self._load, name="model-loader", daemon=True)
            self._thread.start()

    def wait_ready(self, timeout: float | None = None) -> ModelState:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self._state

    def load_now(self) -> ModelState:
        """Load on the calling thread (CLI use)."""
        if self._state.kind == "absent":
            return self._state
        self.start_loading()
        return self.wait_ready()

    def _load(self) -> None:
        generation, folder = self._generation, self.folder
        started = time.perf_counter()

        def phase(name: str) -> None:
            log.info("model loading: %s (%.1f s)", name, time.perf_counter() - started)
            if generation == self._generation:
                self._set_state(ModelState("loading", f"Loading the model from {folder.name}: {name} ..."))

        try:
            phase("starting the AI runtime (torch, transformers)")
            from inference.engine import Engine
            from inference.loading import load_model

            loaded = load_model(
                folder,
                device=self.device,
                quantization=self.quantization,
                hash_cache=hash_cache_path(),
                on_phase=phase,
            )
            engine = Engine(loaded)
        except Exception as exc:  # a bad folder must not take the app down
            log.exception("model loading failed")
            state = ModelState(
                "failed",
                f"The model could not be loaded from {folder}: {exc} "
                "Choose a Hulu-Med checkpoint folder in Settings > Model > folder.",
            )
            engine = None
        else:
            log.info("model ready: %s", loaded.report.summary())
            state = ModelState("ready", f"Model ready: {loaded.report.summary()}")
            if loaded.report.slow_mode:
                state = ModelState("ready", f"{state.message}. {SLOW_MODE_CHAT_NOTICE}")
        with self._lock:
            current = generation == self._generation
            if current:
                self._thread = None
                if engine is not None:
                    self.loaded, self.engine = loaded, engine
        if not current:  # Settings changed while loading: this model is not wanted any more
            if engine is not None:
                engine.close()
            return
        self._set_state(state)

    def submit(self, request: Any, *, background: bool = False) -> Any:
        """Queue a generation; a foreground request (chat, a draft the user asked for) first
        cancels background work (pre-drafting) so it never waits behind it."""
        if self.engine is None:
            raise RuntimeError(self._state.message)
        with self._lock:
            if not background:
                for handle in self._background:
                    handle.cancel()
                self._last_foreground = time.monotonic()
            handle = self.engine.submit(request)
            self._inflight = [h for h in self._inflight if not h.done] + [handle]
            self._background = [h for h in self._background if not h.done] + ([handle] if background else [])
            return handle

    def idle(self, quiet_seconds: float = 0.0) -> bool:
        """No request running or queued, and no foreground request for ``quiet_seconds``."""
        with self._lock:
            self._inflight = [h for h in self._inflight if not h.done]
            quiet = time.monotonic() - self._last_foreground >= quiet_seconds
            return self._state.ready and not self._inflight and quiet

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None
