"""The `hulu-workstation` command line as a whole."""

from __future__ import annotations

import subprocess
import sys

from app.cli.main import build_parser

EXPECTED_COMMANDS = {"receive", "import", "archive", "pacs", "snapshot", "ask", "report"}


def test_every_workflow_has_a_sub_command() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert EXPECTED_COMMANDS <= set(sub.choices)


def test_command_line_starts_without_torch_qt_or_vtk() -> None:
    """The listener process runs `hulu-workstation receive`: it must not pay for the model or GUI stacks."""
    code = (
        "import sys; from app.cli.main import build_parser; build_parser();"
        "print(sorted(m for m in ('torch', 'transformers', 'PySide6', 'vtkmodules') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
