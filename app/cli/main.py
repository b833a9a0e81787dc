"""`hulu-workstation`: one command line for the GUI and every headless workflow.

Each package contributes its sub-commands through a module with ``register(subparsers)``; the
modules are imported lazily so that `hulu-workstation receive` never loads Qt or torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that add sub-commands; each defines register(subparsers) and sets ``func`` defaults.
COMMAND_MODULES: tuple[str, ...] = (
    "dicom_net.cli",  # receive, import, archive
    "dicom_net.pacs_cli",  # pacs echo|find|retrieve|send
    "app.cli.snapshot",  # snapshot
    "app.cli.ask",  # ask
    "app.cli.report",  # report draft|send
    "app.cli.users",  # users add|list|remove|passwd
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hulu-workstation",
        description="Radiology workstation with a local Hulu-Med model. With no command, opens the app.",
    )
    parser.add_argument(
        "--debug-phi",
        action="store_true",
        help="allow patient names, IDs and report text in logs (debugging only)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="app: generate the demo study (CT, radiograph, US cine) if the archive is empty",
    )
    parser.add_argument(
        "--no-listener",
        action="store_true",
        help="app: do not start the DICOM listener process (an already running one is shown)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency, not a command module still to come
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from app.services.logging_setup import configure_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(verbose=args.verbose, allow_phi=args.debug_phi)
    if args.command is None:
        from app.gui.launch import run_gui

        return run_gui(args)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
