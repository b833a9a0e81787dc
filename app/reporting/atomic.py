"""Atomic JSON files for reports, audits and the outbox (the byte writer is `hulu_common.atomic`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hulu_common.atomic import write_bytes_atomic

__all__ = ["read_json", "write_bytes_atomic", "write_json_atomic"]


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8"))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
