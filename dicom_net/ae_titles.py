"""DICOM Application Entity titles: the one validation rule and the workstation's own default."""

from __future__ import annotations

WORKSTATION_AE_TITLE = "HULUWS"  # our AE title (listener, calling AE) unless configured otherwise


def validate_ae_title(value: str, what: str = "AE title") -> str:
    """``value`` stripped, if it is a valid AE title (1-16 printable ASCII, no backslash);
    otherwise ValueError saying what is wrong."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text, got {type(value).__name__}")
    stripped = value.strip()
    if not stripped:
        raise ValueError(f"{what} must not be empty")
    if len(stripped) > 16:
        raise ValueError(f"{what} {stripped!r} is longer than 16 characters")
    if any(not (0x20 <= ord(c) < 0x7F) or c == "\\" for c in stripped):
        raise ValueError(f"{what} {stripped!r} may hold only printable ASCII without backslash")
    return stripped
