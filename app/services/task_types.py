"""What a background task is, without Qt: its signature and how it says it was cancelled.

A task is a plain function ``fn(progress, cancel) -> result`` where ``progress(done, total, text)``
reports and ``cancel`` is a :class:`threading.Event` it checks between units of work; the GUI runs
it through :class:`app.gui.tasks.TaskManager`, tests and the command line call it directly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

ProgressFn = Callable[[int, int, str], None]
TaskFn = Callable[[ProgressFn, threading.Event], Any]


class Cancelled(Exception):
    """Raised by a task function that noticed its cancel event."""
