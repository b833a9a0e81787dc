"""Worker processes for decoding compressed images in parallel.

pydicom's decoders (GDCM, pylibjpeg, pyjpegls) hold the GIL (~5-10 ms a 512² lossless slice), so
threads decode one slice at a time. The loader hands compressed single-frame files that
:mod:`viewer.decode_gil_free` does not take (JPEG-LS, RLE, colour JPEG ...) to these processes.
The pool starts on first use (forkserver: no copy of the caller's threads or Qt state; the server
preloads the decoder modules once) and is kept for later loads; its workers exit with the
application. ``HULU_DECODE_PROCESSES=0`` turns it off (decode in threads), a number
sets the worker count (default: the CPUs this process may use, at most 8; none on one CPU).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
import types
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

import numpy as np

from viewer.decode import decode_with_pydicom, read_dataset

log = logging.getLogger(__name__)

_MAX_WORKERS = 8
_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def worker_count() -> int:
    setting = os.environ.get("HULU_DECODE_PROCESSES", "").strip()
    if setting:
        try:
            return max(int(setting), 0)
        except ValueError:
            log.warning("HULU_DECODE_PROCESSES=%r is not a number; using the default", setting)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cpus, _MAX_WORKERS) if cpus > 1 else 0


def decode_processes() -> ProcessPoolExecutor | None:
    """The shared decoding pool, started on the first call; None when turned off."""
    global _pool
    with _lock:
        if _pool is None:
            workers = worker_count()
            if workers < 1:
                return None
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            if "forkserver" in methods:
                context.set_forkserver_preload(["viewer.decode", "viewer.decode_processes"])
            with _main_module_hidden():  # all workers start now, none re-runs the caller's script
                _pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
                for _ in range(workers):
                    _pool.submit(_ready)
            log.info("started %d decoding processes", workers)
        return _pool


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start processes without handing them the caller's main script: multiprocessing would run
    it again in every worker (and the forkserver), which a script without an ``if __name__ ==
    "__main__"`` guard does not survive (it would start loading again)."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _ready() -> None:
    """A no-op task: submitting one per worker starts them all at once."""


def start_in_background() -> None:
    """Start the pool in a helper thread (a load calls this as soon as it sees compressed files,
    so the processes start while the headers are scanned)."""
    if _pool is None and worker_count() > 0:
        threading.Thread(target=decode_processes, name="start-decoding-processes", daemon=True).start()


def forget(pool: ProcessPoolExecutor | None = None) -> None:
    """Drop a broken pool (a worker died) so the next load starts a fresh one (``pool``: only if
    it is still the current one; None: whichever is current)."""
    global _pool
    with _lock:
        if _pool is not None and (pool is None or pool is _pool):
            broken, _pool = _pool, None
            broken.shutdown(wait=False, cancel_futures=True)


def decode_file(path: str) -> np.ndarray:
    """Stored values (frames, rows, cols) of every frame of a file (runs in a worker)."""
    return decode_with_pydicom(read_dataset(path), None)
