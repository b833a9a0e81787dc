"""``emit(signal, *args)``: Signal.emit without PySide6 6.12's reference leak on Python 3.11.

On PySide6 6.12 with Python < 3.12, every ``SignalInstance.emit()`` called from Python returns
``True`` without owning a reference to it, so each call drops one reference to the ``True``
singleton; after a few hundred emits the interpreter aborts ("bool_dealloc: deallocating True
or False"). Python 3.12+ makes bools immortal, so nothing happens there. ``emit`` measures the
leak once and gives the reference back when it is present.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

from PySide6.QtCore import QObject, Signal


class _Probe(QObject):
    ping = Signal()


def _emit_leaks_result() -> bool:
    if sys.version_info >= (3, 12):
        return False
    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(8):
        probe.ping.emit()
    return sys.getrefcount(True) - before <= -8


_LEAKS = _emit_leaks_result()
if _LEAKS:  # hand back the references the probe took
    for _ in range(8):
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(True))


def emit(signal: Any, *args: object) -> None:
    """``signal.emit(*args)``, keeping the interpreter's reference counts right."""
    result = signal.emit(*args)
    if _LEAKS:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(result))
