"""First-answer time: the app's real path (model service + chat session, as the chat panel uses
them) beside the ``ask`` CLI on the same study and question, in the same run.

    .venv/bin/python bench/first_answer.py [--scope image|volume] [--tokens 32]

Each path runs in a fresh interpreter (start-up, imports and loading included), on the demo CT
(120 x 256 x 256) with the tiny random test checkpoint, on the CPU:
- whole app: main window + demo study + chat panel (offscreen Qt), the question asked as soon as
  Ask is enabled, once with the quantization the app used to default to (NF4), once with ``auto``;
- model service + chat session (what the chat panel's Ask runs), then a follow-up, both ways;
- CLI: ``hulu-workstation ask`` (quantization ``auto``).
The phases (runtime start-up, files checked, weights, preparing images, reading, writing) are
logged by the product itself; pass ``--log`` to see them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/ itself must not shadow the project's packages (bench/inference.py vs inference/)
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
QUESTION = "Describe the findings."


def child_app(checkpoint: Path, ct_folder: Path, quantization: str, scope_kind: str, tokens: int) -> None:
    """The app's path in this (fresh) process; prints one JSON line of timings."""
    started = time.perf_counter()
    from app.assistant.chat import ChatSession, ScreenContext, default_scope
    from app.assistant.model_service import ModelService
    from viewer.loader import load_volume

    service = ModelService(checkpoint, device="auto", quantization=quantization)
    service.start_loading()  # at app start, while the user opens a study
    volume, _ = load_volume(sorted(ct_folder.glob("*.dcm")))
    scope = default_scope(ScreenContext("1.2.3", "ct", volume), kind=scope_kind)  # type: ignore[arg-type]
    opened = time.perf_counter()
    state = service.wait_ready(900)
    ready = time.perf_counter()
    if not state.ready:
        raise SystemExit(state.message)
    session = ChatSession("1.2.3")
    session.save = lambda: None  # type: ignore[method-assign]  (no history file from the bench)
    first: list[float] = []
    session.ask(
        service,
        QUESTION,
        volume,
        scope,
        max_new_tokens=tokens,
        on_delta=lambda *_: first or first.append(time.perf_counter()),
    )
    answered = time.perf_counter()
    session.ask(service, "Is it normal?", volume, scope, max_new_tokens=tokens)
    follow = time.perf_counter() - answered
    print(
        json.dumps(
            {
                "study_open_s": opened - started,
                "model_ready_s": ready - started,
                "first_piece_s": (first[0] if first else answered) - started,
                "answer_s": answered - started,
                "ask_to_answer_s": answered - ready,
                "follow_up_s": follow,
                "report": service.loaded.report.summary(),
            }
        )
    )
    service.close()


def child_gui(checkpoint: Path, quantization: str, tokens: int) -> None:
    """The whole app (main window, demo study, chat panel) in this fresh process, offscreen: the
    clock runs from interpreter start to the answer of a question typed as soon as Ask is enabled."""
    started = time.perf_counter()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    from PySide6.QtWidgets import QApplication

    from app.gui.launch import build_workstation
    from app.services.settings_store import SettingsStore

    SettingsStore().apply_form({"model.folder": str(checkpoint), "model.quantization": quantization})
    app = QApplication([])

    def wait_until(condition, what: str, timeout: float = 900.0) -> float:
        deadline = time.perf_counter() + timeout
        while not condition():
            if time.perf_counter() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            app.processEvents()
            time.sleep(0.005)
        return time.perf_counter() - started

    workstation = build_workstation(start_listener=False, create_demo=True)
    window, panel = workstation.window, workstation.chat_panel
    window.show()
    wait_until(lambda: window.browser_logic.rows, "the demo study")
    window.open_study(window.browser_logic.rows[0].study_uid)
    opened = time.perf_counter() - started
    ready = wait_until(panel.send_button.isEnabled, "the Ask button")
    panel.max_new_tokens = tokens
    first: list[float] = []
    panel.delta_arrived.connect(lambda *_: first or first.append(time.perf_counter() - started))
    panel.ask(QUESTION)
    answered = wait_until(lambda: panel._worker is None, "the answer")
    print(
        json.dumps(
            {
                "study_open_s": opened,
                "model_ready_s": ready,
                "first_piece_s": first[0] if first else answered,
                "answer_s": answered,
                "ask_to_answer_s": answered - ready,
                "follow_up_s": float("nan"),
                "report": workstation.model_service.loaded.report.summary(),
                "outcome": panel.session.generations[-1].outcome,
            }
        )
    )
    window.tasks.cancel_all()
    window.tasks.wait(10000)
    workstation.model_service.close()


def run(argv: list[str], log: bool, env: dict[str, str] | None = None) -> tuple[float, str]:
    env = dict(env or os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - started
    if log:
        print(
            "\n".join(line for line in done.stderr.splitlines() if " INFO " in line or "ms " in line),
            file=sys.stderr,
        )
    if done.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed: {done.stderr[-3000:]}")
    return elapsed, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scope", choices=("image", "volume"), default="image")
    parser.add_argument("--tokens", type=int, default=32, help="answer length (max new tokens)")
    parser.add_argument("--log", action="store_true", help="print the phase log lines of each run")
    parser.add_argument("--child", nargs=3, metavar=("CHECKPOINT", "CT", "QUANT"), help=argparse.SUPPRESS)
    parser.add_argument("--gui-child", nargs=2, metavar=("CHECKPOINT", "QUANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child or args.gui_child:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(relativeCreated)8.0f ms %(name)s: %(message)s")
        if args.gui_child:
            child_gui(Path(args.gui_child[0]), args.gui_child[1], args.tokens)
        else:
            child_app(Path(args.child[0]), Path(args.child[1]), args.child[2], args.scope, args.tokens)
        return
    from dicom_net.synthetic import demo_study
    from tests.inference.tiny_checkpoint import write_tiny_checkpoint

    with tempfile.TemporaryDirectory(prefix="first-answer-") as tmp:
        work = Path(tmp)
        checkpoint = write_tiny_checkpoint(work / "model")
        demo_study(work / "study")
        ct = work / "study" / "ct"
        apps = {}
        argv = [sys.executable, __file__, "--scope", args.scope, "--tokens", str(args.tokens)]
        for quant in ("nf4", "auto"):
            home = work / f"home-{quant}"  # the app's own data folder: archive, settings, hashes
            env = dict(os.environ, HULU_WORKSTATION_HOME=str(home))
            _wall, out = run([*argv, "--gui-child", str(checkpoint), quant], args.log, env)
            apps[f"whole app (GUI), {quant}"] = json.loads(out.strip().splitlines()[-1])
        for quant in ("nf4", "auto"):
            _wall, out = run([*argv, "--child", str(checkpoint), str(ct), quant], args.log)
            apps[f"model service + chat session, {quant}"] = json.loads(out.strip().splitlines()[-1])
        mode = {"image": "2d", "volume": "3d"}[args.scope]
        cli_argv = [sys.executable, "-m", "app.cli", "ask", "--model", str(checkpoint), "--series", str(ct)]
        cli_argv += ["--mode", mode, "--slices", "32", "--max-new-tokens", str(args.tokens), QUESTION]
        cli_wall, _ = run(cli_argv, args.log)
    print(f"first answer on the CPU, tiny checkpoint, demo CT, scope {args.scope}, {args.tokens} new tokens")
    for name, app in apps.items():
        print(
            f"  {name} [{app['report']}]: model ready {app['model_ready_s']:.1f} s, "
            f"first piece {app['first_piece_s']:.1f} s, answer {app['answer_s']:.1f} s after start "
            f"(question -> answer {app['ask_to_answer_s']:.1f} s), follow-up {app['follow_up_s']:.1f} s"
        )
    print(f"  ask CLI, quantization auto: answer {cli_wall:.1f} s after start")


if __name__ == "__main__":
    main()
