#!/usr/bin/env bash
# Run the test suite under a virtual X server (Qt/VTK widgets need a display; offscreen works too).
set -euo pipefail
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TCP_NODELAY=1 PYTHONFAULTHANDLER=1
if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null 2>&1; then
  exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m pytest -q -rs "$@"
fi
exec .venv/bin/python -m pytest -q -rs "$@"
