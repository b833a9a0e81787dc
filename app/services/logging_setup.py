"""Logging that carries UIDs and counts, never patient names, IDs or report text.

Code logs PHI only through :func:`phi`, which renders the value when the debug switch
(``--debug-phi`` or ``HULU_DEBUG_PHI=1``) is on and a redaction marker otherwise.
"""

from __future__ import annotations

import logging
import os

_ALLOW_PHI = os.environ.get("HULU_DEBUG_PHI") == "1"


def phi(value: object) -> str:
    """A log-safe rendering of a value that may identify a patient or carry report text."""
    return str(value) if _ALLOW_PHI else "<redacted>"


def configure_logging(*, verbose: bool = False, allow_phi: bool = False) -> None:
    global _ALLOW_PHI
    _ALLOW_PHI = _ALLOW_PHI or allow_phi
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
