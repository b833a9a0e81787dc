"""`hulu-workstation snapshot`: render one view of a series to PNG without a display, exactly as
the 2D view shows it (the same widget renders it offscreen). The rendering is `viewer.qt.snapshot`;
this module only resolves SERIES (through the archive, which is why it lives in `app`).

SERIES is a folder (or file) of DICOM files, or a Series Instance UID looked up in the archive
(``--archive DIR``, default the workstation's own archive). Geometry warnings (gantry tilt,
irregular spacing, split series) and the files left out (non-image objects such as SEG or SR,
unreadable files), one line each, are printed on stderr; the exit code is 0 on success, 2 on bad
input (unknown series, no images, position outside the volume).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "snapshot",
        help="render one view of a series to PNG (headless)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("series", metavar="SERIES", help="folder/file of DICOM files or a Series Instance UID")
    p.add_argument("--out", required=True, type=Path, metavar="FILE.png")
    p.add_argument(
        "--plane",
        choices=("axial", "coronal", "sagittal", "native"),
        default=None,
        help="default: axial (native for images without 3D geometry)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--index", type=int, help="slice index along the plane (0-based)")
    where.add_argument(
        "--position",
        type=float,
        metavar="MM",
        help="plane position in mm (axial: z, coronal: y, sagittal: x; LPS)",
    )
    p.add_argument("--window", type=float, metavar="W")
    p.add_argument("--level", type=float, metavar="L")
    p.add_argument("--slab", type=float, default=0.0, metavar="MM", help="thick-slab thickness in mm")
    p.add_argument("--slab-mode", choices=("mip", "minip", "mean"), default="mip")
    p.add_argument("--frame", type=int, help="frame of a cine / repetition of a dynamic series (0-based)")
    p.add_argument("--size", default="512x512", metavar="WxH")
    p.add_argument(
        "--overlay",
        choices=("full", "labels", "none"),
        default="full",
        help="full: as the 2D view draws it (texts, orientation letters, scale bar); "
        "labels: orientation letters only; none: image pixels only",
    )
    p.add_argument("--archive", type=Path, metavar="DIR", help="archive to look a Series Instance UID up in")
    p.set_defaults(func=run_snapshot)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 512x512, not {text!r}") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise ValueError("--size must be between 16x16 and 8192x8192")
    return w, h


def run_snapshot(args: argparse.Namespace) -> int:
    from app.assistant.ai_inputs import series_files
    from viewer.loader import LoadError
    from viewer.qt.snapshot import snapshot

    try:
        size = _size(args.size)
        files = series_files(args.series, args.archive)
        if not files:
            raise ValueError(f"no files in {args.series}")
        view = snapshot(
            files,
            args.out,
            plane=args.plane,
            index=args.index,
            position_mm=args.position,
            window=args.window,
            level=args.level,
            slab_mm=args.slab,
            slab_mode=args.slab_mode,
            frame=args.frame,
            size=size,
            overlay=args.overlay,
        )
    except (ValueError, LoadError) as exc:
        print(f"snapshot: {exc}", file=sys.stderr)
        return 2
    for warning in view.warnings:
        print(warning, file=sys.stderr)
    print(
        f"wrote {args.out} ({size[0]}x{size[1]}, {view.plane.shape[1]}x{view.plane.shape[0]} pixels at "
        f"{view.plane.pixel_spacing[1]:.3g}x{view.plane.pixel_spacing[0]:.3g} mm, "
        f"W {view.window:g} L {view.level:g})"
    )
    return 0
