"""Background tasks with progress and cancel, reported to Qt through signals.

A task is a plain function ``fn(progress, cancel) -> result`` where ``progress(done, total, text)``
reports and ``cancel`` is a :class:`threading.Event` the function checks between units of work.
The same function runs in tests without Qt; :class:`TaskManager` runs it on a worker thread and
delivers progress/result on the GUI thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from app.services.task_types import Cancelled, TaskFn

log = logging.getLogger(__name__)


@dataclass
class TaskHandle:
    """One submitted task: its id, title, cancel event and latest progress."""

    task_id: int
    title: str
    cancel_event: threading.Event = field(default_factory=threading.Event)
    done: int = 0
    total: int = 0
    text: str = ""
    finished: bool = False

    def cancel(self) -> None:
        self.cancel_event.set()


class _Signals(QObject):
    progress = Signal(int, int, int, str)  # task id, done, total, text
    finished = Signal(int, object)  # task id, result
    failed = Signal(int, str)  # task id, message
    cancelled = Signal(int)


class _Runnable(QRunnable):
    def __init__(self, handle: TaskHandle, fn: TaskFn, signals: _Signals):
        super().__init__()
        self.handle, self.fn, self.signals = handle, fn, signals
        self.setAutoDelete(True)

    def run(self) -> None:
        h = self.handle

        def progress(done: int, total: int, text: str = "") -> None:
            self.signals.progress.emit(h.task_id, int(done), int(total), text)

        try:
            result = self.fn(progress, h.cancel_event)
        except Cancelled:
            self.signals.cancelled.emit(h.task_id)
            return
        except Exception as exc:  # reported to the user, never lost
            if h.cancel_event.is_set():  # e.g. files removed under a cancelled load: no error to show
                log.info("task %r cancelled (ended with %s)", h.title, type(exc).__name__)
                self.signals.cancelled.emit(h.task_id)
                return
            log.exception("task %r failed", h.title)
            self.signals.failed.emit(h.task_id, f"{type(exc).__name__}: {exc}")
            return
        if h.cancel_event.is_set():
            self.signals.cancelled.emit(h.task_id)
        else:
            self.signals.finished.emit(h.task_id, result)


class TaskManager(QObject):
    """Runs task functions on a thread pool; emits signals on the GUI thread.

    ``on_done(result)`` / ``on_error(message)`` / ``on_cancelled()`` callbacks given to
    :meth:`submit` run on the GUI thread. ``changed`` fires whenever any task starts, progresses or ends (for the status bar).
    """

    changed = Signal()
    task_failed = Signal(str, str)  # title, message

    def __init__(self, parent: QObject | None = None, max_threads: int = 2):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self._signals = _Signals(self)
        self._signals.progress.connect(self._on_progress)
        self._signals.finished.connect(self._on_finished)
        self._signals.failed.connect(self._on_failed)
        self._signals.cancelled.connect(self._on_cancelled)
        self._ids = itertools.count(1)
        self.active: dict[int, TaskHandle] = {}
        self._callbacks: dict[int, tuple[Callable | None, Callable | None, Callable | None]] = {}

    def submit(
        self,
        title: str,
        fn: TaskFn,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_cancelled: Callable[[], None] | None = None,
    ) -> TaskHandle:
        handle = TaskHandle(next(self._ids), title)
        self.active[handle.task_id] = handle
        self._callbacks[handle.task_id] = (on_done, on_error, on_cancelled)
        self.pool.start(_Runnable(handle, fn, self._signals))
        self.changed.emit()
        return handle

    def cancel_all(self) -> None:
        for handle in self.active.values():
            handle.cancel()

    def wait(self, msecs: int = 30000) -> bool:
        return self.pool.waitForDone(msecs)

    def summary(self) -> tuple[str, int, int] | None:
        """(title text, done, total) over the active tasks, or None when idle."""
        if not self.active:
            return None
        handles = list(self.active.values())
        first = handles[0]
        title = first.title + (f" (+{len(handles) - 1} more)" if len(handles) > 1 else "")
        if first.text:
            title += f": {first.text}"
        return title, first.done, first.total

    def _on_progress(self, task_id: int, done: int, total: int, text: str) -> None:
        handle = self.active.get(task_id)
        if handle:
            handle.done, handle.total, handle.text = done, total, text
            self.changed.emit()

    def _end(
        self, task_id: int
    ) -> tuple[TaskHandle | None, tuple[Callable | None, Callable | None, Callable | None]]:
        handle = self.active.pop(task_id, None)
        callbacks = self._callbacks.pop(task_id, (None, None, None))
        if handle:
            handle.finished = True
        self.changed.emit()
        return handle, callbacks

    def _on_finished(self, task_id: int, result: object) -> None:
        _, (on_done, _, _) = self._end(task_id)
        if on_done:
            on_done(result)

    def _on_failed(self, task_id: int, message: str) -> None:
        handle, (_, on_error, _) = self._end(task_id)
        if on_error:
            on_error(message)
        self.task_failed.emit(handle.title if handle else "task", message)

    def _on_cancelled(self, task_id: int) -> None:
        _, (_, _, on_cancelled) = self._end(task_id)
        if on_cancelled:
            on_cancelled()
