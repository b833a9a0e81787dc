"""Receiver processes die with the supervisor that started them.

Workers share the port with ``SO_REUSEPORT``; one left behind by a killed supervisor would go on
receiving with nobody reporting it. On Linux the kernel sends the worker SIGTERM when its parent
dies (``prctl(PR_SET_PDEATHSIG)``); :func:`parent_is` is the portable check the worker also makes
twice a second.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> bool:
    """Ask for ``sig`` when the parent dies; False when the parent is already gone."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
                log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        except (OSError, AttributeError) as exc:
            log.warning("cannot ask to die with the parent process: %s", exc)
    return parent_is(parent_pid)  # it may have died before prctl: then no signal will come


def parent_is(parent_pid: int) -> bool:
    """Whether our parent is still ``parent_pid`` (an orphan is re-parented to init or a reaper)."""
    return os.getppid() == parent_pid
